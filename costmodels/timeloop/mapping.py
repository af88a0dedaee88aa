"""A mapping: the loop nest of one workload on one architecture, in Timeloop's terms.

Each storage level (innermost first, like ``ArchSpec.storage``) has temporal loops that iterate
over its tile, spatial loops that spread its children over the mesh's X and Y axes, and the set of
data spaces it keeps (the others bypass it). Factors are indexed by ``DIMENSIONS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from costmodels.problems.workloads import DIMENSIONS, Workload


@dataclass(frozen=True)
class LevelMapping:
    target: str
    temporal: tuple[int, ...]            # factor per dimension, DIMENSIONS order
    temporal_order: tuple[str, ...]      # all dimensions, innermost loop first
    spatial_x: tuple[int, ...]
    spatial_y: tuple[int, ...]
    spatial_order: tuple[str, ...]       # all dimensions, innermost first
    keep: frozenset[str]

    def factor(self, dim: str) -> int:
        i = DIMENSIONS.index(dim)
        return self.temporal[i] * self.spatial_x[i] * self.spatial_y[i]

    @property
    def fanout_x(self) -> int:
        return prod(self.spatial_x)

    @property
    def fanout_y(self) -> int:
        return prod(self.spatial_y)


@dataclass(frozen=True)
class Mapping:
    levels: tuple[LevelMapping, ...]     # innermost first

    def bound(self, dim: str) -> int:
        return prod(level.factor(dim) for level in self.levels)

    def covers(self, workload: Workload) -> bool:
        """True when the factors of every dimension multiply to the workload's bound."""
        return all(self.bound(d) == b for d, b in workload.bounds.items())

    def compact(self) -> str:
        """One-line form like the reference's results_detail.csv: ``LEVEL:C4 LEVEL:Q14sX ...``,
        outermost level first, loops outermost first, unit factors left out."""
        parts = []
        for level in reversed(self.levels):
            for dim in reversed(level.temporal_order):
                f = level.temporal[DIMENSIONS.index(dim)]
                if f > 1:
                    parts.append(f"{level.target}:{dim}{f}")
            for axis, factors in (("X", level.spatial_x), ("Y", level.spatial_y)):
                for dim in reversed(level.spatial_order):
                    f = factors[DIMENSIONS.index(dim)]
                    if f > 1:
                        parts.append(f"{level.target}:{dim}{f}s{axis}")
        return " ".join(parts)
