"""The exact multiple-choice knapsack against brute force, on both of its solvers (the dynamic program
and HiGHS), with float and integer costs, budgets exactly at a reachable total, ties and a fixed cost."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from haloc_core.budget import BudgetError
from haloc_core.knapsack import pareto_frontier, solve_knapsack


def brute_force(costs, scores, eps, fixed=0.0):
    best, feasible = -np.inf, 0
    for choice in itertools.product(*(range(len(c)) for c in costs)):
        if fixed + sum(c[j] for c, j in zip(costs, choice)) <= eps:
            feasible += 1
            best = max(best, sum(s[j] for s, j in zip(scores, choice)))
    return best, feasible


def instance(rng, integer: bool, coarse_scores: bool):
    sizes = rng.integers(1, 7, size=rng.integers(1, 6))
    costs = [rng.integers(1, 40, n).astype(float) if integer else rng.random(n) * 10 for n in sizes]
    scores = [np.round(rng.normal(size=n), 1) if coarse_scores else rng.normal(size=n) for n in sizes]
    return costs, scores


@pytest.mark.parametrize("max_states", [200_000, 0], ids=["dynamic-program", "highs"])
@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force(seed, max_states):
    rng = np.random.default_rng(seed)
    for case in range(60):
        costs, scores = instance(rng, integer=case % 2 == 0, coarse_scores=case % 3 == 0)
        fixed = float(rng.integers(0, 5)) if case % 4 == 0 else 0.0
        low = fixed + sum(c.min() for c in costs)
        high = fixed + sum(c.max() for c in costs)
        if case % 5 == 0:      # exactly a reachable total: the boundary must count as within budget
            eps = fixed + sum(c[rng.integers(len(c))] for c in costs)
        else:
            eps = low + rng.random() * (high - low)
        best, _ = brute_force(costs, scores, eps, fixed)
        choice = solve_knapsack(costs, eps, scores, fixed=fixed, max_states=max_states)
        assert fixed + sum(c[j] for c, j in zip(costs, choice)) <= eps
        assert sum(s[j] for s, j in zip(scores, choice)) == pytest.approx(best, abs=1e-9)


def test_takes_every_best_option_when_they_fit():
    costs = [np.array([1.0, 5.0, 3.0]), np.array([2.0, 2.0])]
    scores = [np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.5])]
    assert solve_knapsack(costs, 5.0, scores) == (2, 0)


def test_equal_options_go_to_the_lowest_index():
    costs = [np.array([4.0, 1.0, 1.0, 1.0])]
    scores = [np.array([9.0, 3.0, 3.0, 2.0])]
    assert solve_knapsack(costs, 2.0, scores) == (1,)


def test_fixed_cost_counts_against_the_budget():
    costs = [np.array([1.0, 4.0]), np.array([1.0, 4.0])]
    scores = [np.array([0.0, 1.0]), np.array([0.0, 2.0])]
    assert solve_knapsack(costs, 5.0, scores) == (0, 1)
    assert solve_knapsack(costs, 5.0, scores, fixed=3.0) == (0, 0)


def test_an_infeasible_budget_names_the_cheapest_achievable_cost():
    costs = [np.array([3.0, 2.5]), np.array([4.0, 7.0])]
    with pytest.raises(BudgetError, match=r"budget 6 is below the cheapest achievable cost 7.5"):
        solve_knapsack(costs, 6.0, [np.zeros(2), np.zeros(2)], fixed=1.0)


def test_pareto_frontier_keeps_only_undominated_options():
    costs = np.array([5.0, 1.0, 3.0, 3.0, 2.0, 6.0])
    scores = np.array([4.0, 1.0, 3.0, 3.5, 0.5, 4.0])
    assert pareto_frontier(costs, scores).tolist() == [1, 3, 0]


@pytest.mark.parametrize("costs, scores, match", [
    ([np.array([1.0])], [np.array([1.0]), np.array([1.0])], "1 cost vectors but 2 score"),
    ([np.array([])], [np.array([])], "non-empty"),
    ([np.array([1.0, 2.0])], [np.array([1.0])], "equal"),
    ([np.array([1.0, np.nan])], [np.array([1.0, 2.0])], "finite"),
    ([np.array([1.0, 2.0])], [np.array([-np.inf, 2.0])], "finite"),
])
def test_bad_input_is_refused(costs, scores, match):
    with pytest.raises(ValueError, match=match):
        solve_knapsack(costs, 10.0, scores)


def test_large_grid_is_solved_exactly_by_both_solvers():
    # 12 layers x 200 options with scores that rise with cost: large Pareto frontiers, the hard case.
    rng = np.random.default_rng(3)
    costs = [np.sort(rng.integers(100, 5000, 200)).astype(float) for _ in range(12)]
    scores = [np.log(c) + rng.normal(scale=0.05, size=c.size) for c in costs]
    eps = 0.4 * sum(c.max() for c in costs)
    fast = solve_knapsack(costs, eps, scores)
    highs = solve_knapsack(costs, eps, scores, max_states=0)
    value = [sum(s[j] for s, j in zip(scores, choice)) for choice in (fast, highs)]
    assert value[0] == pytest.approx(value[1], abs=1e-9)
    assert all(sum(c[j] for c, j in zip(costs, choice)) <= eps for choice in (fast, highs))
