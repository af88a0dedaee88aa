"""How good are the predictions: error metrics, per-layer rank agreement, a table and a plot.

The search ranks each layer's candidates by cost, so besides relative errors (MAPE, max error,
share within +-5% and +-10%) the report gives Kendall's tau between evaluated and predicted costs
within each layer's candidates, averaged over layers. Metrics are computed at two levels: unique
workloads the predictor did not see, and LUT rows (candidates: sums of sub-convolutions), where a
row counts only if at least one of its workloads was predicted.

On a measured target the "evaluated" cost is itself a noisy measurement, so a prediction cannot be
shown to be closer to the truth than two measurements of the same workload are to each other.
``repeat_noise`` times a sample of the evaluated workloads again and reports how far the two
timings differ, beside the prediction error (``noise_table``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from costmodels.sweep.records import WorkloadCost
from costmodels.problems.candidates import LayerCandidates
from costmodels.predictors.estimators import Predictors
from costmodels.problems.workloads import Workload, WorkloadUse, subconv_workloads


@dataclass(frozen=True)
class Metrics:
    n: int
    mape: float                     # %
    max_error: float                # %
    within_5: float                 # share
    within_10: float
    kendall_tau: float | None       # mean over layers; None at the workload level
    layers: int = 0                 # layers the tau is averaged over


def error_metrics(evaluated: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray,
                  kendall_tau: float | None = None, layers: int = 0) -> Metrics:
    truth = np.asarray(evaluated, dtype=np.float64)
    guess = np.asarray(predicted, dtype=np.float64)
    if truth.shape != guess.shape:
        raise ValueError(f"{truth.size} evaluated values but {guess.size} predicted")
    if truth.size == 0:
        return Metrics(0, float("nan"), float("nan"), float("nan"), float("nan"), kendall_tau, layers)
    error = np.abs(guess / truth - 1.0)
    return Metrics(int(truth.size), 100 * float(error.mean()), 100 * float(error.max()),
                   float(np.mean(error <= 0.05 + 1e-12)), float(np.mean(error <= 0.10 + 1e-12)), kendall_tau, layers)


def mean_kendall_tau(groups: Iterable[tuple[Sequence[float], Sequence[float]]]) -> tuple[float, int]:
    """Kendall's tau-b of (evaluated, predicted) within each group, averaged over the groups where it
    is defined (two or more candidates, evaluated costs not all equal). Returns (mean, groups used)."""
    from scipy.stats import kendalltau

    taus = []
    for evaluated, predicted in groups:
        if len(evaluated) < 2 or len(set(evaluated)) < 2:
            continue
        tau = kendalltau(evaluated, predicted).statistic
        if np.isfinite(tau):
            taus.append(float(tau))
    return (float(np.mean(taus)) if taus else float("nan")), len(taus)


@dataclass(frozen=True)
class CandidateCosts:
    """Per layer, every candidate's evaluated and predicted cost, and whether any of its workloads
    was predicted."""

    layer: str
    evaluated: tuple[float, ...]
    predicted: tuple[float, ...]
    any_predicted: tuple[bool, ...]


def _total(uses: tuple[WorkloadUse, ...], values: Mapping[str, float]) -> float:
    return float(sum(u.count * values[u.workload.key] for u in uses))


def candidate_costs(layers: Sequence[LayerCandidates], evaluated: Mapping[str, float],
                    predicted: Mapping[str, float], network: str = "") -> list[CandidateCosts]:
    """Candidate totals from per-workload evaluated values and predicted values (``predicted`` holds
    the workloads that were predicted; the others take their evaluated value). Layers with a
    workload that failed to evaluate are left out."""
    result = []
    for lc in layers:
        uses = [subconv_workloads(c) for c in lc.candidates]
        if not uses or any(u.workload.key not in evaluated for group in uses for u in group):
            continue
        hybrid = {**evaluated, **predicted}
        result.append(CandidateCosts(
            f"{network}:{lc.layer.name}" if network else lc.layer.name,
            tuple(_total(group, evaluated) for group in uses),
            tuple(_total(group, hybrid) for group in uses),
            tuple(any(u.workload.key in predicted for u in group) for group in uses)))
    return result


def candidate_metrics(costs: Sequence[CandidateCosts]) -> Metrics:
    """Errors over candidates with a predicted workload; tau over every layer's candidates."""
    evaluated = [e for c in costs for e, p in zip(c.evaluated, c.any_predicted) if p]
    predicted = [v for c in costs for v, p in zip(c.predicted, c.any_predicted) if p]
    tau, layers = mean_kendall_tau((c.evaluated, c.predicted) for c in costs)
    return error_metrics(evaluated, predicted, tau, layers)


