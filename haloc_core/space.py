"""The search space: per searched layer, the options a rank search picks from (every LUT candidate plus
"keep the original layer"), each with its cost on the target; the layers that are not searched add a
constant."""

from __future__ import annotations

import math
from dataclasses import dataclass

from costmodels import LUT, CostModelError, Form, LoadedLUT

Ranks = tuple[int, int]          # (r1, r2) of a Tucker-2 candidate; r1 == r2 for a two-factor 1x1 candidate


@dataclass(frozen=True)
class LayerOptions:
    """One searched layer. ``ranks[j]`` is option j's (r1, r2), or None for the original layer (always one
    of the options); ``cycles[j]``, ``latency_s[j]`` and ``energy_pj[j]`` its cost on the target from the
    LUT (cycles and energy are NaN in a measured LUT, which has seconds only); ``macs[j]`` and ``params[j]``
    from the LUT as well."""

    layer: str
    ranks: tuple[Ranks | None, ...]
    cycles: tuple[float, ...]
    latency_s: tuple[float, ...]
    energy_pj: tuple[float, ...]
    macs: tuple[int, ...]
    params: tuple[int, ...]

    @property
    def original_index(self) -> int:
        return self.ranks.index(None)


@dataclass(frozen=True)
class SearchSpace:
    """Every searched layer's options, the constant cost of the layers that are not searched (the same three
    measures), and where the costs came from (target name; ``clock_hz`` is None for a measured LUT)."""

    layers: tuple[LayerOptions, ...]
    fixed_cycles: float
    fixed_latency_s: float
    fixed_energy_pj: float
    target: str
    clock_hz: float | None


class SearchSpaceError(CostModelError):
    """A LUT that cannot be searched: a layer without its original row, or a searched layer it lacks."""


def space_from_lut(lut: LUT | LoadedLUT, searched: set[str] | None = None) -> SearchSpace:
    """The search space of a LUT (``costmodel build``'s ``LUT`` or one read back by ``load_lut``).

    A layer is searched when it has candidates (and, if ``searched`` is given, is named in it); its options
    are the original layer (index 0) and then its candidates in LUT order. Every other layer adds its
    original cost to the fixed part."""
    rows = lut.rows if isinstance(lut, LUT) else lut.entries
    by_layer: dict[str, list] = {}
    for row in rows:
        by_layer.setdefault(row.layer, []).append(row)
    if searched is not None:
        unknown = sorted(searched - set(by_layer))
        if unknown:
            raise SearchSpaceError(f"searched layer(s) {', '.join(unknown)} not in the LUT; it has "
                                   f"{', '.join(by_layer)}")
        bare = sorted(name for name in searched if all(r.form == Form.ORIGINAL.value for r in by_layer[name]))
        if bare:
            raise SearchSpaceError(f"searched layer(s) {', '.join(bare)} have no rank candidates in the LUT")
    layers, fixed = [], [0.0, 0.0, 0.0]
    for name, layer_rows in by_layer.items():
        originals = [r for r in layer_rows if r.form == Form.ORIGINAL.value]
        if len(originals) != 1:
            raise SearchSpaceError(f"layer '{name}': the LUT has {len(originals)} original rows, expected 1 "
                                   "(an original that failed to evaluate leaves the layer unpriced)")
        candidates = [r for r in layer_rows if r.form != Form.ORIGINAL.value]
        if not candidates or (searched is not None and name not in searched):
            fixed = [fixed[0] + float(originals[0].cycles), fixed[1] + originals[0].latency_s,
                     fixed[2] + originals[0].energy_pj]
            continue
        options = [originals[0], *candidates]
        layers.append(LayerOptions(
            layer=name, ranks=(None, *((r.r1, r.r2) for r in candidates)),
            cycles=tuple(float(r.cycles) for r in options), latency_s=tuple(float(r.latency_s) for r in options),
            energy_pj=tuple(float(r.energy_pj) for r in options), macs=tuple(int(r.macs) for r in options),
            params=tuple(int(r.params) for r in options)))
    return SearchSpace(tuple(layers), fixed[0], fixed[1], fixed[2], _target(lut), _clock_hz(lut, rows))


def _target(lut: LUT | LoadedLUT) -> str:
    if isinstance(lut, LUT):
        return lut.arch
    return str(lut.provenance.get("arch") or "unknown")


def _clock_hz(lut: LUT | LoadedLUT, rows: tuple) -> float | None:
    """The target's clock: the LUT's own, else (a plain ``costmodel build`` CSV, which has no header) the
    ratio of cycles to seconds of its largest row; None when the LUT has no cycles (measured latency)."""
    if isinstance(lut, LUT):
        return float(lut.clock_hz)
    stated = lut.provenance.get("clock_hz")
    if stated not in (None, "", "None"):
        try:
            clock = float(stated)
        except (TypeError, ValueError):
            raise SearchSpaceError(f"LUT provenance: clock_hz '{stated}' is not a number") from None
        return clock if math.isfinite(clock) and clock > 0 else None
    priced = [r for r in rows if math.isfinite(float(r.cycles)) and r.latency_s > 0]
    if not priced:
        return None
    largest = max(priced, key=lambda r: float(r.cycles))
    return float(f"{float(largest.cycles) / largest.latency_s:.6g}")
