"""Sweeps: determinism across engines, failures that do not stop a sweep, workers that die, a build
killed with kill -9 and resumed, and Dask on a LocalCluster."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from costmodels.backends import BuiltinBackend
from costmodels.errors import MappingError
from costmodels.lut.build import assemble_lut, lut_csv
from costmodels.network.sources import load_layers
from costmodels.problems.candidates import RankGrid, network_candidates
from costmodels.problems.workloads import Workload, network_workloads
from costmodels.sweep.cache import ResultsCache, cache_key
from costmodels.sweep.records import WorkloadCost, WorkloadFailure
from costmodels.sweep.runner import WORKER_DIED, run_sweep
from costmodels.timeloop.evaluation import Evaluation
from costmodels.timeloop.mapping import Mapping
from costmodels.timeloop.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


class FakeBackend:
    """A deterministic stand-in: optional delay, a MappingError for some channel counts, and a worker
    that kills itself (once per workload when ``once_dir`` is given) for others."""

    name = "fake"
    version = "1"
    settings_key = "fake"

    def __init__(self, delay_s=0.0, fail_c=(), kill_c=(), once_dir=None):
        self.delay_s, self.fail_c, self.kill_c, self.once_dir = delay_s, tuple(fail_c), tuple(kill_c), once_dir

    def evaluate(self, workload, spec):
        if workload.C in self.kill_c:
            first = True
            if self.once_dir is not None:
                try:
                    os.close(os.open(Path(self.once_dir) / f"killed-{workload.key}", os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    first = False
            if first:
                os.kill(os.getpid(), signal.SIGKILL)
        if workload.C in self.fail_c:
            raise MappingError(f"no legal mapping for {workload.name} (fake)")
        if workload.C == 999:
            raise ZeroDivisionError("a bug")
        time.sleep(self.delay_s)
        cycles = workload.macs // 168 + workload.C
        return Evaluation(workload.key, cycles, workload.macs * 2.2 + workload.M / 3, workload.macs,
                          workload.macs * 2.2, workload.macs / (cycles * 168), (), Mapping(()), self.name,
                          self.version)


WORKLOADS = [Workload(C=c, M=8, R=1, S=1, N=1, P=4, Q=4) for c in range(1, 13)]


@pytest.fixture(scope="module")
def spec():
    return load_spec("eyeriss")


@pytest.fixture(scope="module")
def resnet20():
    name, layers = load_layers(model="resnet20", onnx=None, module=None, input_shape=None, batch=1)
    return network_workloads(network_candidates(layers, RankGrid()))


def lut_text(network, spec, results):
    return lut_csv(assemble_lut("resnet20", network.layers, spec, results))


def test_results_do_not_depend_on_jobs_or_cache(spec, tmp_path):
    serial = run_sweep(WORKLOADS, spec, FakeBackend(), cache=None, jobs=1)
    assert list(serial) == [w.key for w in WORKLOADS]
    assert all(isinstance(r, WorkloadCost) for r in serial.values())
    parallel = run_sweep(list(reversed(WORKLOADS)) + WORKLOADS, spec, FakeBackend(delay_s=0.01), jobs=2)
    assert list(parallel) == [w.key for w in reversed(WORKLOADS)] and parallel == serial
    with ResultsCache(tmp_path / "c.sqlite") as cache:
        computed = run_sweep(WORKLOADS, spec, FakeBackend(), cache=cache, jobs=2)
        from_cache = run_sweep(WORKLOADS, spec, FakeBackend(fail_c=range(100)), cache=cache, jobs=2)
    assert computed == from_cache == serial


def test_failures_are_reported_and_the_sweep_goes_on(spec, tmp_path):
    workloads = WORKLOADS + [Workload(C=999, M=1, R=1, S=1, N=1, P=1, Q=1)]
    progress = []
    with ResultsCache(tmp_path / "c.sqlite") as cache:
        results = run_sweep(workloads, spec, FakeBackend(fail_c=(3, 7)), cache=cache, jobs=2,
                            progress=lambda *a: progress.append(a))
        failures = {r.workload: r.reason for r in results.values() if isinstance(r, WorkloadFailure)}
        assert failures == {WORKLOADS[2].name: f"no legal mapping for {WORKLOADS[2].name} (fake)",
                            WORKLOADS[6].name: f"no legal mapping for {WORKLOADS[6].name} (fake)",
                            workloads[-1].name: "internal error: ZeroDivisionError: a bug"}
        assert len(cache) == len(workloads) - 3          # failures are not cached
        assert progress[0] == (0, 13, 0) and progress[-1] == (13, 13, 0) and len(progress) == 14
        # The next sweep retries only the failures.
        backend = FakeBackend()
        again = run_sweep(workloads, spec, backend, cache=cache, jobs=1)
        assert len(cache) == len(workloads) - 1
    assert [r.workload for r in again.values() if isinstance(r, WorkloadFailure)] == [workloads[-1].name]
    assert again[WORKLOADS[2].key] == run_sweep([WORKLOADS[2]], spec, backend)[WORKLOADS[2].key]


def test_a_worker_killed_once_is_retried(spec, tmp_path):
    results = run_sweep(WORKLOADS, spec, FakeBackend(delay_s=0.02, kill_c=(5,), once_dir=tmp_path), jobs=2)
    assert (tmp_path / f"killed-{WORKLOADS[4].key}").exists()
    assert results == run_sweep(WORKLOADS, spec, FakeBackend(), jobs=1)


def test_a_workload_that_always_kills_its_worker_fails_alone(spec, tmp_path):
    with ResultsCache(tmp_path / "c.sqlite") as cache:
        results = run_sweep(WORKLOADS, spec, FakeBackend(delay_s=0.02, kill_c=(5,)), cache=cache, jobs=2)
        assert len(cache) == len(WORKLOADS) - 1
    failed = [r for r in results.values() if isinstance(r, WorkloadFailure)]
    assert failed == [WorkloadFailure(WORKLOADS[4].key, WORKLOADS[4].name, WORKER_DIED)]


_SWEEP_SCRIPT = """
import json, sys, time
from costmodels.backends import BuiltinBackend
from costmodels.sweep.cache import ResultsCache
from costmodels.timeloop.spec import load_spec
from costmodels.sweep.runner import run_sweep
from costmodels.problems.workloads import Workload


