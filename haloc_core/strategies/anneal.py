"""Simulated annealing over ranks (AutoCompress's policy search, Liu et al. AAAI 2020) with a cheap
accuracy proxy: the network decomposed at the proposed ranks from the trained weights, without
fine-tuning, scored on a few validation batches (``CompressibleModel.proxy_accuracy``).

It starts from the uniform rank ratio's choice. A move shifts one random layer one or two places along
its options ordered by cost; a move that overshoots the budget is redrawn (at most ``max_redraws`` times),
so every visited choice is feasible. A worse proxy is accepted with probability ``exp(delta / T)``, ``T``
cooling geometrically from ``temperature_start`` to ``temperature_end`` over ``steps`` evaluated moves. The
best choice seen is returned."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from haloc_core.budget import check_feasible
from haloc_core.cost import CostTable
from haloc_core.space import SearchSpace
from haloc_core.strategies.base import Choice, CompressibleModel
from haloc_core.strategies.uniform import UniformStrategy


@dataclass(frozen=True)
class AnnealConfig:
    steps: int = 40
    max_batches: int = 4
    temperature_start: float = 0.05      # in accuracy: a 5-point drop is accepted with p = 1/e at first
    temperature_end: float = 0.002
    max_redraws: int = 100

    def __post_init__(self) -> None:
        if self.steps < 0 or self.max_batches < 1 or self.max_redraws < 1:
            raise ValueError("annealing needs steps >= 0, max_batches >= 1 and max_redraws >= 1")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise ValueError("temperatures must satisfy 0 < end <= start")

    def temperature(self, step: int) -> float:
        share = step / max(self.steps - 1, 1)
        return self.temperature_start * (self.temperature_end / self.temperature_start) ** share

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class AnnealStrategy:
    name = "anneal"

    def __init__(self, config: AnnealConfig = AnnealConfig()):
        self.config = config

    def search(self, model: CompressibleModel, space: SearchSpace, cost: CostTable, data: object, eps: float,
               seed: int) -> Choice:
        start = time.perf_counter()
        check_feasible(eps, cost)
        config = self.config
        rng = np.random.default_rng(seed)
        by_cost = [np.lexsort((np.arange(len(c)), c)) for c in cost.arrays]   # option indices, cheapest first
        place = [np.argsort(order) for order in by_cost]                       # option index -> position
        scores: dict[tuple[int, ...], float] = {}

        def proxy(choice: tuple[int, ...]) -> float:
            if choice not in scores:
                ranks = {layer.layer: layer.ranks[j] for layer, j in zip(space.layers, choice)}
                scores[choice] = float(model.proxy_accuracy(ranks, data, config.max_batches))
            return scores[choice]

        current = UniformStrategy().search(model, space, cost, data, eps, seed).indices
        best, current_score = current, proxy(current)
        best_score = current_score
        trace = [current_score]
        for step in range(config.steps):
            proposal = self._move(current, by_cost, place, cost, eps, rng)
            if proposal is None:
                break
            score = proxy(proposal)
            delta = score - current_score
            if delta >= 0 or rng.random() < math.exp(delta / config.temperature(step)):
                current, current_score = proposal, score
            if score > best_score:
                best, best_score = proposal, score
            trace.append(current_score)
        return Choice(self.name, best, time.perf_counter() - start,
                      {"proxy_accuracy": trace, "best_proxy_accuracy": best_score, "config": config.as_dict()})

    def _move(self, current: tuple[int, ...], by_cost: list[np.ndarray], place: list[np.ndarray],
              cost: CostTable, eps: float, rng: np.random.Generator) -> tuple[int, ...] | None:
        """A feasible neighbour of ``current``, or None when ``max_redraws`` draws found none."""
        for _ in range(self.config.max_redraws):
            layer = int(rng.integers(len(current)))
            order = by_cost[layer]
            shift = int(rng.choice((-2, -1, 1, 2)))
            position = int(np.clip(place[layer][current[layer]] + shift, 0, len(order) - 1))
            proposal = current[:layer] + (int(order[position]),) + current[layer + 1:]
            if proposal != current and cost.total(proposal) <= eps:
                return proposal
        return None
