"""`costmodel eval`, `build` and `heatmap`: price workloads, a network's LUT, a layer's rank grid."""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from costmodels.cli.args import add_grid_arguments, add_source_arguments, network_layers, positive_int, rank_grid, table
from costmodels.cli.sweep_args import add_backend_arguments
from costmodels.errors import UnknownNameError
from costmodels.io_utils import check_output_folder
from costmodels.problems.candidates import network_candidates
from costmodels.problems.workloads import network_workloads
from costmodels.timeloop.spec import load_spec


def cmd_eval(args: argparse.Namespace) -> int:
    from costmodels.model.analytical import evaluate
    from costmodels.model.mapper import find_mapping
    from costmodels.timeloop.mapping_yaml import mapping_yaml, read_mapping
    from costmodels.timeloop.problem_yaml import read_problem
    spec = load_spec(args.arch)
    workload = read_problem(args.workload)
    if args.mapping:
        evaluation = evaluate(workload, spec, read_mapping(args.mapping, spec))
    else:
        evaluation = find_mapping(workload, spec).evaluation
    if args.json:
        print(json.dumps(evaluation.to_dict(), indent=1))
        return 0
    print(f"workload   {workload.name}  ({workload.macs:,} MACs)")
    print(f"arch       {spec.name}  (clock {spec.clock_hz / 1e6:g} MHz)")
    print(f"cycles     {evaluation.cycles:,}  ({evaluation.cycles / spec.clock_hz * 1e3:.4f} ms)")
    print(f"energy     {evaluation.energy_pj / 1e6:.3f} uJ  ({evaluation.energy_per_mac_pj:.3f} pJ/MAC)")
    print(f"utilization {evaluation.utilization:.2%}\n")
    rows = [[level.name, f"{level.energy_pj / 1e6:.3f}", f"{level.energy_pj / workload.macs:.3f}",
             "; ".join(f"{ds.name}: cap {ds.utilized_capacity} x{ds.utilized_instances} reads {ds.reads} "
                       f"fills {ds.fills} updates {ds.updates}" for ds in level.data_spaces) or "-"]
            for level in evaluation.levels]
    rows.append(["MACs", f"{evaluation.mac_energy_pj / 1e6:.3f}", f"{evaluation.mac_energy_pj / workload.macs:.3f}",
                 f"{workload.macs:,} MACs"])
    print(table(rows, ["level", "energy uJ", "pJ/MAC", "per data space (per instance)"]))
    print("\nmapping (Timeloop map.yaml):")
    print(mapping_yaml(evaluation.mapping), end="")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from costmodels.cli.sweep_args import (SweepProgress, backend_from_args, cache_from_args, report_failures,
                                           target_from_args)
    from costmodels.lut.build import build_lut, lut_summary, write_lut
    backend = backend_from_args(args)
    spec = target_from_args(args, backend)
    name, layers = network_layers(args)
    workloads = network_workloads(network_candidates(layers, rank_grid(args)))
    out = args.out or Path("luts") / f"{name}-{spec.name}"
    check_output_folder(out)
    cache = cache_from_args(args)
    with cache or nullcontext(), SweepProgress(f"{name} on {spec.name}") as progress:
        lut = build_lut(name, workloads, spec, backend, cache=cache, jobs=args.jobs, scheduler=args.scheduler,
                        progress=progress)
    if lut.measured:
        return _finish_measured_build(args, name, workloads, spec, lut, out)
    csv_path, summary_path = write_lut(lut, out)
    original = lut_summary(lut)["original"]
    print(f"{name} on {spec.name} ({backend.name}): {len(workloads.unique)} unique workloads, "
          f"{len(lut.rows)} LUT rows")
    if original is None:
        print("original network: not priced (no original layer could be evaluated)")
    else:
        print(f"original network: {original['cycles']:,} cycles, {original['latency_s'] * 1e3:.3f} ms at "
              f"{spec.clock_hz / 1e6:g} MHz ({original['images_per_s']:.1f} images/s), "
              f"{original['energy_pj'] / 1e6:.1f} uJ")
    print(f"wrote {csv_path} and {summary_path}")
    return 1 if report_failures(lut.failures, len(workloads.unique)) else 0


