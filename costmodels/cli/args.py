"""What the CLI's sub-commands share: argparse value types (a bad value is a usage error, exit 2), the
network-source and rank-grid arguments, and the plain-text table."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable

from costmodels.network.sources import load_layers
from costmodels.problems.candidates import RankGrid


def _value_type(convert: Callable[[str], float], accept: Callable[[float], bool], expected: str,
                name: str) -> Callable[[str], float]:
    """An argparse type: ``convert`` the text, then refuse what ``accept`` rejects, saying what was expected.
    A non-finite float (nan, inf) is never accepted."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'")
        return value

    parse.__name__ = name
    return parse


positive_int = _value_type(int, lambda v: v >= 1, "a positive integer", "positive_int")
nonnegative_int = _value_type(int, lambda v: v >= 0, "an integer >= 0", "nonnegative_int")
positive_float = _value_type(float, lambda v: v > 0, "a positive number", "positive_float")
nonnegative_float = _value_type(float, lambda v: v >= 0, "a number >= 0", "nonnegative_float")
fraction = _value_type(float, lambda v: 0.0 < v <= 1.0, "a fraction in (0, 1]", "fraction")


def int_tuple(text: str) -> tuple[int, ...]:
    """``1,3,224,224`` or ``1x3x224x224``."""
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("network (one of)")
    group.add_argument("--model", help="built-in model: see `costmodel layers --list`")
    group.add_argument("--onnx", type=Path, help="an ONNX file")
    group.add_argument("--module", help="PKG.MODULE:FACTORY returning a torch.nn.Module (needs --input-shape)")
    parser.add_argument("--input-shape", type=int_tuple, help="input shape for --module, e.g. 1,3,224,224")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch size for --model (default 1)")


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
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


def rank_grid(args: argparse.Namespace) -> RankGrid:
    return RankGrid(step=args.step, narrow_steps=((32, args.step32), (64, args.step64)),
                    equal_ranks=not args.full_grid, exclude=tuple(args.exclude),
                    exclude_first=not args.include_first)


def network_layers(args: argparse.Namespace):
    return load_layers(model=args.model, onnx=args.onnx, module=args.module, input_shape=args.input_shape,
                       batch=args.batch)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])
