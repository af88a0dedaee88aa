"""Uniform rank ratio: every layer keeps the same share ``s`` of its full ranks, the largest share whose
choice meets the budget.

At share ``s`` a layer with ``F`` output and ``C`` input channels takes its largest candidate (by
``r1 * r2``) with ``r1 <= s * F`` and ``r2 <= s * C`` (its smallest candidate when none is that small), or
the original layer where that costs no more: a decomposition dearer than the layer itself is never worth
choosing. The choice only changes where some ``r / F`` or ``r / C`` is crossed, so the shares tried are
exactly those breakpoints, from the largest down; latency is not monotone in rank on an accelerator (its
staircase), so this scan finds the largest feasible share where a bisection could stop at a smaller one.
Should even the smallest share overshoot (a budget near the cheapest cost, below the smallest
candidates), the exact knapsack moves the fewest layers to their cheapest option."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from haloc_core.budget import check_feasible
from haloc_core.cost import CostTable
from haloc_core.knapsack import solve_knapsack
from haloc_core.space import LayerOptions, SearchSpace
from haloc_core.strategies.base import Choice, CompressibleModel

_ROUNDING = 1e-9   # a share computed as r / F must admit rank r


def _candidate_ranks(layer: LayerOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Option indices, r1 and r2 of a layer's candidates (the original excluded)."""
    index = np.array([j for j, r in enumerate(layer.ranks) if r is not None], dtype=np.int64)
    r1 = np.array([layer.ranks[j][0] for j in index], dtype=np.float64)
    r2 = np.array([layer.ranks[j][1] for j in index], dtype=np.float64)
    return index, r1, r2


def boxed_choice(space: SearchSpace, cost: CostTable, bounds: Sequence[tuple[float, float]]) -> tuple[int, ...]:
    """Per layer the largest candidate with ``r1 <= bounds[i][0]`` and ``r2 <= bounds[i][1]`` (the smallest
    candidate when none fits), or the original layer where that costs no more."""
    choice = []
    for layer, costs, (b1, b2) in zip(space.layers, cost.arrays, bounds):
        index, r1, r2 = _candidate_ranks(layer)
        size = r1 * r2
        fits = (r1 <= b1 * (1 + _ROUNDING)) & (r2 <= b2 * (1 + _ROUNDING))
        if fits.any():
            pick = int(index[np.flatnonzero(fits)[np.lexsort((-r1[fits], -size[fits]))[0]]])
        else:
            pick = int(index[np.lexsort((r1, size))[0]])
        original = layer.original_index
        choice.append(original if costs[original] <= costs[pick] else pick)
    return tuple(choice)


def largest_feasible_scale(space: SearchSpace, cost: CostTable, eps: float,
                           bases: Sequence[tuple[float, float]], top: float) -> tuple[float, tuple[int, ...]]:
    """The largest ``s <= top`` whose boxed choice at ``(s * b1, s * b2)`` per layer meets ``eps``, and that
    choice; (0, the knapsack's nearest feasible choice) when no share does."""
    breaks = {top}
    for layer, (b1, b2) in zip(space.layers, bases):
        _, r1, r2 = _candidate_ranks(layer)
        breaks.update(float(v) for v in np.concatenate([r1 / b1, r2 / b2]) if v <= top)
    for scale in sorted(breaks, reverse=True):
        choice = boxed_choice(space, cost, [(scale * b1, scale * b2) for b1, b2 in bases])
        if cost.total(choice) <= eps:
            return scale, choice
    return 0.0, nearest_feasible(cost, eps, boxed_choice(space, cost, [(0.0, 0.0)] * len(bases)))


def nearest_feasible(cost: CostTable, eps: float, preferred: Sequence[int]) -> tuple[int, ...]:
    """The feasible choice that keeps the most layers at ``preferred``; the others take their cheapest
    option."""
    scores = [np.where(np.arange(len(c)) == j, 0.0, -1.0) for c, j in zip(cost.arrays, preferred)]
    return solve_knapsack(cost.arrays, eps, scores, fixed=cost.fixed)


class UniformStrategy:
    name = "uniform"

    def search(self, model: CompressibleModel, space: SearchSpace, cost: CostTable, data: object, eps: float,
               seed: int) -> Choice:
        start = time.perf_counter()
        check_feasible(eps, cost)
        weights = model.layer_weights()
        bases = [tuple(float(n) for n in np.shape(weights[layer.layer])[:2]) for layer in space.layers]
        scale, indices = largest_feasible_scale(space, cost, eps, bases, 1.0)
        return Choice(self.name, indices, time.perf_counter() - start, {"rank_ratio": scale})
