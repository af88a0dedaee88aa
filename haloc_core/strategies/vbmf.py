"""VBMF ranks (Kim et al., ICLR 2016): the classic automatic choice of Tucker-2 ranks, scaled to the budget.

Empirical variational Bayesian matrix factorisation (EVBMF; Nakajima, Sugiyama, Babacan and Tomioka, JMLR
2013) has a global analytic solution: with the noise variance ``sigma2`` estimated by minimising the free
energy, the components kept are the singular values above ``sqrt(M * sigma2 * (1 + tau) * (1 + alpha / tau))``
(``alpha = L / M`` for an ``L x M`` matrix, ``L <= M``, ``tau ~ 2.5129 sqrt(alpha)``). Kim et al. take r1 from
the mode-0 unfolding (output channels) of each conv weight and r2 from the mode-1 unfolding (input
channels); a 1x1 layer gets one rank from its ``F x C`` matrix.

The strategy scales every layer's VBMF ranks by one common factor, the largest whose choice (per layer the
largest candidate within ``(s * r1, s * r2)``, or the original layer where that is no dearer) meets the
budget; see ``haloc_core.strategies.uniform``."""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.optimize import minimize_scalar

from haloc_core.budget import check_feasible
from haloc_core.cost import CostTable
from haloc_core.space import SearchSpace
from haloc_core.strategies.base import Choice, CompressibleModel
from haloc_core.strategies.uniform import largest_feasible_scale


def evbmf_rank(matrix: np.ndarray) -> int:
    """The number of components EVBMF keeps in ``matrix`` (noise variance estimated)."""
    v = np.asarray(matrix, dtype=np.float64)
    if v.shape[0] > v.shape[1]:
        v = v.T
    rows, cols = v.shape
    # The singular values from the eigenvalues of the small Gram matrix: a wide unfolding's SVD is slow.
    singular = np.sqrt(np.clip(np.linalg.eigvalsh(v @ v.T)[::-1], 0.0, None))
    if rows == 0 or not np.any(singular > 0):
        return 0
    alpha = rows / cols
    tau_bar = 2.5129 * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    # At most ceil(L / (1 + alpha)) - 1 components can be positive; the rest bound the noise from below.
    most = min(math.ceil(rows / (1 + alpha)) - 1, rows - 1)
    lower = max(singular[most] ** 2 / (cols * x_bar), float(np.mean(singular[most:] ** 2)) / cols)
    upper = float(np.sum(singular ** 2)) / (rows * cols)
    if not lower < upper:
        return 0
    sigma2 = minimize_scalar(_free_energy, bounds=(lower, upper), args=(singular, rows, cols, x_bar),
                             method="bounded").x
    threshold = math.sqrt(cols * sigma2 * x_bar)
    return int(np.sum(singular > threshold))


def _free_energy(sigma2: float, singular: np.ndarray, rows: int, cols: int, x_bar: float) -> float:
    """The EVBMF free energy as a function of the noise variance (up to constants), all L components."""
    alpha = rows / cols
    x = singular ** 2 / (cols * sigma2)
    small, large = x[x <= x_bar], x[x > x_bar]
    b = large - (1 + alpha)
    tau = 0.5 * (b + np.sqrt(np.maximum(b ** 2 - 4 * alpha, 0.0)))
    return float(np.sum(small - np.log(small)) + np.sum(large - tau) + np.sum(np.log((tau + 1) / large))
                 + alpha * np.sum(np.log(tau / alpha + 1)))


def vbmf_ranks(weight: np.ndarray) -> tuple[int, int]:
    """(r1, r2) of a conv weight ``F x C x K1 x K2``: EVBMF on the mode-0 and mode-1 unfoldings; one rank
    for both from the ``F x C`` matrix of a 1x1 conv."""
    f, c = weight.shape[:2]
    if weight.shape[2:] == (1, 1):
        rank = evbmf_rank(weight.reshape(f, c))
        return rank, rank
    mode0 = weight.reshape(f, -1)
    mode1 = np.moveaxis(weight, 1, 0).reshape(c, -1)
    return evbmf_rank(mode0), evbmf_rank(mode1)


class VBMFStrategy:
    name = "vbmf"

    def search(self, model: CompressibleModel, space: SearchSpace, cost: CostTable, data: object, eps: float,
               seed: int) -> Choice:
        start = time.perf_counter()
        check_feasible(eps, cost)
        weights = model.layer_weights()
        found = {layer.layer: vbmf_ranks(np.asarray(weights[layer.layer])) for layer in space.layers}
        # A layer VBMF finds no signal in still scales from rank 1.
        bases = [(max(found[layer.layer][0], 1), max(found[layer.layer][1], 1)) for layer in space.layers]
        full = [np.asarray(weights[layer.layer]).shape[:2] for layer in space.layers]
        top = max(max(f / b1, c / b2) for (f, c), (b1, b2) in zip(full, bases))
        scale, indices = largest_feasible_scale(space, cost, eps, bases, top)
        return Choice(self.name, indices, time.perf_counter() - start,
                      {"vbmf_ranks": {name: list(r) for name, r in found.items()}, "scale": scale})
