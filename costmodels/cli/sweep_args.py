"""What the commands that run sweeps share:

- ``add_backend_arguments(parser)``: ``--backend``, ``--timeloop-bin``, ``--timeout``, ``--jobs``,
  ``--scheduler``, ``--cache PATH``, ``--no-cache``, and the measured backend's ``--device``,
  ``--dtype``, ``--threads``.
- ``backend_from_args``, ``target_from_args`` (a spec, or the device that ``--backend torch`` times),
  ``cache_from_args``, ``SweepProgress``, ``report_failures``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TextIO

from costmodels.backends import BACKEND_NAMES, DEFAULT_TIMEOUT_S, MEASURED_BACKENDS, get_backend
from costmodels.backends.torch_timing import CLOCKS, DTYPES
from costmodels.cli.args import positive_float, positive_int
from costmodels.errors import CostModelError
from costmodels.sweep.cache import ResultsCache

if TYPE_CHECKING:
    from costmodels.backends import Target
    from costmodels.sweep.records import WorkloadFailure


def add_backend_arguments(parser: argparse.ArgumentParser, jobs: bool = True, measured: bool = False) -> None:
    """The evaluation flags of ``costmodel build`` (``jobs=False`` where the parser has --jobs;
    ``measured=True`` where the command also takes ``--backend torch`` and its device flags)."""
    from costmodels.sweep.records import default_jobs

    group = parser.add_argument_group("evaluation")
    simulated = "builtin: built-in mapper and model (default); timeloop: the real timeloop-mapper; " \
                "timeloop-model: the built-in mapping evaluated by the real timeloop-model"
    group.add_argument("--backend", default="builtin",
                       choices=BACKEND_NAMES if measured else tuple(b for b in BACKEND_NAMES
                                                                    if b not in MEASURED_BACKENDS),
                       help=simulated + ("; torch: measured on this machine's --device (no --arch)" if measured
                                         else ""))
    group.add_argument("--timeloop-bin", metavar="DIR",
                       help="folder with timeloop-mapper / timeloop-model (default: pytimeloop, else PATH)")
    group.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, dest="timeout_s",
                       metavar="SECONDS", help=f"time limit of one Timeloop run (default {DEFAULT_TIMEOUT_S:g})")
    if jobs:
        group.add_argument("--jobs", type=positive_int, default=default_jobs(),
                           help="local worker processes (default: all cores)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the evaluations on this Dask scheduler (e.g. tcp://host:8786) instead")
    if measured:
        device = parser.add_argument_group("measured backend (--backend torch)")
        device.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
        device.add_argument("--dtype", default="float32", choices=DTYPES, help="tensor type (default float32)")
        device.add_argument("--threads", type=positive_int,
                            help="torch threads, pinned while timing (default: all usable cores)")
        device.add_argument("--clock", default="wall", choices=tuple(CLOCKS),
                            help="wall: elapsed time (default); cpu: the timing thread's CPU time, steadier on "
                                 "a shared machine (CPU, --threads 1 only)")
    cache = group.add_mutually_exclusive_group()
    cache.add_argument("--cache", type=Path, metavar="PATH",
                       help="results cache file (default: $COSTMODEL_CACHE, else the user cache folder)")
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write the results cache")


def backend_from_args(args: argparse.Namespace):
    return get_backend(getattr(args, "backend", "builtin"), timeloop_bin=getattr(args, "timeloop_bin", None),
                       timeout_s=getattr(args, "timeout_s", DEFAULT_TIMEOUT_S),
                       device=getattr(args, "device", "cpu"), dtype=getattr(args, "dtype", "float32"),
                       threads=getattr(args, "threads", None), clock=getattr(args, "clock", "wall"))


def target_from_args(args: argparse.Namespace, backend) -> "Target":
    """``--arch``'s spec, or the device a measured backend times (which takes no ``--arch``)."""
    from costmodels.timeloop.spec import load_spec

    if backend.name in MEASURED_BACKENDS:
        if getattr(args, "arch", None):
            raise CostModelError(f"--arch names a simulated spec; --backend {backend.name} measures --device "
                                 f"instead: drop --arch")
        if getattr(args, "scheduler", None):
            raise CostModelError(f"--backend {backend.name} measures this machine; --scheduler is not allowed")
        from costmodels.backends.torch_timing import busy_warning

        warning = busy_warning(backend.target)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        return backend.target
    if not getattr(args, "arch", None):
        raise CostModelError("--arch is required (a target under arch_specs/ or a spec folder), except with "
                             "--backend torch")
    return load_spec(args.arch)


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
