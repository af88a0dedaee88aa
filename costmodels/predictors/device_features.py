"""Features of a workload on a measured device (``--backend torch``), for the regression predictors.

A ``DeviceTarget`` has no spec: no PE array, buffers or bandwidths to derive a roofline from. What
the predictors get instead is the workload's shape and what a CPU or GPU convolution kernel is
sensitive to: MACs, channel and output sizes, kernel and strides, the bytes of each data space in
the target's dtype, arithmetic intensity (MACs per byte moved), and how well the channel counts
fill the vector or tile widths kernels block channels by (8 to 128: AVX2 to AVX-512 lanes on a
CPU, warp and tile sizes on a GPU), where measured latency moves in steps.

The baseline the predictors correct (``DeviceFeatureSet.roofline``) is a nominal estimate in
nanoseconds (the measured target's cycles): a per-call overhead, plus MACs at a nominal
throughput, plus bytes at a nominal bandwidth (``NOMINAL``). Its constants are round numbers for
the kind of device, not measurements: a constant factor is absorbed by the fitted correction; what
the estimate contributes is the shape (overhead-bound small convs, memory-bound ones with few
channels).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from math import ceil
from typing import Iterable

import numpy as np

from costmodels.backends.torch_timing import DeviceTarget
from costmodels.predictors.features import Roofline, touched_sizes
from costmodels.problems.workloads import DATA_SPACES, DIMENSIONS, Workload

# Bump when the features of a workload on a device change meaning, so that saved predictors are refused.
DEVICE_FEATURES_VERSION = 1

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
BLOCK_WIDTHS = (8, 16, 32, 64, 128)     # channel blocks of CPU vector lanes and GPU tiles


@dataclass(frozen=True)
class NominalThroughput:
    """Round numbers for a kind of device, for the baseline estimate only (see the module doc)."""

    macs_per_ns: float          # per thread on a CPU
    bytes_per_ns: float
    call_overhead_ns: float


NOMINAL = {"cpu": NominalThroughput(macs_per_ns=32.0, bytes_per_ns=16.0, call_overhead_ns=5_000.0),
           "cuda": NominalThroughput(macs_per_ns=5_000.0, bytes_per_ns=1_000.0, call_overhead_ns=10_000.0)}


@dataclass(frozen=True)
class DeviceFeatureSet:
    """How workloads become feature rows on one measured device. It offers what the estimators and
    the sampling read of a ``FeatureSet``: ``spec_name``, ``spec_hash``, ``peak_macs`` (0: a
    measured target has no peak, and predicted rows no utilization), ``names``, ``digest``,
    ``roofline``, ``row``, ``transform`` and ``design_point``."""

    spec_name: str
    spec_hash: str              # the device fingerprint's hash
    fingerprint: str
    dtype_bytes: int
    nominal: NominalThroughput
    names: tuple[str, ...]
    peak_macs: int = 0

    @property
    def digest(self) -> str:
        """Identifies the feature list, for refusing a saved predictor whose features differ."""
        text = f"device-v{DEVICE_FEATURES_VERSION}:" + ",".join(self.names)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def data_bytes(self, workload: Workload) -> dict[str, float]:
        return {space: float(words * self.dtype_bytes) for space, words in touched_sizes(workload).items()}

    def roofline(self, workload: Workload) -> Roofline:
        """The nominal estimate, in the ``Roofline`` the estimators take their baseline from (one
        "PE": the device as a whole; energy is not measured, so its estimate is the MACs)."""
        macs = workload.macs
        moved = sum(self.data_bytes(workload).values())
        cycles = (self.nominal.call_overhead_ns + macs / self.nominal.macs_per_ns
                  + moved / self.nominal.bytes_per_ns)
        spread = tuple(1 for _ in DIMENSIONS)
        return Roofline(1, 1, spread, 1, cycles, float(macs), tuple(self.data_bytes(workload).values()))

    def design_point(self, workload: Workload) -> list[float]:
        """Where a workload sits for the space-filling sample: log2 arithmetic intensity and the
        log2 share of the estimate that is overhead and data movement."""
        macs = workload.macs
        moved = sum(self.data_bytes(workload).values())
        estimate = self.roofline(workload).cycles
        return [float(np.log2(macs / moved)), float(np.log2(estimate * self.nominal.macs_per_ns / macs))]

    def row(self, w: Workload) -> list[float]:
        macs = w.macs
        data = self.data_bytes(w)
        moved = sum(data.values())
        values: list[float] = [
            float(w.C), float(w.M), float(w.R), float(w.S), float(w.N), float(w.P), float(w.Q),
            float(w.Wstride), float(w.Hstride), float(w.Wdilation), float(w.Hdilation),
            np.log2(macs), np.log2(w.C), np.log2(w.M), np.log2(w.N * w.P * w.Q), np.log2(w.R * w.S),
            *(np.log2(data[space]) for space in DATA_SPACES), np.log2(moved), np.log2(macs / moved),
            np.log2(w.data_space_sizes["Inputs"] / touched_sizes(w)["Inputs"]),
            np.log2(self.roofline(w).cycles),
        ]
        for dim in ("C", "M"):
            bound = w.bounds[dim]
            for width in BLOCK_WIDTHS:
                # A kernel that blocks channels by ``width`` pads the last block: a rank just past
                # a multiple pays for a whole block.
                blocks = ceil(bound / width)
                values += [float(blocks), bound / (blocks * width)]
        return values

    def transform(self, workloads: Iterable[Workload]) -> np.ndarray:
        rows = [self.row(w) for w in workloads]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.names))


def device_feature_set(target: DeviceTarget) -> DeviceFeatureSet:
    names: list[str] = [
        "C", "M", "R", "S", "N", "P", "Q", "Wstride", "Hstride", "Wdilation", "Hdilation",
        "log2_macs", "log2_C", "log2_M", "log2_output_pixels", "log2_kernel_size",
        *(f"log2_{s.lower()}_bytes" for s in DATA_SPACES), "log2_bytes", "log2_arithmetic_intensity",
        "log2_input_halo", "log2_nominal_ns"]
    for dim in ("C", "M"):
        for width in BLOCK_WIDTHS:
            names += [f"blocks_{dim}_{width}", f"fill_{dim}_{width}"]
    kind = "cpu" if target.device == "cpu" else "cuda"
    base = NOMINAL[kind]
    if kind == "cpu":
        base = NominalThroughput(base.macs_per_ns * target.threads, base.bytes_per_ns, base.call_overhead_ns)
    return DeviceFeatureSet(target.name, target.content_hash, target.fingerprint, DTYPE_BYTES[target.dtype], base,
                            tuple(names))
