"""CLI pieces for backends, the results cache and sweeps, for ``cli.py`` to wire in:

- ``add_backend_arguments(parser)``: ``--backend``, ``--timeloop-bin``, ``--timeout``, ``--jobs``,
  ``--scheduler``, ``--cache PATH``, ``--no-cache``.
- ``backend_from_args``, ``cache_from_args``, ``SweepProgress``, ``report_failures``: what ``cmd_build`` calls.
- ``add_cache_parser(subparsers)`` (``costmodel cache info|clear|export``) and
  ``add_doctor_parser(subparsers)`` (``costmodel doctor``), with their handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TextIO

from .backends import BACKEND_NAMES, DEFAULT_TIMEOUT_S, get_backend
from .cache import EXPORT_FORMATS, ResultsCache
from .cli_types import positive_float, positive_int

if TYPE_CHECKING:
    from .build import WorkloadFailure


def add_backend_arguments(parser: argparse.ArgumentParser, jobs: bool = True) -> None:
    """The evaluation flags of ``costmodel build`` (``jobs=False`` where the parser has --jobs)."""
    from .build import default_jobs

    group = parser.add_argument_group("evaluation")
    group.add_argument("--backend", default="builtin", choices=BACKEND_NAMES,
                       help="builtin: built-in mapper and model (default); timeloop: the real timeloop-mapper; "
                            "timeloop-model: the built-in mapping evaluated by the real timeloop-model")
    group.add_argument("--timeloop-bin", metavar="DIR",
                       help="folder with timeloop-mapper / timeloop-model (default: pytimeloop, else PATH)")
    group.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, dest="timeout_s",
                       metavar="SECONDS", help=f"time limit of one Timeloop run (default {DEFAULT_TIMEOUT_S:g})")
    if jobs:
        group.add_argument("--jobs", type=positive_int, default=default_jobs(),
                           help="local worker processes (default: all cores)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the evaluations on this Dask scheduler (e.g. tcp://host:8786) instead")
    cache = group.add_mutually_exclusive_group()
    cache.add_argument("--cache", type=Path, metavar="PATH",
                       help="results cache file (default: $COSTMODEL_CACHE, else the user cache folder)")
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write the results cache")


def backend_from_args(args: argparse.Namespace):
    return get_backend(getattr(args, "backend", "builtin"), timeloop_bin=getattr(args, "timeloop_bin", None),
                       timeout_s=getattr(args, "timeout_s", DEFAULT_TIMEOUT_S))


def cache_from_args(args: argparse.Namespace) -> ResultsCache | None:
    if getattr(args, "no_cache", False):
        return None
    return ResultsCache(getattr(args, "cache", None))


class SweepProgress:
    """Progress of a sweep: a tqdm bar (rate, ETA) on a terminal, else a plain log line every
    ``interval_s`` seconds and at the end. Use as ``with SweepProgress(label) as progress:`` and pass
    ``progress`` to ``run_sweep``."""

    def __init__(self, label: str, stream: TextIO | None = None, interval_s: float = 10.0,
                 tty: bool | None = None):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval_s = interval_s
        self.bar: Any = None
        self.start = time.monotonic()
        self.last_log = 0.0
        self.state = (0, 0, 0)
        self.started = False

    def __enter__(self) -> "SweepProgress":
        self.start = time.monotonic()
        return self

    def __call__(self, done: int, total: int, cached: int) -> None:
        first, self.started = not self.started, True
        self.state = (done, total, cached)
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=done, desc=self.label, unit="workload", file=self.stream,
                                dynamic_ncols=True)
                if cached:   # tqdm's rate and ETA count from ``initial``: cache hits do not inflate them
                    self.bar.set_postfix_str(f"{cached} cached")
            else:
                self.bar.update(done - self.bar.n)
            return
        now = time.monotonic()
        if first:
            print(f"{self.label}: {total} workloads, {cached} from the cache, {total - cached} to evaluate",
                  file=self.stream, flush=True)
            self.last_log = now
        elif done == total or now - self.last_log >= self.interval_s:
            self.last_log = now
            print(self._line(), file=self.stream, flush=True)

    def _line(self) -> str:
        done, total, cached = self.state
        elapsed = time.monotonic() - self.start
        computed = done - cached
        rate = computed / elapsed if elapsed > 0 else 0.0
        left = total - done
        eta = f"{_duration(left / rate)}" if rate > 0 and left else ("0s" if not left else "?")
        return (f"{self.label}: {done}/{total} done ({cached} cached), {rate:.2f} workloads/s, "
                f"elapsed {_duration(elapsed)}, ETA {eta}")

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def report_failures(failures: "Sequence[WorkloadFailure]", total: int, stream: TextIO | None = None) -> int:
    """Print one line per failed workload (workload, reason); returns how many failed."""
    stream = stream if stream is not None else sys.stderr
    for failure in failures:
        print(f"FAILED {failure.workload}: {failure.reason}", file=stream)
    if failures:
        print(f"{len(failures)} of {total} workloads failed; their LUT rows are missing (run again to "
              f"retry them)", file=stream)
    return len(failures)


# --- costmodel cache ---------------------------------------------------------------------------------

def add_cache_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("cache", help="the results cache: info, clear, export")
    parser.add_argument("--cache", type=Path, metavar="PATH",
                        help="cache file (default: $COSTMODEL_CACHE, else the user cache folder)")
    actions = parser.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    p = actions.add_parser("info", help="where the cache is, how many entries, per backend and spec")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    actions.add_parser("clear", help="remove every entry")
    p = actions.add_parser("export", help="write every entry as JSON lines or CSV")
    p.add_argument("out", type=Path, help="output file (.csv for CSV, else JSON lines)")
    p.add_argument("--format", choices=EXPORT_FORMATS, help="jsonl or csv (default: from the file name)")
    parser.set_defaults(func=cmd_cache)
    return parser


def cmd_cache(args: argparse.Namespace) -> int:
    cache = ResultsCache(getattr(args, "cache", None))
    with cache:
        if args.cache_command == "info":
            if not cache.path.exists():
                info = None
            else:
                info = cache.info()
            if getattr(args, "json", False):
                print(json.dumps(info.to_dict() if info else {"path": str(cache.path), "entries": 0}, indent=1))
                return 0
            if info is None:
                print(f"{cache.path}: no cache yet (0 entries)")
                return 0
            print(f"{info.path}: {info.entries} entries, {info.size_bytes / 1e6:.2f} MB")
            if info.entries:
                print(f"  from {_when(info.oldest)} to {_when(info.newest)}")
            for title, counts in (("backend", info.by_backend), ("spec", info.by_spec)):
                for name, count in counts.items():
                    print(f"  {title} {name}: {count}")
            return 0
        if args.cache_command == "clear":
            if not cache.path.exists():
                print(f"{cache.path}: no cache yet, nothing to clear")
                return 0
            print(f"{cache.path}: removed {cache.clear()} entries")
            return 0
        if args.cache_command == "export":
            count = cache.export(args.out, getattr(args, "format", None))
            print(f"wrote {count} entries to {args.out}")
            return 0
    raise AssertionError(args.cache_command)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


# --- costmodel doctor --------------------------------------------------------------------------------

def add_doctor_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("doctor", help="which backends, tools and caches this machine has, and why not")
    parser.add_argument("--timeloop-bin", metavar="DIR", help="also look for Timeloop's executables here")
    parser.add_argument("--cache", type=Path, metavar="PATH", help="results cache file to check")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=cmd_doctor)
    return parser


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor_checks, format_checks

    checks = doctor_checks(getattr(args, "timeloop_bin", None), getattr(args, "cache", None))
    if getattr(args, "json", False):
        print(json.dumps([c.to_dict() for c in checks], indent=1))
    else:
        print(format_checks(checks))
    return 0
