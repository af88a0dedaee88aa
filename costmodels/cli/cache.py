"""`costmodel cache info|clear|export` and `costmodel doctor`."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from costmodels.io_utils import check_output_file
from costmodels.sweep.cache import EXPORT_FORMATS, ResultsCache

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
    if args.cache_command == "export":
        check_output_file(args.out)
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
    from costmodels.doctor import doctor_checks, format_checks

    checks = doctor_checks(getattr(args, "timeloop_bin", None), getattr(args, "cache", None))
    if getattr(args, "json", False):
        print(json.dumps([c.to_dict() for c in checks], indent=1))
    else:
        print(format_checks(checks))
    return 0