class SlowBuiltin(BuiltinBackend):
    # The real backend, slowed down so that the test can kill the sweep in the middle. Its version is
    # pinned so that the test's resuming backend has the same cache keys even while the sources change.
    version = "pinned-for-the-kill-test"

    def evaluate(self, workload, spec):
        time.sleep(0.15)
        return super().evaluate(workload, spec)


if __name__ == "__main__":
    workloads = [Workload(**w) for w in json.load(open(sys.argv[1]))]
    with ResultsCache(sys.argv[2]) as cache:
        run_sweep(workloads, load_spec("eyeriss"), SlowBuiltin(), cache=cache, jobs=2)
    print("finished")
"""


def test_build_killed_with_kill_9_resumes_to_the_same_lut(spec, resnet20, tmp_path):
    workloads = list(resnet20.unique.values())
    total = len(workloads)
    (tmp_path / "workloads.json").write_text(json.dumps([asdict(w) for w in workloads]))
    (tmp_path / "sweep.py").write_text(_SWEEP_SCRIPT)
    db = tmp_path / "cache.sqlite"
    # The sweep and its worker processes run in their own process group, killed together below.
    proc = subprocess.Popen([sys.executable, str(tmp_path / "sweep.py"), str(tmp_path / "workloads.json"), str(db)],
                            cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        stored = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    stored = sqlite3.connect(db, timeout=5).execute("SELECT COUNT(*) FROM results").fetchone()[0]
                except sqlite3.OperationalError:
                    stored = 0   # the schema is not there yet
            if stored >= 6:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.communicate()}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with ResultsCache(db) as cache:
        kept = len(cache)
        assert 6 <= kept < total

        class Counting(BuiltinBackend):
            version = "pinned-for-the-kill-test"
            calls = 0

            def evaluate(self, workload, spec):
                Counting.calls += 1
                return super().evaluate(workload, spec)

        resumed = run_sweep(workloads, spec, Counting(), cache=cache, jobs=1)
        assert Counting.calls == total - kept           # only what was missing
        assert len(cache) == total
    uninterrupted = run_sweep(workloads, spec, BuiltinBackend(), cache=None, jobs=2)
    assert resumed == uninterrupted
    assert all(isinstance(r, WorkloadCost) for r in resumed.values())
    assert lut_text(resnet20, spec, resumed) == lut_text(resnet20, spec, uninterrupted)


def test_dask_local_cluster_gives_the_same_lut(spec, resnet20, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (extra 'dask')")
    workloads = list(resnet20.unique.values())
    local = run_sweep(workloads, spec, BuiltinBackend(), cache=None, jobs=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) \
            as cluster:
        with ResultsCache(tmp_path / "c.sqlite") as cache:
            done = []
            remote = run_sweep(workloads, spec, BuiltinBackend(), cache=cache, scheduler=cluster.scheduler_address,
                               progress=lambda *a: done.append(a))
            assert len(cache) == len(workloads)        # written by this process, the client
            assert cache.get(cache_key(workloads[0], spec, BuiltinBackend()))["workload_key"] == workloads[0].key
        assert done[-1] == (len(workloads), len(workloads), 0)
    assert remote == local
    assert lut_text(resnet20, spec, remote) == lut_text(resnet20, spec, local)


def test_unreachable_scheduler_is_a_clear_error(spec):
    pytest.importorskip("distributed")
    from costmodels.errors import CostModelError
    with pytest.raises(CostModelError, match="cannot connect to the Dask scheduler at tcp://127.0.0.1:9"):
        run_sweep(WORKLOADS[:2], spec, FakeBackend(), scheduler="tcp://127.0.0.1:9", connect_timeout_s=2)


def test_progress_plain_log_lines_and_terminal_bar(spec):
    import io

    from costmodels.cli.sweep_args import SweepProgress

    stream = io.StringIO()
    with SweepProgress("resnet20 on eyeriss", stream=stream, interval_s=0, tty=False) as progress:
        run_sweep(WORKLOADS[:3], spec, FakeBackend(), progress=progress)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "resnet20 on eyeriss: 3 workloads, 0 from the cache, 3 to evaluate"
    assert lines[-1].startswith("resnet20 on eyeriss: 3/3 done (0 cached), ") and "workloads/s" in lines[-1]
    assert "ETA 0s" in lines[-1] and len(lines) == 4

    stream = io.StringIO()
    with SweepProgress("bar", stream=stream, tty=True) as progress:
        run_sweep(WORKLOADS[:3], spec, FakeBackend(), progress=progress)
    text = stream.getvalue()
    assert "bar" in text and "3/3" in text and "workload/s" in text


def test_backend_flags_and_failure_report(spec, tmp_path, capsys):
    import argparse

    from costmodels.cli.sweep_args import add_backend_arguments, cache_from_args, report_failures
    from costmodels.sweep.records import WorkloadFailure

    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    args = parser.parse_args(["--jobs", "1", "--cache", str(tmp_path / "c.sqlite")])
    assert (args.backend, args.scheduler, args.no_cache, args.timeout_s) == ("builtin", None, False, 1800.0)
    with cache_from_args(args) as cache:
        results = run_sweep(WORKLOADS[:2], spec, FakeBackend(fail_c=(2,)), cache=cache, jobs=args.jobs)
    assert isinstance(results[WORKLOADS[0].key], WorkloadCost)
    failures = [r for r in results.values() if isinstance(r, WorkloadFailure)]
    assert report_failures(failures, len(results)) == 1
    err = capsys.readouterr().err
    assert f"FAILED {WORKLOADS[1].name}: no legal mapping" in err and "1 of 2 workloads failed" in err
    assert ResultsCache(tmp_path / "c.sqlite").info().entries == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["--cache", "x", "--no-cache"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--backend", "gem5"])
