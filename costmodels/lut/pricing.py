"""The cost of one rank choice on a LUT's target: how a choice made for one target is priced on another."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costmodels.errors import CostModelError
from costmodels.lut.export import LoadedLUT
from costmodels.user_files import parse_json, read_user_text

Ranks = dict[str, tuple[int, int] | None]


class MissingRowError(CostModelError):
    """A chosen rank pair that the LUT does not price: no legal mapping on its target, or another rank grid."""

    def __init__(self, source: str, layer: str, ranks: tuple[int, int], available: str):
        self.layer = layer
        self.ranks = ranks
        super().__init__(f"{source}: layer '{layer}' has no LUT row for ranks {ranks[0]}/{ranks[1]}; the LUT has "
                         f"{available}")


@dataclass(frozen=True)
class ChoiceCost:
    cycles: int
    latency_s: float
    energy_pj: float


def price_ranks(lut: LoadedLUT, ranks: Ranks, source: str = "ranks") -> ChoiceCost:
    """Every layer of the LUT at its chosen ranks (None, or a layer not named: the original layer)."""
    unknown = sorted(set(ranks) - set(lut.layers))
    if unknown:
        raise CostModelError(f"{source}: layers not in the LUT: {', '.join(unknown[:5])}")
    entries = []
    for layer in lut.layers:
        chosen = ranks.get(layer)
        if chosen is None:
            entries.append(lut.original(layer))
            continue
        try:
            entries.append(lut.lookup(layer, *chosen))
        except KeyError:
            available = ", ".join(f"{c.r1}/{c.r2}" for c in lut.candidates(layer)) or "none"
            raise MissingRowError(source, layer, chosen, available) from None
    return ChoiceCost(sum(e.cycles for e in entries), sum(e.latency_s for e in entries),
                      sum(e.energy_pj for e in entries))


@dataclass(frozen=True)
class RankChoice:
    """A rank choice read from a file, with the test accuracy its search reported (None if it has none)."""

    ranks: Ranks
    accuracy: float | None


def read_choice(path: str | Path) -> RankChoice:
    """Ranks per layer ({layer: [r1, r2] or null}) and ``accuracy.after_finetune`` where present, from a
    JSON file as `costmodel search` writes them: ``report.json`` (its ``ranks`` object) or ``ranks.json``
    (the object itself)."""
    document: Any = parse_json(read_user_text(path), str(path))
    if not isinstance(document, dict):
        raise CostModelError(f"{path}: not a JSON object; expected {{layer: [r1, r2] or null}} or a report.json "
                             f"with such a 'ranks' object")
    ranks, field = (document.get("ranks"), "ranks.") if "ranks" in document else (document, "")
    if not isinstance(ranks, dict):
        raise CostModelError(f"{path}: field 'ranks': {str(ranks)[:40]} is not an object; expected "
                             f"{{layer: [r1, r2] or null}}")
    parsed: Ranks = {}
    for layer, value in ranks.items():
        if value is None:
            parsed[layer] = None
        elif (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                   and v > 0 for v in value)):
            parsed[layer] = (value[0], value[1])
        else:
            raise CostModelError(f"{path}: field '{field}{layer}': {str(value)[:40]!s} is not [r1, r2] (positive "
                                 f"integers) or null")
    accuracy = document.get("accuracy") if field else None
    after = accuracy.get("after_finetune") if isinstance(accuracy, dict) else None
    if after is not None and (not isinstance(after, (int, float)) or isinstance(after, bool) or not 0 <= after <= 1):
        raise CostModelError(f"{path}: field 'accuracy.after_finetune': {str(after)[:40]} is not a number in [0, 1]")
    return RankChoice(parsed, None if after is None else float(after))
