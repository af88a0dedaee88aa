"""The exact multiple-choice knapsack that makes every search meet its budget: one option per layer,
total cost <= eps, the largest total score.

Costs add up over layers (a LUT row per layer and option), so "the choice closest to what a search
learned, within the budget" is this knapsack. It is solved exactly in three steps:

1. each layer is cut to its cost/score Pareto frontier (a dominated option never needs to be chosen);
2. the LP relaxation's greedy gives a feasible choice and the budget's Lagrange multiplier ``lam``; with
   them, ``lam * budget + sum_k max_j (s_kj - lam * c_kj)`` bounds the score of every feasible choice, so
   options and partial choices whose bound is below the greedy choice's score are dropped;
3. a dynamic program over the layers keeps the Pareto set of partial (cost, score) sums. Should that set
   grow past ``max_states`` (it stays in the hundreds on ResNet-18's full rank grid), the remaining
   0/1 program goes to HiGHS (``scipy.optimize.milp``) with a zero optimality gap instead.

The returned choice is checked against the budget in float64 arithmetic."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array

from haloc_core.budget import BudgetError

MAX_STATES = 200_000
# HiGHS stops within an absolute objective gap of 1e-6; scores are rescaled so that this gap is far
# below any difference of totals that matters.
_SCORE_SCALE = 1e6
_MAX_TIGHTENINGS = 5


def solve_knapsack(costs: Sequence[np.ndarray], eps: float, scores: Sequence[np.ndarray],
                   *, fixed: float = 0.0, max_states: int = MAX_STATES) -> tuple[int, ...]:
    """One option index per layer maximising ``sum_i scores[i][j_i]`` subject to
    ``fixed + sum_i costs[i][j_i] <= eps``. Raises ``BudgetError`` (naming the cheapest achievable cost)
    when no choice fits. Of options with equal cost and score, the lower index is chosen."""
    costs = [np.asarray(c, dtype=np.float64) for c in costs]
    scores = [np.asarray(s, dtype=np.float64) for s in scores]
    _check(costs, scores)
    cheapest = fixed + sum(float(c.min()) for c in costs)
    if not eps >= cheapest:
        raise BudgetError(f"budget {eps:.6g} is below the cheapest achievable cost {cheapest:.6g} "
                          "(every layer at its cheapest option)")
    frontiers = [pareto_frontier(c, s) for c, s in zip(costs, scores)]
    best = tuple(int(f[-1]) for f in frontiers)
    if _total(costs, best, fixed) <= eps:
        return best
    incumbent, lam = _greedy(costs, scores, frontiers, eps - fixed)
    if _total(costs, incumbent, fixed) > eps:       # the greedy's running sum rounded the other way
        incumbent = tuple(int(f[0]) for f in frontiers)
    floor = sum(float(s[j]) for s, j in zip(scores, incumbent))
    frontiers = _reduced(costs, scores, frontiers, eps - fixed, lam, floor)
    choice = _dynamic_program(costs, scores, frontiers, eps, fixed, lam, floor, max_states)
    if choice is not None:
        return choice
    return _solve_milp(costs, scores, frontiers, eps, fixed)


def pareto_frontier(costs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the options no other option dominates, by increasing cost and strictly increasing score
    (of equal options, the lowest index)."""
    order = np.lexsort((np.arange(len(costs)), -scores, costs))
    kept, best = [], -np.inf
    for j in order:
        if scores[j] > best:
            kept.append(j)
            best = scores[j]
    return np.asarray(kept, dtype=np.int64)


def _check(costs: list[np.ndarray], scores: list[np.ndarray]) -> None:
    if len(costs) != len(scores):
        raise ValueError(f"{len(costs)} cost vectors but {len(scores)} score vectors")
    for i, (c, s) in enumerate(zip(costs, scores)):
        if c.ndim != 1 or c.size == 0 or c.shape != s.shape:
            raise ValueError(f"layer {i}: costs of shape {c.shape} and scores of shape {s.shape}; expected two "
                             "equal non-empty vectors")
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(s))):
            raise ValueError(f"layer {i}: costs and scores must be finite (clip log-probabilities)")


def _total(costs: list[np.ndarray], choice: Sequence[int], fixed: float) -> float:
    return fixed + sum(float(c[j]) for c, j in zip(costs, choice))


def _greedy(costs: list[np.ndarray], scores: list[np.ndarray], frontiers: list[np.ndarray],
            budget: float) -> tuple[tuple[int, ...], float]:
    """The LP relaxation's greedy: climb every layer's upper convex hull by the steepest score per cost
    first. Returns a feasible choice (each step that fits, in that order) and the LP's critical slope,
    the optimal Lagrange multiplier of the budget."""
    steps = []   # (slope, layer, option index)
    for i, (c, s, f) in enumerate(zip(costs, scores, frontiers)):
        hull = [int(f[0])]
        for j in f[1:]:
            while len(hull) >= 2 and ((s[hull[-1]] - s[hull[-2]]) * (c[j] - c[hull[-1]])
                                      <= (s[j] - s[hull[-1]]) * (c[hull[-1]] - c[hull[-2]])):
                hull.pop()
            hull.append(int(j))
        steps.extend(((s[b] - s[a]) / (c[b] - c[a]), i, b) for a, b in zip(hull, hull[1:]))
    steps.sort(key=lambda step: -step[0])      # stable: a layer's steps keep their order
    choice = [int(f[0]) for f in frontiers]
    room = budget - sum(float(c[j]) for c, j in zip(costs, choice))
    critical, blocked = 0.0, set()
    for slope, i, j in steps:
        if i in blocked:
            continue
        step_cost = float(costs[i][j] - costs[i][choice[i]])
        if step_cost <= room:
            choice[i], room = j, room - step_cost
        else:
            critical = critical or slope
            blocked.add(i)
    return tuple(choice), critical


