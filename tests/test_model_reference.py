"""The built-in model against real Timeloop v3.0.3 runs: for each reference workload, evaluating
Timeloop's own best mapping must give Timeloop's cycles and access counts exactly, and its energy to
rounding. Also: the legality checks, cycles_only, determinism, the result's plain-dict form."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest

from costmodels.errors import MappingError
from costmodels.model.analytical import cycles_only, evaluate
from costmodels.problems.workloads import DIMENSIONS, Workload
from costmodels.timeloop.mapping import LevelMapping, Mapping
from costmodels.timeloop.mapping_yaml import read_mapping
from costmodels.timeloop.output import read_stats
from costmodels.timeloop.problem_yaml import read_problem
from costmodels.timeloop.spec import load_spec

REFERENCE = Path(__file__).parent / "data" / "timeloop_reference"
RUNS = sorted(p.name for p in (REFERENCE / "runs").iterdir())
RESULTS = {row["name"]: row for row in csv.DictReader((REFERENCE / "results.csv").open())}
# Timeloop prints energies with two decimals and results.csv with one.
ENERGY_ABS_PJ = 0.011
ENERGY_REL = 1e-5


@pytest.fixture(scope="module")
def spec():
    return load_spec("eyeriss")


def _case(name: str, spec) -> tuple[Workload, Mapping]:
    workload = read_problem(REFERENCE / "workloads" / f"{name}.yaml")
    mapping = read_mapping(REFERENCE / "runs" / name / "timeloop-mapper.map.yaml", spec)
    return workload, mapping


def test_every_reference_run_is_covered():
    assert len(RUNS) == 33 and set(RUNS) == set(RESULTS)


@pytest.mark.parametrize("name", RUNS)
def test_matches_timeloop(name, spec):
    workload, mapping = _case(name, spec)
    stats = read_stats(REFERENCE / "runs" / name / "timeloop-mapper.stats.txt")
    result = evaluate(workload, spec, mapping)

    assert result.cycles == stats.cycles == int(RESULTS[name]["cycles"])
    assert result.macs == stats.computes == workload.macs
    assert result.utilization == pytest.approx(float(RESULTS[name]["utilization"]), abs=0.005)
    assert result.mac_energy_pj == pytest.approx(stats.mac_energy_pj, abs=ENERGY_ABS_PJ)
    assert result.energy_pj == pytest.approx(float(RESULTS[name]["energy_pJ"]), rel=ENERGY_REL)
    assert [level.name for level in result.levels] == [level.name for level in stats.levels]
    for level, theirs in zip(result.levels, stats.levels):
        assert level.cycles == theirs.cycles, level.name
        assert {d.name for d in level.data_spaces} == set(theirs.data_spaces), level.name
        for space in level.data_spaces:
            where = f"{level.name}.{space.name}"
            expected = {
                "Utilized capacity": space.utilized_capacity,
                "Utilized instances (max)": space.utilized_instances,
                "Scalar reads (per-instance)": space.reads,
                "Scalar fills (per-instance)": space.fills,
                "Scalar updates (per-instance)": space.updates,
            }
            for key, ours in expected.items():
                assert ours == _number(theirs.data_spaces[space.name][key]), f"{where} {key}"
            assert space.energy_pj == pytest.approx(_number(theirs.data_spaces[space.name]["Energy (total)"]),
                                                    abs=ENERGY_ABS_PJ), where


def _number(text: str) -> float:
    return float(text.split()[0])     # drop units such as "pJ"


def _energy(name: str, spec) -> float:
    workload, mapping = _case(name, spec)
    return evaluate(workload, spec, mapping).energy_pj


def test_total_energy_within_one_percent_everywhere(spec):
    diffs = {name: _energy(name, spec)/ float(RESULTS[name]["energy_pJ"]) - 1
             for name in RUNS}
    worst = max(diffs, key=lambda name: abs(diffs[name]))
    assert abs(diffs[worst]) < 0.01, f"{worst}: {diffs[worst]:+.4%}"


@pytest.mark.parametrize("name", RUNS)
def test_cycles_only_agrees(name, spec):
    workload, mapping = _case(name, spec)
    assert cycles_only(workload, spec, mapping) == evaluate(workload, spec, mapping).cycles


# --- legality -----------------------------------------------------------------------------------

def _with(mapping: Mapping, target: str, **changes: dict[str, int]) -> Mapping:
    """A copy of ``mapping`` with some factors of one level changed (``temporal={"C": 16}`` etc.)."""
    levels = []
    for level in mapping.levels:
        if level.target == target:
            fields = {}
            for kind, factors in changes.items():
                values = list(getattr(level, kind))
                for dim, value in factors.items():
                    values[DIMENSIONS.index(dim)] = value
                fields[kind] = tuple(values)
            level = dataclasses.replace(level, **fields)
        levels.append(level)
    return Mapping(tuple(levels))


@pytest.fixture(scope="module")
def sub2(spec):
    # weights_spad C4 R3 (192 words, full); GLB spreads Q14 over X; DummyBuffer C4 S3 over Y; DRAM C4.
    return _case("l3c2_r64_sub2_3x3_64_64", spec)


def test_scratchpad_overflow_is_rejected(spec, sub2):
    workload, mapping = sub2
    bigger = _with(_with(mapping, "weights_spad", temporal={"C": 16}), "DRAM", temporal={"C": 1})
    with pytest.raises(MappingError, match=r"weights_spad: tiles need 768 words \(Weights 768\), it holds 192"):
        evaluate(workload, spec, bigger)


def test_spatial_fanout_beyond_the_mesh_is_rejected(spec, sub2):
    workload, mapping = sub2
    wider = _with(_with(mapping, "shared_glb", spatial_x={"M": 2}, temporal={"M": 2}), "DRAM", temporal={})
    with pytest.raises(MappingError, match=r"shared_glb: spatial fan-out 28 along X exceeds the 14"):
        evaluate(workload, spec, wider)
    taller = _with(mapping, "DummyBuffer", spatial_y={"C": 8})
    with pytest.raises(MappingError, match=r"DummyBuffer: spatial fan-out 24 along Y exceeds the 12"):
        evaluate(workload, spec, taller)


def test_factors_that_do_not_cover_the_workload_are_rejected(spec, sub2):
    workload, mapping = sub2
    short = _with(mapping, "DRAM", temporal={"C": 2})
    with pytest.raises(MappingError, match=r"factors of C multiply to 32 \(.*weights_spad=4, .*DRAM=2\), "
                                           r"the workload's C is 64"):
        evaluate(workload, spec, short)
    with pytest.raises(MappingError, match="the workload's C is 128"):
        evaluate(dataclasses.replace(workload, C=128), spec, mapping)


def test_keep_and_bypass_must_follow_the_architecture(spec, sub2):
    workload, mapping = sub2
    levels = list(mapping.levels)
    levels[4] = dataclasses.replace(levels[4], keep=frozenset({"Inputs", "Outputs", "Weights"}))
    with pytest.raises(MappingError, match="shared_glb: the architecture says it must bypass Weights"):
        evaluate(workload, spec, Mapping(tuple(levels)))
    levels = list(mapping.levels)
    levels[2] = dataclasses.replace(levels[2], keep=frozenset())
    with pytest.raises(MappingError, match="ifmap_spad: the architecture says it must keep Inputs"):
        evaluate(workload, spec, Mapping(tuple(levels)))
    levels = list(mapping.levels)
    levels[5] = dataclasses.replace(levels[5], keep=frozenset({"Inputs", "Outputs"}))
    with pytest.raises(MappingError, match="DRAM: the outermost level must keep every data space"):
        evaluate(workload, spec, Mapping(tuple(levels)))


def test_malformed_mappings_are_rejected(spec, sub2):
    workload, mapping = sub2
    with pytest.raises(MappingError, match="mapping has 5 levels, the architecture 6"):
        evaluate(workload, spec, Mapping(mapping.levels[:5]))
    levels = list(mapping.levels)
    levels[0] = dataclasses.replace(levels[0], target="weights_spad")
    with pytest.raises(MappingError, match="mapping level 0 is 'weights_spad', the architecture's is 'psum_spad'"):
        evaluate(workload, spec, Mapping(tuple(levels)))
    levels = list(mapping.levels)
    levels[1] = dataclasses.replace(levels[1], temporal_order=tuple("CRMSNP"))
    with pytest.raises(MappingError, match="weights_spad: loop order 'CRMSNP' must list each of CMRSNPQ once"):
        evaluate(workload, spec, Mapping(tuple(levels)))
    with pytest.raises(MappingError, match="psum_spad: temporal factor of M is 0"):
        evaluate(workload, spec, _with(mapping, "psum_spad", temporal={"M": 0}))


# --- behaviour beyond the reference runs ----------------------------------------------------------

def _starved_mapping() -> tuple[Workload, Mapping]:
    """A 1x1 convolution whose PEs fetch a new input word every cycle from the global buffer (the
    output-row loop P runs inside the channel loop M, so no input stays in a PE): 168 words/cycle
    wanted against 16 available."""
    workload = Workload(C=96, M=4, R=1, S=1, N=1, P=14, Q=14)

    def level(target, temporal=(), spatial_x=(), spatial_y=(), keep=(), order="CMRSNPQ"):
        def factors(pairs):
            values = dict(pairs)
            return tuple(values.get(d, 1) for d in DIMENSIONS)
        return LevelMapping(target, factors(temporal), tuple(order), factors(spatial_x), factors(spatial_y),
                            DIMENSIONS, frozenset(keep))

    return workload, Mapping((
        level("psum_spad", keep=["Outputs"]),
        level("weights_spad", temporal=[("C", 8)], keep=["Weights"]),
        level("ifmap_spad", keep=["Inputs"]),
        level("DummyBuffer", spatial_y=[("C", 12)]),
        level("shared_glb", temporal=[("P", 14), ("M", 4)], spatial_x=[("Q", 14)], keep=["Inputs", "Outputs"],
              order="PMCRSNQ"),
        level("DRAM", keep=["Weights", "Inputs", "Outputs"]),
    ))


def test_bandwidth_shortfall_stretches_cycles(spec):
    workload, mapping = _starved_mapping()
    result = evaluate(workload, spec, mapping)
    compute_cycles = workload.macs // (12 * 14)
    glb = result.level("shared_glb")
    inputs = glb.data_space("Inputs")
    assert inputs.reads == 12 * 14 * compute_cycles        # every PE, every cycle
    # Timeloop: slowdown = bandwidth / demand, cycles = ceil(compute cycles / slowdown).
    demand = sum((d.reads / compute_cycles) for d in glb.data_spaces)
    assert glb.cycles == result.cycles > compute_cycles
    assert result.cycles == math.ceil(compute_cycles / (16 / demand)) == 4704
    assert result.level("psum_spad").cycles == compute_cycles
    assert cycles_only(workload, spec, mapping) == result.cycles
    assert result.utilization == pytest.approx(workload.macs / (result.cycles * 168))


def test_results_are_deterministic_and_serialisable(spec, sub2):
    workload, mapping = sub2
    first, second = evaluate(workload, spec, mapping), evaluate(workload, spec, mapping)
    assert first == second
    document = first.to_dict()
    assert json.loads(json.dumps(document)) == document
    assert document["cycles"] == 43008 and document["workload_key"] == workload.key
    assert document["mapping"]["compact"] == mapping.compact()
    glb = next(level for level in document["levels"] if level["name"] == "shared_glb")
    assert [d["name"] for d in glb["data_spaces"]] == ["Inputs", "Outputs"]
    assert first.energy_per_mac_pj == pytest.approx(first.energy_pj / workload.macs)
    assert first.latency_s(spec.clock_hz) == pytest.approx(43008 / 200e6)
    assert first.backend == "analytical"
