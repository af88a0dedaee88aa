"""A small reader of ``timeloop-mapper.stats.txt`` (Timeloop v3), for the tests: per storage level
its cycles and, per kept data space, the "Key : value" stats; the MAC level; the summary."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_LEVEL = re.compile(r"^=== (?P<name>\S+) ===$")
_KEY_VALUE = re.compile(r"^(?P<key>[^:]+?)\s*:\s*(?P<value>.*)$")
_SUMMARY = re.compile(r"^(?P<key>[^:=]+?)\s*[:=]\s*(?P<value>.*)$")      # "Cycles: 1", "Computes = 2"
_DATA_SPACE = re.compile(r"^    (?P<name>Weights|Inputs|Outputs):$")


@dataclass
class LevelReport:
    name: str
    stats: dict[str, str] = field(default_factory=dict)              # level-wide STATS lines
    data_spaces: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        return int(self.stats["Cycles"])

    def number(self, space: str, key: str) -> float:
        """A data-space stat as a number (units such as 'pJ' dropped)."""
        return float(self.data_spaces[space][key].split()[0])

    def level_number(self, key: str) -> float:
        """A level-wide stat (such as the MAC level's 'Energy (total)') as a number."""
        return float(self.stats[key].split()[0])


@dataclass
class StatsReport:
    levels: dict[str, LevelReport]      # storage levels and the MAC level, file order
    summary: dict[str, str]             # summary lines; the per-level fJ/Compute lines come after

    @property
    def cycles(self) -> int:
        return int(self.summary["Cycles"])

    @property
    def computes(self) -> int:
        return int(self.summary["Computes"])


def read_stats(path: str | Path) -> StatsReport:
    levels: dict[str, LevelReport] = {}
    summary: dict[str, str] = {}
    section = "levels"              # then "networks" (skipped), then "summary"
    current: LevelReport | None = None
    space: str | None = None
    in_stats = False
    for raw in Path(path).read_text().splitlines():
        line = raw.rstrip()
        if line == "Networks":
            section = "networks"
        elif line == "Summary Stats":
            section = "summary"
        elif section == "summary":
            match = _SUMMARY.match(line.strip())
            if match:
                summary.setdefault(match["key"].strip(), match["value"].strip())
        elif section == "levels":
            level = _LEVEL.match(line)
            if level:
                current = levels.setdefault(level["name"], LevelReport(level["name"]))
                space, in_stats = None, False
            elif line.strip() == "STATS":
                in_stats = True
            elif current is not None and in_stats:
                data_space = _DATA_SPACE.match(line)
                match = _KEY_VALUE.match(line.strip())
                if data_space:
                    space = data_space["name"]
                    current.data_spaces[space] = {}
                elif match:
                    (current.data_spaces[space] if space else current.stats)[match["key"].strip()] = \
                        match["value"].strip()
    return StatsReport(levels, summary)
