"""`costmodel report DIR`: a build, LUT, fit, heat-map or search folder as one Markdown page with plots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_report(args: argparse.Namespace) -> int:
    from costmodels.report import write_folder_report

    print(f"wrote {write_folder_report(args.folder)}")
    return 0


def add_report_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="turn a build, lut, fit, heatmap or search folder into a Markdown report")
    p.add_argument("folder", type=Path, help="an output folder of another command")
    p.set_defaults(func=cmd_report)
