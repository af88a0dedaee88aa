"""What the mapper tests share: the mapper's own estimate of a given mapping, to compare with the model."""

from __future__ import annotations

import numpy as np

from costmodels.model.mapper import _Nest, _Search
from costmodels.problems.workloads import DIMENSIONS


def mapping_orders(mapping) -> tuple[tuple[int, ...], ...]:
    """Each level's temporal loop order as dimension indices, innermost first."""
    return tuple(tuple(DIMENSIONS.index(d) for d in level.temporal_order) for level in mapping.levels)


def mapper_estimates_under_orders(workload, spec, mapping, orders: list, walk: bool) -> tuple:
    """(cycles, energy) arrays the mapper's estimate gives ``mapping`` under each of ``orders`` (per
    level, dimension indices innermost first), all scored in one pass: a level whose order differs
    between them gets an order per candidate, as the loop-order descent scores its trials."""
    levels = mapping.levels
    per_level = tuple(orders[0][i] if all(o[i] == orders[0][i] for o in orders)
                      else np.array([o[i] for o in orders]) for i in range(len(levels)))
    nest = _Nest(tuple(level.keep for level in levels), per_level)
    temporal = [[float(f) for f in level.temporal] for level in levels]
    spatial = [[float(x * y) for x, y in zip(level.spatial_x, level.spatial_y)] for level in levels]
    return _Search(workload, spec, spec.metrics).estimate(nest, temporal, spatial, len(orders), walk)


def mapper_estimate(workload, spec, mapping) -> tuple[float, float]:
    """(cycles, energy in pJ) the mapper's full estimate gives ``mapping``, with the spec's own metrics."""
    cycles, energy = mapper_estimates_under_orders(workload, spec, mapping, [mapping_orders(mapping)], walk=True)
    return cycles[0], energy[0]
