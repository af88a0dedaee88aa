"""The search space from a LUT, the cost table (expected cost of HALOC's Eq. 6 and its gradient) and the
budget: every accepted form, every refusal, and the infeasible-budget error."""

from __future__ import annotations

import math

import pytest
import torch
from search_fakes import fake_lut

from costmodels.lut.build import lut_csv
from costmodels.lut.export import load_lut
from haloc_core.budget import BudgetError, check_feasible, parse_budget
from haloc_core.cost import CostTable, Objective, ObjectiveError
from haloc_core.space import LayerOptions, SearchSpace, SearchSpaceError, space_from_lut


@pytest.fixture(scope="module")
def lut():
    return fake_lut()


@pytest.fixture(scope="module")
def space(lut):
    return space_from_lut(lut)


@pytest.fixture(scope="module")
def latency(space):
    return CostTable.from_space(space, Objective.LATENCY)


def test_space_has_every_candidate_plus_the_original_and_fixes_the_rest(lut, space):
    originals = {r.layer: r for r in lut.rows if r.form == "original"}
    candidates = {}
    for row in lut.rows:
        if row.form != "original":
            candidates.setdefault(row.layer, []).append(row)
    assert [layer.layer for layer in space.layers] == list(candidates)        # conv1 is not decomposed
    for layer in space.layers:
        rows = [originals[layer.layer], *candidates[layer.layer]]
        assert layer.original_index == 0 and layer.ranks == (None, *((r.r1, r.r2) for r in rows[1:]))
        assert layer.cycles == tuple(float(r.cycles) for r in rows)
        assert layer.energy_pj == tuple(r.energy_pj for r in rows)
        assert layer.macs == tuple(r.macs for r in rows) and layer.params == tuple(r.params for r in rows)
    unsearched = [r for name, r in originals.items() if name not in candidates]
    assert unsearched and space.fixed_cycles == sum(r.cycles for r in unsearched)
    assert space.fixed_energy_pj == pytest.approx(sum(r.energy_pj for r in unsearched))
    assert space.target == "eyeriss" and space.clock_hz == lut.clock_hz


def test_a_plain_build_csv_gives_the_same_space_with_its_clock_recovered(lut, space, tmp_path):
    path = tmp_path / "lut.csv"
    path.write_text(lut_csv(lut))
    loaded = space_from_lut(load_lut(path))
    assert loaded.clock_hz == lut.clock_hz
    assert [(layer.layer, layer.ranks, layer.cycles) for layer in loaded.layers] == \
        [(layer.layer, layer.ranks, layer.cycles) for layer in space.layers]
    assert loaded.fixed_cycles == space.fixed_cycles and loaded.target == "unknown"


def test_searched_layers_can_be_chosen_and_the_others_count_as_fixed(lut, space):
    chosen = {space.layers[0].layer, space.layers[5].layer}
    sub = space_from_lut(lut, searched=chosen)
    assert {layer.layer for layer in sub.layers} == chosen
    moved = sum(layer.cycles[layer.original_index] for layer in space.layers if layer.layer not in chosen)
    assert sub.fixed_cycles == space.fixed_cycles + moved
    with pytest.raises(SearchSpaceError, match="nope not in the LUT"):
        space_from_lut(lut, searched={"nope"})
    with pytest.raises(SearchSpaceError, match="conv1 have no rank candidates"):
        space_from_lut(lut, searched={"conv1"})


def test_a_layer_without_its_original_row_is_refused(lut):
    from dataclasses import replace
    rows = tuple(r for r in lut.rows if not (r.layer == "layer1.0.conv1" and r.form == "original"))
    with pytest.raises(SearchSpaceError, match="layer1.0.conv1.*0 original rows"):
        space_from_lut(replace(lut, rows=rows))


def test_cost_table_totals(space, latency):
    assert latency.unit == "cycles" and latency.target == "eyeriss"
    original = space.fixed_cycles + sum(layer.cycles[0] for layer in space.layers)
    assert latency.original_total == original
    assert latency.total(tuple(0 for _ in space.layers)) == original
    assert latency.cheapest == space.fixed_cycles + sum(min(layer.cycles) for layer in space.layers)
    assert latency.total(latency.cheapest_indices()) == latency.cheapest
    picks = tuple(len(layer.ranks) - 1 for layer in space.layers)
    assert latency.total(picks) == space.fixed_cycles + sum(layer.cycles[-1] for layer in space.layers)
    with pytest.raises(ValueError, match="indices"):
        latency.total((0,))
    energy = CostTable.from_space(space, Objective.ENERGY)
    assert energy.unit == "pJ" and energy.original_total == pytest.approx(
        space.fixed_energy_pj + sum(layer.energy_pj[0] for layer in space.layers))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_expected_cost_is_the_probability_weighted_sum_and_its_gradient_the_costs(space, latency, dtype):
    generator = torch.Generator().manual_seed(0)
    logits = [torch.randn(len(layer.ranks), generator=generator, dtype=dtype).requires_grad_()
              for layer in space.layers]
    probabilities = [torch.softmax(a, dim=0) for a in logits]
    for p in probabilities:
        p.retain_grad()
    expected = latency.expected(probabilities)
    by_hand = space.fixed_cycles + sum(
        sum(float(pj) * c for pj, c in zip(p.detach().double(), layer.cycles))
        for p, layer in zip(probabilities, space.layers))
    assert expected.dtype == torch.float64 and expected.shape == ()
    assert float(expected.detach()) == pytest.approx(by_hand, rel=1e-12)
    expected.backward()
    for p, layer in zip(probabilities, space.layers):
        assert torch.allclose(p.grad.double(), torch.tensor(layer.cycles, dtype=torch.float64))
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in logits)
    one_hot = [torch.nn.functional.one_hot(torch.tensor(len(layer.ranks) - 1), len(layer.ranks)).double()
               for layer in space.layers]
    assert float(latency.expected(one_hot)) == latency.total(tuple(len(layer.ranks) - 1 for layer in space.layers))