def _bounds(costs: list[np.ndarray], scores: list[np.ndarray], frontiers: list[np.ndarray],
            lam: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Per layer, ``s_j - lam * c_j`` of its frontier options, and each layer's largest such value."""
    reduced = [s[f] - lam * c[f] for c, s, f in zip(costs, scores, frontiers)]
    return reduced, np.array([float(r.max()) for r in reduced])


def _tolerance(*values: float) -> float:
    return 1e-9 * (1.0 + sum(abs(v) for v in values))


def _reduced(costs: list[np.ndarray], scores: list[np.ndarray], frontiers: list[np.ndarray], budget: float,
             lam: float, floor: float) -> list[np.ndarray]:
    """Frontiers without the options whose bound (layer i's best term replaced by the option's) is below
    ``floor``, the score of a feasible choice: no optimal choice holds them."""
    reduced, best = _bounds(costs, scores, frontiers, lam)
    ceiling = lam * budget + float(best.sum())
    tolerance = _tolerance(floor, ceiling)
    return [f[ceiling - b + r >= floor - tolerance] for f, r, b in zip(frontiers, reduced, best)]


def _dynamic_program(costs: list[np.ndarray], scores: list[np.ndarray], frontiers: list[np.ndarray],
                     eps: float, fixed: float, lam: float, floor: float, max_states: int) -> tuple[int, ...] | None:
    """Layer by layer, the Pareto set of partial (cost, score) sums that can still fit the budget and
    reach ``floor``; the best final one whose total (summed as ``_total`` sums it) meets ``eps``. None
    when a set grows past ``max_states``."""
    budget = eps - fixed
    _, best = _bounds(costs, scores, frontiers, lam)
    cheapest = np.array([float(c[f].min()) for c, f in zip(costs, frontiers)])
    best_after = np.concatenate([np.cumsum(best[::-1])[::-1][1:], [0.0]])      # layers after i
    cheapest_after = np.concatenate([np.cumsum(cheapest[::-1])[::-1][1:], [0.0]])
    # Partial sums are rounded in another order than the final total: prune only what is clearly out.
    room = budget + _tolerance(eps, fixed, float(cheapest.sum()))
    tolerance = _tolerance(floor, budget * lam)
    total_cost, total_score = np.zeros(1), np.zeros(1)
    parents, options = [], []
    for i, (c, s, f) in enumerate(zip(costs, scores, frontiers)):
        if len(total_cost) * len(f) > max_states:
            return None
        new_cost = (total_cost[:, None] + c[f][None, :]).ravel()
        new_score = (total_score[:, None] + s[f][None, :]).ravel()
        parent = np.repeat(np.arange(len(total_cost)), len(f))
        option = np.tile(f, len(total_cost))
        keep = ((new_cost + cheapest_after[i] <= room)
                & (new_score + lam * (budget - new_cost) + best_after[i] >= floor - tolerance))
        order = np.flatnonzero(keep)[np.lexsort((-new_score[keep], new_cost[keep]))]
        # Sorted by cost, a partial sum is kept only when it scores more than every cheaper one.
        running = np.maximum.accumulate(np.concatenate([[-np.inf], new_score[order][:-1]]))
        order = order[new_score[order] > running]
        total_cost, total_score = new_cost[order], new_score[order]
        parents.append(parent[order])
        options.append(option[order])
    for state in np.argsort(-total_score, kind="stable"):
        choice = []
        for parent, option in zip(reversed(parents), reversed(options)):
            choice.append(int(option[state]))
            state = int(parent[state])
        if _total(costs, choice[::-1], fixed) <= eps:
            return tuple(reversed(choice))
    return None


def _solve_milp(costs: list[np.ndarray], scores: list[np.ndarray], frontiers: list[np.ndarray], eps: float,
                fixed: float) -> tuple[int, ...]:
    # Costs above each layer's cheapest remaining option and the slack above their total keep the
    # knapsack row well scaled: its right-hand side is 1.
    slack = eps - _total(costs, [int(f[0]) for f in frontiers], fixed)
    if slack <= 0:
        return tuple(int(f[0]) for f in frontiers)
    extra = np.concatenate([(c[f] - c[f[0]]) / slack for c, f in zip(costs, frontiers)])
    gain = np.concatenate([s[f] - s[f[0]] for s, f in zip(scores, frontiers)])
    span = float(gain.max()) or 1.0
    sizes = [len(f) for f in frontiers]
    starts = np.cumsum([0, *sizes])
    rows = np.repeat(np.arange(len(sizes)), sizes)
    one_each = csr_array((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(len(sizes), len(rows)))
    limit = 1.0
    for _ in range(_MAX_TIGHTENINGS):
        result = milp(-gain * (_SCORE_SCALE / span), integrality=np.ones(len(rows)), bounds=Bounds(0, 1),
                      constraints=[LinearConstraint(one_each, 1, 1), LinearConstraint(extra[None, :], -np.inf, limit)],
                      options={"mip_rel_gap": 0.0})
        if result.x is None:
            raise RuntimeError(f"the knapsack solver failed: {result.message}")
        choice = tuple(int(f[int(np.argmax(result.x[a:b]))]) for f, a, b in zip(frontiers, starts, starts[1:]))
        total = _total(costs, choice, fixed)
        if total <= eps:
            return choice
        # The solver's feasibility tolerance let the total pass the budget by a hair: ask for that much less.
        limit -= (total - eps) / slack * 2
    raise RuntimeError(f"the knapsack solver's choices kept exceeding the budget {eps:.6g}")
