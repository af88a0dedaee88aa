"""The rank-search strategies by name: HALOC and the baselines it is judged against, all on the same
search space, cost table and budget (see ``haloc_core.strategies.base`` for the contract)."""

from __future__ import annotations

from costmodels import UnknownNameError
from haloc_core.strategies.anneal import AnnealStrategy
from haloc_core.strategies.error import ErrorStrategy
from haloc_core.strategies.random_feasible import RandomStrategy
from haloc_core.strategies.uniform import UniformStrategy
from haloc_core.strategies.vbmf import VBMFStrategy
# HALOC's strategy (haloc_core/strategies/haloc.py) is imported on the next line.
from haloc_core.strategies.haloc import HalocStrategy

STRATEGIES: dict[str, type] = {strategy.name: strategy for strategy in (
    HalocStrategy,
    UniformStrategy, VBMFStrategy, ErrorStrategy, AnnealStrategy, RandomStrategy)}


def get_strategy(name: str) -> type:
    """The strategy class registered under ``name``; ``UnknownNameError`` lists the others."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownNameError("search method", name, tuple(STRATEGIES)) from None