def test_expected_cost_checks_its_input(space, latency):
    with pytest.raises(ValueError, match="probability vectors"):
        latency.expected([torch.ones(3)])
    with pytest.raises(ValueError, match="shape"):
        latency.expected([torch.ones(len(layer.ranks) + 1) for layer in space.layers])


def _space(clock_hz, energy=(10.0, 4.0)):
    layer = LayerOptions("a", (None, (8, 8)), (1000.0, 400.0), (5e-6, 2e-6), energy, (100, 40), (10, 4))
    return SearchSpace((layer,), 0.0, 0.0, 0.0, "t", clock_hz)


def test_latency_is_in_seconds_without_a_clock_and_energy_needs_finite_values():
    table = CostTable.from_space(_space(None), Objective.LATENCY)
    assert table.unit == "s" and table.original_total == 5e-6
    with pytest.raises(ObjectiveError, match="layer 'a' has no finite energy cost"):
        CostTable.from_space(_space(None, energy=(math.nan, math.nan)), Objective.ENERGY)


@pytest.mark.parametrize("text, expected", [
    ("0.5", lambda t, clock: 0.5 * t),
    ("1", lambda t, clock: t),
    ("50%", lambda t, clock: 0.5 * t),
    (" 0.75 ", lambda t, clock: 0.75 * t),
    ("400000", lambda t, clock: 400000.0),
    ("4e5cycles", lambda t, clock: 4e5),
    ("4e5 Cycles", lambda t, clock: 4e5),
    ("2ms", lambda t, clock: 2e-3 * clock),
    ("1500us", lambda t, clock: 1.5e-3 * clock),
    ("0.002s", lambda t, clock: 2e-3 * clock),
    ("900000ns", lambda t, clock: 9e-4 * clock),
])
def test_latency_budget_forms(space, latency, text, expected):
    assert parse_budget(text, space, Objective.LATENCY) == pytest.approx(
        expected(latency.original_total, space.clock_hz))


@pytest.mark.parametrize("text, pj", [("0.9", None), ("3mJ", 3e9), ("100uJ", 1e8), ("5e8pJ", 5e8),
                                      ("700000nJ", 7e8), ("0.001J", 1e9), ("6e8", 6e8)])
def test_energy_budget_forms(space, text, pj):
    energy = CostTable.from_space(space, Objective.ENERGY)
    expected = 0.9 * energy.original_total if pj is None else pj
    assert parse_budget(text, space, Objective.ENERGY) == pytest.approx(expected)


def test_seconds_without_a_clock_stay_seconds_and_cycles_are_refused():
    space = _space(None)
    assert parse_budget("3us", space, Objective.LATENCY) == pytest.approx(3e-6)
    with pytest.raises(BudgetError, match="no clock"):
        parse_budget("500cycles", space, Objective.LATENCY)


@pytest.mark.parametrize("text, objective, why", [
    ("", Objective.LATENCY, "not a number"),
    ("fast", Objective.LATENCY, "not a number"),
    ("1e", Objective.LATENCY, "'1e' is not a number"),
    ("-0.5", Objective.LATENCY, "positive finite"),
    ("0", Objective.LATENCY, "positive finite"),
    ("1e400", Objective.LATENCY, "positive finite"),
    ("nan", Objective.LATENCY, "not a number"),
    ("150%", Objective.LATENCY, r"\(0, 100\]"),
    ("5furlongs", Objective.LATENCY, "unknown unit 'furlongs'"),
    ("2ms", Objective.ENERGY, "'ms' is a time"),
    ("1e6cycles", Objective.ENERGY, "cycles do not measure the energy"),
    ("3mJ", Objective.LATENCY, "'mJ' is an energy"),
])
def test_bad_budgets_name_the_value_and_the_allowed_forms(space, text, objective, why):
    with pytest.raises(BudgetError, match=why) as info:
        parse_budget(text, space, objective)
    message = str(info.value)
    assert f"--budget '{text}'" in message and "allowed: a fraction" in message and "\n" not in message


def test_an_infeasible_budget_names_the_cheapest_achievable_cost(space, latency):
    share = latency.cheapest / latency.original_total
    with pytest.raises(BudgetError, match=f"below the cheapest achievable latency {latency.cheapest:.6g} "
                                          f"cycles \\({share:.3f} of the original"):
        parse_budget(f"{share * 0.9:.4f}", space, Objective.LATENCY)
    assert parse_budget(f"{latency.cheapest:.0f}cycles", space, Objective.LATENCY) == latency.cheapest
    check_feasible(latency.cheapest, latency)
    with pytest.raises(BudgetError, match="on target 'eyeriss'"):
        check_feasible(latency.cheapest - 1, latency)
