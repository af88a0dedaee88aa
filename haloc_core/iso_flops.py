"""Rank choices at a given FLOPs count, made from a LUT alone: how HALOC's Table 3 rows are rebuilt where no
trained ImageNet weights exist.

Two ways, both stated: *uniform* keeps the same rank ratio r / r_max in every decomposed layer, the largest
ratio whose network fits the FLOPs; *hardware-aware* takes the lowest-latency choice on the target with the
same FLOPs as the uniform one (within ``FLOPS_BAND`` below it) and no less capacity, the accuracy proxy: the
sum over decomposed layers of log(r / r_max) (0 for a layer kept whole), i.e. the geometric-mean rank ratio.
The hardware-aware choice is an exact integer program (scipy's HiGHS)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from costmodels import CostModelError, LoadedLUT, LUTEntry

FLOPS_BAND = 0.01


@dataclass(frozen=True)
class NetworkChoice:
    """One option per layer of a LUT: the layer's original row or one of its candidates."""

    method: str
    entries: tuple[LUTEntry, ...]

    @property
    def macs(self) -> int:
        return sum(e.macs for e in self.entries)

    @property
    def cycles(self) -> int:
        return sum(e.cycles for e in self.entries)

    @property
    def latency_s(self) -> float:
        return sum(e.latency_s for e in self.entries)

    @property
    def energy_pj(self) -> float:
        return sum(e.energy_pj for e in self.entries)

    def ranks(self) -> dict[str, tuple[int, int] | None]:
        return {e.layer: None if e.is_original else (e.r1, e.r2) for e in self.entries}


def _max_rank(lut: LoadedLUT, layer: str) -> int:
    return max(max(c.r1, c.r2) for c in lut.candidates(layer))


def log_rank_ratio(lut: LoadedLUT, entry: LUTEntry) -> float:
    """log(r / r_max) of a candidate (the larger of r1, r2 over its layer's largest); 0 for an original."""
    if entry.is_original:
        return 0.0
    return math.log(max(entry.r1, entry.r2) / _max_rank(lut, entry.layer))


def capacity(lut: LoadedLUT, choice: NetworkChoice) -> float:
    return sum(log_rank_ratio(lut, e) for e in choice.entries)


def original_choice(lut: LoadedLUT) -> NetworkChoice:
    return NetworkChoice("original", tuple(lut.original(layer) for layer in lut.layers))


def _uniform(lut: LoadedLUT, ratio: float) -> NetworkChoice:
    entries = []
    for layer in lut.layers:
        candidates = sorted(lut.candidates(layer), key=lambda c: (max(c.r1, c.r2), c.cycles))
        if not candidates:
            entries.append(lut.original(layer))
            continue
        limit = ratio * _max_rank(lut, layer) + 1e-9
        fitting = [c for c in candidates if max(c.r1, c.r2) <= limit]
        entries.append(fitting[-1] if fitting else candidates[0])
    return NetworkChoice("uniform", tuple(entries))


def uniform_at_macs(lut: LoadedLUT, max_macs: float) -> NetworkChoice:
    """The largest uniform rank ratio whose network has at most ``max_macs`` conv MACs (every ratio at which
    some layer's rank changes is tried, so the answer is exact on the LUT's rank grid)."""
    ratios = sorted({max(c.r1, c.r2) / _max_rank(lut, layer) for layer in lut.layers
                     for c in lut.candidates(layer)})
    fitting = [choice for choice in (_uniform(lut, r) for r in ratios) if choice.macs <= max_macs]
    if not fitting:
        smallest = _uniform(lut, 0.0)
        raise CostModelError(f"no uniform rank ratio reaches {max_macs:,.0f} conv MACs; the smallest ranks give "
                             f"{smallest.macs:,}")
    return fitting[-1]


