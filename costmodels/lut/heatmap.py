"""Latency of one layer's Tucker-2 form over a dense (r1, r2) grid: HALOC's Figure 2 on a target.

The paper measured GPUs; on an accelerator spec the same picture shows where latency steps with
the ranks (PE-array tiling), which is why the candidates sit on a grid of multiples of a step.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from costmodels.backends.torch_timing import DeviceTarget
from costmodels.errors import CostModelError
from costmodels.io_utils import atomic_write_bytes, atomic_write_text, output_folder
from costmodels.network.layers import ConvLayer
from costmodels.problems.candidates import Form, Tucker2Candidate
from costmodels.problems.workloads import Workload, subconv_workloads
from costmodels.sweep.records import WorkloadCost
from costmodels.timeloop.spec import ArchSpec

if TYPE_CHECKING:
    from costmodels.backends import Backend
    from costmodels.sweep.cache import ResultsCache


@dataclass(frozen=True)
class RankHeatmap:
    layer: ConvLayer
    arch: str
    clock_hz: float
    r1: tuple[int, ...]            # rows
    r2: tuple[int, ...]            # columns
    cycles: np.ndarray             # shape (len(r1), len(r2)); NaN where a workload failed
    original_cycles: int
    measured: bool = False         # a device's measured latency (cycles are nanoseconds), not a spec's clock

    @property
    def latency_ms(self) -> np.ndarray:
        return self.cycles / self.clock_hz * 1e3


def rank_heatmap(layer: ConvLayer, spec: ArchSpec, step: int, backend: "Backend", cache: "ResultsCache | None",
                 jobs: int = 1, progress: Callable[[int, int, int], None] | None = None) -> RankHeatmap:
    """Cycles of every Tucker-2 candidate with r1, r2 in step, 2*step, ... up to the channels."""
    from costmodels.sweep.runner import run_sweep

    if layer.groups != 1 or layer.kernel == (1, 1):
        raise CostModelError(f"layer {layer.name}: a heat map needs a dense KxK conv (the Tucker-2 form); "
                             f"this one is {'grouped' if layer.groups != 1 else '1x1'}")
    r1s = tuple(range(step, layer.out_channels + 1, step))
    r2s = tuple(range(step, layer.in_channels + 1, step))
    if not r1s or not r2s:
        raise CostModelError(f"layer {layer.name}: step {step} exceeds its channels "
                             f"({layer.in_channels}->{layer.out_channels})")
    grid = [[Tucker2Candidate(layer, Form.TUCKER2, r1, r2) for r2 in r2s] for r1 in r1s]
    uses = {c: subconv_workloads(c) for row in grid for c in row}
    original = Workload.from_layer(layer)
    workloads = [u.workload for us in uses.values() for u in us] + [original]
    results = run_sweep(workloads, spec, backend, cache=cache, jobs=jobs, progress=progress)

    def cycles(candidate_uses) -> float:
        costs = [results[u.workload.key] for u in candidate_uses]
        if not all(isinstance(c, WorkloadCost) for c in costs):
            return float("nan")
        return float(sum(u.count * c.cycles for u, c in zip(candidate_uses, costs)))

    matrix = np.array([[cycles(uses[c]) for c in row] for row in grid])
    original_cost = results[original.key]
    if not isinstance(original_cost, WorkloadCost):
        raise CostModelError(f"layer {layer.name}: the original layer could not be evaluated: "
                             f"{original_cost.reason}")
    return RankHeatmap(layer, spec.name, spec.clock_hz, r1s, r2s, matrix, original_cost.cycles,
                       isinstance(spec, DeviceTarget))


def heatmap_csv(heatmap: RankHeatmap) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # MACs and the original's latency make the file enough to judge FLOPs against latency on its own
    writer.writerow(["r1", "r2", "cycles", "latency_ms", "original_cycles", "macs", "original_latency_ms"])
    original_ms = f"{heatmap.original_cycles / heatmap.clock_hz * 1e3:.6f}"
    for i, r1 in enumerate(heatmap.r1):
        for j, r2 in enumerate(heatmap.r2):
            value = heatmap.cycles[i, j]
            writer.writerow([r1, r2, "" if np.isnan(value) else int(value),
                             "" if np.isnan(value) else f"{value / heatmap.clock_hz * 1e3:.6f}",
                             heatmap.original_cycles, Tucker2Candidate(heatmap.layer, Form.TUCKER2, r1, r2).macs,
                             original_ms])
    return buffer.getvalue()


def plot_heatmap(heatmap: RankHeatmap) -> bytes:
    """The heat map as PNG bytes (matplotlib, Agg backend)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layer = heatmap.layer
    figure, ax = plt.subplots(figsize=(7.2, 5.8))
    image = ax.imshow(heatmap.latency_ms, origin="lower", aspect="auto", cmap="viridis",
                      extent=(heatmap.r2[0] - 0.5 * _step(heatmap.r2), heatmap.r2[-1] + 0.5 * _step(heatmap.r2),
                              heatmap.r1[0] - 0.5 * _step(heatmap.r1), heatmap.r1[-1] + 0.5 * _step(heatmap.r1)))
    ax.set_xlabel("r2 (input-side rank)")
    ax.set_ylabel("r1 (output-side rank)")
    tick = 32 if max(heatmap.r1[-1], heatmap.r2[-1]) <= 256 else 64     # labels that do not overlap
    ax.set_xticks([r for r in heatmap.r2 if r % tick == 0])
    ax.set_yticks([r for r in heatmap.r1 if r % tick == 0])
    ax.grid(color="white", linewidth=0.3, alpha=0.4)
    figure.colorbar(image, ax=ax, label="latency (ms, measured median)" if heatmap.measured else
                    f"latency (ms at {heatmap.clock_hz / 1e6:g} MHz)")
    original_ms = heatmap.original_cycles / heatmap.clock_hz * 1e3
    ax.set_title(f"{layer.name} ({layer.in_channels}->{layer.out_channels}, {layer.kernel[0]}x{layer.kernel[1]}, "
                 f"{layer.output_size[0]}x{layer.output_size[1]} out) on {heatmap.arch}\n"
                 f"Tucker-2 latency by rank; original layer {original_ms:.3f} ms"
                 f"{'; white: no legal mapping' if np.isnan(heatmap.cycles).any() else ''}", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _step(values: tuple[int, ...]) -> int:
    return values[1] - values[0] if len(values) > 1 else values[0]


def write_heatmap(heatmap: RankHeatmap, out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    stem = f"{heatmap.layer.name.replace('.', '_')}-{heatmap.arch}"
    png = plot_heatmap(heatmap)
    with output_folder(out) as staging:   # the CSV and the plot: both or neither
        atomic_write_text(staging / f"{stem}.csv", heatmap_csv(heatmap))
        atomic_write_bytes(staging / f"{stem}.png", png)
    return out / f"{stem}.csv", out / f"{stem}.png"
