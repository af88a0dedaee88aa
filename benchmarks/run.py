"""`make bench`: speed of the built-in mapper and model, and of a whole-network build.

Prints, per reference workload, the built-in mapper's time beside the real timeloop-mapper's wall
time on the same workload (tests/data/timeloop_reference/results.csv), then times a cold
ResNet-18 build on all cores, and sweeps with a cold/warm cache, 1/2 jobs and Dask. Targets
(issue 3): median <= 50 ms per workload for the mapper on one core; the whole ResNet-18 Eyeriss
build <= 30 s on a 2-core machine.
"""

from __future__ import annotations

import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

from costmodels.lut.build import build_lut, lut_csv
from costmodels.model.analytical import evaluate
from costmodels.model.mapper import find_mapping
from costmodels.network.zoo import zoo_layers
from costmodels.problems.candidates import RankGrid, network_candidates
from costmodels.problems.workloads import network_workloads
from costmodels.sweep.cache import ResultsCache
from costmodels.sweep.records import default_jobs
from costmodels.timeloop.problem_yaml import read_problem
from costmodels.timeloop.spec import load_spec

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "data" / "timeloop_reference"


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_reference(spec) -> None:
    rows = list(csv.DictReader((REFERENCE / "results.csv").open()))
    print(f"{'workload':34s} {'mapper ms':>10s} {'model us':>9s} {'timeloop s':>10s} {'speed-up':>9s}")
    mapper_ms, model_us = [], []
    for row in rows:
        workload = read_problem(REFERENCE / "workloads" / f"{row['name']}.yaml")
        result = find_mapping(workload, spec)
        t_map = best_of(lambda: find_mapping(workload, spec), 3)
        t_eval = best_of(lambda: evaluate(workload, spec, result.mapping), 50)
        mapper_ms.append(t_map * 1e3)
        model_us.append(t_eval * 1e6)
        ref = float(row["mapper_wall_s"])
        print(f"{row['name']:34s} {t_map * 1e3:10.1f} {t_eval * 1e6:9.1f} {ref:10.1f} {ref / t_map:9.0f}x")
    print(f"\nmapper: median {statistics.median(mapper_ms):.1f} ms, max {max(mapper_ms):.1f} ms per workload "
          f"(target: median <= 50 ms)")
    print(f"model:  median {statistics.median(model_us):.1f} us per evaluation")


def bench_build(spec, model: str) -> None:
    workloads = network_workloads(network_candidates(zoo_layers(model), RankGrid()))
    jobs = default_jobs()
    start = time.perf_counter()
    lut = build_lut(model, workloads, spec, jobs=jobs)
    elapsed = time.perf_counter() - start
    print(f"\n{model} build: {len(workloads.unique)} unique workloads, {len(lut.rows)} LUT rows, "
          f"{elapsed:.1f} s on {jobs} jobs, no cache (target <= 30 s for resnet18 on 2 cores)")


def bench_sweeps(spec, models: tuple[str, ...]) -> None:
    """Issue 4: cold vs warm cache, 1 vs 2 local jobs, and a Dask LocalCluster, on the same LUTs."""
    networks = {m: network_workloads(network_candidates(zoo_layers(m), RankGrid())) for m in models}
    print(f"\nsweeps over {' + '.join(models)} "
          f"({sum(len(n.unique) for n in networks.values())} unique workloads):")

    def build_all(cache, jobs=1, scheduler=None) -> tuple[float, list[str]]:
        start = time.perf_counter()
        csvs = [lut_csv(build_lut(m, n, spec, cache=cache, jobs=jobs, scheduler=scheduler))
                for m, n in networks.items()]
        return time.perf_counter() - start, csvs

    with tempfile.TemporaryDirectory() as tmp:
        reference = None
        for label, jobs in (("cold cache, 1 job", 1), ("cold cache, 2 jobs", 2)):
            with ResultsCache(Path(tmp) / f"{jobs}.sqlite") as cache:
                elapsed, csvs = build_all(cache, jobs)
            reference = reference or csvs
            print(f"  {label:22s} {elapsed:6.2f} s  {'same LUTs' if csvs == reference else 'LUTs DIFFER'}")
        with ResultsCache(Path(tmp) / "2.sqlite") as cache:
            elapsed, csvs = build_all(cache, 2)
        print(f"  {'warm cache':22s} {elapsed:6.2f} s  {'same LUTs' if csvs == reference else 'LUTs DIFFER'}")
        try:
            from distributed import LocalCluster
        except ImportError:
            print("  dask: not installed (pip install '.[dask]')")
            return
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                ResultsCache(Path(tmp) / "dask.sqlite") as cache:
            elapsed, csvs = build_all(cache, scheduler=cluster.scheduler_address)
        print(f"  {'dask LocalCluster (2)':22s} {elapsed:6.2f} s  {'same LUTs' if csvs == reference else 'LUTs DIFFER'}")


def main() -> int:
    spec = load_spec("eyeriss")
    bench_reference(spec)
    bench_build(spec, "resnet18")
    bench_sweeps(spec, ("resnet18", "mobilenetv2"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
