"""The search space: per searched layer, the options a rank search picks from (every LUT candidate plus
"keep the original layer"), each with its cost on the target; the layers that are not searched add a
constant."""

from __future__ import annotations

from dataclasses import dataclass

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
