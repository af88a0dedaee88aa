"""The latency LUT with provenance, from evaluations, predictions or both, and its loader.

One row per layer and candidate, plus each layer's original: ranks, MACs, params, each
sub-convolution's cycles and energy (times its repeat count), totals, latency at the spec's clock,
and whether the row was evaluated or (any of its workloads) predicted. A CSV starts with
``# key: value`` lines; a JSON file has a ``provenance`` object, ``columns`` and ``rows``. Both say
which spec (hash), backend and version, predictor and its accuracy, and when.

``load_lut(path)`` reads either format, and the plain CSV of ``costmodel build`` too, into a
``LoadedLUT`` that the search core can query by layer and ranks.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from costmodels.errors import CostModelError
from costmodels.io_utils import atomic_write_text
from costmodels.lut.build import (LUT, MAX_SUBCONVS, NOISY_COLUMN, ROW_COLUMNS, SUBCONV_COLUMNS, assemble_lut,
                                  csv_text, provenance_lines, row_values)
from costmodels.problems.candidates import Form, LayerCandidates
from costmodels.sweep.records import WorkloadCost, WorkloadFailure
from costmodels.timeloop.spec import ArchSpec
from costmodels.user_files import MAX_FILE_BYTES, InputFileError, parse_json, read_user_text
from costmodels.version import __version__

LUT_FORMAT = "haloc-costmodels-lut"
LUT_FORMAT_VERSION = 1
FORMATS = ("csv", "json")
SOURCES = ("evaluated", "predicted")
COLUMNS = (*ROW_COLUMNS, "source")
MAX_LUT_BYTES = 4 * MAX_FILE_BYTES
_REQUIRED = ("layer", "form", "r1", "r2", "macs", "params", "cycles", "energy_pj", "latency_s")
_MEASURED_REQUIRED = tuple(c for c in _REQUIRED if c != "energy_pj")


class LUTFileError(CostModelError):
    """A LUT file that cannot be read: wrong columns, bad values, or a newer format."""


@dataclass(frozen=True)
class SourcedLUT:
    """A LUT and, per row, whether it was evaluated or predicted."""

    lut: LUT
    sources: tuple[str, ...]


def sourced_lut(network: str, layers: Sequence[LayerCandidates], spec: ArchSpec,
                evaluated: Mapping[str, WorkloadCost | WorkloadFailure], predicted: Mapping[str, WorkloadCost],
                backend: str, backend_version: str) -> SourcedLUT:
    """The LUT of ``layers`` from evaluated costs where there are any, predicted ones elsewhere; a
    row is "predicted" when any of its workloads is."""
    costs: dict[str, WorkloadCost | WorkloadFailure] = {**predicted}
    costs.update({k: v for k, v in evaluated.items() if isinstance(v, WorkloadCost)})
    failures = {k: v for k, v in evaluated.items() if isinstance(v, WorkloadFailure) and k not in predicted}
    lut = assemble_lut(network, tuple(layers), spec, {**costs, **failures}, backend, backend_version)
    measured = {k for k, v in evaluated.items() if isinstance(v, WorkloadCost)}
    sources = tuple("evaluated" if all(s.key in measured for s in row.subconvs) else "predicted" for row in lut.rows)
    return SourcedLUT(lut, sources)


def provenance(lut: LUT, source: str, *, predictor: str = "", accuracy: str = "", evaluated: int = 0,
               predicted: int = 0, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The provenance header of a LUT file."""
    return {
        "format": LUT_FORMAT, "format_version": LUT_FORMAT_VERSION, "network": lut.network, "arch": lut.arch,
        "spec_hash": lut.spec_hash, "backend": lut.backend, "backend_version": lut.backend_version,
        "toolkit_version": __version__, "clock_hz": lut.clock_hz, "source": source,
        "predictor": predictor or "none", "predictor_accuracy": accuracy or "n/a",
        "evaluated_workloads": evaluated, "predicted_workloads": predicted,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **dict(lut.device), **(extra or {}),
    }


def lut_text(table: SourcedLUT, header: Mapping[str, Any], fmt: str = "csv") -> str:
    if fmt not in FORMATS:
        raise LUTFileError(f"unknown LUT format '{fmt}'; available: {', '.join(FORMATS)}")
    rows = [{**row_values(table.lut, row), "source": source} for row, source in zip(table.lut.rows, table.sources)]
    columns = (*COLUMNS, NOISY_COLUMN) if table.lut.measured else COLUMNS
    if fmt == "json":
        return json.dumps({"provenance": dict(header), "columns": list(columns), "rows": rows}, indent=1) + "\n"
    return csv_text(columns, rows, provenance_lines(header.items()))


def export_lut(table: SourcedLUT, header: Mapping[str, Any], path: str | Path, fmt: str = "csv") -> Path:
    """Write the LUT with its provenance ``header`` (see ``provenance``) to ``path``, atomically."""
    path = Path(path)
    atomic_write_text(path, lut_text(table, header, fmt))
    return path


# --- loading ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LUTEntry:
    layer: str
    form: str
    r1: int
    r2: int
    macs: int
    params: int
    subconv_cycles: tuple[int, ...]         # per sub-convolution, repeat count included; () for originals
    subconv_energy_pj: tuple[float, ...]
    cycles: int
    energy_pj: float
    latency_s: float
    source: str
    noisy: bool = False                     # measured LUTs: a sub-convolution's timing stayed noisy

    @property
    def is_original(self) -> bool:
        return self.form == Form.ORIGINAL.value


