"""Features of a workload on a target, for the regression cost predictors.

Accelerator latency moves in steps with the channel counts: the mapper spreads loops over the PE
array only by exact factors of their bounds, within the axes the spec's spatial constraints allow,
so utilization jumps with the divisors of a rank (HALOC Fig. 2), and a rank whose factors leave a
PE little to accumulate can turn a layer bandwidth-bound. A model fed FLOPs alone sees a smooth
curve and misses both. The features carry that structure explicitly:

* a roofline estimate (``Roofline``): every legal spatial assignment of exact factors, enumerated
  from the spec's fan-outs and spatial constraints, is priced as the longer of its compute cycles
  (MACs over PEs used) and the time each bandwidth-limited level needs for a simple traffic
  estimate; the best one gives estimated cycles and energy, which the predictors then correct;
* ceil-divisions and fill fractions of each channel and output bound by every array axis size,
  largest divisors within each axis and PE buffer size, and the largest prime factor of the
  channel counts;
* words of each data space, the input halo, and how many times each bounded buffer must refill.

Every size comes from the spec, so the same code serves any target.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from math import ceil, prod
from typing import Iterable

import numpy as np

from costmodels.timeloop.spec import ArchSpec, StorageLevel
from costmodels.problems.workloads import DATA_SPACES, DIMENSIONS, Workload

# Bump when the features of a workload change meaning, so that saved predictors are refused.
FEATURES_VERSION = 1

_FOLDED = ("C", "M", "P", "Q")       # bounds a dataflow may spread over an array axis
_KERNEL = ("R", "S")
_X, _Y = 0, 1


@dataclass(frozen=True)
class SpatialLevel:
    """What a level's spatial constraints allow: fixed factors (0: the whole bound) and, per free
    dimension, the axes (X=0, Y=1) it may be spread over."""

    fanout: tuple[int, int]
    fixed: tuple[tuple[str, int, int], ...]         # (dimension, factor, axis)
    free: tuple[tuple[str, tuple[int, ...]], ...]   # (dimension, allowed axes)


@dataclass(frozen=True)
class SharedLevel:
    """A storage level outside the PEs that holds data: what, its energy per word, its bandwidth
    in words per cycle over all its instances (None: unlimited) and its capacity per instance."""

    name: str
    holds: tuple[str, ...]
    read_pj: float
    write_pj: float
    read_bandwidth: float | None
    write_bandwidth: float | None
    words: int | None


@dataclass(frozen=True)
class Roofline:
    """The spatial assignment with the fewest estimated cycles, and what it costs.

    Traffic estimate, per shared level: operands read once and results written once, except where
    the PEs' buffers force passes (see ``_price_option``); the outermost level only supplies
    operands and takes results. Of two loop orders above the PEs, the faster is taken, and on a
    tie the one with less energy, as a delay-first mapper would.
    """

    max_pes: int                    # most PEs any legal assignment uses
    pes: int                        # PEs the chosen assignment uses
    spread: tuple[int, ...]         # its spatial factor per dimension, DIMENSIONS order
    pe_outputs: int                 # output channels a PE accumulates at once
    cycles: float
    energy_pj: float
    traffic: tuple[float, ...]      # per shared level: words read plus written


@dataclass(frozen=True)
class FeatureSet:
    """How workloads become feature rows on one target (see the module docstring)."""

    spec_name: str
    spec_hash: str
    peak_macs: int
    axes: tuple[int, ...]           # distinct array axis sizes, ascending
    limits: tuple[int, ...]         # array axis sizes and PE buffer sizes, ascending
    spatial: tuple[SpatialLevel, ...]
    shared: tuple[SharedLevel, ...]     # innermost first
    mac_access_pj: float                # a MAC and one access to each PE-local level that holds data
    pe_output_words: int                # PE-local words that hold outputs
    pe_weight_words: int                # PE-local words that hold weights
    pe_input_words: int                 # PE-local words that hold inputs
    outer_pixel_dims: tuple[str, ...]   # output-pixel loops that must run above the weights' supplier
    names: tuple[str, ...]

    @property
    def digest(self) -> str:
        """Identifies the feature list, for refusing a saved predictor whose features differ."""
        text = f"v{FEATURES_VERSION}:" + ",".join(self.names)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def roofline(self, workload: Workload) -> Roofline:
        return _roofline(self, workload)

    def row(self, w: Workload) -> list[float]:
        macs = w.macs
        sizes = w.data_space_sizes
        touched = touched_sizes(w)
        bounds = w.bounds
        roof = self.roofline(w)
        compute_cycles = macs / roof.max_pes
        values: list[float] = [
            float(w.C), float(w.M), float(w.R), float(w.S), float(w.N), float(w.P), float(w.Q),
            float(w.Wstride), float(w.Hstride), float(w.Wdilation), float(w.Hdilation),
            np.log2(macs), np.log2(macs / self.peak_macs), float(roof.max_pes), np.log2(compute_cycles),
            float(roof.pes), np.log2(roof.cycles), np.log2(roof.cycles / compute_cycles),
            np.log2(roof.energy_pj / macs), float(roof.pe_outputs),
            *(float(f) for f in roof.spread),
            *(np.log2(1.0 + t / macs) for t in roof.traffic),
            *(np.log2(touched[space]) for space in DATA_SPACES),
            *(np.log2(touched[space] / macs) for space in DATA_SPACES),
            np.log2(sizes["Inputs"] / touched["Inputs"]),
        ]
        for dim in ("C", "M"):
            # Loops split only by exact factors: a channel count with a large prime factor cannot
            # fill an axis or a buffer that a neighbouring rank fills.
            left = bounds[dim] // roof.spread[DIMENSIONS.index(dim)]
            values += [float(_largest_prime_factor(bounds[dim])), float(left),
                       *(float(_largest_divisor_within(bounds[dim], limit)) for limit in self.limits),
                       *(float(_largest_divisor_within(left, limit)) for limit in self.limits)]
        for axis in self.axes:
            for dim in _FOLDED:
                folds = ceil(bounds[dim] / axis)
                values += [float(folds), bounds[dim] / (folds * axis)]
            for kernel in _KERNEL:
                # Kernel rows laid along the axis leave room for axis // K channel slices.
                slots = max(1, axis // bounds[kernel])
                values += [float(ceil(w.C / slots)), float(ceil(w.M / slots))]
        for level in self.shared:
            if level.words is not None:
                held = sum(sizes[space] for space in level.holds)
                values.append(np.log2(max(1.0, held / level.words)))
        return values

    def transform(self, workloads: Iterable[Workload]) -> np.ndarray:
        rows = [self.row(w) for w in workloads]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.names))


def clear_cache() -> None:
    """Forget the roofline estimates computed so far (for timing a cold start)."""
    _roofline.cache_clear()


def touched_sizes(workload: Workload) -> dict[str, int]:
    """Words of each data space that the computation touches: a strided 1x1 conv skips inputs,
    which ``Workload.data_space_sizes`` (the whole input halo) counts."""
    w = workload
    width = min(w.input_width, w.P * w.R)
    height = min(w.input_height, w.Q * w.S)
    return {**w.data_space_sizes, "Inputs": w.N * w.C * width * height}


@lru_cache(maxsize=65536)
def _roofline(features: FeatureSet, workload: Workload) -> Roofline:
    bounds = workload.bounds
    macs = workload.macs
    sizes = touched_sizes(workload)
    halo = workload.data_space_sizes["Inputs"] / sizes["Inputs"]
    levels = features.spatial
    rest = dict(bounds)
    used: list[list[int]] = []
    # A fixed factor too large for its axis leaves no legal mapping (the evaluation will fail);
    # the workload is priced as if it fit, so that it still gets a feature row.
    for level in levels:
        axes = [1, 1]
        for dim, factor, axis in level.fixed:
            f = min(rest[dim], factor) or rest[dim]
            axes[axis] *= f
            rest[dim] //= f
        used.append(axes)
    slots = [(i, dim, allowed) for i, level in enumerate(levels) for dim, allowed in level.free]
    best: list = [float("inf"), float("inf"), None]     # cycles, energy, (pes, spread, pe_outputs, traffic)
    max_pes = [1]

    def price() -> None:
        pes = prod(x * y for x, y in used)
        max_pes[0] = max(max_pes[0], pes)
        compute = macs / pes
        if compute > best[0]:
            return
        pe_outputs = _largest_divisor_within(rest["M"], features.pe_output_words)
        kernel = rest["R"] * rest["S"]
        # Input channels a PE works through before its partial sums leave: as many as its weight
        # buffer holds beside the output channels, and its input buffer beside a kernel row.
        room = min(features.pe_weight_words // (pe_outputs * kernel), features.pe_input_words // rest["R"])
        pe_inputs = _largest_divisor_within(rest["C"], max(1, room))
        passes = {"M": rest["M"] // pe_outputs, "C": rest["C"] // pe_inputs,
                  "pixels": rest["N"] * rest["P"] * rest["Q"],
                  "outer pixels": prod(rest[d] for d in features.outer_pixel_dims)}
        for reduction_inside in (True, False):
            cycles, energy, traffic = _price_option(features, sizes, halo, passes, reduction_inside, compute,
                                                    macs)
            if (cycles, energy) < (best[0], best[1]):
                spread = tuple(bounds[d] // rest[d] for d in DIMENSIONS)
                best[:] = [cycles, energy, (pes, spread, pe_outputs, traffic)]

    def place(k: int) -> None:
        if k == len(slots):
            price()
            return
        i, dim, allowed = slots[k]
        place(k + 1)
        bound = rest[dim]
        for f in range(2, bound + 1):
            if bound % f:
                continue
            for axis in allowed:
                if used[i][axis] * f <= levels[i].fanout[axis]:
                    used[i][axis] *= f
                    rest[dim] //= f
                    place(k + 1)
                    rest[dim] *= f
                    used[i][axis] //= f

    place(0)
    pes, spread, pe_outputs, traffic = best[2]
    return Roofline(max_pes[0], pes, spread, pe_outputs, best[0], best[1], traffic)


def _price_option(features: FeatureSet, sizes: dict[str, int], halo: float, passes: dict[str, int],
                  reduction_inside: bool, compute: float, macs: int) -> tuple[float, float, tuple[float, ...]]:
    """Cycles, energy and per-level traffic of one loop-order option above the PEs.

    With the reduction inside (input channels iterate innermost), partial sums stay in the PEs but
    the weights a PE holds change with every input-channel pass, so they are fetched again for
    every output pixel pass; with pixels inside, weights stay and partial sums go back to the
    innermost shared level that holds outputs once per input-channel pass, but pixel loops the
    spec forces above the weights' supplier still fetch them again. Either way inputs are read
    again for every output-channel pass the PEs cannot cover at once.
    """
    if passes["C"] * passes["M"] == 1:
        refetch_weights = 1     # every weight stays in the PEs
    else:
        refetch_weights = passes["pixels"] if reduction_inside and passes["C"] > 1 else passes["outer pixels"]
    output_passes = 1 if reduction_inside else passes["C"]
    outermost = len(features.shared) - 1
    seen: set[str] = set()
    cycles, energy = compute, macs * features.mac_access_pj
    traffic = []
    for index, level in enumerate(features.shared):
        reads = writes = 0.0
        for space in level.holds:
            words = float(sizes[space])
            first = space not in seen
            seen.add(space)
            fill = 0.0 if index == outermost else words
            if space == "Inputs":
                input_reads = words * (passes["M"] if first else 1)
                reads += input_reads
                writes += fill
                # Transfers move whole input tiles, halo included; bandwidth aside, they cost energy.
                energy += (halo - 1.0) * (input_reads * level.read_pj + fill * level.write_pj)
            elif space == "Weights":
                reads += words * (refetch_weights if first else 1)
                writes += fill
            else:
                updates = output_passes if first else 1
                writes += words * updates
                reads += words * (updates - 1) + fill
        if level.read_bandwidth:
            cycles = max(cycles, reads / level.read_bandwidth)
        if level.write_bandwidth:
            cycles = max(cycles, writes / level.write_bandwidth)
        energy += reads * level.read_pj + writes * level.write_pj
        traffic.append(reads + writes)
    return cycles, energy, tuple(traffic)


@lru_cache(maxsize=4096)
def _largest_divisor_within(n: int, limit: int) -> int:
    return max(f for f in range(1, min(n, limit) + 1) if n % f == 0)


@lru_cache(maxsize=4096)
def _largest_prime_factor(n: int) -> int:
    largest, factor = 1, 2
    while factor * factor <= n:
        while n % factor == 0:
            largest, n = factor, n // factor
        factor += 1
    return max(largest, n)


def spatial_levels(spec: ArchSpec) -> tuple[SpatialLevel, ...]:
    """Each fanning-out level's spatial freedom, read from its constraints as Timeloop reads them:
    with a split, a listed dimension goes to X before the split position and to Y after it; a
    dimension the permutation does not list may go to either axis."""
    result = []
    for index, storage in enumerate(spec.storage):
        fanout = spec.fanout(index)
        if fanout == (1, 1):
            continue
        factors: dict[str, int] = {}
        permutation: tuple[str, ...] = ()
        split: int | None = None
        for constraint in spec.constraints_for(storage.name, "spatial"):
            factors.update(constraint.factor_map)
            permutation = constraint.permutation or permutation
            split = constraint.split if constraint.split is not None else split

        def axes_of(dim: str) -> tuple[int, ...]:
            if dim in permutation and split is not None:
                return (_X,) if permutation.index(dim) < split else (_Y,)
            return tuple(a for a in (_X, _Y) if fanout[a] > 1)

        fixed = tuple((d, factors[d], axes_of(d)[0]) for d in DIMENSIONS if factors.get(d, 1) != 1)
        free = tuple((d, axes_of(d)) for d in DIMENSIONS if d not in factors)
        result.append(SpatialLevel(fanout, fixed, free))
    return tuple(result)


def array_axes(spec: ArchSpec) -> tuple[int, ...]:
    """The sizes of the spec's spatial axes: the compute mesh and every level's fan-out."""
    sizes = {spec.compute.mesh_x, spec.compute.mesh_y}
    for index in range(len(spec.storage)):
        sizes.update(spec.fanout(index))
    return tuple(sorted(s for s in sizes if s > 1))


def _holds(level: StorageLevel) -> tuple[str, ...]:
    return tuple(s for s in DATA_SPACES if s not in level.bypass)


def _pe_local(level: StorageLevel, spec: ArchSpec) -> bool:
    return level.instances == spec.compute.instances


def shared_levels(spec: ArchSpec) -> tuple[SharedLevel, ...]:
    result = []
    for level in spec.storage:
        holds = _holds(level)
        if _pe_local(level, spec) or not holds:
            continue
        result.append(SharedLevel(
            level.name, holds, level.read_energy / level.block_size, level.write_energy / level.block_size,
            None if level.read_bandwidth is None else level.read_bandwidth * level.instances,
            None if level.write_bandwidth is None else level.write_bandwidth * level.instances,
            level.size_words))
    return tuple(result)


def mac_access_energy(spec: ArchSpec) -> float:
    """A MAC and its PE-local accesses: each held operand read once, each partial sum read and
    written once."""
    energy = spec.compute.mac_energy
    for level in spec.storage:
        if _pe_local(level, spec):
            read, write = level.read_energy / level.block_size, level.write_energy / level.block_size
            energy += sum(read + (write if space == "Outputs" else 0.0) for space in _holds(level))
    return energy


def outer_pixel_dims(spec: ArchSpec) -> tuple[str, ...]:
    """Output-pixel dimensions (N, P, Q) whose temporal loops every level below the innermost shared
    level holding weights fixes to 1: they iterate at or above that supplier."""
    supplier = next((i for i, level in enumerate(spec.storage)
                     if not _pe_local(level, spec) and "Weights" in _holds(level)), len(spec.storage) - 1)
    result = []
    for dim in ("N", "P", "Q"):
        if all(any(c.factor_map.get(dim) == 1 for c in spec.constraints_for(level.name, "temporal"))
               for level in spec.storage[:supplier]):
            result.append(dim)
    return tuple(result)


def feature_set(spec: ArchSpec) -> FeatureSet:
    axes = array_axes(spec)
    pe_levels = [level for level in spec.storage if _pe_local(level, spec) and level.size_words]
    limits = tuple(sorted(set(axes) | {level.size_words for level in pe_levels if level.size_words}))
    pe_output_words = sum(level.size_words or 0 for level in pe_levels if "Outputs" in _holds(level)) or 1
    pe_weight_words = sum(level.size_words or 0 for level in pe_levels if "Weights" in _holds(level)) or 1
    pe_input_words = sum(level.size_words or 0 for level in pe_levels if "Inputs" in _holds(level)) or 1
    shared = shared_levels(spec)
    names: list[str] = [
        "C", "M", "R", "S", "N", "P", "Q", "Wstride", "Hstride", "Wdilation", "Hdilation",
        "log2_macs", "log2_ideal_cycles", "max_pes", "log2_compute_cycles",
        "roofline_pes", "log2_roofline_cycles", "log2_roofline_stretch", "log2_roofline_energy_per_mac",
        "roofline_pe_outputs", *(f"roofline_spatial_{d}" for d in DIMENSIONS),
        *(f"log2_traffic_per_mac_{level.name}" for level in shared),
        *(f"log2_{s.lower()}_words" for s in DATA_SPACES),
        *(f"log2_{s.lower()}_words_per_mac" for s in DATA_SPACES), "log2_input_halo"]
    for dim in ("C", "M"):
        names += [f"largest_prime_factor_{dim}", f"temporal_{dim}",
                  *(f"largest_divisor_{dim}_within_{limit}" for limit in limits),
                  *(f"largest_divisor_temporal_{dim}_within_{limit}" for limit in limits)]
    for axis in axes:
        for dim in _FOLDED:
            names += [f"ceil_{dim}_{axis}", f"fill_{dim}_{axis}"]
        for kernel in _KERNEL:
            names += [f"ceil_C_{axis}_per_{kernel}", f"ceil_M_{axis}_per_{kernel}"]
    names += [f"log2_refills_{level.name}" for level in shared if level.words is not None]
    return FeatureSet(spec.name, spec.content_hash, spec.peak_macs_per_cycle, axes, limits, spatial_levels(spec),
                      shared, mac_access_energy(spec), pe_output_words, pe_weight_words, pe_input_words,
                      outer_pixel_dims(spec), tuple(names))

