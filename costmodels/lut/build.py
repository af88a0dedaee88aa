"""`costmodel build`: price every layer and candidate of a network on a target.

Each unique workload is mapped and evaluated once; layers and candidates then add up their
sub-convolutions. The result is a latency LUT (one row per layer x candidate, plus the original
layer) and a network summary.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from costmodels.backends.torch_timing import DeviceTarget
from costmodels.io_utils import atomic_write_text, output_folder
from costmodels.problems.candidates import Form, LayerCandidates, Tucker2Candidate
from costmodels.problems.workloads import NetworkWorkloads, subconv_workloads
from costmodels.sweep.records import WorkloadCost, WorkloadFailure
from costmodels.version import __version__

if TYPE_CHECKING:
    from costmodels.backends import Backend, Target
    from costmodels.sweep.cache import ResultsCache

MAX_SUBCONVS = 3


@dataclass(frozen=True)
class SubconvCost:
    key: str
    count: int
    cycles: int
    energy_pj: float


@dataclass(frozen=True)
class LUTRow:
    layer: str
    form: str
    r1: int
    r2: int
    macs: int
    params: int
    subconvs: tuple[SubconvCost, ...]
    cycles: int
    energy_pj: float
    latency_s: float
    noisy: bool = False      # measured targets: a sub-convolution's timing stayed noisy


@dataclass(frozen=True)
class LUT:
    network: str
    arch: str
    spec_hash: str
    backend: str
    backend_version: str
    clock_hz: float
    rows: tuple[LUTRow, ...]
    failures: tuple[WorkloadFailure, ...]
    # A measured target's provenance (``DeviceTarget.provenance``); empty for a simulated spec.
    device: tuple[tuple[str, str], ...] = ()

    @property
    def measured(self) -> bool:
        return bool(self.device)


def _row(candidate: Tucker2Candidate, costs: dict[str, WorkloadCost], clock_hz: float) -> LUTRow | None:
    uses = subconv_workloads(candidate)
    if any(u.workload.key not in costs for u in uses):
        return None
    subs = tuple(SubconvCost(u.workload.key, u.count, u.count * costs[u.workload.key].cycles,
                             u.count * costs[u.workload.key].energy_pj) for u in uses)
    cycles = sum(s.cycles for s in subs)
    return LUTRow(candidate.layer.name, candidate.form.value, candidate.r1, candidate.r2, candidate.macs,
                  candidate.params, subs, cycles, sum(s.energy_pj for s in subs), cycles / clock_hz,
                  any(costs[u.workload.key].noisy for u in uses))


def assemble_lut(network: str, layers: tuple[LayerCandidates, ...], spec: "Target",
                 results: dict[str, WorkloadCost | WorkloadFailure], backend: str = "builtin",
                 backend_version: str = "") -> LUT:
    """Rows of each layer's original and its candidates; a row whose workloads failed is left out."""
    costs = {k: v for k, v in results.items() if isinstance(v, WorkloadCost)}
    rows = tuple(row for lc in layers for row in (_row(c, costs, spec.clock_hz) for c in (lc.original, *lc.candidates))
                 if row is not None)
    failures = tuple(v for v in results.values() if isinstance(v, WorkloadFailure))
    device = spec.provenance() if isinstance(spec, DeviceTarget) else ()
    return LUT(network, spec.name, spec.content_hash, backend, backend_version, spec.clock_hz, rows, failures,
               device)


def build_lut(network: str, workloads: NetworkWorkloads, spec: "Target", backend: "Backend | None" = None,
              cache: "ResultsCache | None" = None, jobs: int = 1, scheduler: str | None = None,
              progress: Callable[[int, int, int], None] | None = None) -> LUT:
    """Evaluate every unique workload (through the cache when given) and assemble the LUT."""
    from costmodels.backends import get_backend
    from costmodels.sweep.runner import run_sweep
    backend = backend or get_backend("builtin")
    results = run_sweep(workloads.unique.values(), spec, backend, cache=cache, jobs=jobs, scheduler=scheduler,
                        progress=progress)
    return assemble_lut(network, workloads.layers, spec, results, backend.name, backend.version)


SUBCONV_COLUMNS = tuple(f"sub{i}_{f}" for i in range(1, MAX_SUBCONVS + 1) for f in ("cycles", "energy_pj"))
ROW_COLUMNS = ("network", "arch", "layer", "form", "r1", "r2", "macs", "params", *SUBCONV_COLUMNS, "cycles",
               "energy_pj", "latency_s")
CSV_COLUMNS = (*ROW_COLUMNS, "original_cycles", "original_energy_pj", "speedup")
NOISY_COLUMN = "noisy"   # measured LUTs only, so simulated ones keep their columns
ENERGY_COLUMNS = tuple(c for c in ROW_COLUMNS if c.endswith("energy_pj"))


