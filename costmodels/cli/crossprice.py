"""`costmodel crossprice`: rank choices made for several targets, each priced on every target's LUT, so a
table shows whether the choice made for a target is the fastest there (the diagonal)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from costmodels.errors import CostModelError


def crossprice_markdown(targets: list[str], labels: list[str], cycles: list[list[int]],
                        accuracies: list[float | None]) -> str:
    with_accuracy = any(a is not None for a in accuracies)
    lines = ["| ranks chosen for \\ priced on | " + " | ".join(targets) + (" | test accuracy |" if with_accuracy else " |"),
             "|---|" + "---:|" * (len(targets) + with_accuracy)]
    for label, row, accuracy in zip(labels, cycles, accuracies):
        cells = []
        for j, value in enumerate(row):
            best = min(r[j] for r in cycles)
            cells.append(f"**{value:,}**" if value == best else f"{value:,} (+{value / best - 1:.1%})")
        if with_accuracy:
            cells.append("-" if accuracy is None else f"{accuracy:.4f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cmd_crossprice(args: argparse.Namespace) -> int:
    from costmodels.io_utils import atomic_write_text
    from costmodels.lut.export import load_lut
    from costmodels.lut.pricing import price_ranks, read_choice

    if len(args.lut) != len(args.target) or len(args.choice) != len(args.label):
        raise CostModelError("give one --target per --lut and one --label per --choice")
    luts = [load_lut(path) for path in args.lut]
    choices = [read_choice(path) for path in args.choice]
    cycles = [[price_ranks(lut, choice.ranks, str(path)).cycles for lut in luts]
              for choice, path in zip(choices, args.choice)]
    table = crossprice_markdown(args.target, args.label, cycles, [c.accuracy for c in choices])
    print(table, end="")
    if args.out:
        atomic_write_text(args.out, table)
        print(f"wrote {args.out}")
    return 0


def add_crossprice_parser(sub: Any) -> None:
    p = sub.add_parser("crossprice", help="price rank choices made for several targets on every target's LUT")
    p.add_argument("--lut", type=Path, nargs="+", required=True, help="one LUT per target")
    p.add_argument("--target", nargs="+", required=True, help="a name for each --lut, in order")
    p.add_argument("--choice", type=Path, nargs="+", required=True,
                   help="JSON files with a 'ranks' object (report.json of `costmodel search`)")
    p.add_argument("--label", nargs="+", required=True, help="a name for each --choice, in order")
    p.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    p.set_defaults(func=cmd_crossprice)
