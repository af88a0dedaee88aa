"""LUT export: schema, provenance, evaluated/predicted sources, the loader the search core calls, and
the `fit` / `lut` commands end to end on ResNet-20."""

import argparse
import csv
import json

import pytest

from costmodels.cli.predict import add_fit_parser, add_lut_parser
from costmodels.errors import CostModelError
from costmodels.lut.build import LUT, assemble_lut, lut_csv
from costmodels.lut.export import (
    COLUMNS,
    LUT_FORMAT_VERSION,
    LUTFileError,
    export_lut,
    load_lut,
    provenance,
    sourced_lut,
)
from costmodels.network.zoo import zoo_layers
from costmodels.predictors.persistence import load_predictors
from costmodels.problems.candidates import RankGrid, network_candidates
from costmodels.problems.workloads import layer_workloads, network_workloads
from costmodels.sweep.records import WorkloadCost, WorkloadFailure
from costmodels.timeloop.spec import load_spec

PROVENANCE_KEYS = {"format", "format_version", "network", "arch", "spec_hash", "backend", "backend_version",
                   "toolkit_version", "clock_hz", "source", "predictor", "predictor_accuracy", "created"}


@pytest.fixture(scope="module")
def eyeriss():
    return load_spec("eyeriss")


@pytest.fixture(scope="module")
def network():
    layers = network_candidates(zoo_layers("resnet20"), RankGrid())
    return layers, network_workloads(layers).unique


