"""The cost of a choice in the search objective's unit: per searched layer a vector of option costs, the
fixed cost of the layers that are not searched, and the differentiable expected cost of HALOC's Eq. 6
(``E = fixed + sum_i sum_j p_ij * c_ij``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import numpy as np
import torch

from costmodels import CostModelError
from haloc_core.space import SearchSpace


class Objective(str, Enum):
    LATENCY = "latency"
    ENERGY = "energy"


class ObjectiveError(CostModelError):
    """An objective the LUT cannot price (energy of a measured LUT, which has seconds only)."""


@dataclass(frozen=True)
class CostTable:
    """``options[i][j]``: the cost of option j of searched layer i, float64, in ``unit`` ("cycles" for
    latency when the target's clock is known, else "s"; "pJ" for energy) on ``target``. ``fixed``: the layers that are
    not searched. ``original_total``: the whole network with every layer as it is."""

    objective: Objective
    target: str
    unit: str
    options: tuple[torch.Tensor, ...]
    fixed: float
    original_total: float

    @classmethod
    def from_space(cls, space: SearchSpace, objective: Objective) -> CostTable:
        if objective is Objective.ENERGY:
            unit, fixed, per_layer = "pJ", space.fixed_energy_pj, [layer.energy_pj for layer in space.layers]
        elif space.clock_hz is not None:
            unit, fixed, per_layer = "cycles", space.fixed_cycles, [layer.cycles for layer in space.layers]
        else:
            unit, fixed, per_layer = "s", space.fixed_latency_s, [layer.latency_s for layer in space.layers]
        for layer, costs in zip(space.layers, per_layer):
            if not all(math.isfinite(c) and c >= 0 for c in costs):
                raise ObjectiveError(f"LUT of target '{space.target}': layer '{layer.layer}' has no finite "
                                     f"{objective.value} cost for every option (a measured LUT has latency "
                                     "only); use the latency objective")
        options = tuple(torch.tensor(costs, dtype=torch.float64) for costs in per_layer)
        original = fixed + sum(float(c[layer.original_index]) for c, layer in zip(options, space.layers))
        return cls(objective, space.target, unit, options, float(fixed), original)

    @property
    def arrays(self) -> list[np.ndarray]:
        """The option costs as numpy arrays (what the knapsack takes)."""
        return [c.numpy() for c in self.options]

    @property
    def cheapest(self) -> float:
        """The lowest achievable total: every searched layer at its cheapest option."""
        return self.fixed + sum(float(c.min()) for c in self.options)

    def cheapest_indices(self) -> tuple[int, ...]:
        return tuple(int(c.argmin()) for c in self.options)

    def total(self, indices: Sequence[int]) -> float:
        """The realised cost of one option per searched layer."""
        if len(indices) != len(self.options):
            raise ValueError(f"{len(indices)} indices for {len(self.options)} searched layers")
        return self.fixed + sum(float(c[int(j)]) for c, j in zip(self.options, indices))

    def expected(self, probabilities: Sequence[torch.Tensor]) -> torch.Tensor:
        """``fixed + sum_i sum_j p_ij c_ij`` as a float64 scalar tensor, differentiable in ``probabilities``
        (one vector per searched layer, on any device)."""
        if len(probabilities) != len(self.options):
            raise ValueError(f"{len(probabilities)} probability vectors for {len(self.options)} searched layers")
        total = torch.tensor(self.fixed, dtype=torch.float64,
                             device=probabilities[0].device if probabilities else None)
        for p, c in zip(probabilities, self.options):
            if p.shape != c.shape:
                raise ValueError(f"probabilities of shape {tuple(p.shape)} for {c.numel()} options")
            total = total + (p.to(torch.float64) * c.to(p.device)).sum()
        return total
