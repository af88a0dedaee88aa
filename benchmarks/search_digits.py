"""The digits comparison of issue 10: HALOC against its baselines, seed by seed.

For each seed the zoo's ``digits-cnn`` is trained on scikit-learn's digits and priced on Eyeriss (the default
rank grid of ``costmodel build``); for each budget (a fraction of the original network's latency) every
method searches on the same LUT and budget, its choice is decomposed from the trained weights, tested,
fine-tuned by the same fixed fine-tune and tested again. ``haloc-lambda0`` is HALOC without the feature-map
term of Eq. 8 (the ablation); ``haloc-eq7`` uses Eq. 7's penalty as printed instead of the default hinge. Writes ``digits_comparison.csv`` (one row per seed, budget and method) and
``digits_comparison.md`` (paired per-seed tables, means, HALOC - uniform per seed) under ``--out``.

The demo part times what ``costmodel search --method haloc`` and ``--method uniform`` do together (train,
price, search, fine-tune, report) in one process without the model cache, and records the machine's load.

    .venv/bin/python benchmarks/search_digits.py [--seeds 5] [--budgets 0.2 0.3 0.5] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from haloc_core.cost import Objective
from haloc_core.pipeline import ModelSource, Progress, SearchRequest, compress_and_finetune, make_strategy, prepare
from haloc_core.pipeline import run_search
from haloc_core.report import markdown_table
from haloc_core.strategies.haloc import HalocConfig

METHODS = ("haloc", "haloc-lambda0", "haloc-eq7", "uniform", "vbmf", "error", "anneal", "random")
VARIANTS = {"haloc-lambda0": replace(HalocConfig(), lambda_=0.0), "haloc-eq7": replace(HalocConfig(), hinge=False)}
COLUMNS = ("seed", "budget", "method", "cost_ratio", "budget_met", "accuracy_before_finetune",
           "accuracy_after_finetune", "ranks", "search_s")


def _quiet() -> Progress:
    return Progress(stream=io.StringIO())


def run_demo(folder: Path) -> dict[str, float]:
    request = SearchRequest(target="eyeriss", model=ModelSource(zoo="digits-cnn"), data="digits", budget="0.3",
                            out=folder / "demo", methods=("haloc", "uniform"), seed=0, model_cache=None)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    report = run_search(request, _quiet())
    return {"wall_s": time.perf_counter() - start, "load_before": load, "load_after": os.getloadavg()[0],
            "haloc_accuracy": report["methods"][0]["accuracy_after_finetune"],
            "uniform_accuracy": report["methods"][1]["accuracy_after_finetune"]}


def run_comparison(seeds: list[int], budgets: list[float], cache: Path) -> list[dict[str, object]]:
    rows = []
    for seed in seeds:
        for budget in budgets:
            request = SearchRequest(target="eyeriss", model=ModelSource(zoo="digits-cnn"), data="digits",
                                    budget=str(budget), out=cache / "unused", seed=seed, model_cache=cache)
            prepared = prepare(request, _quiet())
            for method in METHODS:
                strategy = make_strategy(method.split("-")[0], request, _quiet(), VARIANTS.get(method))
                choice = strategy.search(prepared.network, prepared.space, prepared.cost,
                                         prepared.dataset.search_data, prepared.eps, seed)
                result, _, _ = compress_and_finetune(prepared, choice, request.finetune, seed)
                ranks = " ".join("o" if r is None else str(r[0]) for r in result.ranks.values())
                rows.append({"seed": seed, "budget": budget, "method": method, "cost_ratio": round(result.cost_ratio, 4),
                             "budget_met": result.budget_met,
                             "accuracy_before_finetune": round(result.accuracy_before_finetune, 4),
                             "accuracy_after_finetune": round(result.accuracy_after_finetune, 4), "ranks": ranks,
                             "search_s": round(choice.search_time_s, 2)})
                print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def comparison_markdown(rows: list[dict[str, object]], seeds: list[int], budgets: list[float]) -> str:
    parts = []
    for budget in budgets:
        at = {(r["seed"], r["method"]): r for r in rows if r["budget"] == budget}
        parts.append(f"### Budget {budget} of the original latency\n")
        for field, title in (("accuracy_after_finetune", "test accuracy after the fixed fine-tune"),
                             ("accuracy_before_finetune", "test accuracy before fine-tuning"),
                             ("cost_ratio", "latency / original latency")):
            body = [[str(seed), *(f"{at[seed, m][field]:.4f}" for m in METHODS)] for seed in seeds]
            body.append(["mean", *(f"{_mean([at[s, m][field] for s in seeds]):.4f}" for m in METHODS)])
            parts.append(f"{title}:\n\n" + markdown_table(["seed", *METHODS], body))
        diffs = [at[s, "haloc"]["accuracy_after_finetune"] - at[s, "uniform"]["accuracy_after_finetune"] for s in seeds]
        wins = sum(d > 0 for d in diffs), sum(d == 0 for d in diffs), sum(d < 0 for d in diffs)
        parts.append(f"HALOC - uniform after fine-tune, per seed: {', '.join(f'{d:+.4f}' for d in diffs)}; mean "
                     f"{_mean(diffs):+.4f}; HALOC better / equal / worse on {wins[0]} / {wins[1]} / {wins[2]} seeds. "
                     f"Budget met by every method and seed: "
                     f"{all(r['budget_met'] for r in rows if r['budget'] == budget)}.\n")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.2, 0.3, 0.5])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny convs gain nothing from more)")
    parser.add_argument("--out", type=Path, default=Path("results/search"))
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    with tempfile.TemporaryDirectory() as scratch:
        demo = None if args.skip_demo else run_demo(Path(scratch))
        if demo:
            print(f"demo (train, price, HALOC + uniform, fine-tune, report): {demo['wall_s']:.1f} s, load average "
                  f"{demo['load_before']:.1f} -> {demo['load_after']:.1f}", flush=True)
        start = time.perf_counter()
        rows = run_comparison(seeds, args.budgets, Path(scratch))
        comparison_s = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "digits_comparison.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    header = [f"# digits-cnn on Eyeriss: HALOC vs baselines ({len(seeds)} seeds)\n",
              f"Command: `{' '.join(['.venv/bin/python', *sys.argv])}`; torch threads {args.threads}; "
              f"comparison wall time {comparison_s:.0f} s on {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} at the end (the machine was shared).\n",
              f"HALOC defaults: {HalocConfig().as_dict()}; the fixed fine-tune: 2 epochs, SGD Nesterov lr 0.01.\n"]
    if demo:
        header.append(f"Demo (train, price, HALOC + uniform at budget 0.3, fine-tune, report; no model cache): "
                      f"{demo['wall_s']:.1f} s, load average {demo['load_before']:.1f} before / "
                      f"{demo['load_after']:.1f} after.\n")
    (args.out / "digits_comparison.md").write_text("\n".join(header) + "\n"
                                                    + comparison_markdown(rows, seeds, args.budgets))
    print(f"wrote {args.out}/digits_comparison.csv and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
