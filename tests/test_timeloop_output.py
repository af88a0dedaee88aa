"""The Timeloop output parser on the real Timeloop outputs in tests/data/timeloop_reference."""

import csv
import shutil
from pathlib import Path

import pytest

from costmodels.problems.workloads import Workload
from costmodels.timeloop.output import (
    TimeloopOutputError,
    parse_stats,
    read_stats,
    read_timeloop_output,
    stats_to_evaluation,
)
from costmodels.timeloop.problem_yaml import read_problem
from costmodels.timeloop.spec import load_spec

REFERENCE = Path(__file__).parent / "data" / "timeloop_reference"
ROWS = {row["name"]: row for row in csv.DictReader((REFERENCE / "results.csv").open())}
SMALL = "r20_sub1_1x1_16_8"


@pytest.fixture(scope="module")
def spec():
    return load_spec("eyeriss")


def workload(name: str) -> Workload:
    return read_problem(REFERENCE / "workloads" / f"{name}.yaml")


def test_every_reference_run_is_listed():
    runs = sorted(p.name for p in (REFERENCE / "runs").iterdir() if p.is_dir())
    assert runs == sorted(ROWS) and len(runs) == 33


@pytest.mark.parametrize("name", sorted(ROWS))
def test_parsed_cycles_and_energy_equal_results_csv(spec, name):
    row = ROWS[name]
    w = workload(name)
    ev = read_timeloop_output(REFERENCE / "runs" / name, spec, w, backend="timeloop", backend_version="3.0.3")
    assert ev.cycles == int(row["cycles"])
    assert ev.macs == int(row["macs"]) == w.macs
    assert ev.workload_key == w.key and ev.backend == "timeloop" and ev.backend_version == "3.0.3"
    # results.csv's energy is the summary's fJ/compute total (printed to 0.01 fJ) times the computes;
    # the parser adds the per-level totals (printed to 0.01 pJ), so they agree to that rounding.
    assert ev.energy_pj == pytest.approx(float(row["energy_pJ"]), abs=0.005e-3 * ev.macs + 1.0)
    assert round(ev.utilization, 2) == float(row["utilization"])
    # The total is the sum of its parts; the mapping read from map.yaml covers the workload.
    assert ev.energy_pj == pytest.approx(ev.mac_energy_pj + sum(level.energy_pj for level in ev.levels))
    assert [level.name for level in ev.levels] == [level.name for level in spec.storage]
    assert ev.mapping.covers(w)
    assert max(level.cycles for level in ev.levels) == ev.cycles


def test_per_level_numbers_of_one_run(spec):
    ev = read_timeloop_output(REFERENCE / "runs" / SMALL, spec, workload(SMALL))
    psum = ev.level("psum_spad").data_space("Outputs")
    assert (psum.utilized_capacity, psum.utilized_instances, psum.reads, psum.fills, psum.updates) == \
        (8, 64, 1024, 0, 2048)
    assert psum.energy_pj == pytest.approx(49348.61)
    weights = ev.level("weights_spad").data_space("Weights")
    assert (weights.utilized_capacity, weights.reads, weights.fills) == (16, 2048, 16)
    assert ev.level("DummyBuffer").data_spaces == ()
    glb = ev.level("shared_glb")
    assert [d.name for d in glb.data_spaces] == ["Inputs", "Outputs"]
    assert glb.energy_pj == pytest.approx(611774.46 + 154040.32)
    dram = ev.level("DRAM")
    assert dram.data_space("Inputs").reads == 16384 and dram.data_space("Outputs").updates == 8192
    assert ev.mac_energy_pj == pytest.approx(288358.40)
    assert ev.mapping.compact().startswith("DRAM:Q4")


def test_raw_stats_cross_check(spec):
    stats = read_stats(REFERENCE / "runs" / SMALL / "timeloop-mapper.stats.txt")
    assert stats.mac_name == "mac" and stats.mac_instances_utilized == 64 and stats.computes == 131072
    assert stats.network_energy_pj == 0.0
    assert stats.fj_per_compute_total * stats.computes / 1000 == pytest.approx(stats.energy_pj, rel=1e-6)


@pytest.mark.parametrize("text, problem", [
    ("", "no 'Buffer and Arithmetic Levels' section"),
    ("hello world\nthis is not Timeloop\n", "no 'Buffer and Arithmetic Levels' section"),
    ("Buffer and Arithmetic Levels\n----\n", "no 'Level N' blocks"),
])
def test_garbage_is_refused_with_the_file_name(tmp_path, text, problem):
    path = tmp_path / "timeloop-mapper.stats.txt"
    path.write_text(text)
    with pytest.raises(TimeloopOutputError) as info:
        read_stats(path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_truncated_stats_are_refused(tmp_path):
    text = (REFERENCE / "runs" / SMALL / "timeloop-mapper.stats.txt").read_text()
    path = tmp_path / "timeloop-mapper.stats.txt"
    path.write_text(text[: len(text) // 3])
    with pytest.raises(TimeloopOutputError, match="Summary Stats") as info:
        read_stats(path)
    assert str(path) in str(info.value)


def test_bad_number_is_refused(tmp_path):
    text = (REFERENCE / "runs" / SMALL / "timeloop-mapper.stats.txt").read_text()
    text = text.replace("Scalar reads (per-instance)              : 1024", "Scalar reads (per-instance)  : lots", 1)
    with pytest.raises(TimeloopOutputError, match="expected a number, got 'lots'"):
        parse_stats(text, "bad.stats.txt")


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "timeloop-mapper.stats.txt"
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(TimeloopOutputError, match=str(path)):
        read_stats(path)


def test_missing_outputs_are_named(spec, tmp_path):
    with pytest.raises(TimeloopOutputError, match="timeloop-mapper.stats.txt: missing"):
        read_timeloop_output(tmp_path, spec)
    shutil.copy(REFERENCE / "runs" / SMALL / "timeloop-mapper.stats.txt", tmp_path)
    with pytest.raises(TimeloopOutputError, match="timeloop-mapper.map.yaml: missing"):
        read_timeloop_output(tmp_path, spec)


def test_stats_of_another_workload_are_refused(spec):
    with pytest.raises(TimeloopOutputError, match="another workload"):
        read_timeloop_output(REFERENCE / "runs" / SMALL, spec, workload("r20_s2_3x3_32_32"))


def test_levels_must_match_the_spec(spec):
    text = (REFERENCE / "runs" / SMALL / "timeloop-mapper.stats.txt").read_text().replace("=== DRAM ===",
                                                                                          "=== HBM ===")
    stats = parse_stats(text, "renamed.stats.txt")
    ev = read_timeloop_output(REFERENCE / "runs" / SMALL, spec)
    with pytest.raises(TimeloopOutputError, match="do not match the spec"):
        stats_to_evaluation(stats, spec, ev.mapping)
