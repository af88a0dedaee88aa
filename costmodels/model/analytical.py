"""Built-in analytical cost model: what ``timeloop-model`` (Timeloop v3.0.3) computes for a given
mapping of a CNN-layer workload, without running Timeloop.

How Timeloop counts, and how this module reproduces it in closed form:

- The mapping is one loop nest. Each storage level contributes its spatial loops (innermost) and
  then its temporal loops; unit loops do nothing. A level's *tile* is the box of the operation space
  covered by every loop up to the level's outermost loop, projected onto each data space (an Inputs
  tile spans ``(P-1)*Wstride + (R-1)*Wdilation + 1`` columns, holes included).
- Timeloop walks the nest but, per temporal loop, only runs iteration 0 and iteration 1 and scales
  the latter by ``bound - 1``. A child's tile is refetched by the *delta* between its position and
  the position it had at the previous visit (per spatial instance). Between visits the tile moves by
  one step of the loop that advanced, minus one step of every inner loop that wrapped around (one
  step, not ``bound - 1``, because of that extrapolation). A move along one data dimension that
  still overlaps (a sliding window of Inputs) fetches only the new slice, unless the tile's previous
  move had a different translation (a zero one, where the tile stayed, included): then Timeloop
  discards the residue and the whole tile is fetched again.
  ``_fetches`` sums these deltas with a small dynamic program over the loops above the tile.
- A spatial fan-out sends equal deltas once (multicast): the number of distinct deltas is the
  number of distinct data-space offsets among the children (``_groups``).
- A level that bypasses a data space forwards its children's requests: the next keeping level
  above is read as often as the keeping level below it is fed, times the distinct-delta counts of
  the fan-outs in between.
- Read-write Outputs: every delivery is an update; reads and fills skip the first, never-written
  value of each element the instance is responsible for (its partition).
- Energy: per instance, ``ceil(accesses / block size)`` vector accesses per action (reads at the
  read energy, fills and updates at the write energy), times utilized clusters (utilized instances,
  or fewer where ``cluster-size`` instances share one array); plus MACs times MAC energy. Cycles: compute cycles (temporal iterations) stretched by the worst read or write
  bandwidth shortfall of any level.

Not modelled: Timeloop's inter-PE link transfers (a PE taking a delta from the neighbour that held
it at the previous visit instead of from the parent). None of the reference mappings uses them; a
literal emulation of Timeloop's algorithm on random Eyeriss mappings finds them only for Inputs
below a Y fan-out over S when consecutive visits shift the input rows by one (a temporal Q loop with
no P loop inside it), which the Eyeriss map-space constraints rule out unless P = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import NamedTuple

from costmodels.errors import MappingError
from costmodels.problems.workloads import DATA_SPACES, DIMENSIONS, Workload
from costmodels.timeloop.evaluation import DataSpaceStats, Evaluation, LevelStats
from costmodels.timeloop.mapping import Mapping
from costmodels.timeloop.spec import ArchSpec

BACKEND = "analytical"
BACKEND_VERSION = "1 (Timeloop v3.0.3 semantics)"

_C, _M, _R, _S, _N, _P, _Q = range(len(DIMENSIONS))
_INDEX = {d: i for i, d in enumerate(DIMENSIONS)}
_DIMSET = frozenset(DIMENSIONS)
_WEIGHTS, _INPUTS, _OUTPUTS = DATA_SPACES   # Outputs is the read-write one
# Indexed like DATA_SPACES: the dimensions that index Weights and Outputs (each maps to exactly one
# coordinate of the data space); Inputs mix two dimensions per coordinate and are handled apart.
_RELEVANT = ({_C, _M, _R, _S}, None, {_N, _M, _P, _Q})


@dataclass(frozen=True)
class _Arch:
    """What the model needs of an ArchSpec, unpacked once."""

    names: tuple[str, ...]
    sizes: tuple[int | None, ...]
    fanouts: tuple[tuple[int, int], ...]
    blocks: tuple[int, ...]
    read_bw: tuple[float | None, ...]
    write_bw: tuple[float | None, ...]
    read_energy: tuple[float, ...]
    write_energy: tuple[float, ...]
    must_keep: tuple[frozenset[str], ...]
    must_bypass: tuple[frozenset[str], ...]
    clusters: tuple[int, ...]      # instances // cluster size: energy is charged per utilized cluster
    mac_energy: float
    mac_instances: int


_ARCH_CACHE: dict[int, tuple[ArchSpec, _Arch]] = {}
# Workload.key hashes the whole shape; a search evaluates the same few workloads many times.
_KEY_CACHE: dict[Workload, str] = {}


def _key(workload: Workload) -> str:
    key = _KEY_CACHE.get(workload)
    if key is None:
        if len(_KEY_CACHE) > 4096:
            _KEY_CACHE.clear()
        key = _KEY_CACHE[workload] = workload.key
    return key


def _arch(spec: ArchSpec) -> _Arch:
    cached = _ARCH_CACHE.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    s = spec.storage
    arch = _Arch(names=tuple(l.name for l in s), sizes=tuple(l.size_words for l in s),
                 fanouts=tuple(spec.fanout(i) for i in range(len(s))), blocks=tuple(l.block_size for l in s),
                 read_bw=tuple(l.read_bandwidth for l in s), write_bw=tuple(l.write_bandwidth for l in s),
                 read_energy=tuple(l.read_energy for l in s), write_energy=tuple(l.write_energy for l in s),
                 must_keep=tuple(l.keep for l in s), must_bypass=tuple(l.bypass for l in s),
                 clusters=tuple(l.instances // l.cluster_size for l in s), mac_energy=spec.compute.mac_energy, mac_instances=spec.compute.instances)
    if len(_ARCH_CACHE) > 16:
        _ARCH_CACHE.clear()
    _ARCH_CACHE[id(spec)] = (spec, arch)
    return arch


class _Counts(NamedTuple):
    """Per level and data space, flat at index ``3 * level + space``; capacity is None where the level
    bypasses the space. (A NamedTuple: built once per evaluation, it must be cheap.)"""

    compute_cycles: int
    capacity: list[int | None]
    instances: list[int]
    reads: list[int]
    fills: list[int]
    updates: list[int]


def evaluate(workload: Workload, spec: ArchSpec, mapping: Mapping) -> Evaluation:
    """Cycles, energy and per-level access counts of ``mapping``; MappingError if it cannot run."""
    arch = _arch(spec)
    counts = _count(workload, arch, mapping)
    cycles, level_cycles = _cycles(arch, counts)
    levels = []
    storage_energy = 0.0
    capacity, instances = counts.capacity, counts.instances
    for i, name in enumerate(arch.names):
        block, e_read, e_write = arch.blocks[i], arch.read_energy[i], arch.write_energy[i]
        # Timeloop charges each utilized cluster (instances sharing one array) once per access.
        charged = min(instances[i], arch.clusters[i])
        spaces = []
        level_energy = 0.0
        for d in range(3):
            size = capacity[3 * i + d]
            if size is not None:
                at = 3 * i + d
                reads, fills, updates = counts.reads[at], counts.fills[at], counts.updates[at]
                energy = (-(-reads // block) * e_read + -(-fills // block) * e_write
                          + -(-updates // block) * e_write) * charged
                level_energy += energy
                spaces.append(DataSpaceStats(DATA_SPACES[d], size, instances[i], reads, fills, updates, energy))
        storage_energy += level_energy
        levels.append(LevelStats(name, level_cycles[i], tuple(spaces), level_energy))
    macs = workload.macs
    mac_energy = macs * arch.mac_energy
    return Evaluation(workload_key=_key(workload), cycles=cycles, energy_pj=storage_energy + mac_energy, macs=macs,
                      mac_energy_pj=mac_energy, utilization=macs / (cycles * arch.mac_instances),
                      levels=tuple(levels), mapping=mapping, backend=BACKEND, backend_version=BACKEND_VERSION)


def cycles_only(workload: Workload, spec: ArchSpec, mapping: Mapping) -> int:
    """The cycles ``evaluate`` would report, without building the result."""
    arch = _arch(spec)
    return _cycles(arch, _count(workload, arch, mapping))[0]


def _cycles(arch: _Arch, counts: _Counts) -> tuple[int, list[int]]:
    """Compute cycles, stretched per level by its bandwidth shortfall (computed with the same
    floating-point steps as Timeloop so the ceiling lands on the same integer)."""
    cc = counts.compute_cycles
    per_level = []
    for i in range(len(arch.names)):
        read_bw, write_bw = arch.read_bw[i], arch.write_bw[i]
        slowdown = 1.0
        if read_bw is not None or write_bw is not None:
            reads = writes = 0.0
            for at in range(3 * i, 3 * i + 3):
                reads += counts.reads[at] / cc
                writes += (counts.updates[at] + counts.fills[at]) / cc
            if read_bw is not None and read_bw < reads:
                slowdown = min(slowdown, read_bw / reads)
            if write_bw is not None and write_bw < writes:
                slowdown = min(slowdown, write_bw / writes)
        per_level.append(cc if slowdown == 1.0 else ceil(cc / slowdown))
    return max(cc, *per_level), per_level


def _order(order: tuple[str, ...], target: str) -> tuple[int, ...]:
    """Dimension indices of a loop order, validated once per distinct order."""
    indices = _ORDERS.get(order)
    if indices is None:
        if len(order) != len(DIMENSIONS) or set(order) != _DIMSET:
            raise MappingError(f"{target}: loop order {''.join(map(str, order))!r} must list each of "
                               f"{''.join(DIMENSIONS)} once")
        indices = _ORDERS[order] = tuple(_INDEX[d] for d in order)
    return indices


_ORDERS: dict[tuple[str, ...], tuple[int, ...]] = {}
_UNITS = (1,) * len(DIMENSIONS)


def _count(workload: Workload, arch: _Arch, mapping: Mapping) -> _Counts:
    names = arch.names
    n_levels = len(names)
    levels = mapping.levels
    if len(levels) != n_levels:
        raise MappingError(f"mapping has {len(levels)} levels, the architecture {n_levels} "
                           f"({', '.join(names)})")
    coef = (workload.Wstride, workload.Wdilation, workload.Hstride, workload.Hdilation)

    # Build the loop nest, innermost first, keeping only what the counting needs. Within a level the
    # order of the spatial loops changes no count, so they are taken in DIMENSIONS order.
    cum = [1] * len(DIMENSIONS)
    temporal: list[tuple[int, int, int]] = []        # (dim, bound, stride)
    first_above = [0] * n_levels                     # index in `temporal` of the first loop above level i
    runs: list[list[tuple[int, int, int]]] = []      # per level: spatial loops (dim, factor, stride)
    run_extent: list[tuple[int, ...]] = []           # per level: box covered up to its spatial loops
    boundary: list[tuple[int, ...]] = []             # per level: box of its tile
    fanout_used = [1] * n_levels
    for i in range(n_levels):
        level = levels[i]
        if level.target != names[i]:
            raise MappingError(f"mapping level {i} is '{level.target}', the architecture's is '{names[i]}'")
        run = []
        sx, sy = level.spatial_x, level.spatial_y
        if level.spatial_order not in _ORDERS:
            _order(level.spatial_order, level.target)
        if sx != _UNITS or sy != _UNITS:
            used = {"X": 1, "Y": 1}
            for j in range(len(DIMENSIONS)):
                for axis, factors in (("X", sx), ("Y", sy)):    # X before Y within a dimension, as Timeloop nests
                    f = factors[j]
                    if f != 1:
                        if f < 1:
                            raise MappingError(f"{level.target}: spatial {axis} factor of {DIMENSIONS[j]} is {f}, "
                                               f"must be >= 1")
                        run.append((j, f, cum[j]))
                        cum[j] *= f
                        used[axis] *= f
            fx, fy = used["X"], used["Y"]
            avail_x, avail_y = arch.fanouts[i]
            if fx > avail_x or fy > avail_y:
                axis, used, avail = ("X", fx, avail_x) if fx > avail_x else ("Y", fy, avail_y)
                raise MappingError(f"{level.target}: spatial fan-out {used} along {axis} exceeds the {avail} "
                                   f"instances available there")
            fanout_used[i] = fx * fy
        runs.append(run)
        run_extent.append(tuple(cum))
        tf = level.temporal
        for j in _ORDERS.get(level.temporal_order) or _order(level.temporal_order, level.target):
            f = tf[j]
            if f != 1:
                if f < 1:
                    raise MappingError(f"{level.target}: temporal factor of {DIMENSIONS[j]} is {f}, must be >= 1")
                temporal.append((j, f, cum[j]))
                cum[j] *= f
        first_above[i] = len(temporal)
        boundary.append(tuple(cum))
    if cum != [workload.C, workload.M, workload.R, workload.S, workload.N, workload.P, workload.Q]:
        for j, dim in enumerate(DIMENSIONS):
            bound = getattr(workload, dim)
            if cum[j] != bound:
                per_level = ", ".join(f"{lv.target}={lv.factor(dim)}" for lv in levels)
                raise MappingError(f"factors of {dim} multiply to {cum[j]} ({per_level}), the workload's "
                                   f"{dim} is {bound}")

    keeps = []
    for i in range(n_levels):
        keep = levels[i].keep
        if not (arch.must_keep[i] <= keep and keep.isdisjoint(arch.must_bypass[i])):
            missing, extra = arch.must_keep[i] - keep, keep & arch.must_bypass[i]
            what = (f"must keep {', '.join(sorted(missing))}" if missing
                    else f"must bypass {', '.join(sorted(extra))}")
            raise MappingError(f"{names[i]}: the architecture says it {what}")
        keeps.append((_WEIGHTS in keep, _INPUTS in keep, _OUTPUTS in keep))
    if keeps[-1] != (True, True, True):
        raise MappingError(f"{names[-1]}: the outermost level must keep every data space")

    sizes = [_sizes(box, coef) for box in boundary]
    for i in range(n_levels):
        size_words = arch.sizes[i]
        if size_words is not None:
            kept, held = keeps[i], sizes[i]
            need = (held[0] if kept[0] else 0) + (held[1] if kept[1] else 0) + (held[2] if kept[2] else 0)
            if need > size_words:
                parts = ", ".join(f"{DATA_SPACES[d]} {held[d]}" for d in range(3) if kept[d])
                raise MappingError(f"{names[i]}: tiles need {need} words ({parts}), it holds {size_words}")

    # suffix[k]: product of the temporal bounds from loop k outward; suffix[0] is the compute cycles.
    suffix = [1] * (len(temporal) + 1)
    for k in range(len(temporal) - 1, -1, -1):
        suffix[k] = suffix[k + 1] * temporal[k][1]
    compute_cycles = suffix[0]
    instances = [1] * n_levels
    for i in range(n_levels - 2, -1, -1):
        instances[i] = instances[i + 1] * fanout_used[i + 1]

    capacity: list[int | None] = [None] * (3 * n_levels)
    reads = [0] * (3 * n_levels)
    fills = [0] * (3 * n_levels)
    updates = [0] * (3 * n_levels)
    for d in range(3):
        kept = [i for i in range(n_levels) if keeps[i][d]]
        outermost = kept[-1]
        partition = _partitions(boundary, runs, run_extent) if DATA_SPACES[d] == _OUTPUTS else None
        below_fetches = compute_cycles    # deliveries per instance of the keeping level below
        below = -1
        for k in kept:
            content = below_fetches
            for level in range(below + 1, k + 1):
                if runs[level]:
                    content *= _groups(runs[level], d, coef)
            size = sizes[k][d]
            fetched = 0
            if k != outermost:
                fetched = _fetches(size, boundary[k], temporal, first_above[k], d, suffix, coef)
            at = 3 * k + d
            capacity[at] = size
            if partition is None:
                reads[at] = content
                fills[at] = fetched
            else:
                # The first update of an element has nothing to read; the outermost keeper is never filled.
                updates[at] = content
                reads[at] = content - partition[k]
                fills[at] = fetched - partition[k] if k != outermost else 0
            below_fetches, below = fetched, k
    return _Counts(compute_cycles, capacity, instances, reads, fills, updates)


def _sizes(box: tuple[int, ...], coef: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """Words of each data space covered by an operation-space box (extents per dimension)."""
    ws, wd, hs, hd = coef
    width = (box[_P] - 1) * ws + (box[_R] - 1) * wd + 1
    height = (box[_Q] - 1) * hs + (box[_S] - 1) * hd + 1
    return (box[_C] * box[_M] * box[_R] * box[_S], box[_N] * box[_C] * width * height,
            box[_N] * box[_M] * box[_P] * box[_Q])


def _groups(run: list[tuple[int, int, int]], space: int, coef: tuple[int, int, int, int]) -> int:
    """Distinct deltas among the children of a spatial fan-out: children whose tiles sit at the same
    data-space offset receive one multicast."""
    relevant = _RELEVANT[space]
    if relevant is not None:
        count = 1
        for j, f, _ in run:
            if j in relevant:
                count *= f
        return count
    ws, wd, hs, hd = coef
    count = 1
    width: list[tuple[int, int]] = []
    height: list[tuple[int, int]] = []
    for j, f, stride in run:
        if j == _N or j == _C:
            count *= f
        elif j == _P or j == _R:
            width.append((f, stride * (ws if j == _P else wd)))
        elif j == _Q or j == _S:
            height.append((f, stride * (hs if j == _Q else hd)))
    for parts in (width, height):
        if len(parts) == 1:
            count *= parts[0][0]
        elif parts:
            # Loops over P and R (or Q and S) together can put several children on one input window.
            offsets = {0}
            for f, step in parts:
                offsets = {o + i * step for o in offsets for i in range(f)}
            count *= len(offsets)
    return count


def _partitions(boundary: list[tuple[int, ...]], runs: list[list[tuple[int, int, int]]],
                run_extent: list[tuple[int, ...]]) -> list[int]:
    """Per level, the share of Outputs one instance is responsible for: the whole space at the
    top, divided at each fan-out by how many children hold distinct parts (integer steps, as
    Timeloop takes them)."""
    n_levels = len(boundary)
    box = boundary[-1]
    part = box[_N] * box[_M] * box[_P] * box[_Q]
    result = [part] * n_levels
    for level in range(n_levels - 2, -1, -1):
        box = boundary[level]
        own = box[_N] * box[_M] * box[_P] * box[_Q]
        if runs[level + 1]:
            box = run_extent[level + 1]
            part = part * own // (box[_N] * box[_M] * box[_P] * box[_Q])
        result[level] = part
    return result


def _fetches(size: int, box: tuple[int, ...], temporal: list[tuple[int, int, int]], start: int, space: int,
             suffix: list[int], coef: tuple[int, int, int, int]) -> int:
    """Words one instance of a level receives over the run: the sum of its tile's deltas over the
    visits made by the temporal loops above it (``temporal[start:]``), with Timeloop's iteration
    0 / iteration 1 extrapolation."""
    relevant = _RELEVANT[space]
    if relevant is not None:
        # Weights and Outputs tiles never partially overlap across a move, so the tile is refetched
        # on every visit once the innermost loop that moves it has started to iterate.
        for k in range(start, len(temporal)):
            if temporal[k][0] in relevant:
                return size * suffix[k]
        return size
    return _input_fetches(size, box, temporal, start, coef)


def _input_fetches(size: int, box: tuple[int, ...], temporal: list[tuple[int, int, int]], start: int,
                   coef: tuple[int, int, int, int]) -> int:
    """``_fetches`` for Inputs, whose windows can slide.

    Timeloop keeps, per tile, the translation of its previous move (none at first). A move with no
    translation on record, or with the same translation again, fetches the tile minus its overlap with
    the previous position (a slide along one of width or height keeps the overlap; any other move
    keeps nothing). A move with a different translation (a zero one included) discards the residue:
    the whole tile is fetched and the record is cleared."""
    ws, wd, hs, hd = coef
    width = (box[_P] - 1) * ws + (box[_R] - 1) * wd + 1
    height = (box[_Q] - 1) * hs + (box[_S] - 1) * hd + 1
    # Coordinates of an Inputs tile: 0 N, 1 C, 2 width, 3 height; M moves none.
    coordinate = (1, -1, 2, 3, 0, 2, 3)
    scale = (1, 0, wd, hd, 1, ws, hs)
    extent = (0, 0, width, height)       # only width and height can partially overlap
    wrap = [0, 0, 0, 0]
    moves: list[tuple[int, tuple[int, ...], int]] = []    # (bound, translation, words fetched after it)
    for k in range(start, len(temporal)):
        j, n, stride = temporal[k]
        move = [-w for w in wrap]
        x = coordinate[j]
        if x >= 0:
            step = stride * scale[j]
            move[x] += step
            wrap[x] += step
        moved = [y for y in range(4) if move[y]]
        if not moved:
            words = 0
        elif len(moved) == 1 and abs(move[moved[0]]) < extent[moved[0]]:
            words = abs(move[moved[0]]) * (size // extent[moved[0]])
        else:
            words = size
        moves.append((n, tuple(move), words))
    # Dynamic program over the loops, innermost first (Timeloop runs iteration 0 and iteration 1 of
    # each loop and scales the second by bound - 1): for a block of loops entered with translation
    # record r, totals[r] is the weighted sum of the fetches after the entry visit and leave[r] the
    # record at its end. Records: None (index 0) or one of the moves' translations.
    records: list[tuple[int, ...] | None] = [None]
    for _, t, _ in moves:
        if t not in records:
            records.append(t)
    index = {r: i for i, r in enumerate(records)}
    count = len(records)
    totals = [0] * count
    leave = list(range(count))
    for n, t, words in moves:
        new_totals = totals[:]
        new_leave = leave[:]
        for r in range(count):
            after = leave[r]
            if after == 0:
                delta, record = words, index[t]
            elif records[after] == t:
                delta, record = words, after
            else:
                delta, record = size, 0
            new_totals[r] = totals[r] + (n - 1) * (delta + totals[record])
            new_leave[r] = leave[record]
        totals, leave = new_totals, new_leave
    return size + totals[0]
