"""What the mapper tests share: the mapper's own estimate of a given mapping, to compare with the model."""

from __future__ import annotations

from costmodels.model.mapper import _Nest, _Search
from costmodels.problems.workloads import DIMENSIONS


def mapper_estimate(workload, spec, mapping) -> tuple[float, float]:
    """(cycles, energy in pJ) the mapper's estimate gives ``mapping``, with the spec's own metrics."""
    levels = mapping.levels
    nest = _Nest(tuple(level.keep for level in levels),
                 tuple(tuple(DIMENSIONS.index(d) for d in level.temporal_order) for level in levels))
    temporal = [[float(f) for f in level.temporal] for level in levels]
    spatial = [[float(x * y) for x, y in zip(level.spatial_x, level.spatial_y)] for level in levels]
    cycles, energy = _Search(workload, spec, spec.metrics).estimate(nest, temporal, spatial, 1)
    return cycles[0], energy[0]
