import json
import subprocess
import sys

import pytest

from costmodels.cli.main import main
from costmodels.timeloop.problem_yaml import read_problem


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
    result = subprocess.run([sys.executable, "-m", "costmodels.cli.main", "layers", "--bogus"], capture_output=True,
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


REFERENCE = __import__("pathlib").Path(__file__).parent / "data" / "timeloop_reference"


def test_eval_with_timeloops_mapping_reports_its_cycles(capsys):
    run_dir = REFERENCE / "runs" / "l3c2_r96_sub2_3x3_96_96"
    code, out, _ = run(capsys, "eval", "--arch", "eyeriss", str(REFERENCE / "workloads" / "l3c2_r96_sub2_3x3_96_96.yaml"),
                       "--mapping", str(run_dir / "timeloop-mapper.map.yaml"), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["cycles"] == 96768
    assert result["energy_pj"] == pytest.approx(104082507.3, rel=1e-5)
    assert [level["name"] for level in result["levels"]][-1] == "DRAM"


def test_eval_searches_a_mapping_and_prints_it(capsys):
    code, out, _ = run(capsys, "eval", "--arch", "eyeriss", str(REFERENCE / "workloads" / "r20_sub1_1x1_16_8.yaml"))
    assert code == 0
    assert "cycles     2,048" in out and "psum_spad" in out and "target: DRAM" in out


def test_eval_bad_workload_file(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("problem: {instance: {C: -1}}")
    code, _, err = run(capsys, "eval", "--arch", "eyeriss", str(bad))
    assert code == 2 and str(bad) in err and "problem.instance.C" in err and "Traceback" not in err


def test_build_writes_lut_and_summary(capsys, tmp_path):
    code, out, _ = run(capsys, "build", "--arch", "eyeriss", "--model", "resnet20", "--out", str(tmp_path),
                       "--jobs", "1")
    assert code == 0
    rows = list(__import__("csv").DictReader((tmp_path / "lut.csv").open()))
    summary = json.loads((tmp_path / "summary.json").read_text())
    originals = [r for r in rows if r["form"] == "original"]
    assert len(originals) == summary["layers"] == 21
    assert summary["original"]["cycles"] == sum(int(r["cycles"]) for r in originals)
    for row in rows:
        if row["form"] == "tucker2":
            subs = [int(row[f"sub{i}_cycles"]) for i in (1, 2, 3)]
            assert sum(subs) == int(row["cycles"])
            assert float(row["latency_s"]) == pytest.approx(int(row["cycles"]) / 200e6)
    assert "wrote" in out and "images/s" in out


def test_heatmap_of_a_small_layer(capsys, tmp_path):
    code, out, _ = run(capsys, "heatmap", "--arch", "eyeriss", "--model", "resnet20", "--layer", "layer2.1.conv1",
                       "--step", "16", "--out", str(tmp_path), "--jobs", "1")
    assert code == 0 and "4 rank pairs" in out
    rows = list(__import__("csv").DictReader((tmp_path / "layer2_1_conv1-eyeriss.csv").open()))
    assert [(int(r["r1"]), int(r["r2"])) for r in rows] == [(16, 16), (16, 32), (32, 16), (32, 32)]
    # r1 = r2 = 32 on a 32->32 layer: its 3x3 core is the original layer, plus two 1x1 convs.
    assert int(rows[-1]["cycles"]) > int(rows[-1]["original_cycles"]) > int(rows[0]["cycles"])
    assert (tmp_path / "layer2_1_conv1-eyeriss.png").read_bytes().startswith(b"\x89PNG")


def test_heatmap_refuses_a_pointwise_layer(capsys):
    code, _, err = run(capsys, "heatmap", "--arch", "eyeriss", "--model", "resnet20", "--layer",
                       "layer2.0.downsample.0")
    assert code == 2 and "dense KxK conv" in err


@pytest.mark.parametrize("parse, good, bad", [
    ("positive_int", {"3": 3}, ["0", "-1", "2.5", "x", "nan"]),
    ("nonnegative_int", {"0": 0, "7": 7}, ["-1", "x"]),
    ("positive_float", {"0.5": 0.5, "2": 2.0}, ["0", "-1", "nan", "inf", "x"]),
    ("nonnegative_float", {"0": 0.0}, ["-0.1", "nan", "-inf"]),
    ("fraction", {"1": 1.0, "0.25": 0.25}, ["0", "1.5", "nan", "x"]),
])
def test_value_types_accept_and_refuse(parse, good, bad):
    import argparse

    from costmodels.cli import args

    function = getattr(args, parse)
    assert function.__name__ == parse
    for text, value in good.items():
        assert function(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=f"got '{text}'"):
            function(text)
