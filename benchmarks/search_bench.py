"""Search-core targets (issue 10) that are not timed tests:

1. the exact multiple-choice knapsack matches brute force on small random instances (both of its solvers);
2. it solves ResNet-18's full step-8 (r1, r2) rank grid on Eyeriss in under a second, for several kinds of
   scores (HALOC's log-probabilities, scores that rise with rank, random ones) and budgets;
3. every baseline's final ranks meet the budget (0.2, 0.3, 0.5 of the original latency) for several seeds,
   on the same LUT, with a stand-in network (low-rank-plus-noise weights of ResNet-18's shapes);
4. an infeasible budget is an error naming the cheapest achievable cost.

    .venv/bin/python benchmarks/search_bench.py [--lut LUT.csv] [--instances 600]

Without ``--lut`` the LUT is built first (``costmodel build --arch eyeriss --model resnet18 --full-grid
--step 8 --step-64 8 --step-32 8``, through the results cache).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from costmodels import (RankGrid, ResultsCache, build_lut, load_lut, load_spec, network_candidates,
                        network_workloads, zoo_layers)
from haloc_core.budget import BudgetError, parse_budget
from haloc_core.cost import CostTable, Objective
from haloc_core.knapsack import solve_knapsack
from haloc_core.space import SearchSpace, space_from_lut
from haloc_core.strategies import STRATEGIES

BASELINES = ("uniform", "vbmf", "error", "anneal", "random")
BUDGETS = (0.2, 0.3, 0.5)
SEEDS = (0, 1, 2)


def brute_force_check(instances: int) -> None:
    rng = np.random.default_rng(0)
    mismatches, largest = 0, 0
    start = time.perf_counter()
    for case in range(instances):
        sizes = rng.integers(1, 8, size=rng.integers(1, 6))
        costs = [rng.integers(1, 60, n).astype(float) if case % 2 else rng.random(n) * 10 for n in sizes]
        scores = [np.round(rng.normal(size=n), 1) if case % 3 == 0 else rng.normal(size=n) for n in sizes]
        low, high = sum(c.min() for c in costs), sum(c.max() for c in costs)
        eps = (sum(c[rng.integers(len(c))] for c in costs) if case % 5 == 0 else low + rng.random() * (high - low))
        best = max(sum(s[j] for s, j in zip(scores, choice))
                   for choice in itertools.product(*(range(n) for n in sizes))
                   if sum(c[j] for c, j in zip(costs, choice)) <= eps)
        largest = max(largest, math.prod(int(n) for n in sizes))
        for max_states in (200_000, 0):                          # the dynamic program, then HiGHS
            choice = solve_knapsack(costs, eps, scores, max_states=max_states)
            value = sum(s[j] for s, j in zip(scores, choice))
            if sum(c[j] for c, j in zip(costs, choice)) > eps or abs(value - best) > 1e-9:
                mismatches += 1
    print(f"knapsack vs brute force: {instances} instances x 2 solvers (up to {largest} choices each), "
          f"{mismatches} mismatches, {time.perf_counter() - start:.1f} s")


def resnet18_lut(path: Path | None):
    if path is not None:
        return load_lut(path)
    grid = RankGrid(step=8, narrow_steps=((32, 8), (64, 8)), equal_ranks=False)
    layers = network_candidates(zoo_layers("resnet18"), grid)
    start = time.perf_counter()
    lut = build_lut("resnet18", network_workloads(layers), load_spec("eyeriss"), cache=ResultsCache())
    print(f"built the ResNet-18 step-8 full-grid LUT on eyeriss in {time.perf_counter() - start:.1f} s")
    return lut


def score_kinds(space: SearchSpace, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    logits = [torch.randn(len(layer.ranks), generator=torch.Generator().manual_seed(i)) * 3
              for i, layer in enumerate(space.layers)]
    rising = [np.array([math.log(float(np.prod(r))) if r else math.log(10 * max(x[0] * x[1] for x in layer.ranks[1:]))
                        for r in layer.ranks]) for layer in space.layers]
    return {
        "log-softmax": [torch.log_softmax(a, 0).double().numpy() for a in logits],
        "log(r1*r2)": rising,
        "log(r1*r2)+noise": [s + rng.normal(scale=0.05, size=s.size) for s in rising],
        "random": [rng.normal(size=len(layer.ranks)) for layer in space.layers],
    }


def knapsack_timing(space: SearchSpace, cost: CostTable) -> None:
    candidates = sum(len(layer.ranks) - 1 for layer in space.layers)
    print(f"\nResNet-18 full step-8 grid: {len(space.layers)} searched layers, {candidates} candidates "
          f"(+{len(space.layers)} originals); original {cost.original_total:.0f} cycles, cheapest "
          f"{cost.cheapest / cost.original_total:.3f} of it")
    print(f"{'scores':18s} {'budget':>6s} {'DP+bounds ms':>12s} {'HiGHS ms':>9s} {'same value':>10s} {'cost/orig':>9s}")
    worst = 0.0
    for kind, scores in score_kinds(space, np.random.default_rng(0)).items():
        for share in BUDGETS:
            eps = share * cost.original_total
            times = []
            for _ in range(3):
                start = time.perf_counter()
                choice = solve_knapsack(cost.arrays, eps, scores, fixed=cost.fixed)
                times.append(time.perf_counter() - start)
            start = time.perf_counter()
            highs = solve_knapsack(cost.arrays, eps, scores, fixed=cost.fixed, max_states=0)
            highs_time = time.perf_counter() - start
            values = [sum(s[j] for s, j in zip(scores, c)) for c in (choice, highs)]
            worst = max(worst, max(times))
            assert cost.total(choice) <= eps and cost.total(highs) <= eps
            print(f"{kind:18s} {share:6.1f} {min(times) * 1e3:12.1f} {highs_time * 1e3:9.1f} "
                  f"{str(abs(values[0] - values[1]) < 1e-9):>10s} {cost.total(choice) / cost.original_total:9.4f}")
    print(f"slowest knapsack solve: {worst * 1e3:.1f} ms (target < 1000 ms)")


class StandInNetwork:
    """ResNet-18's searched layers with low-rank-plus-noise weights (rank a quarter of the channels) and
    a smooth accuracy proxy that grows with each layer's kept rank share."""

    def __init__(self, space: SearchSpace):
        rng = np.random.default_rng(0)
        kernels = {layer.name: layer.kernel for layer in zoo_layers("resnet18")}
        self.weights = {}
        for layer in space.layers:
            f, c = max(r[0] for r in layer.ranks if r), max(r[1] for r in layer.ranks if r)
            k1, k2 = kernels[layer.layer]
            rank = max(min(f, c) // 4, 1)
            signal = rng.normal(size=(f, rank)) @ rng.normal(size=(rank, c * k1 * k2))
            self.weights[layer.layer] = (signal + 0.3 * rng.normal(size=signal.shape)).reshape(f, c, k1, k2)

    def layer_weights(self):
        return self.weights

    def proxy_accuracy(self, ranks, data, max_batches):
        shares = [1.0 if r is None else r[0] * r[1] / np.prod(self.weights[name].shape[:2])
                  for name, r in ranks.items()]
        return float(np.mean([1 - math.exp(-8 * s) for s in shares]))


def baselines_meet_the_budget(space: SearchSpace, cost: CostTable) -> None:
    network = StandInNetwork(space)
    print(f"\nbaselines on the same LUT, seeds {SEEDS}: realised cost / original (budget met?)")
    print(f"{'method':8s} " + " ".join(f"{f'budget {b}':>26s}" for b in BUDGETS) + f" {'search s (median)':>18s}")
    failures = 0
    for name in BASELINES:
        cells, times = [], []
        for share in BUDGETS:
            eps = parse_budget(str(share), space, Objective.LATENCY)
            realised = []
            for seed in SEEDS:
                choice = STRATEGIES[name]().search(network, space, cost, None, eps, seed)
                times.append(choice.search_time_s)
                realised.append(cost.total(choice.indices) / cost.original_total)
                failures += cost.total(choice.indices) > eps
            cells.append(" ".join(f"{r:.4f}" for r in realised) + (" ok" if max(realised) <= share else " OVER"))
        print(f"{name:8s} " + " ".join(f"{c:>26s}" for c in cells) + f" {statistics.median(times):18.2f}")
    print(f"choices over budget: {failures} of {len(BASELINES) * len(BUDGETS) * len(SEEDS)}")


def infeasible_budget(space: SearchSpace) -> None:
    try:
        parse_budget("0.1", space, Objective.LATENCY)
    except BudgetError as error:
        print(f"\n--budget 0.1: BudgetError: {error}")
    else:
        print("\n--budget 0.1 was accepted (expected an infeasible-budget error)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lut", type=Path, help="a ResNet-18 step-8 full-grid LUT (else it is built)")
    parser.add_argument("--instances", type=int, default=600, help="random brute-force instances")
    args = parser.parse_args()
    brute_force_check(args.instances)
    space = space_from_lut(resnet18_lut(args.lut))
    cost = CostTable.from_space(space, Objective.LATENCY)
    knapsack_timing(space, cost)
    baselines_meet_the_budget(space, cost)
    infeasible_budget(space)


if __name__ == "__main__":
    main()
