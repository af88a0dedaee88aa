"""The `costmodel` command: thin shells over the library."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from typing import Sequence

from . import __version__
from .candidates import RankGrid, network_candidates
from .cli_types import int_tuple, positive_int
from .errors import CostModelError, UnknownNameError
from .predict_cli import add_fit_parser, add_lut_parser
from .sources import load_layers
from .sweep_cli import add_backend_arguments, add_cache_parser, add_doctor_parser
from .spec import available_targets, load_spec
from .workloads import network_workloads


def _add_source(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("network (one of)")
    group.add_argument("--model", help="built-in model: see `costmodel layers --list`")
    group.add_argument("--onnx", type=Path, help="an ONNX file")
    group.add_argument("--module", help="PKG.MODULE:FACTORY returning a torch.nn.Module (needs --input-shape)")
    parser.add_argument("--input-shape", type=int_tuple, help="input shape for --module, e.g. 1,3,224,224")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch size for --model (default 1)")


def _add_grid(parser: argparse.ArgumentParser) -> None:
    grid = parser.add_argument_group("rank candidates")
    grid.add_argument("--step", type=positive_int, default=32, help="rank step for wide layers (default 32)")
    grid.add_argument("--step-64", type=positive_int, default=16, dest="step64",
                      help="rank step when the rank is bounded by <= 64 channels (default 16)")
    grid.add_argument("--step-32", type=positive_int, default=8, dest="step32",
                      help="rank step when the rank is bounded by <= 32 channels (default 8)")
    grid.add_argument("--full-grid", action="store_true", help="all (r1, r2) pairs instead of r1 = r2")
    grid.add_argument("--exclude", nargs="*", default=[], metavar="LAYER", help="layers kept as they are")
    grid.add_argument("--include-first", action="store_true",
                      help="also decompose the first conv (excluded by default)")


def _grid(args: argparse.Namespace) -> RankGrid:
    return RankGrid(step=args.step, narrow_steps=((32, args.step32), (64, args.step64)),
                    equal_ranks=not args.full_grid, exclude=tuple(args.exclude),
                    exclude_first=not args.include_first)


def _network(args: argparse.Namespace):
    return load_layers(model=args.model, onnx=args.onnx, module=args.module, input_shape=args.input_shape,
                       batch=args.batch)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def cmd_layers(args: argparse.Namespace) -> int:
    if args.list:
        from .zoo import available_models
        print("\n".join(available_models()))
        return 0
    name, layers = _network(args)
    if args.json:
        print(json.dumps([{**layer.__dict__, "macs": layer.macs, "params": layer.params} for layer in layers],
                         indent=1))
        return 0
    rows = [[layer.name, f"{layer.in_channels}->{layer.out_channels}", "x".join(map(str, layer.kernel)),
             "x".join(map(str, layer.stride)), str(layer.groups),
             "x".join(map(str, layer.input_size)), "x".join(map(str, layer.output_size)),
             f"{layer.macs / 1e6:.2f}", f"{layer.params / 1e3:.1f}"] for layer in layers]
    print(_table(rows, ["layer", "channels", "kernel", "stride", "groups", "input", "output", "MMACs", "kparams"]))
    total_macs = sum(layer.macs for layer in layers)
    print(f"\n{name}: {len(layers)} conv layers, {total_macs / 1e6:.2f} M MACs, "
          f"{sum(layer.params for layer in layers) / 1e6:.3f} M conv params")
    return 0


def cmd_candidates(args: argparse.Namespace) -> int:
    name, layers = _network(args)
    per_layer = network_candidates(layers, _grid(args))
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
        print(_table(rows, ["layer", "form", "n", "ranks"]))
        print()
    decomposed = sum(1 for lc in per_layer if lc.candidates)
    print(f"{name}: {len(layers)} layers, {decomposed} decomposed, {workloads.n_candidates} candidates, "
          f"{workloads.n_workload_uses} workloads, {len(workloads.unique)} unique after dedup")
    return 0


def cmd_workloads(args: argparse.Namespace) -> int:
    from .workload_export import write_workload_set
    name, layers = _network(args)
    workloads = network_workloads(network_candidates(layers, _grid(args)))
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
    print(_table(rows, ["arch", "PEs", "clock", "hierarchy (outer > inner)", "description"]))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .mapper import find_mapping
    from .mapping_yaml import mapping_yaml, read_mapping
    from .model import evaluate
    from .problem_yaml import read_problem
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
    print(_table(rows, ["level", "energy uJ", "pJ/MAC", "per data space (per instance)"]))
    print("\nmapping (Timeloop map.yaml):")
    print(mapping_yaml(evaluation.mapping), end="")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from .build import build_lut, lut_summary, write_lut
    from .sweep_cli import SweepProgress, backend_from_args, cache_from_args, report_failures
    spec = load_spec(args.arch)
    backend = backend_from_args(args)
    name, layers = _network(args)
    workloads = network_workloads(network_candidates(layers, _grid(args)))
    out = args.out or Path("luts") / f"{name}-{spec.name}"
    cache = cache_from_args(args)
    with cache or nullcontext(), SweepProgress(f"{name} on {spec.name}") as progress:
        lut = build_lut(name, workloads, spec, backend, cache=cache, jobs=args.jobs, scheduler=args.scheduler,
                        progress=progress)
    csv_path, summary_path = write_lut(lut, out)
    original = lut_summary(lut)["original"]
    print(f"{name} on {spec.name} ({backend.name}): {len(workloads.unique)} unique workloads, "
          f"{len(lut.rows)} LUT rows")
    print(f"original network: {original['cycles']:,} cycles, {original['latency_s'] * 1e3:.3f} ms at "
          f"{spec.clock_hz / 1e6:g} MHz ({original['images_per_s']:.1f} images/s), "
          f"{original['energy_pj'] / 1e6:.1f} uJ")
    print(f"wrote {csv_path} and {summary_path}")
    return 1 if report_failures(lut.failures, len(workloads.unique)) else 0


def cmd_heatmap(args: argparse.Namespace) -> int:
    from .heatmap import rank_heatmap, write_heatmap
    from .sweep_cli import SweepProgress, backend_from_args, cache_from_args
    spec = load_spec(args.arch)
    backend = backend_from_args(args)
    name, layers = _network(args)
    by_name = {layer.name: layer for layer in layers}
    if args.layer not in by_name:
        raise UnknownNameError("layer", args.layer, [n for n, l in by_name.items() if l.groups == 1 and l.kernel != (1, 1)])
    cache = cache_from_args(args)
    with cache or nullcontext(), SweepProgress(f"{args.layer} on {spec.name}") as progress:
        heatmap = rank_heatmap(by_name[args.layer], spec, args.step, backend, cache, jobs=args.jobs,
                               progress=progress)
    csv_path, png_path = write_heatmap(heatmap, args.out or Path("luts") / f"{name}-{spec.name}")
    ms = heatmap.latency_ms
    print(f"{args.layer} on {spec.name}: {ms.size} rank pairs, latency {float(np.nanmin(ms)):.3f}-"
          f"{float(np.nanmax(ms)):.3f} ms, {len(np.unique(ms[~np.isnan(ms)]))} distinct values; "
          f"original {heatmap.original_cycles / spec.clock_hz * 1e3:.3f} ms")
    print(f"wrote {csv_path} and {png_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="costmodel", description="Hardware cost of Tucker-2 compressed CNNs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("layers", help="list a network's conv layers with MACs and params")
    _add_source(p)
    p.add_argument("--list", action="store_true", help="list the built-in models")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("candidates", help="Tucker-2 rank candidates of every layer")
    _add_source(p)
    _add_grid(p)
    p.add_argument("--summary", action="store_true", help="print the counts only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_candidates)

    p = sub.add_parser("workloads", help="write the unique Timeloop problem files and an index")
    _add_source(p)
    _add_grid(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=cmd_workloads)

    p = sub.add_parser("archs", help="targets found under arch_specs/")
    p.set_defaults(func=cmd_archs)

    p = sub.add_parser("eval", help="cycles, energy and mapping of one workload on a target")
    p.add_argument("--arch", required=True, help="target under arch_specs/ or a spec folder")
    p.add_argument("workload", type=Path, help="Timeloop problem YAML")
    p.add_argument("--mapping", type=Path, help="evaluate this Timeloop map.yaml instead of searching")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("build", help="evaluate every layer and candidate; write the latency LUT and a summary")
    p.add_argument("--arch", required=True, help="target under arch_specs/ or a spec folder")
    _add_source(p)
    _add_grid(p)
    p.add_argument("--out", type=Path, help="output folder (default luts/NETWORK-ARCH)")
    add_backend_arguments(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("heatmap", help="latency of one layer over a dense (r1, r2) grid (HALOC Figure 2)")
    p.add_argument("--arch", required=True, help="target under arch_specs/ or a spec folder")
    _add_source(p)
    p.add_argument("--layer", required=True, help="a dense KxK conv layer, e.g. layer3.0.conv2")
    p.add_argument("--step", type=positive_int, default=8, help="rank step of the grid (default 8)")
    p.add_argument("--out", type=Path, help="output folder (default luts/NETWORK-ARCH)")
    add_backend_arguments(p)
    p.set_defaults(func=cmd_heatmap)

    add_cache_parser(sub)
    add_doctor_parser(sub)
    add_fit_parser(sub)
    add_lut_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CostModelError as exc:
        print(f"costmodel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"costmodel {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