def row_values(lut: LUT, row: LUTRow) -> dict[str, object]:
    """One LUT row as plain values (``None`` for an empty cell), in ``ROW_COLUMNS``."""
    subs: dict[str, object] = {c: None for c in SUBCONV_COLUMNS}
    if row.form != Form.ORIGINAL.value:
        for i, sub in enumerate(row.subconvs[:MAX_SUBCONVS], start=1):
            subs[f"sub{i}_cycles"], subs[f"sub{i}_energy_pj"] = sub.cycles, round(sub.energy_pj, 1)
    values = {"network": lut.network, "arch": lut.arch, "layer": row.layer, "form": row.form, "r1": row.r1,
              "r2": row.r2, "macs": row.macs, "params": row.params, **subs, "cycles": row.cycles,
              "energy_pj": round(row.energy_pj, 1), "latency_s": float(f"{row.latency_s:.9g}")}
    if lut.measured:   # energy is not measured; a noisy timing is flagged
        values.update({c: None for c in ENERGY_COLUMNS}, noisy=int(row.noisy))
    return values


def provenance_lines(items) -> str:
    """``# key: value`` lines, one per key, whatever the value holds."""
    return "".join(f"# {key}: {' '.join(str(value).split())}\n" for key, value in items)


def csv_text(columns: tuple[str, ...], rows: list[dict[str, object]], header: str = "") -> str:
    buffer = io.StringIO()
    buffer.write(header)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for values in rows:
        writer.writerow(["" if values[c] is None else values[c] for c in columns])
    return buffer.getvalue()


def lut_csv(lut: LUT) -> str:
    """The LUT of ``costmodel build``: each row beside its layer's original cost and the speed-up."""
    originals = {r.layer: r for r in lut.rows if r.form == Form.ORIGINAL.value}
    rows = []
    for row in lut.rows:
        original = originals.get(row.layer)   # missing when the original layer failed to evaluate
        rows.append({**row_values(lut, row),
                     "original_cycles": original.cycles if original else None,
                     "original_energy_pj": round(original.energy_pj, 1) if original and not lut.measured else None,
                     "speedup": round(original.cycles / row.cycles, 4) if original else None})
    if not lut.measured:
        return csv_text(CSV_COLUMNS, rows)
    header = (("network", lut.network), ("target", lut.arch), ("backend", lut.backend),
              ("backend_version", lut.backend_version), *lut.device, ("toolkit_version", __version__),
              ("noisy_rows", sum(r.noisy for r in lut.rows)),
              ("created", datetime.now(timezone.utc).isoformat(timespec="seconds")))
    return csv_text((*CSV_COLUMNS, NOISY_COLUMN), rows, provenance_lines(header))


def lut_summary(lut: LUT) -> dict:
    originals = [r for r in lut.rows if r.form == Form.ORIGINAL.value]
    by_layer: dict[str, list[LUTRow]] = {}
    for row in lut.rows:
        by_layer.setdefault(row.layer, []).append(row)
    fastest = [min(rows, key=lambda r: (r.cycles, r.energy_pj)) for rows in by_layer.values()]
    cycles = sum(r.cycles for r in originals)
    summary = {
        "network": lut.network, "arch": lut.arch, "spec_hash": lut.spec_hash, "backend": lut.backend,
        "backend_version": lut.backend_version,
        "toolkit_version": __version__, "clock_hz": lut.clock_hz,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "layers": len(originals), "rows": len(lut.rows),
        # None when no original layer could be evaluated (every workload failed)
        "original": {"cycles": cycles, "latency_s": cycles / lut.clock_hz,
                     "images_per_s": lut.clock_hz / cycles if cycles else None,
                     "energy_pj": sum(r.energy_pj for r in originals),
                     "macs": sum(r.macs for r in originals)} if originals else None,
        "fastest_per_layer": {"cycles": sum(r.cycles for r in fastest),
                              "macs": sum(r.macs for r in fastest)},
        "failures": [asdict(f) for f in lut.failures],
    }
    if lut.measured:
        summary["original"]["energy_pj"] = None
        summary.update(device=dict(lut.device), noisy_rows=sum(r.noisy for r in lut.rows))
    return summary


def write_lut(lut: LUT, out_dir: str | Path, extra: dict | None = None) -> tuple[Path, Path]:
    """``lut.csv`` and ``summary.json`` (with ``extra`` sections, e.g. a measured LUT's additivity check) in
    ``out_dir``: both or neither."""
    out = Path(out_dir)
    with output_folder(out) as staging:
        atomic_write_text(staging / "lut.csv", lut_csv(lut))
        atomic_write_text(staging / "summary.json", json.dumps({**lut_summary(lut), **(extra or {})}, indent=1) + "\n")
    return out / "lut.csv", out / "summary.json"

