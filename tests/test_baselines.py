"""The baselines HALOC is judged against: each one's choice meets the budget for several budgets and
seeds, is reproducible by seed, and refuses an infeasible budget; EVBMF recovers the rank of a noisy
low-rank matrix; the reconstruction errors and the min-max error choice are exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from search_fakes import FakeNetwork, fake_lut

from costmodels import UnknownNameError
from costmodels.problems.candidates import RankGrid
from haloc_core.budget import BudgetError
from haloc_core.cost import CostTable, Objective
from haloc_core.space import LayerOptions, SearchSpace, space_from_lut
from haloc_core.strategies import STRATEGIES, get_strategy
from haloc_core.strategies.anneal import AnnealConfig, AnnealStrategy
from haloc_core.strategies.error import relative_errors, smallest_worst_error
from haloc_core.strategies.uniform import UniformStrategy, boxed_choice
from haloc_core.strategies.vbmf import evbmf_rank, vbmf_ranks

BASELINES = ("uniform", "vbmf", "error", "anneal", "random")
SEEDED = ("anneal", "random")           # the others do not draw random numbers
# Budgets as a share of the way from the cheapest achievable cost to the original network's cost.
SHARES = (0.0, 0.15, 0.5)


@pytest.fixture(scope="module", params=["equal-ranks", "full-grid"])
def setting(request):
    grid = RankGrid() if request.param == "equal-ranks" else RankGrid(step=16, equal_ranks=False)
    lut = fake_lut("resnet20", grid)
    space = space_from_lut(lut)
    return space, CostTable.from_space(space, Objective.LATENCY), FakeNetwork(lut)


def budget(cost: CostTable, share: float) -> float:
    return cost.cheapest + share * (cost.original_total - cost.cheapest)


def test_registry_holds_every_baseline():
    assert set(BASELINES) <= set(STRATEGIES)
    assert all(get_strategy(name).name == name for name in BASELINES)
    with pytest.raises(UnknownNameError, match="unknown search method 'best'; available: .*uniform"):
        get_strategy("best")


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_meets_the_budget_for_every_seed(setting, name):
    space, cost, network = setting
    strategy = get_strategy(name)()
    seeds = (0, 1, 2) if name in SEEDED else (0,)
    for share, seed in itertools.product(SHARES, seeds):
        eps = budget(cost, share)
        choice = strategy.search(network, space, cost, None, eps, seed)
        assert choice.method == name and len(choice.indices) == len(space.layers)
        assert all(0 <= j < len(layer.ranks) for j, layer in zip(choice.indices, space.layers))
        assert cost.total(choice.indices) <= eps, (name, share, seed)
        assert choice.search_time_s >= 0


@pytest.mark.parametrize("name", BASELINES)
def test_same_seed_same_choice(setting, name):
    space, cost, network = setting
    eps = budget(cost, 0.3)
    first, second = (get_strategy(name)().search(network, space, cost, None, eps, 7) for _ in range(2))
    assert first.indices == second.indices


def test_random_choices_differ_between_seeds(setting):
    space, cost, network = setting
    eps = budget(cost, 0.5)
    choices = {get_strategy("random")().search(network, space, cost, None, eps, seed).indices for seed in range(5)}
    assert len(choices) > 1


@pytest.mark.parametrize("name", BASELINES)
def test_an_infeasible_budget_is_refused(setting, name):
    space, cost, network = setting
    with pytest.raises(BudgetError, match=f"cheapest achievable latency {cost.cheapest:.6g} cycles"):
        get_strategy(name)().search(network, space, cost, None, cost.cheapest * 0.99, 0)


def test_uniform_takes_the_largest_feasible_ratio(setting):
    space, cost, network = setting
    weights = network.layer_weights()
    full = [weights[layer.layer].shape[:2] for layer in space.layers]
    previous = -1.0
    for share in (0.2, 0.5, 0.9):
        eps = budget(cost, share)
        choice = UniformStrategy().search(network, space, cost, None, eps, 0)
        ratio = choice.history["rank_ratio"]
        assert ratio >= previous
        previous = ratio
        assert choice.indices == boxed_choice(space, cost, [(ratio * f, ratio * c) for f, c in full])
        # No larger ratio the scan could have tried is feasible.
        for bigger in np.linspace(ratio, 1.0, 50)[1:]:
            if bigger > ratio + 1e-9:
                larger = boxed_choice(space, cost, [(bigger * f, bigger * c) for f, c in full])
                assert cost.total(larger) > eps or cost.total(larger) == cost.total(choice.indices)


def test_uniform_never_picks_a_candidate_dearer_than_the_original(setting):
    space, cost, _ = setting
    choice = boxed_choice(space, cost, [(1e9, 1e9)] * len(space.layers))
    for layer, costs, j in zip(space.layers, cost.arrays, choice):
        assert costs[j] <= costs[layer.original_index]


def _tricky_space() -> tuple[SearchSpace, CostTable]:
    # Each layer is cheapest at a rank share the other is not: no common ratio reaches the cheapest cost.
    layer = LayerOptions("a", (None, (8, 8), (16, 16), (24, 24)), (100.0, 60.0, 40.0, 90.0),
                         (0.0,) * 4, (0.0,) * 4, (0,) * 4, (0,) * 4)
    other = LayerOptions("b", (None, (8, 8), (16, 16)), (50.0, 30.0, 20.0), (0.0,) * 3, (0.0,) * 3,
                         (0,) * 3, (0,) * 3)
    space = SearchSpace((layer, other), 5.0, 0.0, 0.0, "t", 1.0)
    return space, CostTable.from_space(space, Objective.LATENCY)


class _Shapes:
    def layer_weights(self):
        rng = np.random.default_rng(0)
        return {"a": rng.normal(size=(24, 24, 3, 3)), "b": rng.normal(size=(16, 16, 1, 1))}


def test_uniform_repairs_when_even_its_smallest_ratio_overshoots():
    space, cost = _tricky_space()
    choice = UniformStrategy().search(_Shapes(), space, cost, None, cost.cheapest, 0)
    assert cost.total(choice.indices) == cost.cheapest == 65.0 and choice.history["rank_ratio"] == 0.0


@pytest.mark.parametrize("rows, cols, rank", [(40, 100, 5), (100, 40, 7), (64, 576, 12), (90, 90, 20), (30, 60, 0)])
def test_evbmf_recovers_the_rank_of_a_noisy_low_rank_matrix(rows, cols, rank):
    rng = np.random.default_rng(rank)
    sigma = 0.1
    edge = sigma * (np.sqrt(rows) + np.sqrt(cols))      # the largest singular value of the noise, about
    u = np.linalg.qr(rng.normal(size=(rows, max(rank, 1))))[0][:, :rank]
    v = np.linalg.qr(rng.normal(size=(cols, max(rank, 1))))[0][:, :rank]
    signal = (u * np.linspace(2.0, 4.0, rank) * edge) @ v.T
    assert evbmf_rank(signal + sigma * rng.normal(size=(rows, cols))) == rank


def test_evbmf_keeps_nothing_of_pure_noise_or_zeros():
    rng = np.random.default_rng(1)
    assert evbmf_rank(rng.normal(size=(50, 80))) == 0
    assert evbmf_rank(np.zeros((10, 20))) == 0


def test_vbmf_ranks_of_a_tucker2_kernel_are_its_mode_ranks():
    rng = np.random.default_rng(2)
    core = rng.normal(size=(6, 4, 3, 3))
    m1 = np.linalg.qr(rng.normal(size=(48, 6)))[0]
    m2 = np.linalg.qr(rng.normal(size=(32, 4)))[0]
    weight = np.einsum("ijkl,fi,cj->fckl", core, m1, m2)
    weight += 0.02 * np.abs(weight).mean() * rng.normal(size=weight.shape)
    assert vbmf_ranks(weight) == (6, 4)
    pointwise = (rng.normal(size=(40, 3)) @ rng.normal(size=(3, 24)))[:, :, None, None]
    assert vbmf_ranks(pointwise + 0.01 * rng.normal(size=pointwise.shape)) == (3, 3)


def test_relative_errors_are_those_of_the_truncated_hosvd():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(12, 8, 3, 3))
    ranks = (None, (4, 4), (12, 8), (6, 3), (1, 8))
    layer = LayerOptions("x", ranks, (0.0,) * 5, (0.0,) * 5, (0.0,) * 5, (0,) * 5, (0,) * 5)
    errors = relative_errors(weight, layer)
    u1 = np.linalg.svd(weight.reshape(12, -1))[0]
    u2 = np.linalg.svd(np.moveaxis(weight, 1, 0).reshape(8, -1))[0]
    for (r1, r2), error in zip(ranks[1:], errors[1:]):
        p1, p2 = u1[:, :r1] @ u1[:, :r1].T, u2[:, :r2] @ u2[:, :r2].T
        projected = np.einsum("fg,gckl,cd->fdkl", p1, weight, p2)
        assert error == pytest.approx(np.linalg.norm(weight - projected) / np.linalg.norm(weight), abs=1e-7)
    assert errors[0] == 0.0 and errors[2] == pytest.approx(0.0, abs=1e-7)


def test_error_strategy_reaches_the_smallest_worst_error_exactly(setting):
    space, cost, network = setting
    weights = network.layer_weights()
    sub = SearchSpace(space.layers[:4], 0.0, 0.0, 0.0, "t", 1.0)
    sub_cost = CostTable.from_space(sub, Objective.LATENCY)
    errors = [relative_errors(weights[layer.layer], layer) for layer in sub.layers]
    for share in (0.0, 0.3, 0.7):
        eps = budget(sub_cost, share)
        best = min(max(e[j] for e, j in zip(errors, choice))
                   for choice in itertools.product(*(range(len(layer.ranks)) for layer in sub.layers))
                   if sub_cost.total(choice) <= eps)
        assert smallest_worst_error(sub_cost, errors, eps) == best
        choice = get_strategy("error")().search(network, sub, sub_cost, None, eps, 0)
        assert max(e[j] for e, j in zip(errors, choice.indices)) == best
        assert choice.history["worst_relative_error"] == best


def test_annealing_evaluates_a_bounded_number_of_choices_and_keeps_the_best(setting):
    space, cost, _ = setting
    network = FakeNetwork(fake_lut("resnet20"))
    config = AnnealConfig(steps=12, max_batches=2)
    choice = AnnealStrategy(config).search(network, space, cost, None, budget(cost, 0.3), 0)
    assert network.calls <= config.steps + 2          # the start, then at most one new choice a step
    trace = choice.history["proxy_accuracy"]
    assert choice.history["best_proxy_accuracy"] >= max(trace) >= trace[0]


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_meets_an_energy_budget(name):
    lut = fake_lut("resnet20")
    space = space_from_lut(lut)
    energy = CostTable.from_space(space, Objective.ENERGY)
    eps = budget(energy, 0.2)
    choice = get_strategy(name)().search(FakeNetwork(lut), space, energy, None, eps, 0)
    assert energy.total(choice.indices) <= eps
