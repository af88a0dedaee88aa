"""Approximation-error based ranks (after ALDS, Liebenwein et al. 2021): minimise the worst relative
reconstruction error over the layers under the budget, solved exactly.

A candidate's error is that of the truncated HOSVD, ``||W - W_r||_F / ||W||_F``: with ``U1`` and ``U2`` the
left singular vectors of the mode-0 and mode-1 unfoldings and ``G = W x_0 U1^T x_1 U2^T``, the truncation
to (r1, r2) keeps ``G[:r1, :r2]``, so ``||W_r||^2`` is a cumulative sum of ``||G[i, j]||^2`` and every
candidate's error comes from one decomposition (for a 1x1 conv this is the SVD's tail). The original layer
has error 0.

Feasibility is monotone in the error bound ``t`` (each layer may then take its cheapest option of error
<= t), so a binary search over the options' errors finds the smallest achievable worst error exactly;
among the choices that reach it, the exact knapsack takes the one of smallest total error."""

from __future__ import annotations

import time

import numpy as np

from haloc_core.budget import check_feasible
from haloc_core.cost import CostTable
from haloc_core.knapsack import solve_knapsack
from haloc_core.space import LayerOptions, SearchSpace
from haloc_core.strategies.base import Choice, CompressibleModel


def relative_errors(weight: np.ndarray, layer: LayerOptions) -> np.ndarray:
    """Per option of ``layer``, the relative Frobenius error of the truncated HOSVD of ``weight``."""
    w = np.asarray(weight, dtype=np.float64)
    f, c = w.shape[:2]
    u1 = _left_singular_vectors(w.reshape(f, -1))
    u2 = _left_singular_vectors(np.moveaxis(w, 1, 0).reshape(c, -1))
    core = np.tensordot(np.tensordot(u1.T, w, axes=(1, 0)), u2, axes=(1, 0))     # r1 x K1 x K2 x r2
    energy = np.sum(core ** 2, axis=(1, 2))
    kept = np.cumsum(np.cumsum(energy, axis=0), axis=1)
    total = float(np.sum(w ** 2))
    errors = np.zeros(len(layer.ranks))
    if total == 0:
        return errors
    for j, ranks in enumerate(layer.ranks):
        if ranks is not None:
            r1, r2 = min(ranks[0], kept.shape[0]), min(ranks[1], kept.shape[1])
            errors[j] = np.sqrt(max(1.0 - kept[r1 - 1, r2 - 1] / total, 0.0))
    return errors


def _left_singular_vectors(matrix: np.ndarray) -> np.ndarray:
    """All left singular vectors, largest singular value first, from the eigenvectors of ``A A^T`` (a
    few times faster than an SVD of a wide unfolding, and exact enough for truncation energies)."""
    values, vectors = np.linalg.eigh(matrix @ matrix.T)
    return vectors[:, np.argsort(values)[::-1]]


def smallest_worst_error(cost: CostTable, errors: list[np.ndarray], eps: float) -> float:
    """The smallest ``t`` such that every layer taking its cheapest option of error <= t meets ``eps``."""
    levels = np.unique(np.concatenate(errors))
    low, high = 0, len(levels) - 1       # levels[high] is feasible: it admits every option
    while low < high:
        middle = (low + high) // 2
        total = cost.fixed + sum(float(c[e <= levels[middle]].min()) for c, e in zip(cost.arrays, errors))
        if total <= eps:
            high = middle
        else:
            low = middle + 1
    return float(levels[low])


class ErrorStrategy:
    name = "error"

    def search(self, model: CompressibleModel, space: SearchSpace, cost: CostTable, data: object, eps: float,
               seed: int) -> Choice:
        start = time.perf_counter()
        check_feasible(eps, cost)
        weights = model.layer_weights()
        errors = [relative_errors(weights[layer.layer], layer) for layer in space.layers]
        worst = smallest_worst_error(cost, errors, eps)
        allowed = [np.flatnonzero(e <= worst) for e in errors]
        picked = solve_knapsack([c[a] for c, a in zip(cost.arrays, allowed)], eps,
                                [-e[a] for e, a in zip(errors, allowed)], fixed=cost.fixed)
        indices = tuple(int(a[k]) for a, k in zip(allowed, picked))
        return Choice(self.name, indices, time.perf_counter() - start,
                      {"worst_relative_error": worst,
                       "relative_errors": {layer.layer: float(e[j]) for layer, e, j in
                                           zip(space.layers, errors, indices)}})
