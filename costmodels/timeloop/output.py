"""Read what `timeloop-mapper` / `timeloop-model` write (``*.stats.txt`` and ``*.map.yaml``) into an
``Evaluation``.

The stats file is Timeloop's human-readable report. What is read from it:

- ``Buffer and Arithmetic Levels``: level 0 is the arithmetic unit (utilized instances, computes,
  energy); every further level is a storage level, innermost first, with its cycles and, per data
  space it keeps, the utilized capacity and instances, scalar reads / fills / updates per instance
  and the energy of all instances (the access energy plus the temporal-reduction and
  address-generation energy Timeloop lists beside it).
- ``Networks``: the energy of each network (zero for legacy networks without wire/router energy);
  it counts towards the total, not towards any level.
- ``Summary Stats``: the total cycles (and, as a cross-check, the fJ/compute table).

The total energy is the sum of the per-level totals, each printed to 0.01 pJ, which is more precise
than the summary's rounded "Energy: x uJ" line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from costmodels.errors import CostModelError
from costmodels.problems.workloads import DATA_SPACES, Workload
from costmodels.timeloop.evaluation import DataSpaceStats, Evaluation, LevelStats
from costmodels.timeloop.mapping import Mapping
from costmodels.timeloop.spec import ArchSpec

__all__ = ["TimeloopOutputError", "TimeloopStats", "LevelRecord", "parse_stats", "read_stats",
           "stats_to_evaluation", "read_timeloop_output"]

_LEVEL = re.compile(r"^Level (\d+)\s*$")
_NAME = re.compile(r"^=== (.+?) ===\s*$")
_NETWORK = re.compile(r"^Network (\d+)\s*$")
_FIELD = re.compile(r"^\s+([^:]+?)\s*:\s*(.*?)\s*$")
_SPACE = re.compile(r"^ {4}(\w+):\s*$")
_COMPUTE_KEYS = ("Computes (total)", "Actual Computes (total)", "Algorithmic Computes (total)")
_ENERGY_KEYS = ("Energy (total)", "Temporal Reduction Energy (total)", "Address Generation Energy (total)")


class TimeloopOutputError(CostModelError):
    """A Timeloop output file that cannot be read; the message names the file."""


@dataclass
class LevelRecord:
    """One storage level as the stats file reports it."""

    name: str
    cycles: int | None = None
    data_spaces: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class TimeloopStats:
    """The parts of a stats file an ``Evaluation`` is made of."""

    source: str
    cycles: int
    computes: int
    mac_name: str
    mac_instances_utilized: int
    mac_energy_pj: float
    levels: list[LevelRecord]
    network_energy_pj: float
    fj_per_compute_total: float | None

    @property
    def energy_pj(self) -> float:
        return self.mac_energy_pj + self.network_energy_pj + sum(
            _data_space_energy(self, ds) for level in self.levels for ds in level.data_spaces.values())


def read_stats(path: str | Path) -> TimeloopStats:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TimeloopOutputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TimeloopOutputError(f"{path}: not a Timeloop stats file (not text)") from None
    return parse_stats(text, str(path))


def parse_stats(text: str, source: str = "<stats>") -> TimeloopStats:
    """Parse the text of a ``timeloop-*.stats.txt``; raises ``TimeloopOutputError`` naming ``source``."""
    def fail(problem: str) -> TimeloopOutputError:
        return TimeloopOutputError(f"{source}: not a readable Timeloop stats file: {problem}")

    lines = text.splitlines()
    if not any(line.strip() == "Buffer and Arithmetic Levels" for line in lines):
        raise fail("no 'Buffer and Arithmetic Levels' section")

    section = "levels"
    levels: list[tuple[int, str, dict[str, str], dict[str, dict[str, str]]]] = []
    network_energy = 0.0
    summary: dict[str, str] = {}
    fj_total: float | None = None
    current: tuple[int, str, dict[str, str], dict[str, dict[str, str]]] | None = None
    level_index: int | None = None
    subsection = ""
    space: str | None = None
    in_fj = False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == "Networks" and not line.startswith(" "):
            section, current = "networks", None
            continue
        if stripped == "Summary Stats" and not line.startswith(" "):
            section, current = "summary", None
            continue
        if stripped == "Operational Intensity Stats" and not line.startswith(" "):
            section, current = "other", None
            continue
        if section == "levels":
            match = _LEVEL.match(line)
            if match:
                level_index, current = int(match[1]), None
                continue
            match = _NAME.match(line)
            if match and level_index is not None:
                current = (level_index, match[1], {}, {})
                levels.append(current)
                subsection, space = "", None
                continue
            if current is None:
                continue
            if stripped in ("SPECS", "MAPPING", "STATS"):
                subsection, space = stripped, None
                continue
            if subsection != "STATS" or not stripped or set(stripped) == {"-"}:
                continue
            match = _SPACE.match(line)
            if match and match[1] in DATA_SPACES:
                space = match[1]
                current[3][space] = {}
                continue
            match = _FIELD.match(line)
            if not match:
                continue
            key, value = match[1], match[2]
            if space is not None and line.startswith(" " * 8):
                current[3][space][key] = value
            else:
                space = None
                current[2][key] = value
        elif section == "networks":
            match = _FIELD.match(line)
            if match and match[1] == "Energy (total)":
                network_energy += _number(match[2], fail, f"line {number}")
        elif section == "summary":
            if stripped.startswith("fJ/Compute"):
                in_fj = True
                continue
            if in_fj and "=" in stripped:
                name, _, value = stripped.partition("=")
                if name.strip() == "Total":
                    fj_total = _number(value, fail, f"line {number}")
                continue
            if ":" in stripped:
                key, _, value = stripped.partition(":")
                summary[key.strip()] = value.strip()
            elif "=" in stripped:
                key, _, value = stripped.partition("=")
                summary[key.strip()] = value.strip()

    if not levels:
        raise fail("no 'Level N' blocks")
    if levels[0][0] != 0:
        raise fail("level 0 (the arithmetic unit) is missing")
    if "Cycles" not in summary:
        raise fail("no 'Summary Stats' section with 'Cycles'")
    _, mac_name, mac_fields, _ = levels[0]
    computes_key = next((k for k in _COMPUTE_KEYS if k in mac_fields), None)
    if computes_key is None:
        raise fail(f"level 0 ({mac_name}) has no computes count")
    for key in ("Utilized instances", "Energy (total)"):
        if key not in mac_fields:
            raise fail(f"level 0 ({mac_name}) has no '{key}'")
    records = []
    for index, name, fields, spaces in levels[1:]:
        cycles = int(_number(fields["Cycles"], fail, f"level {index} Cycles")) if "Cycles" in fields else None
        for space_name, values in spaces.items():
            for key in ("Utilized capacity", "Utilized instances (max)", "Scalar reads (per-instance)",
                        "Scalar fills (per-instance)", "Scalar updates (per-instance)", "Energy (total)"):
                if key not in values:
                    raise fail(f"level {index} ({name}) {space_name}: no '{key}'")
                _number(values[key], fail, f"level {index} ({name}) {space_name} {key}")
        records.append(LevelRecord(name, cycles, spaces))
    return TimeloopStats(
        source=source,
        cycles=int(_number(summary["Cycles"], fail, "Summary Stats Cycles")),
        computes=int(_number(mac_fields[computes_key], fail, f"level 0 {computes_key}")),
        mac_name=mac_name,
        mac_instances_utilized=int(_number(mac_fields["Utilized instances"], fail, "level 0 Utilized instances")),
        mac_energy_pj=_number(mac_fields["Energy (total)"], fail, "level 0 Energy (total)"),
        levels=records,
        network_energy_pj=network_energy,
        fj_per_compute_total=fj_total,
    )


def _number(text: str, fail, where: str) -> float:
    token = text.split()[0] if text.split() else ""
    try:
        return float(token)
    except ValueError:
        raise fail(f"{where}: expected a number, got '{text}'") from None


def _data_space_energy(stats: TimeloopStats, values: dict[str, str]) -> float:
    def fail(problem: str) -> TimeloopOutputError:
        return TimeloopOutputError(f"{stats.source}: {problem}")
    return sum(_number(values[k], fail, k) for k in _ENERGY_KEYS if k in values)


def stats_to_evaluation(stats: TimeloopStats, spec: ArchSpec, mapping: Mapping, workload: Workload | None = None,
                        backend: str = "timeloop", backend_version: str = "") -> Evaluation:
    """An ``Evaluation`` of parsed stats. The stats' storage levels must be the spec's, in its order;
    with ``workload``, its MACs must equal Timeloop's computes."""
    names = [level.name for level in stats.levels]
    expected = [level.name for level in spec.storage]
    if names != expected:
        raise TimeloopOutputError(f"{stats.source}: storage levels {names} do not match the spec's "
                                  f"{expected} (innermost first)")
    if workload is not None and workload.macs != stats.computes:
        raise TimeloopOutputError(f"{stats.source}: {stats.computes} computes, but workload {workload.name} has "
                                  f"{workload.macs} MACs: the stats are of another workload")

    def fail(problem: str) -> TimeloopOutputError:
        return TimeloopOutputError(f"{stats.source}: {problem}")

    levels = []
    for record in stats.levels:
        spaces = []
        for name in DATA_SPACES:
            values = record.data_spaces.get(name)
            if values is None:
                continue
            spaces.append(DataSpaceStats(
                name=name,
                utilized_capacity=int(_number(values["Utilized capacity"], fail, "Utilized capacity")),
                utilized_instances=int(_number(values["Utilized instances (max)"], fail, "Utilized instances")),
                reads=int(_number(values["Scalar reads (per-instance)"], fail, "Scalar reads")),
                fills=int(_number(values["Scalar fills (per-instance)"], fail, "Scalar fills")),
                updates=int(_number(values["Scalar updates (per-instance)"], fail, "Scalar updates")),
                energy_pj=_data_space_energy(stats, values)))
        levels.append(LevelStats(name=record.name, cycles=record.cycles if record.cycles is not None else stats.cycles,
                                 data_spaces=tuple(spaces), energy_pj=sum(s.energy_pj for s in spaces)))
    macs = stats.computes
    energy = stats.mac_energy_pj + stats.network_energy_pj + sum(level.energy_pj for level in levels)
    utilization = macs / (stats.cycles * spec.compute.instances) if stats.cycles else 0.0
    return Evaluation(workload_key=workload.key if workload is not None else "", cycles=stats.cycles,
                      energy_pj=energy, macs=macs, mac_energy_pj=stats.mac_energy_pj, utilization=utilization,
                      levels=tuple(levels), mapping=mapping, backend=backend, backend_version=backend_version)


def read_timeloop_output(folder: str | Path, spec: ArchSpec, workload: Workload | None = None,
                         prefix: str = "timeloop-mapper", mapping: Mapping | None = None,
                         backend: str = "timeloop", backend_version: str = "") -> Evaluation:
    """Read ``PREFIX.stats.txt`` and (unless ``mapping`` is given) ``PREFIX.map.yaml`` in ``folder``."""
    from costmodels.timeloop.mapping_yaml import read_mapping

    folder = Path(folder)
    stats_path = folder / f"{prefix}.stats.txt"
    if not stats_path.is_file():
        raise TimeloopOutputError(f"{stats_path}: missing (Timeloop wrote no stats)")
    stats = read_stats(stats_path)
    if mapping is None:
        map_path = folder / f"{prefix}.map.yaml"
        if not map_path.is_file():
            raise TimeloopOutputError(f"{map_path}: missing (Timeloop wrote no mapping)")
        mapping = read_mapping(map_path, spec)
    return stats_to_evaluation(stats, spec, mapping, workload, backend, backend_version)
