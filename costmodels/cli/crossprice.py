"""`costmodel crossprice`: rank choices made for several targets, each priced on every target's LUT, so a
table shows whether the choice made for a target is the one that suits it (the diagonal): the fastest
there, or the only one within that target's budget."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from costmodels.cli.args import fraction
from costmodels.errors import CostModelError


def crossprice_markdown(targets: list[str], labels: list[str], cells: list[list[int | str]], originals: list[int],
                        accuracies: list[float | None], budget: float | None) -> str:
    """Cycles of each choice (row) on each target (column), as a share of that target's original network;
    the fastest choice of each column in bold, a share above ``budget`` marked. A cell that is text says why
    the choice has no price there."""
    with_accuracy = any(a is not None for a in accuracies)
    lines = ["| ranks chosen for \\ priced on | " + " | ".join(targets) + (" | test accuracy |" if with_accuracy else " |"),
             "|---|" + "---:|" * (len(targets) + with_accuracy)]
    for label, row, accuracy in zip(labels, cells, accuracies):
        texts = []
        for j, value in enumerate(row):
            if isinstance(value, str):
                texts.append(value)
                continue
            share = value / originals[j]
            text = f"{value:,} ({share:.3f})"
            if budget is not None and share > budget + 1e-12:
                text += " over budget"
            priced = [r[j] for r in cells if not isinstance(r[j], str)]
            texts.append(f"**{text}**" if value == min(priced) else text)
        if with_accuracy:
            texts.append("-" if accuracy is None else f"{accuracy:.4f}")
        lines.append(f"| {label} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def _cell(lut, choice, source: str) -> int | str:
    from costmodels.lut.pricing import MissingRowError, price_ranks

    try:
        return price_ranks(lut, choice.ranks, source).cycles
    except MissingRowError as missing:   # e.g. no legal mapping of that rank on this target
        return f"not in the LUT: {missing.layer} r{missing.ranks[0]}/{missing.ranks[1]}"


def cmd_crossprice(args: argparse.Namespace) -> int:
    from costmodels.io_utils import atomic_write_text, check_output_file
    from costmodels.lut.export import load_lut
    from costmodels.lut.pricing import price_ranks, read_choice

    if len(args.lut) != len(args.target) or len(args.choice) != len(args.label):
        raise CostModelError("give one --target per --lut and one --label per --choice")
    if args.out:
        check_output_file(args.out)
    luts = [load_lut(path) for path in args.lut]
    choices = [read_choice(path) for path in args.choice]
    cells = [[_cell(lut, choice, str(path)) for lut in luts] for choice, path in zip(choices, args.choice)]
    originals = [price_ranks(lut, {}).cycles for lut in luts]
    table = crossprice_markdown(args.target, args.label, cells, originals, [c.accuracy for c in choices], args.budget)
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
                   help="JSON files of ranks per layer: ranks.json or report.json of `costmodel search`")
    p.add_argument("--label", nargs="+", required=True, help="a name for each --choice, in order")
    p.add_argument("--budget", type=fraction, help="mark choices above this share of a target's original latency")
    p.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    p.set_defaults(func=cmd_crossprice)
