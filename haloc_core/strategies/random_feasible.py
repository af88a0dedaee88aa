"""Random feasible ranks: the layers in a random order, each taking an option drawn uniformly from those
that still leave room for every later layer's cheapest option. Every draw meets the budget."""

from __future__ import annotations

import time

import numpy as np

from haloc_core.budget import check_feasible
from haloc_core.cost import CostTable
from haloc_core.space import SearchSpace
from haloc_core.strategies.base import Choice, CompressibleModel


def random_feasible_choice(cost: CostTable, eps: float, rng: np.random.Generator) -> tuple[int, ...]:
    arrays = cost.arrays
    cheapest = [int(np.argmin(c)) for c in arrays]
    choice = list(cheapest)
    spent = cost.total(choice)                  # every layer at its cheapest option so far
    for layer in rng.permutation(len(arrays)):
        costs = arrays[layer]
        room = eps - (spent - costs[cheapest[layer]])
        allowed = np.flatnonzero(costs <= room)
        pick = int(rng.choice(allowed)) if len(allowed) else cheapest[layer]
        spent += costs[pick] - costs[cheapest[layer]]
        choice[layer] = pick
    return tuple(choice)


class RandomStrategy:
    name = "random"

    def search(self, model: CompressibleModel, space: SearchSpace, cost: CostTable, data: object, eps: float,
               seed: int) -> Choice:
        start = time.perf_counter()
        check_feasible(eps, cost)
        indices = random_feasible_choice(cost, eps, np.random.default_rng(seed))
        return Choice(self.name, indices, time.perf_counter() - start)
