"""The measured backend's targets (issue: measured-hardware backend), on this machine:

1. speed: time to measure a network's unique workloads (ResNet-20: 46) on the device, no cache;
   target <= 2 minutes on 2 cores.
2. repeat-measurement noise: the same LUT measured twice; per workload |a - b| / mean(a, b), its
   median (target <= 5 %) and 90th percentile, and how many entries were flagged noisy.
3. additivity: measured decomposed layers and the measured forward pass of the original and one
   compressed network against the LUT's sums (target within 15 % for the compressed network).

The load average is printed before and after: other processes on the machine inflate and scatter
wall-clock timings (``--clock cpu`` with ``--threads 1`` reads the timing thread's CPU time instead).

Run: .venv/bin/python benchmarks/measured_bench.py [--model resnet20] [--device cpu] [--threads N]
     [--dtype float32] [--clock wall|cpu] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from costmodels.backends.torch_timing import CLOCKS, DTYPES, TorchTimingBackend, device_target
from costmodels.lut.additivity import additivity_check
from costmodels.lut.build import assemble_lut
from costmodels.network.zoo import zoo_layers
from costmodels.problems.candidates import RankGrid, network_candidates
from costmodels.problems.workloads import network_workloads
from costmodels.sweep.records import WorkloadCost
from costmodels.sweep.runner import run_sweep


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {len(os.sched_getaffinity(0))} cores"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--clock", default="wall", choices=tuple(CLOCKS))
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)

    target = device_target(args.device, args.dtype, args.threads, args.clock)
    backend = TorchTimingBackend(target)
    layers = zoo_layers(args.model)
    workloads = network_workloads(network_candidates(layers, RankGrid()))
    print(f"{args.model}: {len(workloads.unique)} unique workloads on {target.name} ({target.description})")
    print(f"before: {load()}")

    runs, seconds = [], []
    for attempt in (1, 2):
        start = time.perf_counter()
        results = run_sweep(workloads.unique.values(), target, backend)
        seconds.append(time.perf_counter() - start)
        runs.append(results)
        noisy = sum(1 for r in results.values() if isinstance(r, WorkloadCost) and r.noisy)
        print(f"measurement {attempt}: {seconds[-1]:.1f} s for {len(results)} workloads, {noisy} flagged noisy")
    first, second = runs
    differences = sorted(abs(first[k].cycles - second[k].cycles) / ((first[k].cycles + second[k].cycles) / 2)
                         for k in workloads.unique
                         if isinstance(first[k], WorkloadCost) and isinstance(second[k], WorkloadCost))
    p90 = differences[min(len(differences) - 1, int(0.9 * len(differences)))]
    print(f"repeat noise per workload: median {statistics.median(differences):.2%}, 90th percentile {p90:.2%}, "
          f"max {differences[-1]:.2%}")

    lut = assemble_lut(args.model, workloads.layers, target, second, backend.name, backend.version)
    start = time.perf_counter()
    report = additivity_check(lut, workloads.layers, target, args.model)
    additivity_s = time.perf_counter() - start
    for line in report.lines():
        print(line)
    print(f"additivity check: {additivity_s:.1f} s")
    print(f"after: {load()}")
    if args.out:
        args.out.write_text(json.dumps({
            "model": args.model, "target": target.name, "fingerprint": target.fingerprint,
            "measure_s": seconds, "unique_workloads": len(workloads.unique),
            "repeat_noise": {"median": statistics.median(differences), "p90": p90, "max": differences[-1]},
            "additivity": report.to_dict(), "additivity_s": additivity_s}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
