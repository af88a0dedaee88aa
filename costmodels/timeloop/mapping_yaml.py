"""Timeloop's mapping file (the ``map.yaml`` that ``timeloop-mapper`` writes and ``timeloop-model``
reads): a list of ``target``/``type`` entries per storage level.

- ``datatype``: ``keep`` and ``bypass`` lists of data spaces (a data space not bypassed is kept).
- ``temporal``: ``factors`` like ``C1 M16 R1 S1 N1 P1 Q1`` and a ``permutation`` listed innermost
  loop first.
- ``spatial``: the same, plus ``split``: the first ``split`` dimensions of the permutation spread over
  the mesh's X axis, the rest over Y.

Left out of a file: a factor is 1, a dimension missing from a permutation
becomes an outer loop, a missing ``split`` puts every dimension on X, and a level without a datatype
entry keeps every data space.

``mapping_yaml`` writes the layout timeloop-mapper itself writes, so a mapping it found reads back and
writes out byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from costmodels.errors import MappingError
from costmodels.problems.workloads import DATA_SPACES, DIMENSIONS
from costmodels.timeloop.mapping import LevelMapping, Mapping
from costmodels.timeloop.spec import ArchSpec
from costmodels.user_files import InputFileError, parse_yaml, read_user_text

_FACTOR = re.compile(r"^(?P<dim>[A-Za-z]+)=?(?P<value>\d+)$")
_ENTRY_TYPES = ("datatype", "bypass", "temporal", "spatial")


def read_mapping(path_or_text: str | Path, spec: ArchSpec) -> Mapping:
    """Read a mapping from a file path or from YAML text (any string with a line break is text)."""
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        source, text = "<mapping text>", path_or_text
    else:
        source, text = str(path_or_text), None
    try:
        if text is None:
            text = read_user_text(path_or_text)
        document = parse_yaml(text, source)
    except InputFileError as exc:
        raise MappingError(str(exc)) from None
    return parse_mapping(document, spec, source)


_Fail = Callable[[str, str], MappingError]


def parse_mapping(document: Any, spec: ArchSpec, source: str = "<mapping>") -> Mapping:
    def fail(where: str, problem: str) -> MappingError:
        return MappingError(f"{source}: field '{where}': {problem}")

    entries = document.get("mapping") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise fail("mapping", "missing or not a list of entries")
    names = [level.name for level in spec.storage]
    found: dict[tuple[str, str], tuple[str, dict]] = {}    # (target, kind) -> (field path, entry)
    for i, entry in enumerate(entries):
        where = f"mapping[{i}]"
        if not isinstance(entry, dict):
            raise fail(where, "expected a mapping with target and type")
        target, kind = entry.get("target"), entry.get("type")
        if target not in names:
            raise fail(f"{where}.target", f"unknown level {target!r}; allowed: {', '.join(names)}")
        if kind not in _ENTRY_TYPES:
            raise fail(f"{where}.type", f"{kind!r} is not allowed; allowed: {', '.join(_ENTRY_TYPES)}")
        kind = "datatype" if kind == "bypass" else kind
        if (target, kind) in found:
            raise fail(f"{where}.type", f"a second {kind} entry for {target}")
        found[target, kind] = (where, entry)

    levels = []
    for name in names:
        keep = frozenset(DATA_SPACES)
        if (name, "datatype") in found:
            where, entry = found[name, "datatype"]
            keep = _parse_keep(entry, fail, where)
        temporal, temporal_order = (1,) * len(DIMENSIONS), DIMENSIONS
        if (name, "temporal") in found:
            where, entry = found[name, "temporal"]
            temporal = _parse_factors(entry.get("factors"), fail, f"{where}.factors")
            temporal_order = _parse_permutation(entry.get("permutation"), fail, f"{where}.permutation")
        spatial_x = spatial_y = (1,) * len(DIMENSIONS)
        spatial_order = DIMENSIONS
        if (name, "spatial") in found:
            where, entry = found[name, "spatial"]
            factors = _parse_factors(entry.get("factors"), fail, f"{where}.factors")
            spatial_order = _parse_permutation(entry.get("permutation"), fail, f"{where}.permutation")
            split = entry.get("split", len(DIMENSIONS))
            if not isinstance(split, int) or isinstance(split, bool) or split < 0:
                raise fail(f"{where}.split", f"must be a non-negative integer, got {split!r}")
            on_x = set(spatial_order[:split])
            spatial_x = tuple(f if d in on_x else 1 for d, f in zip(DIMENSIONS, factors))
            spatial_y = tuple(1 if d in on_x else f for d, f in zip(DIMENSIONS, factors))
        levels.append(LevelMapping(target=name, temporal=temporal, temporal_order=temporal_order,
                                   spatial_x=spatial_x, spatial_y=spatial_y, spatial_order=spatial_order,
                                   keep=keep))
    return Mapping(tuple(levels))


def _parse_keep(entry: dict, fail: _Fail, where: str) -> frozenset[str]:
    lists = {}
    for key in ("keep", "bypass"):
        value = entry.get(key) or []
        if not isinstance(value, list) or any(v not in DATA_SPACES for v in value):
            raise fail(f"{where}.{key}", f"{value!r} must be a list of {', '.join(DATA_SPACES)}")
        lists[key] = set(value)
    both = lists["keep"] & lists["bypass"]
    if both:
        raise fail(where, f"{', '.join(sorted(both))} both kept and bypassed")
    return frozenset(DATA_SPACES) - lists["bypass"]


def _parse_factors(text: Any, fail: _Fail, where: str) -> tuple[int, ...]:
    if not isinstance(text, str):
        raise fail(where, f"expected a string like 'C1 M16 R1 S1 N1 P1 Q1', got {text!r}")
    factors = [1] * len(DIMENSIONS)
    seen = set()
    for token in text.split():
        match = _FACTOR.match(token)
        if not match or match["dim"] not in DIMENSIONS or match["dim"] in seen or int(match["value"]) < 1:
            raise fail(where, f"bad factor '{token}'; expected DIM and a positive integer, DIM one of "
                              f"{', '.join(DIMENSIONS)}, each at most once")
        seen.add(match["dim"])
        factors[DIMENSIONS.index(match["dim"])] = int(match["value"])
    return tuple(factors)


def _parse_permutation(text: Any, fail: _Fail, where: str) -> tuple[str, ...]:
    if text is None:
        return DIMENSIONS
    dims = str(text).replace(" ", "")
    if any(d not in DIMENSIONS for d in dims) or len(set(dims)) != len(dims):
        raise fail(where, f"'{text}' must list distinct dimensions of {''.join(DIMENSIONS)}")
    # Dimensions left out become the outermost loops (all of them unit loops in practice).
    return tuple(dims) + tuple(d for d in DIMENSIONS if d not in dims)


def mapping_yaml(mapping: Mapping, spec: ArchSpec | None = None) -> str:
    """The mapping as timeloop-mapper writes it. With ``spec``, every level with a fan-out gets a
    spatial entry (as Timeloop writes); without, only levels with a spatial factor above 1."""
    lines = ["mapping:"]

    def entry(target: str, kind: str) -> None:
        lines.append(f"  - target: {target}")
        lines.append(f"    type: {kind}")

    def names(spaces: list[str]) -> None:
        lines.extend([f"      - {s}" for s in spaces] if spaces else ["      []"])

    for level in mapping.levels:
        entry(level.target, "datatype")
        lines.append("    keep:")
        names([s for s in DATA_SPACES if s in level.keep])
        lines.append("    bypass:")
        names([s for s in DATA_SPACES if s not in level.keep])
    if spec is not None and [level.target for level in mapping.levels] != [level.name for level in spec.storage]:
        raise MappingError(f"mapping levels {[level.target for level in mapping.levels]} are not the "
                           f"architecture's {[level.name for level in spec.storage]}")
    for i, level in enumerate(mapping.levels):
        spread = level.fanout_x * level.fanout_y > 1
        fanout = spec.fanout(i) != (1, 1) if spec is not None else spread
        if spread and not fanout:
            raise MappingError(f"{level.target}: spatial factors where the architecture has no fan-out")
        if fanout:
            permutation, split = _spatial_permutation(level)
            entry(level.target, "spatial")
            lines.append(f"    factors: {_factors_text([x * y for x, y in zip(level.spatial_x, level.spatial_y)])}")
            lines.append(f"    permutation: {''.join(permutation)}")
            lines.append(f"    split: {split}")
        entry(level.target, "temporal")
        lines.append(f"    factors: {_factors_text(level.temporal)}")
        lines.append(f"    permutation: {''.join(level.temporal_order)}")
    # timeloop-mapper ends the file without a final line break.
    return "\n".join(lines)


def _factors_text(factors: list[int] | tuple[int, ...]) -> str:
    return " ".join(f"{d}{f}" for d, f in zip(DIMENSIONS, factors))


def _spatial_permutation(level: LevelMapping) -> tuple[tuple[str, ...], int]:
    """Permutation and split that put exactly the X loops first. The level's own order is kept when
    it already does; otherwise X loops, then Y loops, then unit dimensions, each in that order."""
    index = {d: i for i, d in enumerate(DIMENSIONS)}
    on_x = [d for d in level.spatial_order if level.spatial_x[index[d]] > 1]
    on_y = [d for d in level.spatial_order if level.spatial_y[index[d]] > 1]
    both = set(on_x) & set(on_y)
    if both:
        raise MappingError(f"{level.target}: dimension {sorted(both)[0]} is spread over both X and Y, which a "
                           f"Timeloop mapping cannot express")
    order = level.spatial_order
    split = max((order.index(d) + 1 for d in on_x), default=0)
    if any(order.index(d) < split for d in on_y):
        units = [d for d in order if d not in on_x and d not in on_y]
        order = tuple(on_x + on_y + units)
        split = len(on_x)
    return order, split
