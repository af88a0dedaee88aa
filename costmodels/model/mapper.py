"""A deterministic mapper for the built-in cost model: the best mapping of a workload on a target.

The search covers the map space `timeloop-mapper` draws from: per dimension, exact factorizations of the
bound over every level's temporal loop and spatial fan-out, within the spec's architecture and mapspace
constraints, the fan-out of each level, the capacity of each buffer and its keep/bypass rules. Instead of
sampling it, the search enumerates it in an order that lets most of it go unscored:

1. Spatial assignments first. They fix the compute cycles (MACs / utilized PEs), a lower bound on the
   cycles of every mapping that extends them, so under a delay-first objective whole groups are cut once
   a mapping no slower than their bound is known.
2. Temporal factorizations of what remains, one dimension at a time as whole numpy arrays, dropping a
   dimension's split that overflows a buffer on its own before the product, and a partial assignment
   as soon as a buffer overflows with the dimensions not yet placed at their minimum.
3. Every survivor gets a fast access-count estimate (the reuse analysis of a Timeloop-style model,
   vectorized over thousands of candidates), every keep/bypass choice at once: a data space's counts
   depend only on the levels that keep it, so each data space is counted once per set of keeping
   levels and the keep choices add up those parts. The estimate only ranks. The keep choices whose best
   candidate comes within ``_MARGIN`` of the leader's go on, each with its best (``_SHORTLIST``)
   candidates; the others are dropped.
4. Loop orders fixed by constraints are used as given. Where a level's order is free, it is chosen per
   level by coordinate descent on the shortlist's estimate without the input walk, over one order per
   distinct reuse pattern (orders that differ only in unit loops, or in loops that reuse the same
   tiles, are one), all orders tried at a level scored in one pass.
5. Under the orders found, the shortlists get the full estimate, and the few best of all are priced by
   the real model (`model.evaluate`), which alone decides the answer.

The shortlist's size, the margin and the descent without the walk are heuristic cuts (see
docs/assumptions.md): on the reference workloads and the zoo's candidate LUTs they lose nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field, replace
from functools import cached_property, lru_cache
from math import ceil, prod

import numpy as np

from costmodels.errors import MappingError
from costmodels.model.analytical import evaluate
from costmodels.problems.workloads import DATA_SPACES, DIMENSIONS, Workload
from costmodels.timeloop.evaluation import Evaluation
from costmodels.timeloop.mapping import LevelMapping, Mapping
from costmodels.timeloop.spec import ArchSpec, LoopConstraint

OBJECTIVES = ("delay", "energy", "edp")
# Largest bound of any workload dimension the mapper takes on. CNN layers stay far below it (channels in
# the thousands, feature maps in the hundreds); above it the factorizations alone would take minutes
# and memory, so such a workload is refused before any search.
MAX_DIMENSION = 65536

_ND = len(DIMENSIONS)
_DIM = {d: i for i, d in enumerate(DIMENSIONS)}
_C, _M, _R, _S, _N, _P, _Q = (_DIM[d] for d in "CMRSNPQ")
_RELEVANT = {
    "Weights": frozenset((_C, _M, _R, _S)),
    "Inputs": frozenset((_N, _C, _R, _S, _P, _Q)),
    "Outputs": frozenset((_N, _M, _P, _Q)),
}
_PADDABLE = (_C, _M, _P, _Q)   # zero channels or discarded output pixels; R/S/N would change the layer

# How many of the best-estimated candidates the real model prices. The estimate reproduces the model's
# counts, so the first is normally the answer; the others guard against any disagreement.
_PRICED = 4
# Partial temporal factorizations are checked against the buffers once they exceed this many candidates.
_CHECK_ROWS = 4096
# The best candidates of each keep choice by the quick estimate that get the full estimate (and on which
# free loop orders are chosen). A heuristic cut: on every reference workload, 512 finds mappings of
# the same cycles and energy.
_SHORTLIST = 64
# Keep choices whose best candidate by the quick estimate is within this factor of the best one's (in
# every metric) go on to their shortlist, loop-order descent and pricing; the others are dropped. A
# heuristic cut: 1.0 (the leader only) finds up to 2.5 % more energy for two low-rank candidates of
# ResNet-18's layer4.0.downsample on simple_weight_stationary; 1.05 finds the same mappings as 1.1 and
# as taking every keep choice on (see docs/assumptions.md).
_MARGIN = 1.05


@dataclass(frozen=True)
class MapperResult:
    """The best mapping found and its evaluation by the real model.

    ``workload`` is what the mapping covers: the input workload, or with padding allowed, a padded copy.
    ``considered`` counts legal candidate mappings scored by the estimate, ``evaluated`` those priced by
    the model.
    """

    mapping: Mapping
    evaluation: Evaluation
    workload: Workload
    objective: tuple[str, ...]
    considered: int
    evaluated: int


def find_mapping(workload: Workload, spec: ArchSpec, objective: tuple[str, ...] | None = None,
                 allow_padding: bool = False) -> MapperResult:
    """Best mapping of ``workload`` on ``spec`` under ``objective`` (default: the spec's metrics).

    Metrics are compared in order (lexicographic): "delay" (cycles), "energy", "edp" (cycles x energy).
    With ``allow_padding`` the mapper may also pad C, M, P or Q up to a size with more useful factors
    when that wins; the result's ``workload`` then shows the padded bounds.
    Raises ``MappingError`` with the reason when no legal mapping exists.
    """
    for name, bound in {**workload.bounds, **workload.coefficients}.items():
        if bound > MAX_DIMENSION:
            raise MappingError(f"workload {workload.name}: field '{name}' is {bound}; allowed: 1..{MAX_DIMENSION} "
                               f"(the mapper's limit per dimension)")
    metrics = tuple(objective) if objective is not None else tuple(spec.metrics)
    unknown = [m for m in metrics if m not in OBJECTIVES]
    if not metrics or unknown:
        raise ValueError(f"objective {metrics!r}: each metric must be one of {', '.join(OBJECTIVES)}")
    if not allow_padding:
        return _Search(workload, spec, metrics).run()
    return _padded_search(workload, spec, metrics)


# --- the map space ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Level:
    """What the spec allows at one storage level, for one workload."""

    name: str
    fanout: tuple[int, int]
    size: int | None
    block: int
    read_energy: float
    write_energy: float
    read_bandwidth: float | None
    write_bandwidth: float | None
    temporal_fixed: tuple[int, ...]       # per dimension; 0 = free
    spatial_fixed: tuple[int, ...]        # per dimension; 0 = free
    temporal_prefix: tuple[int, ...]      # dimensions whose order is fixed, innermost first
    spatial_prefix: tuple[int, ...]
    split: int | None
    keep_options: tuple[frozenset[str], ...]
    clusters: int                         # instances // cluster size: energy is charged per cluster

    @property
    def spatial(self) -> bool:
        return self.fanout[0] * self.fanout[1] > 1


def _merged(constraints: tuple[LoopConstraint, ...], level: str, kind: str
            ) -> tuple[dict[str, int], tuple[str, ...], int | None]:
    """Factors, permutation and split that all of a level's constraints of one kind set together."""
    factors: dict[str, int] = {}
    permutation: tuple[str, ...] = ()
    split: int | None = None
    for c in constraints:
        for dim, value in c.factors:
            if dim in factors and factors[dim] != value:
                raise MappingError(f"constraints conflict at {level} ({kind}): {dim}={factors[dim]} and "
                                   f"{dim}={value}")
            factors[dim] = value
        if c.permutation:
            if permutation and permutation != c.permutation:
                raise MappingError(f"constraints conflict at {level} ({kind}): two loop permutations")
            permutation = c.permutation
        if c.split is not None:
            split = c.split
    return factors, permutation, split


def _levels(workload: Workload, spec: ArchSpec) -> tuple[_Level, ...]:
    bounds = workload.bounds
    outermost = len(spec.storage) - 1
    levels = []
    for i, storage in enumerate(spec.storage):
        fanout = spec.fanout(i)
        fixed: dict[str, tuple[int, ...]] = {}
        prefixes: dict[str, tuple[int, ...]] = {}
        split = None
        for kind in ("temporal", "spatial"):
            factors, permutation, kind_split = _merged(spec.constraints_for(storage.name, kind), storage.name,
                                                       kind)
            # As in Timeloop: 0 means the whole dimension, and a factor above the bound is clamped to it.
            fixed[kind] = tuple(min(bounds[d], factors[d]) or bounds[d] if d in factors else 0
                                for d in DIMENSIONS)
            prefixes[kind] = tuple(_DIM[d] for d in permutation)
            if kind == "spatial":
                split = kind_split
        if fanout == (1, 1):
            if any(f > 1 for f in fixed["spatial"]):
                raise MappingError(f"{storage.name} has no spatial fan-out, yet its constraints fix a spatial "
                                   f"factor above 1")
            fixed["spatial"] = (1,) * _ND
        if i == outermost:
            keep_options: tuple[frozenset[str], ...] = (frozenset(DATA_SPACES),)
        else:
            free = [ds for ds in DATA_SPACES if ds not in storage.keep and ds not in storage.bypass]
            keep_options = tuple(frozenset(storage.keep) | frozenset(chosen)
                                 for r in range(len(free) + 1) for chosen in itertools.combinations(free, r))
        levels.append(_Level(storage.name, fanout, storage.size_words, storage.block_size, storage.read_energy,
                             storage.write_energy, storage.read_bandwidth, storage.write_bandwidth,
                             fixed["temporal"], fixed["spatial"], prefixes["temporal"], prefixes["spatial"],
                             split, keep_options, storage.instances // storage.cluster_size))
    return tuple(levels)


def _footprint(space: str, extent: Sequence[_Factor] | np.ndarray, workload: Workload) -> _Factor:
    """Words of ``space`` in a tile whose extent along dimension ``d`` is ``extent[d]`` (numbers, or
    arrays of one value per candidate)."""
    if space == "Weights":
        return _product(extent[_C], extent[_M], extent[_R], extent[_S])
    if space == "Outputs":
        return _product(extent[_N], extent[_M], extent[_P], extent[_Q])
    width = (extent[_P] - 1) * workload.Wstride + (extent[_R] - 1) * workload.Wdilation + 1
    height = (extent[_Q] - 1) * workload.Hstride + (extent[_S] - 1) * workload.Hdilation + 1
    return _product(extent[_N], extent[_C], width, height)


@lru_cache(maxsize=None)
def _divisors(n: int) -> tuple[int, ...]:
    return tuple(k for k in range(1, n + 1) if n % k == 0)


@lru_cache(maxsize=None)
def _ordered_splits(n: int, k: int) -> np.ndarray:
    """Every way to write ``n`` as an ordered product of ``k`` factors, shape (count, k). As floats,
    which the estimate computes in (whole numbers are exact up to 2**53, far above any buffer)."""
    if k == 0:
        return np.ones((1 if n == 1 else 0, 0))
    rows: list[tuple[int, ...]] = []

    def walk(rest: int, prefix: tuple[int, ...]) -> None:
        if len(prefix) == k - 1:
            rows.append(prefix + (rest,))
            return
        for f in _divisors(rest):
            walk(rest // f, prefix + (f,))

    walk(n, ())
    out = np.array(rows, dtype=np.float64).reshape(len(rows), k)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class _Spatial:
    """One spatial assignment: per level, the X and Y factor of each dimension."""

    x: tuple[tuple[int, ...], ...]
    y: tuple[tuple[int, ...], ...]

    @cached_property
    def pes(self) -> int:
        return prod(prod(xs) * prod(ys) for xs, ys in zip(self.x, self.y))


def _sides(level: _Level, d: int) -> tuple[int, ...]:
    """Mesh axes (0: X, 1: Y) a non-unit spatial loop over ``d`` may use at ``level``."""
    if level.split is not None and d in level.spatial_prefix:
        return (0,) if level.spatial_prefix.index(d) < level.split else (1,)
    return (0, 1)


def _axes_allowed(level: _Level, x: tuple[int, ...], y: tuple[int, ...]) -> bool:
    """Whether the X/Y placement of the non-unit spatial loops is one a Timeloop permutation and split
    can express: with a split, listed dimensions sit on the side of the split their position gives and
    the unlisted ones share the positions left on each side; without one, X takes a prefix of the
    listed non-unit loops (then any unlisted ones)."""
    listed = level.spatial_prefix
    unlisted = [d for d in range(_ND) if d not in listed]
    if level.split is not None:
        x_room = max(0, level.split - len(listed))
        y_room = _ND - max(level.split, len(listed))
        return sum(x[d] > 1 for d in unlisted) <= x_room and sum(y[d] > 1 for d in unlisted) <= y_room
    in_x = [x[d] > 1 for d in listed if x[d] > 1 or y[d] > 1]
    if in_x != sorted(in_x, reverse=True):
        return False
    return all(in_x) or not any(x[d] > 1 for d in unlisted)


def _level_options(level: _Level, rest: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every (X factors, Y factors) one level's fan-out can take, given what is left of each bound."""
    fanout = level.fanout
    options = [((1,) * _ND, (1,) * _ND, 1, 1)]
    for d in range(_ND):
        fixed = level.spatial_fixed[d]
        factors = [f for f in ((fixed,) if fixed else _divisors(rest[d])) if f > 1]
        if not factors:
            continue
        grown = [option for option in options] if not fixed else []
        for f in factors:
            for axis in _sides(level, d):
                for x, y, px, py in options:
                    if axis == 0 and px * f <= fanout[0]:
                        grown.append((x[:d] + (f,) + x[d + 1:], y, px * f, py))
                    elif axis == 1 and py * f <= fanout[1]:
                        grown.append((x, y[:d] + (f,) + y[d + 1:], px, py * f))
        options = grown
    return [(x, y) for x, y, _, _ in options if _axes_allowed(level, x, y)]


def _spatial_assignments(levels: tuple[_Level, ...], residual: tuple[int, ...]) -> list[_Spatial]:
    """Every legal spatial assignment, given the per-dimension bound left after fixed factors."""
    ones = (1,) * _ND
    partial: list[tuple[tuple[int, ...], tuple, tuple]] = [(residual, (), ())]
    for level in levels:
        if not level.spatial:
            partial = [(rest, xs + (ones,), ys + (ones,)) for rest, xs, ys in partial]
            continue
        grown = []
        cache: dict[tuple[int, ...], list] = {}
        for rest, xs, ys in partial:
            if rest not in cache:
                cache[rest] = _level_options(level, rest)
            for x, y in cache[rest]:
                # Fixed spatial factors were already divided out of the residual; free ones come out of it.
                left = tuple(r if level.spatial_fixed[d] else r // (x[d] * y[d]) for d, r in enumerate(rest))
                grown.append((left, xs + (x,), ys + (y,)))
        partial = grown
    return [_Spatial(xs, ys) for _, xs, ys in partial]


# --- the estimate ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Nest:
    """What a batch of candidates shares besides its factors: keep/bypass choices and loop orders."""

    keep: tuple[frozenset[str], ...]
    # Per level, all dimensions innermost first: one order for every candidate, or (to score several
    # orders in one pass) an array with one order per candidate, shape (candidates, dimensions).
    orders: tuple[tuple[int, ...] | np.ndarray, ...]


# A factor per (level, dimension): a number when every candidate of a batch shares it, else one value
# per candidate. Most slots are fixed by constraints, so most of the arithmetic stays scalar.
_Factor = float | np.ndarray
_Table = list[list[_Factor]]
# One temporal loop of a level: its dimension, bound and the level's tile extent along it (numbers, or
# with an order per candidate, one value per candidate).
_Loop = tuple[int | np.ndarray, _Factor, _Factor]


@dataclass(frozen=True)
class _Shape:
    """What every data space's counts build on: per level, the tile extents, the extents below its
    fan-out, the temporal iterations above it and its instances in use; and the compute cycles."""

    tiles: _Table
    below: _Table
    compute: _Factor
    above: list[_Factor]
    instances: list[_Factor]


@dataclass(frozen=True)
class _LevelPart:
    """One data space's share of one level: energy (pJ), reads and writes per compute cycle (only
    where the level's bandwidth is limited)."""

    energy: _Factor
    read_rate: _Factor | None
    write_rate: _Factor | None


def _product(*factors: _Factor) -> _Factor:
    """The product of ``factors``, left to right, skipping those that are the number 1 (candidates
    share most factors, and most shared ones are 1)."""
    result: _Factor = 1.0
    for factor in factors:
        if isinstance(factor, float) and factor == 1.0:
            continue
        result = factor if isinstance(result, float) and result == 1.0 else result * factor
    return result


def _sum(a: _Factor, b: _Factor) -> _Factor:
    """``a + b``, skipping a term that is the number 0 (exactly what the sum would give)."""
    if isinstance(a, float) and a == 0.0:
        return b
    return a if isinstance(b, float) and b == 0.0 else a + b


def _keepers(keep: tuple[frozenset[str], ...], space: str) -> tuple[int, ...]:
    return tuple(i for i, kept in enumerate(keep) if space in kept)


# Per data space, which dimensions index it, as a lookup table for dimensions given per candidate.
_RELEVANT_MASK = {space: np.array([d in dims for d in range(_ND)]) for space, dims in _RELEVANT.items()}


def _loop_dims(order: tuple[int, ...] | np.ndarray) -> Sequence[int] | np.ndarray:
    """A level's loops, innermost first: each a dimension, or with an order per candidate, an array
    of each candidate's dimension at that position."""
    return order if isinstance(order, tuple) else order.T


def _pick(factors: Sequence[_Factor], d: int | np.ndarray) -> _Factor:
    """``factors[d]``; with a dimension per candidate, each candidate's own factor."""
    if not isinstance(d, np.ndarray):
        return factors[d]
    return np.choose(d, [np.asarray(f, dtype=np.float64) for f in factors])


def _relevant(space: str, d: int | np.ndarray) -> bool | np.ndarray:
    return d in _RELEVANT[space] if not isinstance(d, np.ndarray) else _RELEVANT_MASK[space][d]


class _Estimator:
    """Access counts of a Timeloop-style model, vectorized over candidates, per instance of each level.

    A level's tile of a data space is refetched each time a temporal loop above it that indexes the
    data space advances, or an outer loop does; irrelevant loops inside the innermost relevant one reuse
    it. Inputs slide: advancing a P/Q/R/S loop fetches only the new columns or rows. A fan-out sends
    one copy to children that need the same data (multicast); outputs are read back for accumulation
    except on their first visit. Counts, energy and the bandwidth stretch of cycles follow the model's
    own arithmetic; where two loops above a tile move inputs along one axis, inputs follow the model's
    delta walk itself (``_input_walk``), which the Eyeriss constraints never need.
    """

    def __init__(self, workload: Workload, levels: tuple[_Level, ...], mac_energy: float):
        self.workload = workload
        self.levels = levels
        self.mac_energy = mac_energy
        self.steps = {_P: workload.Wstride, _R: workload.Wdilation, _Q: workload.Hstride, _S: workload.Hdilation}
        self.partner = {_P: _R, _R: _P, _Q: _S, _S: _Q}
        # The same as lookup tables over all dimensions (step 0: the dimension does not slide inputs).
        self.step_of = np.array([self.steps.get(d, 0) for d in range(_ND)], dtype=np.float64)
        self.partner_of = np.array([self.partner.get(d, d) for d in range(_ND)])
        # For the input walk, per dimension: the coordinate of the tile its loop moves (0: N, 1: C,
        # 2: width, 3: height; M moves none: -1) and the tile's step per step of the loop.
        self.walk_axis = np.array([{_N: 0, _C: 1, _P: 2, _R: 2, _Q: 3, _S: 3}.get(d, -1) for d in range(_ND)])
        self.walk_scale = np.array([{_N: 1, _C: 1, **self.steps}.get(d, 0) for d in range(_ND)], dtype=np.float64)

    def __call__(self, nest: _Nest, t: _Table, s: _Table, n: int, walk: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(cycles, energy in pJ) estimates of ``n`` candidates with temporal factors ``t`` and spatial
        factors (X times Y) ``s``. Without ``walk``, inputs that two loops move along one axis get the
        closed-form count too (quicker, not exact)."""
        shape = self.shape(t, s)
        loops = self.loops(nest.orders, t, shape.tiles)
        parts = [self.space_part(shape, space, _keepers(nest.keep, space), loops, t, s, n, walk)
                 for space in DATA_SPACES]
        return self.combine(shape, parts, n)

    def loops(self, orders: tuple[tuple[int, ...] | np.ndarray, ...], t: _Table, tiles: _Table) -> list[list[_Loop]]:
        """Per level, its temporal loops innermost first, leaving out those that are 1 for every
        candidate."""
        table = []
        for j, order in enumerate(orders):
            level = []
            for d in _loop_dims(order):
                bound = _pick(t[j], d)
                if not (isinstance(bound, float) and bound == 1.0):
                    level.append((d, bound, _pick(tiles[j], d)))
            table.append(level)
        return table

    def shape(self, t: _Table, s: _Table) -> _Shape:
        n_levels = len(self.levels)
        tiles: _Table = []
        below: _Table = []
        for i in range(n_levels):
            inner = tiles[i - 1] if i else [1.0] * _ND
            below.append(inner)
            tiles.append([_product(inner[d], s[i][d], t[i][d]) for d in range(_ND)])
        per_level = [_product(*t[i]) for i in range(n_levels)]
        compute = _product(*per_level)
        above: list[_Factor] = [1.0] * n_levels
        instances: list[_Factor] = [1.0] * n_levels
        for i in range(n_levels - 2, -1, -1):
            above[i] = _product(above[i + 1], per_level[i + 1])
            instances[i] = _product(instances[i + 1], _product(*s[i + 1]))
        return _Shape(tiles, below, compute, above, instances)

    def space_part(self, shape: _Shape, space: str, keepers: tuple[int, ...], loops: list[list[_Loop]],
                   t: _Table, s: _Table, n: int, walk: bool, memo: dict | None = None
                   ) -> dict[int, _LevelPart]:
        """One data space's share of each keeping level: its energy and its read and write rates. A
        data space's counts depend only on the levels that keep it, so keep choices that differ
        elsewhere share this part. Within one set of candidates and loop orders, ``memo`` keeps what
        other sets of keeping levels share: how often a level's tile is refetched depends only on the
        loops above it, and a level's share only on the next inner level that keeps the data space
        and whether an outer one does."""
        zero = np.zeros(n)
        tiles, below, compute = shape.tiles, shape.below, shape.compute
        part: dict[int, _LevelPart] = {}
        delivered: _Factor = compute
        previous = -1
        for k in keepers:
            shared = ("share", space, previous, k, k == keepers[-1])
            if memo is not None and shared in memo:
                part[k], delivered = memo[shared]
                previous = k
                continue
            content = _product(delivered, _product(*(self._groups(space, s[i], below[i])
                                                     for i in range(previous + 1, k + 1))))
            words = _footprint(space, tiles[k], self.workload)
            fetched: _Factor = 0.0
            visits: _Factor = 1.0
            if k != keepers[-1]:
                refetched = ("refetches", space, k)
                counted = memo.get(refetched) if memo is not None else None
                if counted is None:
                    counted = self._refetches(space, k, loops, tiles, shape.above)
                    if memo is not None:
                        memo[refetched] = counted
                changes, visits, sliding = counted
                if space != "Inputs":
                    fetched = words * changes
                elif walk and self._slides_twice(k, t):
                    fetched = self._input_walk(k, loops, tiles, words, n)
                else:
                    fetched = words * sliding
            if space == "Outputs":
                partition = words * visits
                fills = fetched - partition if k != keepers[-1] else 0.0
                counts = (content - partition, fills, content)
            else:
                counts = (content, fetched, 0.0)
            level = self.levels[k]
            # Counts that are 0 for every candidate add nothing (exactly) and are left out; a block of 1
            # word needs no rounding up of whole counts. Only inputs' sliding windows give fractions:
            # the other data spaces' counts are products and exact quotients of whole numbers.
            reads, fills, updates = (None if isinstance(c, float) and c == 0.0
                                     else np.rint(zero + c) if space == "Inputs" else c for c in counts)
            blocks = [(np.ceil(c / level.block) if level.block != 1 else c, energy)
                      for c, energy in ((reads, level.read_energy), (fills, level.write_energy),
                                        (updates, level.write_energy)) if c is not None]
            accesses: _Factor = 0.0
            for n_blocks, energy in blocks:
                accesses = _sum(accesses, n_blocks * energy)
            charged = np.minimum(shape.instances[k], level.clusters)
            if level.read_bandwidth is None and level.write_bandwidth is None:
                read_rate = write_rate = None
            else:
                written = [c for c in (updates, fills) if c is not None]
                read_rate = (0.0 if reads is None else reads) / compute
                write_rate = (sum(written[1:], written[0]) if written else 0.0) / compute
            part[k] = _LevelPart(charged * accesses, read_rate, write_rate)
            if memo is not None:
                memo[shared] = (part[k], fetched)
            delivered, previous = fetched, k
        return part

    def combine(self, shape: _Shape, parts: Sequence[dict[int, _LevelPart]], n: int, memo: dict | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """(cycles, energy) from each data space's part, summed in the model's order: levels outermost,
        then data spaces. ``memo`` keeps the sums over the first levels for other parts that share
        those levels' shares (the same objects)."""
        zero = np.zeros(n)
        compute = shape.compute
        energy = zero + self.workload.macs * self.mac_energy
        cycles = compute + zero
        summed: tuple = ()
        for i, level in enumerate(self.levels):
            shares = [part[i] for part in parts if i in part]
            if memo is not None:
                summed += (tuple(map(id, shares)),)
                if summed in memo:
                    cycles, energy = memo[summed]
                    continue
            for share in shares:
                energy = energy + share.energy
            if level.read_bandwidth is not None or level.write_bandwidth is not None:
                cycles = self._stretched(cycles, compute, shares, level)
            if memo is not None:
                memo[summed] = (cycles, energy)
        return cycles, energy

    @staticmethod
    def _stretched(cycles: np.ndarray, compute: _Factor, shares: list[_LevelPart], level: _Level) -> np.ndarray:
        """``cycles``, stretched where the level's reads or writes exceed its bandwidth."""
        # The model's (and Timeloop's) floating-point steps, so that the ceiling agrees.
        read_rate: _Factor = 0.0
        write_rate: _Factor = 0.0
        for share in shares:
            read_rate = _sum(read_rate, share.read_rate)
            write_rate = _sum(write_rate, share.write_rate)
        slowdown: np.ndarray | None = None
        for rate, bandwidth in ((read_rate, level.read_bandwidth), (write_rate, level.write_bandwidth)):
            if bandwidth is not None and np.any(bandwidth < rate):
                # bandwidth / rate where the rate exceeds it, else exactly 1
                ratio = bandwidth / np.maximum(rate, bandwidth)
                slowdown = ratio if slowdown is None else np.minimum(slowdown, ratio)
        if slowdown is not None:
            # Where nothing is short, compute / 1 is compute, a whole number: its ceiling changes nothing.
            cycles = np.maximum(cycles, np.ceil(compute / slowdown))
        return cycles

    def _groups(self, space: str, spatial: list[_Factor], below: list[_Factor]) -> _Factor:
        """Distinct copies one fan-out sends per delivery: children whose tiles sit at the same
        offset in the data space share one."""
        relevant = _RELEVANT[space]
        if space != "Inputs":
            return prod(spatial[d] for d in relevant)
        count = spatial[_N] * spatial[_C]
        for a, b in ((_P, _R), (_Q, _S)):
            fa, fb = spatial[a], spatial[b]
            if (isinstance(fa, float) and fa == 1.0) or (isinstance(fb, float) and fb == 1.0) \
                    or not np.any((fa > 1) & (fb > 1)):
                count = count * fa * fb
                continue
            # Both a window dimension and its filter dimension spread here: children can share windows.
            # Count the distinct offsets once per distinct (factors, steps), packed into one integer key.
            parts = [np.broadcast_to(np.asarray(v, dtype=np.int64), np.shape(fa) or np.shape(fb) or (1,))
                     for v in (fa, fb, below[a] * self.steps[a], below[b] * self.steps[b])]
            key = np.zeros_like(parts[0])
            for part in parts:
                key = key * (int(part.max()) + 1) + part
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            distinct = np.array([len({i * int(parts[2][r]) + j * int(parts[3][r])
                                      for i in range(int(parts[0][r])) for j in range(int(parts[1][r]))})
                                 for r in first], dtype=np.float64)
            count = count * distinct[inverse.reshape(-1)]
        return count

    def walks(self, nest: _Nest, t: _Table) -> bool:
        """Whether the estimate needs ``_input_walk`` (else ``walk=False`` changes nothing)."""
        keepers = [i for i in range(len(self.levels)) if "Inputs" in nest.keep[i]]
        return any(self._slides_twice(k, t) for k in keepers[:-1])

    def _slides_twice(self, level: int, t: _Table) -> bool:
        """Whether two loops above ``level`` can move an input tile along the same axis (P and R, or
        Q and S, or one of them split over levels). Only then can a move past the innermost relevant
        loop still overlap the tile, which the simple count above misses."""
        for axis in ((_P, _R), (_Q, _S)):
            movers = [(j, d) for j in range(level + 1, len(self.levels)) for d in axis
                      if not (isinstance(t[j][d], float) and t[j][d] == 1.0)]
            if len(movers) > 1:
                return True
        return False

    def _input_walk(self, level: int, table: list[list[_Loop]], tiles: _Table, size: _Factor, n: int
                    ) -> np.ndarray:
        """Words one instance of ``level`` fetches of its input tile, by the model's delta walk: each
        loop's move is its step minus one step of every inner loop that wraps; the tile keeps the
        translation of its last move on record, and a move with another translation than the record
        fetches the whole tile and clears it (see analytical._input_fetches)."""
        ws, wd, hs, hd = (self.workload.Wstride, self.workload.Wdilation, self.workload.Hstride,
                          self.workload.Hdilation)
        extent = tiles[level]
        width = (extent[_P] - 1) * ws + (extent[_R] - 1) * wd + 1
        height = (extent[_Q] - 1) * hs + (extent[_S] - 1) * hd + 1
        # Each loop moves the tile along one coordinate (self.walk_axis); M moves none, but advancing it
        # still moves the tile back by the steps of the inner loops that wrap.
        loops = [loop for j in range(level + 1, len(self.levels)) for loop in table[j]]
        count = len(loops) + 1
        # All loops at once, one row each (innermost first): bound, and the step of the tile along
        # its coordinate. Steps are whole numbers, so the sums below are exact in any order.
        bounds = np.empty((len(loops), n))
        own = np.zeros((len(loops), 4, n))      # a loop's step on its own coordinate
        for m, (d, bound, tile) in enumerate(loops):
            bounds[m] = bound
            if isinstance(d, np.ndarray):
                step = tile / bounds[m] * self.walk_scale[d]
                axes = self.walk_axis[d]
                for axis in range(4):
                    own[m, axis] = np.where(axes == axis, step, 0.0)
            elif self.walk_axis[d] >= 0:
                own[m, self.walk_axis[d]] = tile / bound * self.walk_scale[d]
        present = bounds > 1
        # A loop's move is its step minus the steps of every inner loop that wraps (the steps so far).
        wraps = np.zeros_like(own)
        np.cumsum(own[:-1] * present[:-1, None, :], axis=0, out=wraps[1:])
        move = own - wraps
        moved = np.count_nonzero(move, axis=1)
        along_w = (moved == 1) & (move[:, 2] != 0) & (np.abs(move[:, 2]) < width)
        along_h = (moved == 1) & (move[:, 3] != 0) & (np.abs(move[:, 3]) < height)
        fetched = np.where(moved == 0, 0.0, np.where(along_w, np.abs(move[:, 2]) * size / width,
                                                     np.where(along_h, np.abs(move[:, 3]) * size / height, size)))
        # The record is a state: 0 for none, else the (1-based) index of the first present move with
        # the same translation. Dynamic program over the loops, innermost first, per entry state: the
        # fetches after the entry visit of the loops walked so far, and the state they leave behind.
        # Translations compared through one number each: integer coordinates packed in a float. (The
        # estimate only ranks; an unlikely collision of two large translations would misrank, not
        # mislead the model.)
        packed = ((move[:, 0] * 65599.0 + move[:, 1]) * 65599.0 + move[:, 2]) * 65599.0 + move[:, 3]
        earlier = np.tri(len(loops), k=-1, dtype=bool)[:, :, None]       # [m, l]: l inner to m
        same = (packed[:, None, :] == packed[None, :, :]) & present[None, :, :] & earlier
        same |= np.eye(len(loops), dtype=bool)[:, :, None]
        canonical = np.argmax(same, axis=1) + 1
        total = np.zeros((count, n))
        leave = np.tile(np.arange(count)[:, None], (1, n))
        column = np.arange(n)
        for m in range(len(loops)):
            if not present[m].any():
                continue        # a loop of 1 everywhere adds nothing and keeps every record
            record = canonical[m]
            clear, same_record = leave == 0, leave == record
            delta = np.where(clear | same_record, fetched[m], size)
            # The record each entry state meets at the loop's next iteration, as a flat index.
            then = np.where(clear, record, leave * same_record) * n + column
            total += (bounds[m] - 1) * (delta + total.take(then))
            leave = np.where(present[m], leave.take(then), leave)
        return size + total[0]

    def _refetches(self, space: str, level: int, loops: list[list[_Loop]], tiles: _Table, above: list[_Factor]
                   ) -> tuple[_Factor, _Factor, _Factor]:
        """How often the level's tile changes, how many distinct tiles it visits (outputs only: 1 for the
        other data spaces, which do not need it), and the change count
        weighted by the share actually fetched (sliding windows of inputs)."""
        relevant = _RELEVANT[space]
        reuse: _Factor = 1.0
        visits: _Factor = 1.0
        slide: _Factor = 1.0
        searching: bool | np.ndarray = True
        for j in range(level + 1, len(self.levels)):
            for d, bound, tile in loops[j]:
                is_relevant = _relevant(space, d)
                if is_relevant is not True:
                    # Where the innermost relevant loop is already found, the tile is not reused further.
                    grows = searching if is_relevant is False else searching & ~is_relevant
                    if grows is True:
                        reuse = reuse * bound
                    elif grows is not False:
                        reuse = np.where(grows, reuse * bound, reuse)
                    if is_relevant is False:
                        continue
                    # With a loop per candidate, it counts as 1 where it is not relevant.
                    bound = np.where(is_relevant, bound, 1.0)
                if space == "Outputs":      # only outputs need the distinct tiles (their first visits)
                    visits = visits * bound
                if space != "Inputs":
                    innermost = False
                elif isinstance(d, np.ndarray):
                    innermost = searching & (bound > 1) & (self.step_of[d] > 0)
                else:
                    innermost = searching & (bound > 1) if d in self.steps else False
                if innermost is not False and np.any(innermost):
                    if isinstance(d, np.ndarray):
                        partner, step, partner_step = self.partner_of[d], self.step_of[d], self.step_of[self.partner_of[d]]
                    else:
                        partner, step, partner_step = self.partner[d], self.steps[d], self.steps[self.partner[d]]
                    own, other = _pick(tiles[level], d), _pick(tiles[level], partner)
                    # Only the candidates whose innermost relevant loop this is: each has one such loop.
                    rows = np.flatnonzero(innermost) if isinstance(innermost, np.ndarray) else None
                    own, other, step, partner_step, tile, reused, bound_here = (
                        f[rows] if rows is not None and np.ndim(f) else f
                        for f in (own, other, step, partner_step, tile, reuse, bound))
                    extent = (own - 1) * step + (other - 1) * partner_step + 1
                    shift = tile / bound_here * step
                    fraction = np.minimum(shift, extent) / extent
                    # A tile that stayed in place before this slide has a zero translation on record;
                    # Timeloop then discards the overlap (see analytical._input_fetches).
                    fraction = np.where(reused > 1, 1.0, fraction)
                    share = (1 + (bound_here - 1) * fraction) / bound_here
                    if rows is None:
                        slide = share
                    else:
                        slide = np.ones(innermost.shape) if np.ndim(slide) == 0 else slide.copy()
                        slide[rows] = share
                searching = searching & (bound == 1)
                if isinstance(searching, np.ndarray) and not searching.any():
                    searching = False
        changes = above[level] / reuse
        return changes, visits, changes * slide


# --- the search ------------------------------------------------------------------------------------

_Key = tuple[float, ...]


def _metric_values(metrics: tuple[str, ...], cycles: _Factor, energy: _Factor) -> tuple[_Factor, ...]:
    """The objective's values, in order; works on numbers and on numpy arrays alike."""
    values = {"delay": cycles, "energy": energy, "edp": cycles * energy}
    return tuple(values[m] for m in metrics)


@dataclass(frozen=True)
class _Candidate:
    key: _Key                 # estimated objective
    order: int                # enumeration order: the deterministic tie-break
    nest: _Nest
    spatial: _Spatial
    temporal: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class _Shortlist:
    """One keep choice's best candidates by the quick estimate, ready for the full one."""

    keep: tuple[frozenset[str], ...]
    columns: np.ndarray               # temporal factors of every candidate of the batch (one column each)
    which: np.ndarray                 # per candidate, its spatial assignment within the batch
    rows: np.ndarray                  # the shortlisted candidates, best first, numbered among this choice's legal ones
    picks: np.ndarray                 # the same candidates, numbered in ``columns``
    t: _Table                         # their temporal factors
    s: _Table                         # their spatial factors
    orders: tuple[tuple[int, ...], ...]                  # starting loop orders
    free_levels: list[tuple[int, tuple, tuple]]          # levels whose order is free
    quick: np.ndarray                 # the rows' keys by the quick estimate (starting orders, no input walk)
    walks: bool                       # whether the input walk can change them (else they are the full estimate)
    base: int                         # enumeration number of the first row
    # Keys of the rows by the estimate, per (loop orders, with the input walk or not).
    scored: dict = field(default_factory=dict)


class _Search:
    """One mapping search: a workload, a spec, an objective."""

    def __init__(self, workload: Workload, spec: ArchSpec, metrics: tuple[str, ...]):
        self.workload = workload
        self.spec = spec
        self.metrics = metrics
        self.levels = _levels(workload, spec)
        self.estimate = _Estimator(workload, self.levels, spec.compute.mac_energy)
        # The free temporal slots (level, dimension); a candidate's temporal factors are one value each.
        self.slots = [(i, d) for i, level in enumerate(self.levels) for d in range(_ND)
                      if not level.temporal_fixed[d]]
        self.considered = 0
        self.evaluated = 0

    # --- driver ---
    def run(self) -> MapperResult:
        residual = self._residual()
        keeps = list(itertools.product(*(level.keep_options for level in self.levels)))
        self._check_minimum(keeps)
        spatials = _spatial_assignments(self.levels, residual)
        if not spatials:
            level = next(level for level in self.levels if level.spatial and not _level_options(level, residual))
            fixed = " ".join(f"{DIMENSIONS[d]}={f}" for d, f in enumerate(level.spatial_fixed) if f > 1)
            raise MappingError(f"no legal mapping for {self.workload.name} on {self.spec.name}: {level.name} fans "
                               f"out to {level.fanout[0]} x {level.fanout[1]} (X x Y), too few for the spatial "
                               f"factors its constraints fix ({fixed})")
        # Under a delay-first objective, spatial assignments go in batches of equal compute cycles, fewest
        # first (stable sort: ties stay in enumeration order), and once the best mapping is no slower
        # than a batch's compute cycles, that batch and all after it are cut. Other objectives have no
        # such bound; they score everything in one vectorized pass.
        if self.metrics[0] == "delay":
            spatials.sort(key=lambda s: -s.pes)
            batches = [list(batch) for _, batch in itertools.groupby(spatials, key=lambda s: s.pes)]
        else:
            batches = [spatials]
        best: tuple[_Key, Mapping, Evaluation] | None = None
        for batch in batches:
            if best is not None and self.workload.macs // batch[0].pes > best[0][0]:
                break
            candidates = self._batch_candidates(batch, keeps, residual)
            best = self._price(candidates, best)
        if best is None:
            raise MappingError(f"no legal mapping for {self.workload.name} on {self.spec.name}: no factorization "
                               f"fits every buffer ({self._capacity_summary()})")
        return MapperResult(best[1], best[2], self.workload, self.metrics, self.considered, self.evaluated)

    def _residual(self) -> tuple[int, ...]:
        """Per dimension, the bound left for free slots once fixed factors are taken out."""
        residual = []
        for d, name in enumerate(DIMENSIONS):
            bound = self.workload.bounds[name]
            slots = [f for level in self.levels for f in (level.temporal_fixed[d], level.spatial_fixed[d])]
            fixed = prod(f for f in slots if f)
            if bound % fixed or (all(slots) and fixed != bound):
                where = ", ".join(f"{level.name}={f}" for level in self.levels
                                  for f in (level.temporal_fixed[d], level.spatial_fixed[d]) if f > 1)
                raise MappingError(f"no legal mapping for {self.workload.name} on {self.spec.name}: the constraints "
                                   f"fix {name} factors ({where or 'all 1'}) that cannot multiply to {name}={bound}")
            residual.append(bound // fixed)
        return tuple(residual)

    def _check_minimum(self, keeps: list[tuple[frozenset[str], ...]]) -> None:
        """Fail early, naming the level and the numbers, when a buffer overflows even with every free
        factor at 1."""
        fixed = np.array([[level.temporal_fixed[d] or 1 for d in range(_ND)] for level in self.levels])
        spatial = np.array([[level.spatial_fixed[d] or 1 for d in range(_ND)] for level in self.levels])
        tiles = np.cumprod(fixed * spatial, axis=0)
        for i, level in enumerate(self.levels):
            if level.size is None:
                continue
            need, spaces = min((sum(int(_footprint(space, tiles[i], self.workload)) for space in keep[i]),
                                sorted(keep[i])) for keep in keeps)
            if need > level.size:
                raise MappingError(f"no legal mapping for {self.workload.name} on {self.spec.name}: {level.name} "
                                   f"holds {level.size} words but its smallest tile ({' + '.join(spaces)}) needs "
                                   f"{need} under the constraints' fixed factors")

    def _capacity_summary(self) -> str:
        return ", ".join(f"{level.name} {level.size} words" for level in self.levels if level.size is not None)

    # --- enumeration ---
    def _shortlists(self, batch: list[_Spatial], keeps: list[tuple[frozenset[str], ...]],
                    least: tuple[frozenset[str], ...], loosest: list[tuple[int, np.ndarray]]) -> list[_Shortlist]:
        """Per keep choice, the legal candidates of spatial assignments with equal compute cycles (from
        those legal when levels keep only what they must, ``loosest``), cut to the best by the estimate
        with the closed-form sliding-window count (exact unless two loops above a tile move inputs along
        one axis) under the keep choice's starting loop orders; only for the keep choices whose best
        comes within ``_MARGIN`` of the leader's.

        Every keep choice is estimated on all of ``loosest`` at once: a data space's counts depend only
        on the levels that keep it, so each data space is counted once per distinct set of keeping
        levels and the keep choices combine those parts. Loops that are 1 on every legal row of a keep
        choice count as nothing there, so the one set of starting orders (the moving loops of all rows)
        gives each keep choice's rows the counts its own starting orders give."""
        columns = loosest[0][1] if len(loosest) == 1 else np.concatenate([part for _, part in loosest], axis=1)
        which = np.concatenate([np.full(columns.shape[1], k) for k, columns in loosest])
        n = columns.shape[1]
        loosest_high, loosest_low = columns.max(axis=1), columns.min(axis=1)
        t: _Table = [[float(f or 1) for f in level.temporal_fixed] for level in self.levels]
        for c, (i, d) in enumerate(self.slots):
            t[i][d] = float(loosest_low[c]) if loosest_low[c] == loosest_high[c] else columns[c]
        factors = [[np.array([sp.x[i][d] * sp.y[i][d] for sp in batch]) for d in range(_ND)]
                   for i in range(len(self.levels))]
        assignments = np.array([k for k, _ in loosest])
        s: _Table = [[float(values[assignments[0]]) if (values[assignments] == values[assignments[0]]).all()
                      else values[which].astype(np.float64) for values in level] for level in factors]
        shape = self.estimate.shape(t, s)
        loosest_orders, _ = self._start_orders(self._largest(loosest_high))
        loosest_loops = self.estimate.loops(loosest_orders, t, shape.tiles)
        parts: dict[tuple[str, tuple[int, ...]], dict[int, _LevelPart]] = {}
        memo: dict[tuple, tuple] = {}
        footprints: dict[tuple[int, str], _Factor] = {}

        def footprint(i: int, space: str) -> _Factor:
            """Words of ``space`` in level ``i``'s tile, every row; the same for every keep choice."""
            if (i, space) not in footprints:
                footprints[(i, space)] = _footprint(space, shape.tiles[i], self.workload)
            return footprints[(i, space)]

        # Every keep choice with a legal row, estimated: (keep, its legal rows or None for all, their
        # keys, the enumeration number of its first row, its best key).
        estimated = []
        for keep in keeps:
            # Rows of ``loosest`` fit every level that keeps no more than it must.
            legal = np.ones(n, dtype=bool)
            for i, level in enumerate(self.levels):
                if level.size is not None and keep[i] != least[i]:
                    legal &= np.asarray(sum(footprint(i, space) for space in sorted(keep[i])) <= level.size)
            if not legal.any():
                continue
            chosen = None if legal.all() else np.flatnonzero(legal)
            for space in DATA_SPACES:
                held = (space, _keepers(keep, space))
                if held not in parts:
                    parts[held] = self.estimate.space_part(shape, space, held[1], loosest_loops, t, s, n,
                                                           walk=False, memo=memo)
            cycles, energy = self.estimate.combine(
                shape, [parts[(space, _keepers(keep, space))] for space in DATA_SPACES], n, memo)
            if chosen is not None:
                cycles, energy = cycles[chosen], energy[chosen]
            keys = np.stack(_metric_values(self.metrics, cycles, energy))
            best = _least_key(keys)
            estimated.append((keep, chosen, keys, self.considered, best))
            self.considered += n if chosen is None else len(chosen)
        if not estimated:
            return []
        lead = min(best for *_, best in estimated)
        varying = np.flatnonzero(loosest_high != loosest_low)     # slots whose factor differs between rows
        shortlists = []
        for keep, chosen, keys, base, best in estimated:
            if not all(v <= w * _MARGIN for v, w in zip(best, lead)):
                continue
            if chosen is None:
                high, low = loosest_high, loosest_low
            else:
                high, low = loosest_high.copy(), loosest_low.copy()
                for c in varying:       # one contiguous row per slot
                    legal_factors = columns[c].take(chosen)
                    high[c], low[c] = legal_factors.max(), legal_factors.min()
            orders, free_levels = self._start_orders(self._largest(high))
            rows = _best_rows(keys, _SHORTLIST)
            picks = rows if chosen is None else chosen[rows]
            # The factors of the shortlisted rows; a slot shared by all of the keep choice's rows stays one
            # number, as the estimate's shortcuts expect.
            shortlist_t: _Table = [[float(f or 1) for f in level.temporal_fixed] for level in self.levels]
            for c, (i, d) in enumerate(self.slots):
                shortlist_t[i][d] = float(low[c]) if low[c] == high[c] else columns[c, picks]
            # The spatial assignments with a legal row (``which`` runs in blocks, one per assignment).
            present = assignments if chosen is None else np.flatnonzero(np.bincount(which[chosen]))
            shortlist_s: _Table = [[float(values[present[0]]) if (values[present] == values[present[0]]).all()
                                    else values[which[picks]].astype(np.float64) for values in level]
                                   for level in factors]
            shortlists.append(_Shortlist(keep, columns, which, rows, picks, shortlist_t, shortlist_s, orders,
                                         free_levels, keys[:, rows], self.estimate.walks(_Nest(keep, orders),
                                                                                         shortlist_t), base))
        return shortlists

    def _largest(self, high: np.ndarray) -> list[list[float]]:
        """Per level and dimension, the largest temporal factor, given each free slot's largest."""
        largest = [[float(f or 1) for f in level.temporal_fixed] for level in self.levels]
        for c, (i, d) in enumerate(self.slots):
            largest[i][d] = float(high[c])
        return largest

    def _candidates(self, batch: list[_Spatial], shortlist: _Shortlist,
                    orders: tuple[tuple[int, ...], ...]) -> list[_Candidate]:
        """The best candidates of a shortlist by the full estimate under the given loop orders."""
        nest = _Nest(shortlist.keep, orders)
        rows = shortlist.rows
        keys = self._keys(shortlist, orders)
        order = np.lexsort(keys[::-1])[:_PRICED]
        keys, ranked, picked = keys[:, order], rows[order], shortlist.picks[order]
        candidates = []
        for k, (r, p) in enumerate(zip(ranked, picked)):
            temporal = [[level.temporal_fixed[d] or 1 for d in range(_ND)] for level in self.levels]
            for c, (i, d) in enumerate(self.slots):
                temporal[i][d] = int(shortlist.columns[c, p])
            candidates.append(_Candidate(tuple(float(v) for v in keys[:, k]), shortlist.base + int(r), nest,
                                         batch[shortlist.which[p]], tuple(tuple(level) for level in temporal)))
        return candidates

    def _batch_candidates(self, batch: list[_Spatial], keeps: list[tuple[frozenset[str], ...]],
                          residual: tuple[int, ...]) -> list[_Candidate]:
        """The best candidates of one batch over the keep choices that come within ``_MARGIN`` of the
        leader, each under its free loop orders found by coordinate descent."""
        # Keeping more never frees buffer space: enumerate once under the least every choice keeps.
        least = tuple(frozenset.intersection(*choices) for choices in zip(*keeps))
        loosest = [(k, self._temporal_columns(spatial, least, residual)) for k, spatial in enumerate(batch)]
        loosest = [(k, columns) for k, columns in loosest if columns.shape[1]]
        if not loosest:
            return []
        return [candidate for shortlist in self._shortlists(batch, keeps, least, loosest)
                for candidate in self._candidates(batch, shortlist, self._orders(shortlist))]

    def _score(self, shortlist: _Shortlist, trials: Sequence[tuple[tuple[int, ...], ...]], walk: bool = True
               ) -> None:
        """The estimate (with the input walk: the full one) of the shortlisted rows under each of
        ``trials`` (loop orders) not scored yet, all in one pass: the rows are repeated once per trial,
        and a level whose order differs between trials gets an order per row."""
        missing = []
        for orders in dict.fromkeys(trials):
            if (orders, walk) in shortlist.scored:
                continue
            if orders == shortlist.orders and not (walk and shortlist.walks):
                shortlist.scored[(orders, walk)] = shortlist.quick
            else:
                missing.append(orders)
        if not missing:
            return
        n, repeats = len(shortlist.rows), len(missing)
        per_level = []
        for i in range(len(self.levels)):
            level_orders = {orders[i] for orders in missing}
            per_level.append(missing[0][i] if len(level_orders) == 1
                             else np.repeat(np.array([orders[i] for orders in missing]), n, axis=0))
        t, s = ([[f if isinstance(f, float) else np.tile(f, repeats) for f in level] for level in table]
                for table in (shortlist.t, shortlist.s))
        cycles, energy = self.estimate(_Nest(shortlist.keep, tuple(per_level)), t, s, n * repeats, walk)
        keys = np.stack(_metric_values(self.metrics, cycles, energy))
        for k, orders in enumerate(missing):
            shortlist.scored[(orders, walk)] = keys[:, k * n:(k + 1) * n]

    def _keys(self, shortlist: _Shortlist, orders: tuple[tuple[int, ...], ...], walk: bool = True) -> np.ndarray:
        """The objective's values of the shortlisted rows (metrics x rows) by the estimate under
        ``orders``, with the input walk (the full estimate) or without; estimated once each."""
        self._score(shortlist, [orders], walk)
        return shortlist.scored[(orders, walk)]

    def _best_key(self, shortlist: _Shortlist, orders: tuple[tuple[int, ...], ...], walk: bool = True) -> _Key:
        keys = self._keys(shortlist, orders, walk)
        return tuple(float(v) for v in keys[:, np.lexsort(keys[::-1])[0]])

    def _temporal_columns(self, spatial: _Spatial, keep: tuple[frozenset[str], ...], residual: tuple[int, ...]
                          ) -> np.ndarray:
        """All temporal factorizations that complete ``spatial`` within every buffer: one column per
        candidate, one row per free temporal slot (``self.slots``), as floats."""
        spatial_factors = [[x * y for x, y in zip(xs, ys)] for xs, ys in zip(spatial.x, spatial.y)]
        splits = []
        for d in range(_ND):
            free_spatial = prod(spatial_factors[i][d] for i, level in enumerate(self.levels)
                                if not level.spatial_fixed[d])
            positions = [c for c, (_, e) in enumerate(self.slots) if e == d]
            options = _ordered_splits(residual[d] // free_spatial, len(positions))
            if options.shape[0] == 0:
                return np.zeros((len(self.slots), 0))
            if positions:
                splits.append((options, positions))
        # Fewest choices first keeps the partial products small while the buffers prune them.
        splits.sort(key=lambda split: split[0].shape[0])
        base = self._base(spatial)
        # A dimension's split that overflows a buffer with every other dimension at its minimum overflows
        # in every row it would join: drop it before the product (the rows left, and their order, are
        # those the product would keep).
        splits = [(options.T[:, self._fits(options.T, positions, base, keep)], positions)
                  for options, positions in splits]
        if any(options.shape[1] == 0 for options, _ in splits):
            return np.zeros((len(self.slots), 0))
        columns = np.ones((0, 1))
        placed: list[int] = []
        for step, (options, positions) in enumerate(splits):
            n, k = columns.shape[1], options.shape[1]
            columns = np.concatenate([np.repeat(columns, k, axis=1), np.tile(options, (1, n))])
            placed.extend(positions)
            # Dimensions not placed yet sit at their minimum, so an overflow now is an overflow for good;
            # checking costs time, so it waits until the candidates pile up or all dimensions are placed.
            if columns.shape[1] > _CHECK_ROWS or step == len(splits) - 1:
                fits = self._fits(columns, placed, base, keep)
                if not fits.all():
                    columns = columns[:, fits]
                if columns.shape[1] == 0:
                    return np.zeros((len(self.slots), 0))
        return columns[np.argsort(placed)]

    def _base(self, spatial: _Spatial) -> np.ndarray:
        """Per level and dimension, the tile extent with every free temporal factor at 1."""
        spatial_factors = [[x * y for x, y in zip(xs, ys)] for xs, ys in zip(spatial.x, spatial.y)]
        fixed = [[level.temporal_fixed[d] or 1 for d in range(_ND)] for level in self.levels]
        return np.cumprod(np.array(fixed) * np.array(spatial_factors), axis=0)

    def _fits(self, columns: np.ndarray, placed: list[int], base: np.ndarray, keep: tuple[frozenset[str], ...]
              ) -> np.ndarray:
        """Which columns of partial temporal factors (rows for the slots in ``placed``) fit every buffer."""
        fits = np.ones(columns.shape[1], dtype=bool)
        for i, level in enumerate(self.levels):
            if level.size is None or not keep[i]:
                continue
            extent = self._extent(columns, placed, base, i)
            fits &= sum(_footprint(space, extent, self.workload) for space in keep[i]) <= level.size
        return fits

    def _extent(self, columns: np.ndarray, placed: list[int], base: np.ndarray, level: int) -> list[_Factor]:
        """Per dimension, the extent of ``level``'s tile in columns of partial temporal factors."""
        extent = [int(base[level, d]) for d in range(_ND)]
        for c, position in enumerate(placed):
            j, d = self.slots[position]
            if j <= level:
                extent[d] = extent[d] * columns[c]
        return extent

    def _start_orders(self, largest: list[list[float]]
                      ) -> tuple[tuple[tuple[int, ...], ...], list[tuple[int, tuple, tuple]]]:
        """Loop order per level: the constraint's, completed with the loops that move, then unit loops;
        and the levels whose order is free to choose (level, fixed prefix, moving loops)."""
        orders = []
        free_levels = []
        for i, level in enumerate(self.levels):
            prefix = level.temporal_prefix
            rest = tuple(d for d in range(_ND) if d not in prefix)
            # Only loops that exceed 1 somewhere need an order; the others go outermost, in a fixed order.
            moving = tuple(d for d in rest if largest[i][d] > 1)
            orders.append(prefix + moving + tuple(d for d in rest if d not in moving))
            # The innermost level's order cannot change any access count, as in Timeloop.
            if i > 0 and len(moving) > 1:
                free_levels.append((i, prefix, moving))
        return tuple(orders), free_levels

    def _orders(self, shortlist: _Shortlist) -> tuple[tuple[int, ...], ...]:
        """Free loop orders by coordinate descent on the estimate of a shortlist's rows. The descent
        compares orders without the input walk (the closed-form sliding-window count), which costs
        a third less per order; the orders found are ranked with it (``_candidates``). A heuristic
        cut: on every reference workload and the zoo's candidate LUTs, it finds the same mappings."""
        current, free_levels = shortlist.orders, shortlist.free_levels
        if not free_levels:
            return current
        # The shortlist keeps every orders' estimate: the last pass of the descent revisits orders already
        # scored, and the chosen orders' rows are ranked again in _candidates. Under the starting orders
        # the estimate without the walk is the quick one, known already.
        best = self._best_key(shortlist, current, walk=False)
        changed = True
        while changed:
            changed = False
            for i, prefix, moving in free_levels:
                trials = [current[:i] + (prefix + perm + tuple(d for d in range(_ND) if d not in prefix + perm),)
                          + current[i + 1:] for perm in _order_classes(moving)]
                self._score(shortlist, trials, walk=False)
                for trial in trials:
                    value = self._best_key(shortlist, trial, walk=False)
                    if value < best:
                        best, current, changed = value, trial, True
        return current

    # --- pricing by the real model ---
    def _price(self, candidates: list[_Candidate], best: tuple[_Key, Mapping, Evaluation] | None
               ) -> tuple[_Key, Mapping, Evaluation] | None:
        candidates.sort(key=lambda c: (c.key, c.order))
        for candidate in candidates[:_PRICED]:
            mapping = self._mapping(candidate)
            try:
                evaluation = evaluate(self.workload, self.spec, mapping)
            except MappingError:
                continue        # the model is the authority on legality
            self.evaluated += 1
            key = _metric_values(self.metrics, evaluation.cycles, evaluation.energy_pj)
            if best is None or key < best[0]:
                best = (key, mapping, evaluation)
        return best

    def _mapping(self, candidate: _Candidate) -> Mapping:
        levels = []
        for i, level in enumerate(self.levels):
            x, y = candidate.spatial.x[i], candidate.spatial.y[i]
            listed = level.spatial_prefix
            if listed:
                spatial_order = listed + tuple(d for d in range(_ND) if d not in listed)
            else:
                spatial_order = tuple(sorted(range(_ND), key=lambda d: (0 if x[d] > 1 else 1 if y[d] > 1 else 2, d)))
            levels.append(LevelMapping(
                target=level.name,
                temporal=candidate.temporal[i],
                temporal_order=tuple(DIMENSIONS[d] for d in candidate.nest.orders[i]),
                spatial_x=x,
                spatial_y=y,
                spatial_order=tuple(DIMENSIONS[d] for d in spatial_order),
                keep=candidate.nest.keep[i]))
        return Mapping(tuple(levels))


@lru_cache(maxsize=None)
def _order_classes(moving: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """One order of the ``moving`` loops per distinct reuse pattern: for each data space, which loops
    sit inside its innermost relevant loop (they reuse its tile) and, for inputs, which loop that is
    (it decides the sliding window). Orders alike in all of these count alike when every loop moves."""
    classes: dict[tuple, tuple[int, ...]] = {}
    for order in itertools.permutations(moving):
        pattern = []
        for space in DATA_SPACES:
            first = next((k for k, d in enumerate(order) if d in _RELEVANT[space]), len(order))
            sliding = order[first] if space == "Inputs" and first < len(order) else None
            pattern.append((frozenset(order[:first]), sliding))
        classes.setdefault(tuple(pattern), order)
    return tuple(classes.values())


def _least_key(keys: np.ndarray) -> _Key:
    """The smallest of the rows' keys (metrics x rows), by the metrics in order."""
    least = []
    tied: np.ndarray | None = None          # the rows tied on every metric so far (None: all rows)
    for values in keys:
        value = values.min() if tied is None else values[tied].min()
        least.append(float(value))
        tied = values == value if tied is None else tied & (values == value)
    return tuple(least)


def _best_rows(keys: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` of ``np.lexsort(keys[::-1])`` (rows by the metrics in order, ties by row
    number), selected by partitions before the few are sorted."""
    pool: np.ndarray | None = None      # the rows tied on every metric so far (None: all rows)
    taken = []
    need = count
    for values in keys:
        if (keys.shape[1] if pool is None else len(pool)) <= need:
            break
        within = values if pool is None else values[pool]
        if within.min() == within.max():
            continue                    # all tied: the next metric decides
        cut = np.partition(within, need - 1)[need - 1]
        better = within < cut
        taken.append(np.flatnonzero(better) if pool is None else pool[better])
        need -= len(taken[-1])
        tied = within == cut            # the next metric decides among these
        pool = np.flatnonzero(tied) if pool is None else pool[tied]
    if pool is None:
        pool = np.arange(keys.shape[1])
    chosen = np.sort(np.concatenate([*taken, pool[:need]]))
    return chosen[np.lexsort(keys[::-1][:, chosen])]


# --- padding ---------------------------------------------------------------------------------------

_PAD_LIMIT = 0.125      # at most this share of extra work per padded dimension
_PAD_OPTIONS = 3        # padded sizes tried per dimension, smallest first


def _padded_search(workload: Workload, spec: ArchSpec, metrics: tuple[str, ...]) -> MapperResult:
    """Try the workload as it is and with C/M/P/Q padded to sizes that split more evenly over the
    fan-outs; keep the best by the objective (wasted work counts: the padded MACs are executed)."""
    axis = sorted({f for i in range(len(spec.storage)) for f in spec.fanout(i) if f > 1})
    bounds = workload.bounds
    options: list[tuple[int, ...]] = []
    for d in range(_ND):
        bound = bounds[DIMENSIONS[d]]
        sizes = {bound}
        if d in _PADDABLE:
            sizes |= {ceil(bound / f) * f for f in range(2, max(axis, default=1) + 1)
                      if ceil(bound / f) * f <= bound * (1 + _PAD_LIMIT)}
        options.append(tuple(sorted(sizes))[: _PAD_OPTIONS + 1])
    best: MapperResult | None = None
    best_key: _Key | None = None
    failures: list[str] = []
    considered = evaluated = 0
    shapes = [replace(workload, **dict(zip(DIMENSIONS, sizes))) for sizes in itertools.product(*options)]
    # Least extra work first, so that under a delay-first objective the bound below cuts early.
    for padded in sorted(shapes, key=lambda w: (w.macs, astuple(w))):
        fastest = ceil(padded.macs / spec.peak_macs_per_cycle)
        if best_key is not None and metrics[0] == "delay" and fastest > best_key[0]:
            continue
        try:
            result = _Search(padded, spec, metrics).run()
        except MappingError as exc:
            failures.append(str(exc))
            continue
        considered += result.considered
        evaluated += result.evaluated
        key = _metric_values(metrics, result.evaluation.cycles, result.evaluation.energy_pj)
        if best_key is None or key < best_key:
            best, best_key = result, key
    if best is None:
        raise MappingError(failures[0])
    return replace(best, considered=considered, evaluated=evaluated)


__all__ = ["MapperResult", "OBJECTIVES", "find_mapping"]
