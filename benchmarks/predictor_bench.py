"""Accuracy and speed of the regression cost predictors (issue: predictors and LUT export).

On the ResNet-18 + MobileNetV2 + VGG-16 Eyeriss candidate sweeps (built-in backend, every rank step
8 for a dense set):

1. held-out ranks: a 20% space-filling sample of the unique workloads trains each estimator; every
   other workload is the test set. Targets for cycles: MAPE <= 2%, >= 99.5% of candidates within
   +-10%, mean per-layer Kendall tau >= 0.95.
2. held-out network: train on every workload of two networks, test on the third.
3. timing: fit (estimator "auto": cross-validated choice among gbt/rf/poly, both targets) and
   predict a full LUT (features, predictions, LUT rows) of the three networks.

Run: .venv/bin/python benchmarks/predictor_bench.py [--budget 0.2] [--step 8] [--out DIR] [--no-cache]
(--out writes accuracy.md and accuracy.png there).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from costmodels.backends import get_backend
from costmodels.lut.export import sourced_lut
from costmodels.network.zoo import zoo_layers
from costmodels.predictors.accuracy import AccuracyRow, accuracy_table, assess, plot_predicted_vs_evaluated
from costmodels.predictors.estimators import ESTIMATORS, comparison_table, fit_predictors
from costmodels.predictors.features import clear_cache
from costmodels.predictors.sampling import space_filling
from costmodels.problems.candidates import RankGrid, network_candidates
from costmodels.problems.workloads import network_workloads
from costmodels.sweep.cache import ResultsCache
from costmodels.sweep.records import WorkloadCost, default_jobs
from costmodels.sweep.runner import run_sweep
from costmodels.timeloop.spec import load_spec

NETWORKS = ("resnet18", "mobilenetv2", "vgg16")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--step", type=int, default=8, help="rank step for every channel bound (default 8)")
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    spec = load_spec("eyeriss")
    backend = get_backend("builtin")
    grid = RankGrid(step=args.step, narrow_steps=((32, args.step), (64, args.step)))
    networks = [(name, network_candidates(zoo_layers(name), grid)) for name in NETWORKS]
    per_network = {name: network_workloads(layers).unique for name, layers in networks}
    layers = [lc for _, ls in networks for lc in ls]
    unique = network_workloads(layers).unique
    print(f"{' + '.join(NETWORKS)} on {spec.name}, rank step {args.step}: {len(unique)} unique workloads, "
          f"{sum(len(lc.candidates) for lc in layers)} candidates")

    cache = None if args.no_cache else ResultsCache()
    start = time.perf_counter()
    results = run_sweep(unique.values(), spec, backend, cache=cache, jobs=args.jobs)
    costs = {k: v for k, v in results.items() if isinstance(v, WorkloadCost)}
    print(f"evaluated (or read from the cache) in {time.perf_counter() - start:.1f} s; "
          f"{len(unique) - len(costs)} failed\n")

    # 1. held-out ranks: every estimator on the same sample
    sample = space_filling(layers, args.budget, spec)
    train = [w for w in sample.chosen if w.key in costs]
    rows: list[AccuracyRow] = []
    panels = []
    chosen = None
    for estimator in ("auto", *ESTIMATORS):
        predictors = fit_predictors(train, [costs[w.key] for w in train], spec, estimator)
        result = assess(f"held-out ranks, {estimator}", networks, costs, unique, [w.key for w in train], predictors)
        rows += result.rows
        if estimator == "auto":
            chosen, panels = predictors, list(result.panels)
    assert chosen is not None
    print(f"## Held-out ranks: trained on {len(train)} of {len(unique)} unique workloads ({sample.fraction:.1%})\n")
    print(accuracy_table(rows) + "\n")
    for target in ("cycles", "energy"):
        print(f"auto's cross-validated comparison for {target} on the sample:\n")
        print(comparison_table(chosen[target].comparison_) + "\n")

    # 2. held-out network
    network_rows: list[AccuracyRow] = []
    for test_name, test_layers in networks:
        trained = {k for name, u in per_network.items() if name != test_name for k in u if k in costs}
        predictors = fit_predictors([unique[k] for k in trained], [costs[k] for k in trained], spec)
        result = assess(f"held-out network {test_name}", [(test_name, test_layers)], costs, per_network[test_name],
                        trained, predictors)
        network_rows += result.rows
        panels += [p for p in result.panels if "cycles" in p.title]
    print("## Held-out network: trained on every workload of the two others\n")
    print(accuracy_table(network_rows) + "\n")

    # 3. timing from a cold feature cache: fit (auto, both targets) and predict a full LUT
    clear_cache()
    start = time.perf_counter()
    predictors = fit_predictors(train, [costs[w.key] for w in train], spec)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    evaluated = {w.key: costs[w.key] for w in train}
    predicted = predictors.predict_costs([w for k, w in unique.items() if k not in evaluated])
    lut_rows = sum(len(sourced_lut(name, ls, spec, evaluated, predicted, backend.name, backend.version).lut.rows)
                   for name, ls in networks)
    predict_s = time.perf_counter() - start
    print(f"## Timing\n\nfit (auto, cycles + energy, {len(train)} workloads): {fit_s:.1f} s; predict "
          f"{len(predicted)} workloads and assemble {lut_rows} LUT rows: {predict_s:.2f} s")

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "accuracy.md").write_text("\n\n".join([accuracy_table(rows), accuracy_table(network_rows)]) + "\n")
        plot_predicted_vs_evaluated(panels, args.out / "accuracy.png")
        print(f"\nwrote {args.out / 'accuracy.md'} and {args.out / 'accuracy.png'}")
    if cache is not None:
        cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
