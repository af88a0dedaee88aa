"""`costmodel doctor`: what this machine can run, and why not."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costmodels.version import __version__


@dataclass(frozen=True)
class Check:
    section: str
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"section": self.section, "name": self.name, "ok": self.ok, "detail": self.detail}


def doctor_checks(timeloop_bin: str | os.PathLike | None = None, cache_path: str | os.PathLike | None = None
                  ) -> list[Check]:
    from costmodels.backends import accelergy_status, backend_status
    from costmodels.sweep.records import default_jobs
    from costmodels.timeloop.spec import available_targets

    checks = [
        Check("toolkit", "costmodels", True, f"{__version__} ({Path(__file__).resolve().parent})"),
        Check("toolkit", "python", True, f"{platform.python_version()} ({sys.executable})"),
        Check("toolkit", "cores", True, f"{default_jobs()} usable (default --jobs)"),
    ]
    for status in backend_status(None if timeloop_bin is None else str(timeloop_bin)):
        checks.append(Check("backends", status.name, status.available, status.reason))
    from costmodels.backends.torch_timing import device_lines
    for name, usable, detail in device_lines():
        checks.append(Check("devices (--backend torch)", name, usable, detail))
    accelergy, why = accelergy_status()
    checks.append(Check("energy", "accelergy", accelergy is not None, why))
    checks.append(_dask_check())
    checks.append(_cache_check(cache_path))
    targets = available_targets()
    checks.append(Check("specs", "arch_specs", bool(targets), ", ".join(targets) if targets else "none found"))
    return checks


def _dask_check() -> Check:
    try:
        import distributed
    except ImportError:
        return Check("sweeps", "dask.distributed", False,
                     "not installed: --scheduler needs `pip install 'haloc-costmodels[dask]'`")
    return Check("sweeps", "dask.distributed", True, f"{distributed.__version__} (--scheduler ADDRESS)")


def _cache_check(cache_path: str | os.PathLike | None) -> Check:
    from costmodels.errors import CostModelError
    from costmodels.sweep.cache import ResultsCache

    cache = ResultsCache(cache_path)
    if not cache.path.exists():
        return Check("cache", "results cache", True, f"{cache.path}: not created yet")
    try:
        with cache:
            info = cache.info()
    except CostModelError as exc:
        return Check("cache", "results cache", False, str(exc))
    return Check("cache", "results cache", True,
                 f"{info.path}: {info.entries} entries, {info.size_bytes / 1e6:.1f} MB")


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines: list[str] = []
    section = None
    for check in checks:
        if check.section != section:
            section = check.section
            lines.append(f"{section}:")
        mark = "ok  " if check.ok else "--  "
        lines.append(f"  {mark}{check.name.ljust(width)}  {check.detail}")
    return "\n".join(lines)


def doctor_report(timeloop_bin: str | os.PathLike | None = None, cache_path: str | os.PathLike | None = None) -> str:
    return format_checks(doctor_checks(timeloop_bin, cache_path))
