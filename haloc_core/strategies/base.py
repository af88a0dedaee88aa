"""The one contract every rank-search strategy follows:

    strategy.search(model, space, cost, data, eps, seed) -> Choice

``model`` is a ``CompressibleModel`` (the trained network and what a strategy may ask of it), ``space`` the
``SearchSpace``, ``cost`` the ``CostTable`` of the chosen objective, ``data`` the train/validation splits
(``SplitData``; strategies never see the test split), ``eps`` the budget in the objective's unit, ``seed`` the
random seed. The returned ``Choice`` is one option index per searched layer; every strategy's choice meets
the budget (strategies finish with the exact knapsack or an exact solver of their own)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Choice:
    """``indices[i]`` is the chosen option of ``space.layers[i]``. ``history`` holds what a strategy
    records while it searches (e.g. per-step probabilities and expected cost) for the report's plots."""

    method: str
    indices: tuple[int, ...]
    search_time_s: float
    history: dict[str, Any] = field(default_factory=dict, compare=False)


class CompressibleModel(Protocol):
    """What a strategy may ask of the trained network (implemented in ``haloc_core.model``)."""

    def layer_weights(self) -> dict[str, np.ndarray]:
        """Each searched layer's trained conv weight (F x C x K1 x K2), by layer name."""

    def proxy_accuracy(self, ranks: dict[str, tuple[int, int] | None], data: Any, max_batches: int) -> float:
        """Validation accuracy of the network with these ranks, decomposed from the trained weights without
        fine-tuning, on at most ``max_batches`` validation batches: the cheap accuracy proxy."""


class SearchStrategy(Protocol):
    name: str

    def search(self, model: CompressibleModel, space: Any, cost: Any, data: Any, eps: float, seed: int) -> Choice:
        ...
