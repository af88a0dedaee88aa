"""`costmodel isoflops`: the original network beside uniform and hardware-aware rank choices at one FLOPs
count, from a LUT alone (HALOC's Table 3 rows where no trained weights exist)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from costmodels.errors import CostModelError

_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}


def flops_value(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+)?)\s*([KMG]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a FLOPs count: give a positive number with an optional "
                                         "K, M or G suffix, e.g. 615.62M")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def cmd_isoflops(args: argparse.Namespace) -> int:
    from costmodels.io_utils import atomic_write_text, check_output_folder, output_folder
    from costmodels.lut.export import load_lut
    from costmodels.network.flops import paper_flops_overhead
    from costmodels.network.zoo import available_models
    from haloc_core.iso_flops import compare_at_flops, comparison_markdown

    if args.model not in available_models():
        raise CostModelError(f"--model '{args.model}' is not a built-in model; available: "
                             f"{', '.join(available_models())}")
    out = args.out or args.lut.parent
    check_output_folder(out)
    lut = load_lut(args.lut)
    originals = [lut.original(layer) for layer in lut.layers]
    if not originals or not originals[0].latency_s:
        raise CostModelError(f"{args.lut}: no original layer rows with a latency")
    clock_hz = originals[0].cycles / originals[0].latency_s
    target = str(lut.provenance.get("arch") or args.lut.parent.name)
    overhead = paper_flops_overhead(args.model)
    if args.flops <= overhead:
        raise CostModelError(f"--flops {args.flops:,.0f}: {args.model}'s FC, BatchNorm and pooling alone count "
                             f"{overhead:,} FLOPs; give more")
    comparison = compare_at_flops(lut, args.model, target, clock_hz, args.flops, overhead)
    stem = f"{args.model}-{args.flops / 1e6:.2f}M"
    markdown = comparison_markdown(comparison)
    rows = comparison.rows()
    # top-level "ranks": the hardware-aware choice, in the form `costmodel crossprice` reads
    document = {"network": args.model, "target": target, "clock_hz": clock_hz, "target_flops": args.flops,
                "ranks": rows[-1]["ranks"], "rows": rows}
    with output_folder(out) as staging:     # both files or neither
        atomic_write_text(staging / f"{stem}.json", json.dumps(document, indent=1) + "\n")
        atomic_write_text(staging / f"{stem}.md", markdown)
    print(markdown.split("\n\n| layer |")[0])
    print(f"\nwrote {out / (stem + '.md')} and {out / (stem + '.json')}")
    return 0


def add_isoflops_parser(sub: Any) -> None:
    p = sub.add_parser("isoflops", help="uniform vs hardware-aware ranks at one FLOPs count, from a LUT (Table 3)")
    p.add_argument("--lut", type=Path, required=True, help="a LUT from `costmodel build` or `costmodel lut`")
    p.add_argument("--model", required=True, help="the built-in model the LUT prices (for its FC/BN/pool FLOPs)")
    p.add_argument("--flops", type=flops_value, required=True,
                   help="FLOPs of the compressed network, counted the paper's way, e.g. 615.62M")
    p.add_argument("--out", type=Path, help="output folder (default: the LUT's folder)")
    p.set_defaults(func=cmd_isoflops)
