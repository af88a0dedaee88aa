"""The three exercise designs beyond Eyeriss (simba_like, simple_weight_stationary,
simple_output_stationary) against real Timeloop v3.0.3 runs (tests/data/timeloop_designs, see its README):

- fidelity: evaluating Timeloop's own best mapping of each reference workload gives Timeloop's cycles and
  every level's and data space's access counts exactly, and its energy to print rounding;
- the loader reads what makes these designs differ from Eyeriss (vector MACs, several fan-outs, registers
  priced by Timeloop's SRAM estimate, clusters, per-level word sizes, free bypass);
- the mapper never needs more cycles than Timeloop's mapper found (see test_mapper_quality).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mapper_probes import mapper_estimate, mapper_estimates_under_orders, mapping_orders

from costmodels.errors import MappingError
from costmodels.model.analytical import evaluate
from costmodels.model import mapper
from costmodels.model.mapper import MAX_DIMENSION, find_mapping
from costmodels.problems.workloads import Workload
from costmodels.timeloop.mapping_yaml import mapping_yaml, read_mapping
from costmodels.timeloop.output import read_stats
from costmodels.timeloop.problem_yaml import read_problem
from costmodels.timeloop.spec import available_targets, load_spec

DATA = Path(__file__).parent / "data" / "timeloop_designs"
DESIGNS = ("simba_like", "simple_weight_stationary", "simple_output_stationary")
RESULTS = {d: {row["name"]: row for row in csv.DictReader((DATA / d / "results.csv").open())} for d in DESIGNS}
CASES = [(d, name) for d in DESIGNS for name in sorted(RESULTS[d])]
# Timeloop prints per-data-space energies to 0.01 pJ and results.csv totals to 0.1 pJ.
ENERGY_ABS_PJ = 0.011
ENERGY_REL = 1e-5
_COUNTS = ("Utilized capacity", "Utilized instances (max)", "Scalar reads (per-instance)",
           "Scalar fills (per-instance)", "Scalar updates (per-instance)")


@pytest.fixture(scope="module")
def specs():
    return {d: load_spec(d) for d in DESIGNS}


def _number(text: str) -> float:
    return float(text.split()[0])


def test_every_reference_run_is_covered():
    for design in DESIGNS:
        runs = {p.name for p in (DATA / design / "runs").iterdir()}
        assert len(runs) == 13 and runs == set(RESULTS[design])
    assert set(DESIGNS) <= set(available_targets())


@pytest.mark.parametrize("design,name", CASES)
def test_matches_timeloop(design, name, specs):
    spec = specs[design]
    workload = read_problem(DATA / "workloads" / f"{name}.yaml")
    mapping = read_mapping(DATA / design / "runs" / name / "timeloop-mapper.map.yaml", spec)
    stats = read_stats(DATA / design / "runs" / name / "timeloop-mapper.stats.txt")
    row = RESULTS[design][name]
    result = evaluate(workload, spec, mapping)

    assert result.cycles == stats.cycles == int(row["cycles"])
    assert result.mac_energy_pj == pytest.approx(stats.mac_energy_pj, abs=ENERGY_ABS_PJ)
    assert result.energy_pj == pytest.approx(float(row["energy_pJ"]), rel=ENERGY_REL)
    assert [level.name for level in result.levels] == [level.name for level in stats.levels]
    for level, theirs in zip(result.levels, stats.levels):
        assert level.cycles == theirs.cycles, level.name
        assert {d.name for d in level.data_spaces} == set(theirs.data_spaces), level.name
        for space in level.data_spaces:
            reported = theirs.data_spaces[space.name]
            ours = (space.utilized_capacity, space.utilized_instances, space.reads, space.fills, space.updates)
            assert ours == tuple(_number(reported[key]) for key in _COUNTS), f"{level.name}.{space.name}"
            assert space.energy_pj == pytest.approx(_number(reported["Energy (total)"]), abs=ENERGY_ABS_PJ)


def test_simba_like_is_a_16_pe_array_of_4x4_vector_macs(specs):
    simba = specs["simba_like"]
    names = [level.name for level in simba.storage]
    assert names == ["PEWeightRegs", "PEAccuBuffer", "PEWeightBuffer", "PEInputBuffer", "GlobalBuffer", "DRAM"]
    assert (simba.compute.name, simba.compute.instances, simba.compute.mac_energy) == ("LMAC", 256, 0.561)
    fanouts = {name: simba.fanout(i) for i, name in enumerate(names)}
    assert fanouts == {"PEWeightRegs": (1, 1), "PEAccuBuffer": (1, 4), "PEWeightBuffer": (1, 1),
                       "PEInputBuffer": (1, 4), "GlobalBuffer": (16, 1), "DRAM": (1, 1)}
    accu, weights = simba.level("PEAccuBuffer"), simba.level("PEWeightBuffer")
    assert (accu.word_bits, accu.size_words, accu.block_size) == (24, 128, 1)
    # memory_width defaults to word-bits x block-size, as in Timeloop: 4096 rows of 8 words.
    assert (weights.size_words, weights.block_size) == (32768, 8)
    assert simba.level("GlobalBuffer").keep == {"Inputs", "Outputs"}     # a 'datatype' constraint


def test_registers_without_read_write_energy_get_timeloops_sram_estimate(specs):
    # The ERT lists only 'access' (0.009 pJ) for the registers; Timeloop v3.0.3 ignores it.
    reg = specs["simple_weight_stationary"].level("weight_reg")
    assert reg.energy_source == "Timeloop SRAM estimate"
    assert reg.read_energy == reg.write_energy == pytest.approx(1 + 5 / 99.5 * (16 / 8192 - 0.5))
    simba_reg = specs["simba_like"].level("PEWeightRegs")
    assert simba_reg.cluster_size == 64
    # 512-bit-wide cluster array, shared by 64 registers; stats: 74.82 pJ for 9792 accesses per instance.
    assert simba_reg.read_energy * 9792 / 64 == pytest.approx(74.82, abs=0.005)
    assert specs["simple_output_stationary"].level("pe_spad").energy_source == "ERT"


def test_free_bypass_is_left_to_the_mapper(specs):
    glb = specs["simple_output_stationary"].level("shared_glb")
    assert glb.keep == frozenset() and glb.bypass == frozenset()


@pytest.mark.parametrize("design", DESIGNS)
def test_reference_mapping_round_trips(design, specs):
    name = "r20_3x3_16_16"
    spec = specs[design]
    mapping = read_mapping(DATA / design / "runs" / name / "timeloop-mapper.map.yaml", spec)
    assert read_mapping(mapping_yaml(mapping, spec), spec) == mapping


# Workloads the mapper solves within a second or so on every design (the whole set runs in the benchmark,
# benchmarks/targets_bench.py).
QUICK = ("r20_3x3_16_16", "l3c2_r64_sub2_3x3_64_64", "r18_l4_orig_3x3_512_512")


@pytest.mark.parametrize("design,name", [(d, n) for d in DESIGNS for n in QUICK])
def test_mapper_quality(design, name, specs):
    spec = specs[design]
    workload = read_problem(DATA / "workloads" / f"{name}.yaml")
    row = RESULTS[design][name]
    result = find_mapping(workload, spec)
    assert result.evaluation.cycles <= int(row["cycles"])
    if result.evaluation.cycles == int(row["cycles"]):
        assert result.evaluation.energy_pj <= 1.05 * float(row["energy_pJ"])
    # What the mapper returns is a mapping Timeloop can read back (split, permutations, bypass).
    again = evaluate(workload, spec, read_mapping(mapping_yaml(result.mapping, spec), spec))
    assert (again.cycles, again.energy_pj) == (result.evaluation.cycles, result.evaluation.energy_pj)


def test_simba_needs_channels_in_multiples_of_its_vector_width(specs):
    # The map constraints fix C=4 and M=4 spatially inside each PE; Timeloop v3 takes exact factors only.
    with pytest.raises(MappingError, match="no legal mapping"):
        find_mapping(Workload(C=6, M=8, R=3, S=3, N=1, P=8, Q=8), specs["simba_like"])


def test_simple_designs_refuse_channels_not_divisible_by_the_array_side(specs):
    # M=24 > 16 but not a multiple of 16: timeloop-mapper stops with "not divisible by product of
    # user-provided constraint factors".
    with pytest.raises(MappingError, match="cannot multiply to M=24"):
        find_mapping(Workload(C=16, M=24, R=1, S=1, N=1, P=4, Q=4), specs["simple_weight_stationary"])


def test_huge_dimension_is_refused_before_any_search(specs):
    with pytest.raises(MappingError, match=f"field 'C' is 1000000000; allowed: 1..{MAX_DIMENSION}"):
        find_mapping(Workload(C=10 ** 9, M=16, R=1, S=1, N=1, P=1, Q=1), specs["simba_like"])


@pytest.mark.parametrize("design", DESIGNS)
def test_mapper_estimate_counts_as_the_model_does(design, specs):
    """The mapper ranks candidates by its vectorized estimate; on Timeloop's own mappings of these designs
    (free orders, several fan-outs, clusters, sliding windows with a translation record) it must agree
    with the model."""
    spec = specs[design]
    for name in sorted(RESULTS[design]):
        workload = read_problem(DATA / "workloads" / f"{name}.yaml")
        mapping = read_mapping(DATA / design / "runs" / name / "timeloop-mapper.map.yaml", spec)
        cycles, energy = mapper_estimate(workload, spec, mapping)
        truth = evaluate(workload, spec, mapping)
        assert cycles == truth.cycles, name
        assert energy == pytest.approx(truth.energy_pj, rel=1e-9), name


@pytest.mark.parametrize("design", DESIGNS)
def test_orders_scored_together_get_their_own_estimates(design, specs):
    """The loop-order descent scores all orders tried at a level in one pass, an order per candidate;
    each must get exactly the estimate it gets alone, with the input walk and without. Probes:
    Timeloop's mappings, each level's order reversed and rotated, one level and several at a time."""
    spec = specs[design]
    for name in sorted(RESULTS[design])[::3]:
        workload = read_problem(DATA / "workloads" / f"{name}.yaml")
        mapping = read_mapping(DATA / design / "runs" / name / "timeloop-mapper.map.yaml", spec)
        base = mapping_orders(mapping)
        trials = [base, tuple(order[::-1] for order in base), tuple(order[2:] + order[:2] for order in base)]
        trials += [base[:i] + (base[i][::-1],) + base[i + 1:] for i in range(len(base))]
        for walk in (True, False):
            cycles, energy = mapper_estimates_under_orders(workload, spec, mapping, trials, walk)
            for k, orders in enumerate(trials):
                alone = mapper_estimates_under_orders(workload, spec, mapping, [orders], walk)
                assert (cycles[k], energy[k]) == (alone[0][0], alone[1][0]), (name, k, walk)


@pytest.mark.parametrize("design", DESIGNS)
def test_quick_estimate_is_the_estimate_without_the_walk(design, specs, monkeypatch):
    """The descent starts from each shortlist's quick-estimate keys instead of scoring its starting
    orders again: they must be exactly the estimate without the input walk under those orders."""
    seen = []
    descend = mapper._Search._orders

    def spy(search, shortlist):
        seen.append((search, shortlist))
        return descend(search, shortlist)

    monkeypatch.setattr(mapper._Search, "_orders", spy)
    spec = specs[design]
    for name in sorted(RESULTS[design])[::4]:
        find_mapping(read_problem(DATA / "workloads" / f"{name}.yaml"), spec)
    assert seen
    for search, shortlist in seen:
        cycles, energy = search.estimate(mapper._Nest(shortlist.keep, shortlist.orders), shortlist.t, shortlist.s,
                                         len(shortlist.rows), False)
        assert np.array_equal(np.stack(mapper._metric_values(search.metrics, cycles, energy)), shortlist.quick)


@pytest.mark.parametrize("design", DESIGNS)
def test_margin_cut_loses_nothing_on_reference_workloads(design, specs, monkeypatch):
    """Keep choices whose quick estimate is not within the margin of the leader's are dropped before
    their loop orders are searched (a heuristic cut): taking every keep choice on finds no better
    mapping on these workloads."""
    spec = specs[design]
    names = sorted(RESULTS[design])[1::4]
    cut = [find_mapping(read_problem(DATA / "workloads" / f"{name}.yaml"), spec) for name in names]
    monkeypatch.setattr(mapper, "_MARGIN", float("inf"))
    for name, found in zip(names, cut):
        every = find_mapping(read_problem(DATA / "workloads" / f"{name}.yaml"), spec)
        assert (found.evaluation.cycles, found.evaluation.energy_pj) == \
            (every.evaluation.cycles, every.evaluation.energy_pj), name