def hardware_aware_at_macs(lut: LoadedLUT, min_macs: float, max_macs: float, min_capacity: float) -> NetworkChoice:
    """The lowest-latency choice with ``min_macs`` to ``max_macs`` conv MACs and at least ``min_capacity``."""
    options = [(layer, e) for layer in lut.layers for e in (lut.original(layer), *lut.candidates(layer))]
    layer_index = {layer: i for i, layer in enumerate(lut.layers)}
    n = len(options)
    one_per_layer = np.zeros((len(lut.layers), n))
    for j, (layer, _) in enumerate(options):
        one_per_layer[layer_index[layer], j] = 1.0
    macs = np.array([e.macs for _, e in options], dtype=float)
    logs = np.array([log_rank_ratio(lut, e) for _, e in options])
    cycles = np.array([e.cycles for _, e in options], dtype=float)
    result = milp(cycles, integrality=np.ones(n), bounds=Bounds(0, 1),
                  constraints=[LinearConstraint(one_per_layer, 1, 1), LinearConstraint(macs[None], min_macs, max_macs),
                               LinearConstraint(logs[None], min_capacity - 1e-9, np.inf)])
    if result.status != 0 or result.x is None:
        raise CostModelError(f"no choice has {min_macs:,.0f} to {max_macs:,.0f} conv MACs and capacity >= "
                             f"{min_capacity:.3f}: "
                             f"{result.message}")
    chosen = [options[j][1] for j in np.flatnonzero(result.x > 0.5)]
    order = {layer: i for i, layer in enumerate(lut.layers)}
    return NetworkChoice("hardware-aware", tuple(sorted(chosen, key=lambda e: order[e.layer])))


@dataclass(frozen=True)
class IsoFlopsComparison:
    """The original network and the two compressed choices at one FLOPs target, on one LUT's target."""

    network: str
    target: str
    clock_hz: float
    target_flops: float
    flops_overhead: int          # FLOPs outside the conv layers (FC, BatchNorm, pooling), unchanged by ranks
    choices: tuple[NetworkChoice, ...]
    capacities: tuple[float, ...]

    def rows(self) -> list[dict[str, object]]:
        original = self.choices[0]
        return [{"method": c.method, "flops_m": round((c.macs + self.flops_overhead) / 1e6, 2),
                 "conv_macs": c.macs, "cycles": c.cycles, "images_per_s": round(self.clock_hz / c.cycles, 2),
                 "speedup": round(original.cycles / c.cycles, 3), "energy_uj": round(c.energy_pj / 1e6, 1),
                 "capacity": round(cap, 3), "ranks": {k: list(v) if v else None for k, v in c.ranks().items()}}
                for c, cap in zip(self.choices, self.capacities)]


def compare_at_flops(lut: LoadedLUT, network: str, target: str, clock_hz: float, target_flops: float,
                     flops_overhead: int) -> IsoFlopsComparison:
    original = original_choice(lut)
    max_macs = target_flops - flops_overhead
    uniform = uniform_at_macs(lut, max_macs)
    hardware = hardware_aware_at_macs(lut, (1 - FLOPS_BAND) * uniform.macs, uniform.macs, capacity(lut, uniform))
    choices = (original, uniform, hardware)
    return IsoFlopsComparison(network, target, clock_hz, target_flops, flops_overhead, choices,
                              tuple(capacity(lut, c) for c in choices))


def comparison_markdown(comparison: IsoFlopsComparison) -> str:
    c = comparison
    lines = [f"# {c.network} on {c.target} at {c.target_flops / 1e6:.2f}M FLOPs", "",
             f"Batch 1, whole network (every conv layer; FC, BatchNorm and pooling counted in FLOPs, not in cycles), "
             f"{c.clock_hz / 1e6:g} MHz. Capacity = sum over decomposed layers of log(r / r_max): the accuracy proxy "
             f"(higher keeps more rank).", "",
             "| method | FLOPs (M) | cycles | images/s | speed-up | energy (uJ) | capacity |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in c.rows():
        lines.append(f"| {row['method']} | {row['flops_m']:.2f} | {row['cycles']:,} | {row['images_per_s']:.1f} | "
                     f"{row['speedup']:.2f}x | {row['energy_uj']:,.1f} | {row['capacity']:.3f} |")
    layers = list(c.choices[0].ranks())
    lines += ["", "| layer | " + " | ".join(ch.method for ch in c.choices[1:]) + " |",
              "|---|" + "---|" * (len(c.choices) - 1)]
    for layer in layers:
        cells = []
        for choice in c.choices[1:]:
            ranks = choice.ranks()[layer]
            cells.append("original" if ranks is None else (str(ranks[0]) if ranks[0] == ranks[1] else f"{ranks[0]}/{ranks[1]}"))
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
