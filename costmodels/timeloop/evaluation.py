"""The result of evaluating one mapping of one workload on one architecture.

Counts follow Timeloop's stats: reads, fills and updates are scalar (word) accesses *per instance*
of a storage level; energies are totals over all utilized instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from costmodels.problems.workloads import DIMENSIONS
from costmodels.timeloop.mapping import Mapping


@dataclass(frozen=True)
class DataSpaceStats:
    """What one storage level does with one data space it keeps."""

    name: str
    utilized_capacity: int      # words of the tile held by one instance
    utilized_instances: int     # instances that hold a tile
    reads: int                  # per instance
    fills: int                  # per instance
    updates: int                # per instance (read-modify-write data spaces only)
    energy_pj: float            # all instances

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "utilized_capacity": self.utilized_capacity,
                "utilized_instances": self.utilized_instances, "reads": self.reads, "fills": self.fills,
                "updates": self.updates, "energy_pj": self.energy_pj}


@dataclass(frozen=True)
class LevelStats:
    name: str
    cycles: int                              # compute cycles stretched by this level's bandwidth
    data_spaces: tuple[DataSpaceStats, ...]  # the kept ones, in DATA_SPACES order
    energy_pj: float

    def data_space(self, name: str) -> DataSpaceStats | None:
        for stats in self.data_spaces:
            if stats.name == name:
                return stats
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cycles": self.cycles, "energy_pj": self.energy_pj,
                "data_spaces": [d.to_dict() for d in self.data_spaces]}


@dataclass(frozen=True)
class Evaluation:
    workload_key: str
    cycles: int
    energy_pj: float                 # storage levels plus MACs
    macs: int
    mac_energy_pj: float
    utilization: float               # MACs / (cycles * MAC instances)
    levels: tuple[LevelStats, ...]   # innermost first, like ArchSpec.storage
    mapping: Mapping
    backend: str
    backend_version: str

    @property
    def energy_per_mac_pj(self) -> float:
        return self.energy_pj / self.macs

    def latency_s(self, clock_hz: float) -> float:
        return self.cycles / clock_hz

    def level(self, name: str) -> LevelStats:
        for stats in self.levels:
            if stats.name == name:
                return stats
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload_key": self.workload_key,
            "backend": self.backend,
            "backend_version": self.backend_version,
            "cycles": self.cycles,
            "energy_pj": self.energy_pj,
            "energy_per_mac_pj": self.energy_per_mac_pj,
            "macs": self.macs,
            "mac_energy_pj": self.mac_energy_pj,
            "utilization": self.utilization,
            "levels": [level.to_dict() for level in self.levels],
            "mapping": mapping_to_dict(self.mapping),
        }


def mapping_to_dict(mapping: Mapping) -> dict[str, Any]:
    """Plain-type form of a mapping: the compact one-liner plus every level's factors."""
    levels = []
    for level in mapping.levels:
        levels.append({
            "target": level.target,
            "temporal": dict(zip(DIMENSIONS, level.temporal)),
            "temporal_order": "".join(level.temporal_order),
            "spatial_x": dict(zip(DIMENSIONS, level.spatial_x)),
            "spatial_y": dict(zip(DIMENSIONS, level.spatial_y)),
            "spatial_order": "".join(level.spatial_order),
            "keep": sorted(level.keep),
        })
    return {"compact": mapping.compact(), "levels": levels}
