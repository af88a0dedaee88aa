"""The built-in mapper: against timeloop-mapper's best mappings on the reference workloads, against a
brute-force walk of a small map space, and for legality, determinism, objectives, padding and errors."""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from math import prod
from pathlib import Path
from typing import Callable

import pytest

from mapper_probes import mapper_estimate
import yaml

from costmodels.errors import MappingError
from costmodels.model.analytical import evaluate
from costmodels.model.mapper import OBJECTIVES, MapperResult, find_mapping
from costmodels.problems.workloads import DATA_SPACES, DIMENSIONS, Workload
from costmodels.timeloop.mapping import LevelMapping, Mapping
from costmodels.timeloop.mapping_yaml import read_mapping
from costmodels.timeloop.problem_yaml import read_problem
from costmodels.timeloop.spec import ArchSpec, load_spec

REFERENCE = Path(__file__).parent / "data" / "timeloop_reference"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def eyeriss() -> ArchSpec:
    return load_spec("eyeriss")


def _reference_rows() -> list[dict[str, str]]:
    with open(REFERENCE / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def reference_results(eyeriss: ArchSpec) -> list[tuple[dict[str, str], Workload, MapperResult]]:
    rows = _reference_rows()
    return [(row, w, find_mapping(w, eyeriss))
            for row in rows for w in [read_problem(REFERENCE / "workloads" / f"{row['name']}.yaml")]]


# --- quality against timeloop-mapper ---------------------------------------------------------------

def test_reference_targets(reference_results: list) -> None:
    """Cycles no worse than Timeloop's on >= 95% of the workloads and never by more than 2%; at equal
    cycles, energy within 1.05x of Timeloop's."""
    assert len(reference_results) == 33
    ties_or_better = 0
    for row, _, result in reference_results:
        cycles, energy = int(row["cycles"]), float(row["energy_pJ"])
        ours = result.evaluation
        assert ours.cycles <= 1.02 * cycles, row["name"]
        if ours.cycles == cycles:
            assert ours.energy_pj <= 1.05 * energy, row["name"]
        ties_or_better += ours.cycles <= cycles
    assert ties_or_better >= 0.95 * len(reference_results)


def test_reference_mappings_are_legal(eyeriss: ArchSpec, reference_results: list) -> None:
    for row, workload, result in reference_results:
        _assert_legal(workload, eyeriss, result.mapping)
        assert result.workload == workload
        assert result.objective == eyeriss.metrics
        assert result.considered >= result.evaluated >= 1
        # The evaluation is the model's own verdict on the returned mapping.
        again = evaluate(workload, eyeriss, result.mapping)
        assert (again.cycles, again.energy_pj) == (result.evaluation.cycles, result.evaluation.energy_pj)


def _assert_legal(workload: Workload, spec: ArchSpec, mapping: Mapping) -> None:
    """Checks written from the spec, independently of the mapper and the model."""
    assert mapping.covers(workload)
    assert [level.target for level in mapping.levels] == [s.name for s in spec.storage]
    extent = [1] * len(DIMENSIONS)
    for i, (level, storage) in enumerate(zip(mapping.levels, spec.storage)):
        fan_x, fan_y = spec.fanout(i)
        assert level.fanout_x <= fan_x and level.fanout_y <= fan_y, level.target
        assert storage.keep <= level.keep and not (storage.bypass & level.keep), level.target
        extent = [e * level.factor(d) for e, d in zip(extent, DIMENSIONS)]
        if storage.size_words is not None:
            assert sum(_words(space, extent, workload) for space in level.keep) <= storage.size_words, level.target
        for constraint in spec.constraints:
            if constraint.target != level.target:
                continue
            factors = level.temporal if constraint.kind == "temporal" else tuple(
                x * y for x, y in zip(level.spatial_x, level.spatial_y))
            for dim, value in constraint.factors:
                bound = workload.bounds[dim]
                assert factors[DIMENSIONS.index(dim)] == (min(value, bound) or bound), (level.target, dim)
            if constraint.permutation and constraint.kind == "temporal":
                order = [d for d in level.temporal_order if level.temporal[DIMENSIONS.index(d)] > 1]
                listed = [d for d in constraint.permutation if d in order]
                assert order[: len(listed)] == listed, level.target
    assert mapping.levels[-1].keep == frozenset(DATA_SPACES)


def _words(space: str, e: list[int], w: Workload) -> int:
    c, m, r, s, n, p, q = e
    if space == "Weights":
        return c * m * r * s
    if space == "Outputs":
        return n * m * p * q
    width = (p - 1) * w.Wstride + (r - 1) * w.Wdilation + 1
    height = (q - 1) * w.Hstride + (s - 1) * w.Hdilation + 1
    return n * c * width * height


def test_estimate_counts_as_the_model_does(eyeriss: ArchSpec) -> None:
    """The search ranks candidates by its own vectorized estimate and prices only the best few with
    the model, so on Eyeriss the two must agree exactly; Timeloop's own mappings are the probes."""
    for row in _reference_rows():
        workload = read_problem(REFERENCE / "workloads" / f"{row['name']}.yaml")
        mapping = read_mapping(REFERENCE / "runs" / row["name"] / "timeloop-mapper.map.yaml", eyeriss)
        cycles, energy = mapper_estimate(workload, eyeriss, mapping)
        truth = evaluate(workload, eyeriss, mapping)
        assert cycles == truth.cycles, row["name"]
        assert energy == pytest.approx(truth.energy_pj, rel=1e-12), row["name"]


# --- exhaustiveness ----------------------------------------------------------------------------------

def _brute_force(workload: Workload, spec: ArchSpec) -> tuple[int, float]:
    """The best (cycles, energy) over every mapping the constraints allow, found by trying them all
    on the model. Only for specs whose constraints fix every loop order and spatial axis (Eyeriss)."""
    levels = spec.storage
    slots: list[tuple[int, str]] = [(i, kind) for i in range(len(levels)) for kind in ("temporal", "spatial")
                                    if kind == "temporal" or spec.fanout(i) != (1, 1)]
    fixed: dict[tuple[int, str, str], int] = {}
    for constraint in spec.constraints:
        i = [s.name for s in levels].index(constraint.target)
        for dim, value in constraint.factors:
            bound = workload.bounds[dim]
            fixed[(i, constraint.kind, dim)] = min(value, bound) or bound

    def splits(n: int, k: int) -> list[tuple[int, ...]]:
        if k == 1:
            return [(n,)]
        return [(f,) + rest for f in range(1, n + 1) if n % f == 0 for rest in splits(n // f, k - 1)]

    per_dim = []
    for dim in DIMENSIONS:
        options = [combo for combo in splits(workload.bounds[dim], len(slots))
                   if all(fixed.get((i, kind, dim), f) == f for (i, kind), f in zip(slots, combo))]
        per_dim.append(options)
    best: tuple[int, float] | None = None
    for choice in itertools.product(*per_dim):
        mapping_levels = []
        for i, storage in enumerate(levels):
            temporal = tuple(choice[d][slots.index((i, "temporal"))] for d in range(len(DIMENSIONS)))
            spatial = tuple(choice[d][slots.index((i, "spatial"))] if (i, "spatial") in slots else 1
                            for d in range(len(DIMENSIONS)))
            (sc,) = spec.constraints_for(storage.name, "spatial") or (None,)
            on_x = set(sc.permutation[: sc.split]) if sc else set(DIMENSIONS)
            temporal_order = next((c.permutation for c in spec.constraints_for(storage.name, "temporal")
                                   if c.permutation), DIMENSIONS)
            keep = frozenset(DATA_SPACES) if i == len(levels) - 1 else storage.keep
            mapping_levels.append(LevelMapping(
                storage.name, temporal, temporal_order,
                tuple(f if d in on_x else 1 for f, d in zip(spatial, DIMENSIONS)),
                tuple(1 if d in on_x else f for f, d in zip(spatial, DIMENSIONS)),
                sc.permutation if sc else DIMENSIONS, keep))
        try:
            ev = evaluate(workload, spec, Mapping(tuple(mapping_levels)))
        except MappingError:
            continue
        if best is None or (ev.cycles, ev.energy_pj) < best:
            best = (ev.cycles, ev.energy_pj)
    assert best is not None
    return best


@pytest.mark.parametrize("workload", [
    Workload(C=4, M=6, R=1, S=1, N=1, P=2, Q=4),
    Workload(C=8, M=6, R=3, S=3, N=1, P=3, Q=4, Wstride=2, Hstride=2),
    Workload(C=2, M=4, R=3, S=3, N=2, P=5, Q=4, Wdilation=2, Hdilation=2),
], ids=lambda w: w.name)
def test_matches_brute_force(eyeriss: ArchSpec, workload: Workload) -> None:
    result = find_mapping(workload, eyeriss)
    cycles, energy = _brute_force(workload, eyeriss)
    assert result.evaluation.cycles == cycles
    assert result.evaluation.energy_pj == pytest.approx(energy, rel=1e-12)


# --- determinism ------------------------------------------------------------------------------------

_DETERMINISM_CASES = [Workload(C=160, M=256, R=1, S=1, N=1, P=14, Q=14),
                      Workload(C=96, M=96, R=3, S=3, N=1, P=14, Q=14),
                      Workload(C=64, M=64, R=3, S=3, N=1, P=14, Q=14, Wstride=2, Hstride=2)]


def test_same_input_same_output(eyeriss: ArchSpec) -> None:
    for workload in _DETERMINISM_CASES:
        first, second = find_mapping(workload, eyeriss), find_mapping(workload, load_spec("eyeriss"))
        assert first.mapping == second.mapping
        assert first.evaluation.energy_pj == second.evaluation.energy_pj
        assert (first.considered, first.evaluated) == (second.considered, second.evaluated)


def test_same_output_across_processes() -> None:
    """Set iteration order changes with the hash seed between processes; the answer must not."""
    script = ("import json; from costmodels.model.mapper import find_mapping; from costmodels.timeloop.spec import load_spec; "
              "from costmodels.problems.workloads import Workload; spec = load_spec('eyeriss'); "
              f"cases = {[w.bounds | w.coefficients for w in _DETERMINISM_CASES]!r}; "
              "print(json.dumps([[r.mapping.compact(), r.evaluation.energy_pj] "
              "for r in (find_mapping(Workload(**c), spec) for c in cases)]))")
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                              check=True)
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]


# --- objectives -------------------------------------------------------------------------------------

def test_objectives(eyeriss: ArchSpec) -> None:
    workload = Workload(C=32, M=256, R=1, S=1, N=1, P=14, Q=14)
    results = {metric: find_mapping(workload, eyeriss, (metric,)) for metric in OBJECTIVES}
    default = find_mapping(workload, eyeriss)
    for metric, result in results.items():
        assert result.objective == (metric,)
        _assert_legal(workload, eyeriss, result.mapping)
    cycles = {m: r.evaluation.cycles for m, r in results.items()}
    energy = {m: r.evaluation.energy_pj for m, r in results.items()}
    edp = {m: cycles[m] * energy[m] for m in results}
    assert cycles["delay"] == min(cycles.values()) == default.evaluation.cycles
    assert energy["energy"] == min(energy.values())
    assert energy["energy"] <= default.evaluation.energy_pj
    assert edp["edp"] == min(edp.values())
    # Delay then energy: among the fastest mappings, the default picks the cheapest.
    assert default.evaluation.energy_pj <= results["delay"].evaluation.energy_pj


def test_unknown_objective(eyeriss: ArchSpec) -> None:
    with pytest.raises(ValueError, match="objective"):
        find_mapping(Workload(C=8, M=8, R=1, S=1, N=1, P=4, Q=4), eyeriss, ("area",))


# --- padding ----------------------------------------------------------------------------------------

def test_padding_fills_the_array(eyeriss: ArchSpec) -> None:
    """256 -> 160 channels fill at most 8 of the 12 PE rows with exact factors; padding may do better,
    and reports the padded bounds."""
    workload = Workload(C=256, M=160, R=1, S=1, N=1, P=14, Q=14)
    plain = find_mapping(workload, eyeriss)
    padded = find_mapping(workload, eyeriss, allow_padding=True)
    assert padded.evaluation.cycles < plain.evaluation.cycles
    assert padded.workload != workload
    for d in DIMENSIONS:
        assert padded.workload.bounds[d] >= workload.bounds[d]
        assert d in "CMPQ" or padded.workload.bounds[d] == workload.bounds[d]
    _assert_legal(padded.workload, eyeriss, padded.mapping)


def test_padding_keeps_a_mapping_that_needs_none(eyeriss: ArchSpec) -> None:
    workload = Workload(C=64, M=64, R=3, S=3, N=1, P=14, Q=14)
    padded = find_mapping(workload, eyeriss, allow_padding=True)
    assert padded.workload == workload
    assert padded.mapping == find_mapping(workload, eyeriss).mapping


# --- no legal mapping -------------------------------------------------------------------------------

@pytest.mark.parametrize("workload, reason", [
    # Row stationary keeps a whole filter row of inputs in the 12-word ifmap scratchpad.
    (Workload(C=3, M=8, R=13, S=3, N=1, P=8, Q=8), r"ifmap_spad holds 12 words .* needs 13"),
    # Dilation spreads the row: (7 - 1) * 2 + 1 = 13 input columns.
    (Workload(C=3, M=8, R=7, S=7, N=1, P=8, Q=8, Wdilation=2, Hdilation=2), r"ifmap_spad holds 12 words"),
    # A whole filter column goes over the 12 PE rows.
    (Workload(C=3, M=8, R=3, S=13, N=1, P=8, Q=8), r"DummyBuffer fans out to 1 x 12 .*S=13"),
], ids=["R13", "dilated7x7", "S13"])
def test_no_legal_mapping(eyeriss: ArchSpec, workload: Workload, reason: str) -> None:
    with pytest.raises(MappingError, match=reason) as info:
        find_mapping(workload, eyeriss)
    assert "no legal mapping" in str(info.value)


def test_constraints_that_cannot_multiply_to_the_bound(tmp_path: Path) -> None:
    spec = _edited_spec(tmp_path, lambda arch, space: _replace_target(
        space, "DRAM", "temporal", {"target": "DRAM", "type": "temporal", "factors": "R=1 S=1 P=1 M=5"}))
    with pytest.raises(MappingError, match="M factors .*DRAM=5.* M=8"):
        find_mapping(Workload(C=8, M=8, R=1, S=1, N=1, P=4, Q=4), spec)


# --- a less constrained spec: free loop orders and keep/bypass choices ------------------------------

def _replace_target(document: dict, target: str, kind: str, entry: dict | None) -> None:
    targets = next(iter(document.values()))["targets"]
    targets[:] = [t for t in targets if not (t["target"] == target and t["type"] == kind)]
    if entry is not None:
        targets.append(entry)


def _edited_spec(tmp_path: Path, edit: Callable[[dict, dict], None]) -> ArchSpec:
    """A copy of the Eyeriss spec with its constraint documents (architecture, mapspace) edited."""
    folder = tmp_path / "spec"
    shutil.copytree(ROOT / "arch_specs" / "eyeriss", folder)
    paths = [folder / "constraints" / "eyeriss_like_arch_constraints.yaml",
             folder / "constraints" / "eyeriss_like_map_constraints.yaml"]
    documents = [yaml.safe_load(p.read_text()) for p in paths]
    edit(*documents)
    for path, document in zip(paths, documents):
        path.write_text(yaml.safe_dump(document))
    return load_spec(folder)


def test_free_orders_and_bypass(tmp_path: Path) -> None:
    def relax(arch: dict, space: dict) -> None:
        _replace_target(space, "shared_glb", "temporal", None)     # free order, free factors
        _replace_target(space, "DRAM", "temporal", None)
        _replace_target(arch, "shared_glb", "bypass", {"target": "shared_glb", "type": "bypass", "keep": ["Inputs"]})
        # Let filter rows leave the weight scratchpad and share the PE rows with output columns, so
        # that P and R can spread together (children then share input windows).
        _replace_target(arch, "weights_spad", "temporal", {"target": "weights_spad", "type": "temporal",
                                                           "factors": "N=1 M=1 P=1 Q=1 S=1",
                                                           "permutation": "NMPQS CR"})
        _replace_target(arch, "DummyBuffer", "spatial", {"target": "DummyBuffer", "type": "spatial",
                                                         "factors": "N=1 Q=1", "permutation": "NQ PRSCM",
                                                         "split": 2})
    spec = _edited_spec(tmp_path, relax)
    workload = Workload(C=8, M=8, R=3, S=3, N=2, P=4, Q=4)
    result = find_mapping(workload, spec)
    _assert_legal(workload, spec, result.mapping)
    constrained = find_mapping(workload, load_spec("eyeriss"))
    # A larger map space: never slower than the constrained one.
    assert result.evaluation.cycles <= constrained.evaluation.cycles


def test_whole_array_on_a_typical_subconv(eyeriss: ArchSpec) -> None:
    """3x3 sub-convs fill the array (S=3 x C=4 rows, Q=14 columns): exactly MACs / 168 cycles."""
    workload = Workload(C=96, M=96, R=3, S=3, N=1, P=14, Q=14)
    result = find_mapping(workload, eyeriss)
    assert result.evaluation.cycles == workload.macs // prod((14, 12))
