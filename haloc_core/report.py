"""What a search writes: ``report.json`` (everything, deterministic for a seed; wall-clock times only under
``timing``), ``report.md`` (the side-by-side table), ``ranks.json`` and the plots: probabilities per layer
over the steps, expected cost over the steps, final ranks per layer and accuracy against cost of every
method."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from costmodels import atomic_write_text

COMPARISON_COLUMNS = ("method", "cost_ratio", "cycles", "energy_pj", "images_per_s", "macs", "params", "budget_met",
                      "accuracy_before_finetune", "accuracy_after_finetune")


@dataclass(frozen=True)
class NetworkCost:
    """A whole network on the target (cycles / energy are None for a measured LUT, which has seconds only)."""

    cycles: float | None
    energy_pj: float | None
    latency_s: float
    images_per_s: float
    macs: int
    params: int


@dataclass(frozen=True)
class MethodResult:
    method: str
    ranks: dict[str, list[int] | None]
    cost: float                      # in the objective's unit
    cost_ratio: float                # of the original network's cost
    budget_met: bool
    network: NetworkCost
    accuracy_before_finetune: float
    accuracy_after_finetune: float
    history: dict[str, Any]


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def method_entry(result: MethodResult) -> dict[str, Any]:
    return {"method": result.method, "ranks": result.ranks, "cost": _round(result.cost, 9),
            "cost_ratio": _round(result.cost_ratio), "budget_met": result.budget_met,
            "cycles": _round(result.network.cycles, 12), "energy_pj": _round(result.network.energy_pj, 9),
            "latency_s": _round(result.network.latency_s, 9), "images_per_s": _round(result.network.images_per_s),
            "macs": result.network.macs, "params": result.network.params,
            "accuracy_before_finetune": _round(result.accuracy_before_finetune),
            "accuracy_after_finetune": _round(result.accuracy_after_finetune)}


def write_outputs(folder: Path, report: dict[str, Any], results: list[MethodResult], layers: list[str],
                  eps: float, unit: str, original_cost: float) -> None:
    """Write the reports and plots of ``results`` (the first is the primary method) into ``folder``."""
    atomic_write_text(folder / "report.json", json.dumps(report, indent=1, sort_keys=False) + "\n")
    atomic_write_text(folder / "ranks.json", json.dumps(results[0].ranks, indent=1) + "\n")
    atomic_write_text(folder / "report.md", markdown(report))
    if len(results) > 1:
        atomic_write_text(folder / "comparison.csv", comparison_csv(report["methods"]))
    _plots(folder / "plots", results, layers, eps, unit, original_cost)


def comparison_rows(methods: list[dict[str, Any]]) -> list[list[str]]:
    def text(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4f}"
        return "" if value is None else str(value)
    return [[text(m[c]) for c in COMPARISON_COLUMNS] for m in methods]


def comparison_csv(methods: list[dict[str, Any]]) -> str:
    lines = [",".join(COMPARISON_COLUMNS), *(",".join(row) for row in comparison_rows(methods))]
    return "\n".join(lines) + "\n"


def markdown_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _ranks_text(ranks: dict[str, list[int] | None]) -> str:
    return ", ".join(f"{name}: {'orig' if r is None else (r[0] if r[0] == r[1] else f'{r[0]}x{r[1]}')}"
                     for name, r in ranks.items())


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def markdown(report: dict[str, Any]) -> str:
    original = report["original"]
    lines = [f"# Rank search: {report['network']} on {report['target']}", "",
             f"- objective: {report['objective']}, budget `{report['budget']}` = {report['eps']:.6g} "
             f"{report['eps_unit']} ({report['eps'] / report['original_cost']:.3f} of the original "
             f"{report['original_cost']:.6g} {report['eps_unit']})",
             f"- data: {report['data']}, seed {report['seed']}; original test accuracy "
             f"{report['accuracy']['original']:.4f}",
             f"- original network: {_number(original['cycles'])} cycles, {_number(original['energy_pj'])} pJ, "
             f"{original['images_per_s']:.1f} images/s, {original['macs']:,} MACs, {original['params']:,} params",
             f"- primary method `{report['method']}`: cost ratio {report['cost_ratio']}, budget met "
             f"{report['budget_met']}, test accuracy {report['accuracy']['before_finetune']:.4f} before / "
             f"{report['accuracy']['after_finetune']:.4f} after the fixed fine-tune", "",
             "## Methods (same LUT, budget and fine-tune)", "",
             markdown_table(COMPARISON_COLUMNS, comparison_rows(report["methods"])),
             "## Ranks", ""]
    lines += [f"- {m['method']}: {_ranks_text(m['ranks'])}" for m in report["methods"]]
    lines += ["", "## Hyper-parameters", "", "```json", json.dumps(report["hyperparameters"], indent=1), "```", ""]
    return "\n".join(lines)


def _plots(folder: Path, results: list[MethodResult], layers: list[str], eps: float, unit: str,
           original_cost: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    haloc = next((r for r in results if r.history.get("probabilities")), None)
    if haloc is not None:
        history = haloc.history
        steps = history["steps"]
        fig, axes = plt.subplots(len(layers), 1, figsize=(7, 2.2 * len(layers)), sharex=True, squeeze=False)
        for i, (axis, name) in enumerate(zip(axes[:, 0], layers)):
            labels = history["option_labels"][i]
            for j, label in enumerate(labels):
                axis.plot(steps, [p[i][j] for p in history["probabilities"]], label=label)
            axis.set_ylabel(name, fontsize=8)
            axis.legend(fontsize=6, ncol=len(labels), loc="upper left")
        axes[-1, 0].set_xlabel("step")
        fig.suptitle(f"{haloc.method}: option probabilities per layer")
        fig.tight_layout()
        fig.savefig(folder / "probabilities.png", dpi=90)
        plt.close(fig)

        fig, axis = plt.subplots(figsize=(6, 3.5))
        axis.plot(steps, history["expected_cost"], label="expected cost E")
        axis.axhline(eps, color="red", linestyle="--", label="budget eps")
        axis.axhline(original_cost, color="grey", linestyle=":", label="original")
        axis.set_xlabel("step")
        axis.set_ylabel(unit)
        axis.legend()
        fig.tight_layout()
        fig.savefig(folder / "cost.png", dpi=90)
        plt.close(fig)

    fig, axis = plt.subplots(figsize=(max(6, 1.2 * len(layers)), 3.5))
    width = 0.8 / len(results)
    for k, result in enumerate(results):
        heights = [0 if result.ranks[n] is None else result.ranks[n][0] for n in layers]
        bars = axis.bar([i + k * width for i in range(len(layers))], heights, width, label=result.method)
        for bar, name in zip(bars, layers):
            if result.ranks[name] is None:
                bar.set_hatch("//")
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(layers))], layers, rotation=30, fontsize=7)
    axis.set_ylabel("rank r1 (0: original layer kept)")
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "ranks.png", dpi=90)
    plt.close(fig)

    fig, axis = plt.subplots(figsize=(6, 4))
    for result in results:
        axis.scatter(result.cost_ratio, result.accuracy_after_finetune, label=f"{result.method} (fine-tuned)")
        axis.scatter(result.cost_ratio, result.accuracy_before_finetune, marker="x", color="grey")
    axis.axvline(eps / original_cost, color="red", linestyle="--", label="budget")
    axis.set_xlabel("cost / original cost")
    axis.set_ylabel("test accuracy (x: before fine-tune)")
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "accuracy_vs_cost.png", dpi=90)
    plt.close(fig)


def network_cost_dict(cost: NetworkCost) -> dict[str, Any]:
    return {k: _round(v, 12) if isinstance(v, float) else v for k, v in asdict(cost).items()}
