"""Sweeps: evaluate many workloads on one spec with one backend, through the results cache.

1. Every workload's cache key is looked up first; hits cost nothing.
2. Misses run in-process (``jobs=1``), in local worker processes (``jobs=N``), or on a Dask
   distributed cluster (``scheduler=ADDRESS``). Each finished evaluation is committed to the cache
   by this (the client) process the moment it arrives, whatever the engine: a sweep killed at any
   point and started again recomputes only what was missing.
3. A workload whose evaluation fails (no legal mapping, a tool's error or time limit, a worker
   process that died) becomes a ``WorkloadFailure`` with the reason; the sweep goes on. Failures are
   not cached, so the next sweep tries them again.

The result is a dict keyed by workload key in the order of the input, with values built from the
JSON record that the cache stores, so a result read back from the cache and one just computed are
identical: the LUT does not depend on completion order, engine or cache state.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from costmodels.errors import CostModelError
from costmodels.problems.workloads import Workload
from costmodels.sweep.cache import ResultsCache, cache_key, json_default
from costmodels.sweep.records import WorkloadCost, WorkloadFailure
from costmodels.timeloop.evaluation import Evaluation
from costmodels.timeloop.spec import ArchSpec

Result = WorkloadCost | WorkloadFailure
Progress = Callable[[int, int, int], None]   # (done, total, cached)
WORKER_DIED = "worker process died while evaluating it (killed, crashed or out of memory)"

__all__ = ["run_sweep", "evaluate_task", "evaluation_record", "cost_from_record", "Result", "WORKER_DIED"]


# --- records ---------------------------------------------------------------------------------------

def evaluation_record(evaluation: Evaluation, workload: Workload) -> dict[str, Any]:
    """What the cache keeps of one evaluation: the sweep's fields and the full evaluation, as plain
    JSON types."""
    record = {
        "workload_key": workload.key,
        "workload": workload.name,
        "cycles": evaluation.cycles,
        "energy_pj": evaluation.energy_pj,
        "utilization": evaluation.utilization,
        "mapping": evaluation.mapping.compact(),
        "backend": evaluation.backend,
        "backend_version": evaluation.backend_version,
        "evaluation": evaluation.to_dict(),
    }
    return json.loads(json.dumps(record, sort_keys=True, allow_nan=False, default=json_default))


def cost_from_record(record: dict[str, Any]) -> WorkloadCost:
    """The sweep result of a cache record; ``ValueError`` when the record lacks a field."""
    try:
        timing = record.get("evaluation", {}).get("timing") or {}   # measured backends only
        return WorkloadCost(key=str(record["workload_key"]), cycles=int(record["cycles"]),
                            energy_pj=float(record["energy_pj"]), utilization=float(record["utilization"]),
                            mapping=str(record["mapping"]), noisy=bool(timing.get("noisy", False)),
                            spread=float(timing.get("spread", 0.0)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed cache record: {exc}") from None


# --- the task that runs anywhere ----------------------------------------------------------------------

_SPECS: dict[str, ArchSpec] = {}


def evaluate_task(workload: Workload, spec: ArchSpec, backend: Any) -> tuple[str, dict[str, Any] | None, str | None]:
    """Evaluate one workload; returns (workload key, record, None) or (workload key, None, reason).
    Never raises for a failed evaluation, so one bad workload cannot stop a sweep."""
    # One spec object per content in each process keeps the model's per-spec tables warm.
    spec = _SPECS.setdefault(spec.content_hash, spec)
    try:
        evaluation = backend.evaluate(workload, spec)
        return workload.key, evaluation_record(evaluation, workload), None
    except CostModelError as exc:
        return workload.key, None, str(exc)
    except Exception as exc:  # a bug or a resource error: still a failure of this workload only
        return workload.key, None, f"internal error: {type(exc).__name__}: {exc}"


# --- the sweep ---------------------------------------------------------------------------------------

def run_sweep(workloads: Iterable[Workload], spec: ArchSpec, backend: Any, cache: ResultsCache | None = None,
              jobs: int = 1, scheduler: Any = None, progress: Progress | None = None,
              connect_timeout_s: float = 30.0) -> dict[str, Result]:
    """Evaluate ``workloads`` (duplicates by content are evaluated once) and return
    ``{workload key: WorkloadCost | WorkloadFailure}`` in input order.

    ``cache``: a ``ResultsCache`` or None (no caching). ``jobs``: local worker processes (1: in this
    process). ``scheduler``: a Dask scheduler address (or a ``distributed.Client``); overrides
    ``jobs``; ``connect_timeout_s`` bounds connecting to it. ``progress(done, total, cached)`` is
    called once after the cache lookups and after every evaluation."""
    items: dict[str, Workload] = {}
    for workload in workloads:
        items.setdefault(workload.key, workload)
    total = len(items)
    results: dict[str, Result] = {}
    keys: dict[str, str] = {}
    if cache is not None:
        keys = {wkey: cache_key(w, spec, backend) for wkey, w in items.items()}
        hits = cache.get_many(keys.values())
        for wkey in items:
            record = hits.get(keys[wkey])
            if record is None:
                continue
            try:
                cost = cost_from_record(record)
            except ValueError:
                continue   # unreadable entry: evaluate again and overwrite it
            if cost.key == wkey:
                results[wkey] = cost
    cached = len(results)
    if progress is not None:
        progress(cached, total, cached)
    todo = [w for wkey, w in items.items() if wkey not in results]

    def finish(workload: Workload, record: dict[str, Any] | None, reason: str | None) -> None:
        if record is not None:
            try:
                cost = cost_from_record(record)
            except ValueError as exc:
                record, reason = None, f"internal error: {exc}"
            else:
                if cache is not None:
                    cache.put(keys[workload.key], record, workload_key=workload.key, workload=workload.name,
                              spec=spec.name, spec_hash=spec.content_hash, backend=backend.name,
                              backend_version=backend.version, settings=backend.settings_key)
                results[workload.key] = cost
        if record is None:
            results[workload.key] = WorkloadFailure(workload.key, workload.name, reason or "unknown failure")
        if progress is not None:
            progress(len(results), total, cached)

    if todo:
        if scheduler is not None and not getattr(backend, "parallel", True):
            raise CostModelError(f"backend '{backend.name}' measures this machine; it cannot run on a Dask cluster "
                                 f"(drop --scheduler)")
        if scheduler is not None:
            _run_dask(todo, spec, backend, scheduler, finish, connect_timeout_s)
        elif jobs <= 1 or len(todo) == 1 or not getattr(backend, "parallel", True):
            # A measuring backend times this machine: worker processes would compete for its cores.
            for workload in todo:
                _, record, reason = evaluate_task(workload, spec, backend)
                finish(workload, record, reason)
        else:
            _run_local(todo, spec, backend, jobs, finish)
    return {wkey: results[wkey] for wkey in items}


Finish = Callable[[Workload, "dict[str, Any] | None", "str | None"], None]


def _run_local(todo: list[Workload], spec: ArchSpec, backend: Any, jobs: int, finish: Finish) -> None:
    """Worker processes, results taken as each completes. A worker that dies (kill -9, a crash, the
    OOM killer) breaks the pool: the pool is replaced, the other pending workloads go on, and the
    workloads that were in flight are retried one at a time, so only the one that kills its worker
    is reported as failed."""
    queue = deque(todo)
    suspects: deque[Workload] = deque()
    while queue:
        suspects.extend(_drain(queue, spec, backend, jobs, 2 * jobs, finish))
    while suspects:
        for workload in _drain(suspects, spec, backend, 1, 1, finish):
            finish(workload, None, WORKER_DIED)


def _drain(queue: deque, spec: ArchSpec, backend: Any, workers: int, window: int, finish: Finish) -> list[Workload]:
    """Run ``queue`` on one pool, keeping ``window`` tasks in flight. Returns [] when the queue is
    done, or the workloads in flight when the pool broke (the rest stay queued). On Ctrl-C (or any
    error here) the workers are killed at once: their work in flight is abandoned, never waited for."""
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(queue))), initializer=_worker_init,
                               initargs=(os.getpid(),))
    in_flight: dict[Any, Workload] = {}
    suspects: list[Workload] = []
    try:
        while queue or in_flight:
            while queue and len(in_flight) < window:
                try:
                    with _sigint_blocked():   # submit forks the workers: none may take a Ctrl-C
                        future = pool.submit(evaluate_task, queue[0], spec, backend)
                except BrokenProcessPool:
                    break   # the tasks in flight report the break below
                in_flight[future] = queue.popleft()
            if not in_flight:
                raise CostModelError("local worker processes cannot start (the process pool broke at once)")
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in done:
                workload = in_flight.pop(future)
                outcome = _outcome(future)
                if outcome is None:
                    suspects.append(workload)
                else:
                    finish(workload, *outcome)
            if suspects:
                # A broken pool fails every task still in it (each future is already settled).
                for future, workload in in_flight.items():
                    outcome = _outcome(future)
                    if outcome is None:
                        suspects.append(workload)
                    else:
                        finish(workload, *outcome)
                return suspects
        return []
    except BaseException:
        with _sigint_blocked():   # a second Ctrl-C waits until every worker is killed
            _kill_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- worker processes: Ctrl-C is the parent's, and none outlives it -----------------------------------

_PR_SET_PDEATHSIG = 1   # linux/prctl.h


def _worker_init(parent_pid: int) -> None:
    """Runs first in every worker. A terminal's Ctrl-C reaches the whole process group; only the parent
    acts on it (a worker interrupted mid-task prints a traceback or leaves the pool's queue locked).
    A worker exits when its parent dies, even of kill -9: on Linux the kernel kills it
    (PR_SET_PDEATHSIG), elsewhere a thread watches the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if not _die_with_parent():
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch-parent", daemon=True).start()
    if os.getppid() != parent_pid:   # the parent died before the above took effect
        os._exit(1)


def _die_with_parent() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT held back in this thread: a worker forked meanwhile inherits the mask and unblocks it
    only after ignoring SIGINT; a Ctrl-C that came meanwhile reaches this process afterwards."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _kill_workers(pool: ProcessPoolExecutor, timeout_s: float = 2.0) -> None:
    """Kill the workers and wait until they are gone (without reaping them: that is the executor's), so
    the executor sees a broken pool, not workers to send stop requests to. The executor has no public
    way to do this before Python 3.14 (``kill_workers``)."""
    from multiprocessing.connection import wait as wait_for

    processes = list((getattr(pool, "_processes", None) or {}).values())
    sentinels = []
    for process in processes:
        try:
            process.kill()
            sentinels.append(process.sentinel)
        except (OSError, ValueError):   # already gone
            pass
    deadline = time.monotonic() + timeout_s
    while sentinels and time.monotonic() < deadline:
        ready = wait_for(sentinels, timeout=max(0.0, deadline - time.monotonic()))
        sentinels = [s for s in sentinels if s not in ready]


def _outcome(future: Any) -> tuple[dict[str, Any] | None, str | None] | None:
    """(record, reason) of a finished task; None when its worker process died."""
    try:
        _, record, reason = future.result()
    except BrokenProcessPool:
        return None
    except Exception as exc:   # e.g. a task that cannot be pickled
        return None, f"internal error: {type(exc).__name__}: {exc}"
    return record, reason


def _run_dask(todo: list[Workload], spec: ArchSpec, backend: Any, scheduler: Any, finish: Finish,
              connect_timeout_s: float) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise CostModelError("--scheduler needs dask.distributed: install it with "
                             "`pip install 'haloc-costmodels[dask]'`") from None
    own = isinstance(scheduler, str)
    if own:
        try:
            client = Client(scheduler, timeout=connect_timeout_s)
        except (OSError, TimeoutError, ValueError) as exc:
            raise CostModelError(f"cannot connect to the Dask scheduler at {scheduler}: {exc}") from None
    else:
        client = scheduler
    try:
        spec_future = client.scatter(spec, broadcast=True)
        futures = {client.submit(evaluate_task, workload, spec_future, backend, pure=False): workload
                   for workload in todo}
        for future in as_completed(futures):
            workload = futures[future]
            try:
                _, record, reason = future.result()
            except Exception as exc:   # the worker died (KilledWorker) or the task could not run
                record, reason = None, f"dask: {type(exc).__name__}: {exc}"
            finish(workload, record, reason)
            future.release()
    finally:
        if own:
            client.close()