def _finish_measured_build(args: argparse.Namespace, name: str, workloads, target, lut, out: Path) -> int:
    """A measured LUT: the additivity check, then the LUT and its summary."""
    from costmodels.cli.sweep_args import report_failures
    from costmodels.lut.additivity import additivity_check
    from costmodels.lut.build import lut_summary, write_lut

    report = additivity_check(lut, workloads.layers, target, args.model)
    csv_path, summary_path = write_lut(lut, out, {"additivity": report.to_dict()})
    summary = lut_summary(lut)
    print(f"{name} on {target.name} (measured: {target.description}): {len(workloads.unique)} unique workloads, "
          f"{len(lut.rows)} LUT rows, {summary['noisy_rows']} flagged noisy")
    print(f"original network: sum of its conv layers {summary['original']['latency_s'] * 1e3:.3f} ms")
    for line in report.lines():
        print(line)
    print(f"wrote {csv_path} and {summary_path}")
    return 1 if report_failures(lut.failures, len(workloads.unique)) else 0


def cmd_heatmap(args: argparse.Namespace) -> int:
    from costmodels.cli.sweep_args import SweepProgress, backend_from_args, cache_from_args, target_from_args
    from costmodels.lut.heatmap import rank_heatmap, write_heatmap
    backend = backend_from_args(args)
    spec = target_from_args(args, backend)
    name, layers = network_layers(args)
    by_name = {layer.name: layer for layer in layers}
    if args.layer not in by_name:
        raise UnknownNameError("layer", args.layer, [n for n, l in by_name.items() if l.groups == 1 and l.kernel != (1, 1)])
    out = args.out or Path("luts") / f"{name}-{spec.name}"
    check_output_folder(out)
    cache = cache_from_args(args)
    with cache or nullcontext(), SweepProgress(f"{args.layer} on {spec.name}") as progress:
        heatmap = rank_heatmap(by_name[args.layer], spec, args.step, backend, cache, jobs=args.jobs,
                               progress=progress)
    csv_path, png_path = write_heatmap(heatmap, out)
    ms = heatmap.latency_ms
    unmapped = int(np.isnan(ms).sum())
    print(f"{args.layer} on {spec.name}: {ms.size} rank pairs"
          f"{f' ({unmapped} with no legal mapping, blank in the CSV)' if unmapped else ''}, latency {float(np.nanmin(ms)):.3f}-"
          f"{float(np.nanmax(ms)):.3f} ms, {len(np.unique(ms[~np.isnan(ms)]))} distinct values; "
          f"original {heatmap.original_cycles / spec.clock_hz * 1e3:.3f} ms")
    print(f"wrote {csv_path} and {png_path}")
    return 0


def add_evaluate_parsers(sub: Any) -> None:
    p = sub.add_parser("eval", help="cycles, energy and mapping of one workload on a target")
    p.add_argument("--arch", required=True, help="target under arch_specs/ or a spec folder")
    p.add_argument("workload", type=Path, help="Timeloop problem YAML")
    p.add_argument("--mapping", type=Path, help="evaluate this Timeloop map.yaml instead of searching")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("build", help="evaluate every layer and candidate; write the latency LUT and a summary")
    p.add_argument("--arch", help="target under arch_specs/ or a spec folder (required except with --backend torch)")
    add_source_arguments(p)
    add_grid_arguments(p)
    p.add_argument("--out", type=Path, help="output folder (default luts/NETWORK-ARCH)")
    add_backend_arguments(p, measured=True)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("heatmap", help="latency of one layer over a dense (r1, r2) grid (HALOC Figure 2)")
    p.add_argument("--arch", help="target under arch_specs/ or a spec folder (required except with --backend torch)")
    add_source_arguments(p)
    p.add_argument("--layer", required=True, help="a dense KxK conv layer, e.g. layer3.0.conv2")
    p.add_argument("--step", type=positive_int, default=8, help="rank step of the grid (default 8)")
    p.add_argument("--out", type=Path, help="output folder (default luts/NETWORK-ARCH)")
    add_backend_arguments(p, measured=True)
    p.set_defaults(func=cmd_heatmap)
