"""`costmodel layers`, `candidates`, `workloads` and `archs`: what the network is and what gets priced."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from costmodels.cli.args import add_grid_arguments, add_source_arguments, network_layers, rank_grid, table
from costmodels.problems.candidates import network_candidates
from costmodels.problems.workloads import network_workloads
from costmodels.timeloop.spec import available_targets, load_spec


def cmd_layers(args: argparse.Namespace) -> int:
    if args.list:
        from costmodels.network.zoo import available_models
        print("\n".join(available_models()))
        return 0
    name, layers = network_layers(args)
    if args.json:
        print(json.dumps([{**layer.__dict__, "macs": layer.macs, "params": layer.params} for layer in layers],
                         indent=1))
        return 0
    rows = [[layer.name, f"{layer.in_channels}->{layer.out_channels}", "x".join(map(str, layer.kernel)),
             "x".join(map(str, layer.stride)), str(layer.groups),
             "x".join(map(str, layer.input_size)), "x".join(map(str, layer.output_size)),
             f"{layer.macs / 1e6:.2f}", f"{layer.params / 1e3:.1f}"] for layer in layers]
    print(table(rows, ["layer", "channels", "kernel", "stride", "groups", "input", "output", "MMACs", "kparams"]))
    total_macs = sum(layer.macs for layer in layers)
    print(f"\n{name}: {len(layers)} conv layers, {total_macs / 1e6:.2f} M MACs, "
          f"{sum(layer.params for layer in layers) / 1e6:.3f} M conv params")
    return 0


def cmd_candidates(args: argparse.Namespace) -> int:
    name, layers = network_layers(args)
    per_layer = network_candidates(layers, rank_grid(args))
    workloads = network_workloads(per_layer)
    if args.json:
        print(json.dumps([{"layer": lc.layer.name, "excluded": lc.excluded,
                           "candidates": [{"form": c.form.value, "r1": c.r1, "r2": c.r2, "macs": c.macs,
                                           "params": c.params} for c in lc.candidates]} for lc in per_layer],
                         indent=1))
        return 0
    if not args.summary:
        rows = []
        for lc in per_layer:
            status = "excluded" if lc.excluded else ("kept (grouped)" if not lc.candidates else
                                                      lc.candidates[0].form.value)
            ranks = ", ".join(c.label.removeprefix("r") if c.r1 == c.r2 else c.label for c in lc.candidates)
            rows.append([lc.layer.name, status, str(len(lc.candidates)), ranks or "-"])
        print(table(rows, ["layer", "form", "n", "ranks"]))
        print()
    decomposed = sum(1 for lc in per_layer if lc.candidates)
    print(f"{name}: {len(layers)} layers, {decomposed} decomposed, {workloads.n_candidates} candidates, "
          f"{workloads.n_workload_uses} workloads, {len(workloads.unique)} unique after dedup")
    return 0


def cmd_workloads(args: argparse.Namespace) -> int:
    from costmodels.io_utils import check_output_folder
    from costmodels.timeloop.workload_set import write_workload_set
    check_output_folder(args.out)
    name, layers = network_layers(args)
    workloads = network_workloads(network_candidates(layers, rank_grid(args)))
    index = write_workload_set(name, workloads, args.out)
    print(f"wrote {len(workloads.unique)} unique workloads ({workloads.n_workload_uses} uses by "
          f"{workloads.n_candidates} candidates of {len(layers)} layers) and {index}")
    return 0


def cmd_archs(args: argparse.Namespace) -> int:
    rows = []
    for name in available_targets():
        spec = load_spec(name)
        rows.append([name, f"{spec.compute.mesh_x}x{spec.compute.mesh_y}", f"{spec.clock_hz / 1e6:g} MHz",
                     " > ".join(level.name for level in reversed(spec.storage)), spec.description])
    print(table(rows, ["arch", "PEs", "clock", "hierarchy (outer > inner)", "description"]))
    return 0


def add_network_parsers(sub: Any) -> None:
    p = sub.add_parser("layers", help="list a network's conv layers with MACs and params")
    add_source_arguments(p)
    p.add_argument("--list", action="store_true", help="list the built-in models")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("candidates", help="Tucker-2 rank candidates of every layer")
    add_source_arguments(p)
    add_grid_arguments(p)
    p.add_argument("--summary", action="store_true", help="print the counts only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_candidates)

    p = sub.add_parser("workloads", help="write the unique Timeloop problem files and an index")
    add_source_arguments(p)
    add_grid_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=cmd_workloads)

    p = sub.add_parser("archs", help="targets found under arch_specs/")
    p.set_defaults(func=cmd_archs)
