"""What a sweep keeps of each workload: its cost, or why it failed."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkloadCost:
    """What a sweep keeps of one workload's evaluation."""

    key: str
    cycles: int
    energy_pj: float
    utilization: float
    mapping: str            # compact loop-nest string
    noisy: bool = False     # measured backends: the timing's spread stayed above its bound
    spread: float = 0.0     # measured backends: IQR / median of the timing


@dataclass(frozen=True)
class WorkloadFailure:
    key: str
    workload: str
    reason: str


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
