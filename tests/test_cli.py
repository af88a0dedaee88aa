import json
import subprocess
import sys

import pytest

from costmodels.cli import main
from costmodels.problem_yaml import read_problem


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_archs_lists_eyeriss(capsys):
    code, out, _ = run(capsys, "archs")
    assert code == 0 and "eyeriss" in out and "14x12" in out and "200 MHz" in out


def test_unknown_model_lists_what_exists(capsys):
    code, _, err = run(capsys, "layers", "--model", "resnet19")
    assert code == 2
    assert "unknown model 'resnet19'" in err and "resnet18" in err and "mobilenetv2" in err


def test_unknown_arch_lists_what_exists(capsys):
    code, _, err = run(capsys, "build", "--arch", "tpu", "--model", "resnet20")
    assert code == 2 and "unknown arch 'tpu'" in err and "eyeriss" in err


def test_bad_flag_exits_2_without_traceback():
    result = subprocess.run([sys.executable, "-m", "costmodels.cli", "layers", "--bogus"], capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr and "Traceback" not in result.stderr


def test_two_sources_are_refused(capsys, tmp_path):
    code, _, err = run(capsys, "layers", "--model", "resnet18", "--onnx", str(tmp_path / "x.onnx"))
    assert code == 2 and "exactly one of" in err


def test_layers_table_and_totals(capsys):
    code, out, _ = run(capsys, "layers", "--model", "resnet18")
    assert code == 0
    assert "layer3.0.conv1" in out and "resnet18: 20 conv layers" in out


def test_candidates_summary_counts(capsys):
    code, out, _ = run(capsys, "candidates", "--model", "resnet20", "--summary")
    assert code == 0 and "resnet20: 21 layers" in out


def test_full_grid_gives_more_candidates(capsys):
    _, equal, _ = run(capsys, "candidates", "--model", "resnet20", "--json")
    _, full, _ = run(capsys, "candidates", "--model", "resnet20", "--json", "--full-grid")
    count = lambda text: sum(len(layer["candidates"]) for layer in json.loads(text))
    assert count(full) > count(equal) > 0


def test_workloads_writes_files_and_index(capsys, tmp_path):
    code, out, _ = run(capsys, "workloads", "--model", "resnet20", "--out", str(tmp_path))
    assert code == 0
    index = json.loads((tmp_path / "index.json").read_text())
    files = {entry["file"] for entry in index["unique_workloads"].values()}
    assert files == {p.name for p in tmp_path.glob("*.yaml")}
    for key, entry in index["unique_workloads"].items():
        assert read_problem(tmp_path / entry["file"]).key == key
    used = {u["key"] for layer in index["layers"] for c in layer["candidates"] for u in c["workloads"]}
    used |= {u["key"] for layer in index["layers"] for u in layer["original"]}
    assert used == set(index["unique_workloads"])
    assert f"wrote {len(files)} unique workloads" in out


@pytest.mark.parametrize("argv", [["--step", "0"], ["--batch", "x"], ["--step", "-3"]])
def test_bad_numbers_are_usage_errors(argv):
    with pytest.raises(SystemExit) as info:
        main(["candidates", "--model", "resnet18", *argv])
    assert info.value.code == 2