def fake(workload, scale=1.0):
    return WorkloadCost(workload.key, max(1, int(workload.macs * scale) // 100), workload.macs * 3.0 * scale, 0.5,
                        "fake")


@pytest.fixture(scope="module")
def mixed(eyeriss, network):
    """Originals evaluated, every candidate workload predicted (at 1.1 x the evaluated value)."""
    layers, unique = network
    originals = {u.workload.key for lc in layers for u in layer_workloads(lc.layer)}
    evaluated = {k: fake(w) for k, w in unique.items() if k in originals}
    predicted = {k: fake(w, 1.1) for k, w in unique.items() if k not in originals}
    table = sourced_lut("resnet20", layers, eyeriss, evaluated, predicted, "builtin", "test 1")
    header = provenance(table.lut, "predict", predictor="gbt", accuracy="cycles MAPE 0.1%", evaluated=len(evaluated),
                        predicted=len(predicted), extra={"rank_grid": "step 32"})
    return table, header


def test_rows_cover_every_layer_and_candidate_with_their_source(network, mixed):
    layers, _ = network
    table, _ = mixed
    assert len(table.lut.rows) == len(layers) + sum(len(lc.candidates) for lc in layers)
    for row, source in zip(table.lut.rows, table.sources):
        assert source == ("evaluated" if row.form == "original" else "predicted")


def test_csv_has_a_provenance_header_and_the_schema(eyeriss, network, mixed, tmp_path):
    table, header = mixed
    path = export_lut(table, header, tmp_path / "lut.csv")
    lines = path.read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    assert lines[:len(comments)] == comments and all(": " in line for line in comments)
    keys = {line[2:].split(":")[0] for line in comments}
    assert PROVENANCE_KEYS | {"rank_grid", "evaluated_workloads", "predicted_workloads"} <= keys
    rows = list(csv.DictReader(lines[len(comments):]))
    assert tuple(rows[0]) == COLUMNS
    assert {r["source"] for r in rows} == {"evaluated", "predicted"}
    tucker = next(r for r in rows if r["form"] == "tucker2")
    assert int(tucker["cycles"]) == sum(int(tucker[f"sub{i}_cycles"]) for i in (1, 2, 3))
    assert float(tucker["latency_s"]) == pytest.approx(int(tucker["cycles"]) / eyeriss.clock_hz)

    lut = load_lut(path)
    assert lut.provenance["spec_hash"] == eyeriss.content_hash and lut.provenance["source"] == "predict"
    assert len(lut.entries) == len(table.lut.rows) and lut.layers[0] == "conv1"
    entry = lut.lookup("layer2.0.conv1", 16, 16)
    assert entry.source == "predicted" and len(entry.subconv_cycles) == 3
    assert lut.original("layer2.0.conv1").subconv_cycles == () and lut.original("conv1").source == "evaluated"
    assert lut.latency_table()["layer2.0.conv1"][(16, 16)] == entry.latency_s
    with pytest.raises(KeyError, match="no candidate r1=5"):
        lut.lookup("layer2.0.conv1", 5, 5)


def test_json_round_trip_matches_csv(mixed, tmp_path):
    table, header = mixed
    from_csv = load_lut(export_lut(table, header, tmp_path / "lut.csv"))
    path = export_lut(table, header, tmp_path / "lut.json", "json")
    document = json.loads(path.read_text())
    assert set(document) == {"provenance", "columns", "rows"} and PROVENANCE_KEYS <= set(document["provenance"])
    from_json = load_lut(path)
    assert from_json.entries == from_csv.entries
    assert from_json.provenance["evaluated_workloads"] == header["evaluated_workloads"]


def test_loads_the_plain_build_csv(eyeriss, network, tmp_path):
    layers, unique = network
    results = {k: fake(w) for k, w in unique.items()}
    lut: LUT = assemble_lut("resnet20", tuple(layers), eyeriss, results)
    path = tmp_path / "build.csv"
    path.write_text(lut_csv(lut))
    loaded = load_lut(path)
    assert loaded.provenance == {"network": "resnet20", "arch": "eyeriss"} and len(loaded.entries) == len(lut.rows)
    assert {e.source for e in loaded.entries} == {"evaluated"}


def test_failed_workloads_leave_their_rows_out(eyeriss, network):
    layers, unique = network
    failed = next(iter(unique))
    evaluated = {k: (WorkloadFailure(k, "x", "no mapping") if k == failed else fake(w)) for k, w in unique.items()}
    table = sourced_lut("resnet20", layers, eyeriss, evaluated, {}, "builtin", "1")
    assert len(table.lut.failures) == 1 and len(table.lut.rows) < len(layers) + sum(len(lc.candidates) for lc in layers)


def test_bad_files_are_refused(mixed, tmp_path):
    table, header = mixed
    path = export_lut(table, {**header, "format_version": LUT_FORMAT_VERSION + 1}, tmp_path / "newer.csv")
    with pytest.raises(LUTFileError, match="newer"):
        load_lut(path)
    text = export_lut(table, header, tmp_path / "ok.csv").read_text()
    (tmp_path / "nocycles.csv").write_text(text.replace(",cycles,", ",cycels,", 1))
    with pytest.raises(LUTFileError, match="missing column"):
        load_lut(tmp_path / "nocycles.csv")
    (tmp_path / "source.csv").write_text(text.replace(",predicted\n", ",guessed\n", 1))
    with pytest.raises(LUTFileError, match="source 'guessed'"):
        load_lut(tmp_path / "source.csv")
    with pytest.raises(LUTFileError, match="no such file"):
        load_lut(tmp_path / "missing.csv")


# --- the commands -----------------------------------------------------------------------------------

def run(capsys, *argv):
    """What `costmodel` does once cli.py registers the two sub-commands."""
    parser = argparse.ArgumentParser(prog="costmodel")
    sub = parser.add_subparsers(dest="command", required=True)
    add_fit_parser(sub)
    add_lut_parser(sub)
    args = parser.parse_args(list(argv))
    try:
        code = args.func(args)
    except CostModelError as exc:
        print(f"costmodel {args.command}: error: {exc}")
        code = 2
    out, err = capsys.readouterr()
    return code, out + err


def test_fit_then_lut_from_the_predictor(eyeriss, tmp_path, capsys):
    common = ["--arch", "eyeriss", "--model", "resnet20", "--jobs", "1"]
    code, out = run(capsys, "fit", *common, "--budget", "0.4", "--estimator", "roofline", "--out",
                    str(tmp_path / "fit"))
    assert code == 0, out
    assert "| held-out ranks | cycles | candidate | roofline |" in out
    for name in ("predictor.zip", "accuracy.md", "accuracy.json", "accuracy.png"):
        assert (tmp_path / "fit" / name).is_file()
    loaded = load_predictors(tmp_path / "fit" / "predictor.zip", eyeriss)
    assert "held-out ranks" in loaded.metadata["provenance"]["accuracy"]

    predictor = str(tmp_path / "fit" / "predictor.zip")
    code, out = run(capsys, "lut", *common, "--source", "predict", "--predictor", predictor, "--format", "json",
                    "--out", str(tmp_path / "lut.json"))
    assert code == 0, out
    lut = load_lut(tmp_path / "lut.json")
    assert {e.source for e in lut.entries} == {"predicted"}
    assert "held-out ranks" in lut.provenance["predictor_accuracy"]

    code, out = run(capsys, "lut", *common, "--source", "predict", "--budget", "0.3", "--estimator", "roofline",
                    "--out", str(tmp_path / "hybrid.csv"))
    assert code == 0, out
    assert {e.source for e in load_lut(tmp_path / "hybrid.csv").entries} == {"evaluated", "predicted"}

    code, out = run(capsys, "lut", *common, "--out", str(tmp_path / "evaluated.csv"))
    assert code == 0, out
    evaluated = load_lut(tmp_path / "evaluated.csv")
    assert {e.source for e in evaluated.entries} == {"evaluated"} and evaluated.provenance["predictor"] == "none"

    code, out = run(capsys, "lut", *common, "--predictor", predictor)
    assert code == 2 and "--predictor needs --source predict" in out
