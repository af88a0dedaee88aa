"""The `costmodel` command: one parser, each sub-command a thin shell over the library."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Sequence

from costmodels.cli.cache import add_cache_parser, add_doctor_parser
from costmodels.cli.evaluate import add_evaluate_parsers
from costmodels.cli.network import add_network_parsers
from costmodels.cli.predict import add_fit_parser, add_lut_parser
from costmodels.cli.search import add_search_parser
from costmodels.errors import CostModelError
from costmodels.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="costmodel", description="Hardware cost of Tucker-2 compressed CNNs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_network_parsers(sub)
    add_evaluate_parsers(sub)
    add_cache_parser(sub)
    add_doctor_parser(sub)
    add_fit_parser(sub)
    add_lut_parser(sub)
    add_search_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, _interrupt)
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
    finally:   # after a Ctrl-C the process is on its way out: later ones stay ignored
        if previous is not None and signal.getsignal(signal.SIGINT) is _interrupt:
            signal.signal(signal.SIGINT, previous)


def _interrupt(signum: int, frame: object) -> None:
    """The first Ctrl-C stops the command; later ones are ignored while it cleans up (kills its workers,
    removes its staging folder), so that a second one cannot turn the way out into a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