@dataclass(frozen=True)
class AccuracyRow:
    scope: str          # e.g. "held-out ranks" or "held-out network mobilenetv2"
    target: str         # "cycles" or "energy"
    level: str          # "workload" or "candidate"
    estimator: str
    train: int          # workloads trained on
    metrics: Metrics


def accuracy_table(rows: Sequence[AccuracyRow]) -> str:
    """A Markdown table of accuracy rows."""
    lines = ["| scope | target | level | estimator | trained on | n | MAPE % | max error % | within 5% | "
             "within 10% | Kendall tau (layers) |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        m = r.metrics
        tau = "-" if m.kendall_tau is None else f"{m.kendall_tau:.3f} ({m.layers})"
        lines.append(f"| {r.scope} | {r.target} | {r.level} | {r.estimator} | {r.train} | {m.n} | {m.mape:.2f} | "
                     f"{m.max_error:.1f} | {m.within_5:.1%} | {m.within_10:.1%} | {tau} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Scatter:
    """One panel of the predicted-vs-evaluated plot."""

    title: str
    evaluated: tuple[float, ...]
    predicted: tuple[float, ...]


def plot_predicted_vs_evaluated(panels: Sequence[Scatter], path: str | Path) -> Path:
    """Log-log scatter of predicted against evaluated values, one panel each, with the identity and
    +-10% lines. Written with matplotlib's Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = min(2, max(1, len(panels)))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.6 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        truth = np.asarray(panel.evaluated)
        guess = np.asarray(panel.predicted)
        if truth.size:
            ax.scatter(truth, guess, s=6, alpha=0.5, linewidths=0)
            lo, hi = float(min(truth.min(), guess.min())), float(max(truth.max(), guess.max()))
            line = np.array([lo, hi])
            ax.plot(line, line, color="black", linewidth=0.8)
            for k in (0.9, 1.1):
                ax.plot(line, k * line, color="grey", linewidth=0.6, linestyle="--")
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel("evaluated")
        ax.set_ylabel("predicted")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def workload_values(costs: Mapping[str, WorkloadCost], target: str) -> dict[str, float]:
    return {k: float(c.cycles if target == "cycles" else c.energy_pj) for k, c in costs.items()}


@dataclass(frozen=True)
class Assessment:
    rows: tuple[AccuracyRow, ...]
    panels: tuple[Scatter, ...]


def assess(scope: str, networks: Sequence[tuple[str, Sequence[LayerCandidates]]], costs: Mapping[str, WorkloadCost],
           workloads: Mapping[str, Workload], train_keys: Iterable[str], predictors: Predictors) -> Assessment:
    """Accuracy of ``predictors`` on every evaluated workload of ``workloads`` outside ``train_keys``,
    and on the candidates of ``networks`` (evaluated values where trained on, as a LUT of
    ``--source predict`` has them; predicted elsewhere)."""
    trained = set(train_keys)
    test = [w for key, w in workloads.items() if key in costs and key not in trained]
    rows: list[AccuracyRow] = []
    panels: list[Scatter] = []
    for target in predictors.targets:
        predictor = predictors[target]
        evaluated = workload_values(costs, target)
        predicted = dict(zip((w.key for w in test), (float(v) for v in predictor.predict(test))))
        truth = [evaluated[k] for k in predicted]
        guess = list(predicted.values())
        name = predictor.estimator_ or predictor.estimator
        rows.append(AccuracyRow(scope, target, "workload", name, predictor.n_train_, error_metrics(truth, guess)))
        groups = [c for network, layers in networks for c in candidate_costs(layers, evaluated, predicted, network)]
        rows.append(AccuracyRow(scope, target, "candidate", name, predictor.n_train_, candidate_metrics(groups)))
        panels.append(Scatter(f"{scope}: {target} of {len(truth)} held-out workloads", tuple(truth), tuple(guess)))
    return Assessment(tuple(rows), tuple(panels))


def summary_line(rows: Sequence[AccuracyRow]) -> str:
    """One line per scope for a provenance header: candidate-level errors and tau of each target."""
    parts = []
    for scope in dict.fromkeys(r.scope for r in rows):
        items = []
        for r in rows:
            if r.scope == scope and r.level == "candidate":
                m = r.metrics
                tau = "" if m.kendall_tau is None else f", tau {m.kendall_tau:.3f}"
                items.append(f"{r.target} ({r.estimator}) MAPE {m.mape:.2f}%, {m.within_10:.1%} within 10%{tau}")
        parts.append(f"{scope}: " + "; ".join(items))
    return " | ".join(parts)


# --- repeat-measurement noise of a measured target --------------------------------------------------

REPEAT_SAMPLE = 20      # workloads timed a second time: enough for a median and a 90th percentile
NOISE_CAVEAT = ("A prediction error below the repeat-measurement noise is not meaningful: two timings of the same "
                "workload already differ by that much.")


@dataclass(frozen=True)
class RepeatNoise:
    """How far a second timing of the same workloads is from the first, as |second / first - 1|."""

    n: int                  # workloads timed twice
    median: float           # %
    p90: float              # %, 90th percentile
    noisy_share: float      # share of the evaluated entries whose timing was flagged noisy
    entries: int            # evaluated entries that share is over

    def line(self) -> str:
        return (f"repeat-measurement noise on {self.n} workloads timed twice: median {self.median:.2f}%, "
                f"90th percentile {self.p90:.2f}%; {self.noisy_share:.1%} of {self.entries} entries flagged noisy")


def repeat_sample(costs: Mapping[str, WorkloadCost], limit: int = REPEAT_SAMPLE) -> list[str]:
    """Up to ``limit`` keys of ``costs``, spread evenly over them sorted by cost (small and large
    timings alike), deterministic."""
    keys = sorted(costs, key=lambda k: (costs[k].cycles, k))
    if len(keys) <= limit:
        return keys
    return [keys[int(i)] for i in np.linspace(0, len(keys) - 1, limit).round()]


def repeat_noise(first: Mapping[str, WorkloadCost], second: Mapping[str, WorkloadCost]) -> RepeatNoise:
    """Relative differences between the timings in ``second`` and the same workloads' in ``first``;
    the noisy share is over every entry of ``first``."""
    common = [k for k in second if k in first]
    differences = np.array([abs(second[k].cycles / first[k].cycles - 1.0) for k in common])
    noisy = sum(c.noisy for c in first.values())
    if not common:
        return RepeatNoise(0, float("nan"), float("nan"), noisy / max(1, len(first)), len(first))
    return RepeatNoise(len(common), 100 * float(np.median(differences)), 100 * float(np.percentile(differences, 90)),
                       noisy / max(1, len(first)), len(first))


def noise_table(noise: RepeatNoise, rows: Sequence[AccuracyRow]) -> str:
    """A Markdown table of each workload-level prediction error beside the repeat-measurement noise,
    and the caveat."""
    lines = ["| scope | prediction MAPE % | within 10% | repeat noise median % | repeat noise p90 % | flagged noisy |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.level == "workload":
            lines.append(f"| {r.scope} ({r.target}) | {r.metrics.mape:.2f} | {r.metrics.within_10:.1%} | "
                         f"{noise.median:.2f} | {noise.p90:.2f} | {noise.noisy_share:.1%} |")
    if len(lines) == 2:
        lines.append(f"| not checked | - | - | {noise.median:.2f} | {noise.p90:.2f} | {noise.noisy_share:.1%} |")
    return "\n".join([*lines, "", f"{noise.line()}. {NOISE_CAVEAT}"])