@dataclass(frozen=True)
class LoadedLUT:
    """A LUT read back: provenance (empty for a plain ``costmodel build`` CSV) and entries in file
    order. Lookups by layer name and ranks serve the rank search."""

    provenance: dict[str, Any]
    entries: tuple[LUTEntry, ...]

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.layer for e in self.entries))

    def original(self, layer: str) -> LUTEntry:
        for entry in self.entries:
            if entry.layer == layer and entry.is_original:
                return entry
        raise KeyError(f"no original row for layer '{layer}'")

    def candidates(self, layer: str) -> tuple[LUTEntry, ...]:
        return tuple(e for e in self.entries if e.layer == layer and not e.is_original)

    def lookup(self, layer: str, r1: int, r2: int) -> LUTEntry:
        for entry in self.candidates(layer):
            if (entry.r1, entry.r2) == (r1, r2):
                return entry
        raise KeyError(f"layer '{layer}' has no candidate r1={r1}, r2={r2}")

    def latency_table(self) -> dict[str, dict[tuple[int, int], float]]:
        """Per layer, latency in seconds by (r1, r2) of each candidate."""
        table: dict[str, dict[tuple[int, int], float]] = {}
        for entry in self.entries:
            if not entry.is_original:
                table.setdefault(entry.layer, {})[(entry.r1, entry.r2)] = entry.latency_s
        return table


def load_lut(path: str | Path) -> LoadedLUT:
    """Read a LUT written by ``export_lut`` (CSV or JSON) or ``costmodel build`` (CSV)."""
    path = Path(path)
    try:
        text = read_user_text(path, MAX_LUT_BYTES)
    except InputFileError as exc:
        raise LUTFileError(str(exc)) from None
    if text.lstrip().startswith("{"):
        try:
            document = parse_json(text, str(path))
        except InputFileError as exc:
            raise LUTFileError(str(exc)) from None
        if not isinstance(document, dict) or not isinstance(document.get("rows"), list):
            raise LUTFileError(f"{path}: a JSON LUT needs a 'rows' list")
        header = document.get("provenance") or {}
        records = document["rows"]
    else:
        header, records = _read_csv(path, text)
    if not isinstance(header, dict):
        raise LUTFileError(f"{path}: 'provenance' must be an object")
    version = header.get("format_version", LUT_FORMAT_VERSION)
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise LUTFileError(f"{path}: format_version {version!r} is not an integer") from None
    if version > LUT_FORMAT_VERSION:
        raise LUTFileError(f"{path}: LUT format version {version} is newer than this toolkit reads (up to "
                           f"{LUT_FORMAT_VERSION}); upgrade haloc-costmodels")
    measured = str(header.get("measured", "")).lower() == "true"
    entries = tuple(_entry(path, i, record, measured) for i, record in enumerate(records, start=1))
    return LoadedLUT(dict(header), entries)


def _read_csv(path: Path, text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] = {}
    lines = text.splitlines()
    body = 0
    while body < len(lines) and lines[body].startswith("#"):
        key, sep, value = lines[body][1:].partition(":")
        if sep:
            header[key.strip()] = value.strip()
        body += 1
    reader = csv.DictReader(lines[body:])
    try:
        required = _MEASURED_REQUIRED if header.get("measured") == "true" else _REQUIRED
        missing = [c for c in required if c not in (reader.fieldnames or ())]
        if missing:
            raise LUTFileError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    except csv.Error as exc:
        raise LUTFileError(f"{path}: not a readable CSV: line {reader.line_num}: {exc}") from None
    # a `costmodel build` CSV has no header: its network and target are in every row
    for column in ("network", "arch"):
        values = {row.get(column) for row in rows} - {None, ""}
        if column not in header and len(values) == 1:
            header[column] = values.pop()
    return header, rows


def _entry(path: Path, index: int, record: Any, measured: bool = False) -> LUTEntry:
    """One row; a measured LUT's rows have no energy (NaN here) and a ``noisy`` flag."""
    if not isinstance(record, dict):
        raise LUTFileError(f"{path}: row {index} is not an object")
    missing = [c for c in (_MEASURED_REQUIRED if measured else _REQUIRED) if record.get(c) in (None, "")]
    if missing:
        raise LUTFileError(f"{path}: row {index}: missing {', '.join(missing)}")
    source = record.get("source") or "evaluated"
    if source not in SOURCES:
        raise LUTFileError(f"{path}: row {index}: source '{source}' is not one of {', '.join(SOURCES)}")
    numbers = [c for c in ("cycles", "energy_pj", "latency_s", *SUBCONV_COLUMNS) if record.get(c) not in (None, "")]
    for column in numbers:
        try:
            finite = math.isfinite(float(record[column])) and float(record[column]) >= 0
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise LUTFileError(f"{path}: row {index}: column {column}: {str(record[column])[:40]!r} is not a "
                               f"finite non-negative number")
    try:
        subs = [(int(float(record[f"sub{i}_cycles"])), _energy(record[f"sub{i}_energy_pj"], measured))
                for i in range(1, MAX_SUBCONVS + 1) if record.get(f"sub{i}_cycles") not in (None, "")]
        return LUTEntry(str(record["layer"]), str(record["form"]), int(record["r1"]), int(record["r2"]),
                        int(record["macs"]), int(record["params"]), tuple(c for c, _ in subs),
                        tuple(e for _, e in subs), int(float(record["cycles"])),
                        _energy(record.get("energy_pj"), measured), float(record["latency_s"]), source,
                        str(record.get(NOISY_COLUMN, "0")).lower() in ("1", "true"))
    except (TypeError, ValueError, KeyError) as exc:
        raise LUTFileError(f"{path}: row {index}: bad value: {exc}") from None


def _energy(value: Any, measured: bool) -> float:
    """A measured LUT leaves energy blank: NaN, not a made-up zero."""
    if measured and value in (None, ""):
        return float("nan")
    return float(value)
