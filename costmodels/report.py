"""`costmodel report DIR`: a folder that a build, a LUT export, a fit, a heat map or a search wrote, turned
into one Markdown page with its plots, so a reader sees what it says without opening CSVs."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from costmodels.errors import CostModelError
from costmodels.io_utils import atomic_write_bytes, atomic_write_text, output_folder
from costmodels.lut.export import LUT_FORMAT, LoadedLUT, LUTEntry, LUTFileError, load_lut
from costmodels.lut.staircase import analyse_staircase, staircase_lines
from costmodels.problems.candidates import RankGrid
from costmodels.user_files import InputFileError, parse_json, read_user_text

REPORT_NAME = "report.md"
SEARCH_REPORT = "report.json"


@dataclass(frozen=True)
class FolderReport:
    markdown: str
    images: dict[str, bytes]     # file name -> PNG written beside the report


def efficient_candidates(entries: list[LUTEntry]) -> list[LUTEntry]:
    """Efficient candidates: none other keeps as many MACs (the capacity that accuracy needs) at the same or a
    lower latency. The rest cost latency without buying capacity."""
    ordered = sorted(entries, key=lambda e: (-e.macs, e.cycles))
    front, best = [], float("inf")
    for entry in ordered:
        if entry.cycles < best:
            front.append(entry)
            best = entry.cycles
    return sorted(front, key=lambda e: e.macs)


def _pareto_plot(lut: LoadedLUT, title: str) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 5))
    for layer in lut.layers:
        original = lut.original(layer)
        candidates = list(lut.candidates(layer))
        if not candidates or not original.cycles or not original.macs:
            continue
        x = [c.macs / original.macs for c in candidates]
        y = [c.cycles / original.cycles for c in candidates]
        ax.scatter(x, y, s=8, alpha=0.35)
        front = efficient_candidates(candidates)
        ax.plot([c.macs / original.macs for c in front], [c.cycles / original.cycles for c in front],
                linewidth=0.8, alpha=0.8)
    ax.axhline(1.0, color="black", linewidth=0.6, linestyle="--")
    ax.set_xlabel("MACs / original layer's MACs")
    ax.set_ylabel("latency / original layer's latency")
    ax.set_title(f"{title}\nevery candidate of every layer; lines: each layer's efficient candidates (most MACs for the latency)", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _lut_section(lut: LoadedLUT, label: str, title: str, image: str) -> tuple[list[str], dict[str, bytes]]:
    p = lut.provenance
    lines = [f"## LUT `{label}`", ""]
    if p:
        lines += ["| field | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in p.items()), ""]
    originals = [e for e in lut.entries if e.is_original]
    cycles = sum(e.cycles for e in originals)
    latency = sum(e.latency_s for e in originals)
    fastest = [min((lut.original(layer), *lut.candidates(layer)), key=lambda e: e.cycles) for layer in lut.layers]
    best = sum(e.cycles for e in fastest)
    lines += [f"{len(lut.layers)} layers, {len(lut.entries)} rows. Original network: {cycles:,} cycles, "
              f"{latency * 1e3:.3f} ms ({1 / latency:.1f} images/s) at batch 1; the fastest option of every "
              f"layer together: {best:,} cycles ({cycles / best if best else float('nan'):.2f}x faster).", "",
              "Kendall tau: MACs against cycles over the layer's candidates (1 = FLOPs rank them as the target does).",
              "",
              "| layer | original cycles | candidates | fastest option | its cycles | speed-up | Kendall tau | "
              "efficient ranks (MACs vs cycles) |",
              "|---|---:|---:|---|---:|---:|---:|---|"]
    for layer, quickest in zip(lut.layers, fastest):
        original = lut.original(layer)
        candidates = lut.candidates(layer)
        front = ", ".join(f"{e.r1}" if e.r1 == e.r2 else f"{e.r1}/{e.r2}" for e in efficient_candidates(list(candidates)))
        option = "original" if quickest.is_original else f"r1={quickest.r1}, r2={quickest.r2}"
        tau = (f"{kendalltau([c.macs for c in candidates], [c.cycles for c in candidates]).statistic:.3f}"
               if len(candidates) > 1 else "-")
        lines.append(f"| {layer} | {original.cycles:,} | {len(candidates)} | {option} | {quickest.cycles:,} | "
                     f"{original.cycles / quickest.cycles if quickest.cycles else float('nan'):.2f}x | {tau} | "
                     f"{front or '-'} |")
    lines += ["", f"![latency vs MACs]({image})", ""]
    return lines, {image: _pareto_plot(lut, title)}


def _heatmap_section(path: Path) -> list[str]:
    """A heat-map CSV of `costmodel heatmap`: its picture and, where it has MACs, the staircase analysis."""
    values = np.genfromtxt(io.StringIO(read_user_text(path)), delimiter=",", names=True)
    names = values.dtype.names or ()
    if "latency_ms" not in names:
        raise CostModelError(f"{path}: a heat-map CSV needs a latency_ms column; it has {', '.join(names)}")
    r1s, r2s = tuple(sorted({int(v) for v in values["r1"]})), tuple(sorted({int(v) for v in values["r2"]}))
    lines = [f"## Heat map `{path.name}`", ""]
    if path.with_suffix(".png").is_file():
        lines += [f"![{path.stem}]({path.with_suffix('.png').name})", ""]
    if len(values) != len(r1s) * len(r2s):
        return lines + [f"{len(values)} rows do not fill a {len(r1s)} x {len(r2s)} rank grid: no analysis.", ""]
    grid = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(values["r1"], values["r2"]))}
    index = np.array([[grid[(a, b)] for b in r2s] for a in r1s])
    latency = values["latency_ms"][index]
    if "macs" not in names:
        ok = latency[~np.isnan(latency)]
        return lines + [f"{latency.size} rank pairs, {len(np.unique(ok))} distinct latencies "
                        f"({ok.min():.4f} to {ok.max():.4f} ms); no MACs column (an older file): no analysis.", ""]
    original = float(values["original_latency_ms"][0])
    step = RankGrid().step_for(min(r1s[-1], r2s[-1]))    # HALOC's step for a layer this wide
    staircase = analyse_staircase(r1s, r2s, latency, values["macs"][index], original, step)
    return lines + [f"Latency in ms; the original layer takes {original:.4f} ms.", "",
                    *staircase_lines(staircase), ""]


def _demoted(markdown: str) -> list[str]:
    return [("#" + line) if line.startswith("#") else line for line in markdown.splitlines()]


def folder_report(folder: str | Path) -> FolderReport:
    """Everything recognisable in ``folder``; a folder with nothing recognisable is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CostModelError(f"{folder}: not a folder (give a build, lut, fit, heatmap or search output folder)")
    lines = [f"# Report: {folder.name}", ""]
    images: dict[str, bytes] = {}
    found = []
    search = folder / SEARCH_REPORT
    if search.is_file():
        found.append("search")
        md = folder / "report.md"
        if md.is_file():
            lines += ["## Search", "", *_demoted(read_user_text(md)), ""]
        else:
            document = parse_json(read_user_text(search), str(search))
            lines += ["## Search", "", "```json", json.dumps(document, indent=1)[:20000], "```", ""]
    for path in sorted(folder.glob("*.csv")) + sorted(folder.glob("*.json")):
        if path.name in (SEARCH_REPORT, "summary.json", "accuracy.json") or path.name.startswith("."):
            continue
        head = read_user_text(path)[:4096]
        if head.startswith("r1,r2,"):
            found.append("heatmap")
            lines += _heatmap_section(path)
            continue
        if '"target_flops"' in head and path.with_suffix(".md").is_file():     # a `costmodel isoflops` result
            found.append("isoflops")
            lines += [*_demoted(read_user_text(path.with_suffix(".md"))), ""]
            continue
        if "network,arch,layer" in head or LUT_FORMAT in head:
            try:
                lut = load_lut(path)
            except LUTFileError as exc:
                raise CostModelError(str(exc)) from None
            found.append("lut")
            title = (f"{lut.provenance.get('network', '')} on {lut.provenance.get('arch', '')}" if lut.provenance
                     else f"{folder.name}/{path.name}")
            section, pictures = _lut_section(lut, path.name, title, f"{path.stem}-pareto.png")
            lines += section
            images.update(pictures)
    accuracy = folder / "accuracy.md"
    if accuracy.is_file():
        found.append("fit")
        lines += ["## Predictor accuracy", "", *_demoted(read_user_text(accuracy)), ""]
        if (folder / "accuracy.png").is_file():
            lines += ["![predicted vs evaluated](accuracy.png)", ""]
    if not found:
        raise CostModelError(f"{folder}: nothing to report: no lut.csv/summary.json (build), LUT file (lut), "
                             f"accuracy.md (fit), heat-map CSV (heatmap) or {SEARCH_REPORT} (search)")
    for png in sorted(folder.glob("*.png")):
        if png.name not in images and f"]({png.name})" not in "\n".join(lines):
            lines += [f"![{png.stem}]({png.name})", ""]
    return FolderReport("\n".join(lines).rstrip() + "\n", images)


def write_folder_report(folder: str | Path) -> Path:
    """``report.md`` and its plots in ``folder``: all of them or none."""
    folder = Path(folder)
    try:
        report = folder_report(folder)
    except InputFileError as exc:
        raise CostModelError(str(exc)) from None
    with output_folder(folder) as staging:
        for name, data in report.images.items():
            atomic_write_bytes(staging / name, data)
        atomic_write_text(staging / REPORT_NAME, report.markdown)
    return folder / REPORT_NAME
