"""Ctrl-C and kill -9 during a real sweep (issue 13): Ctrl-C (SIGINT to the whole process group, as a
terminal sends it, sometimes twice) prints one line and exits 130 within two seconds, every time, with no
worker traceback and no hang; after kill -9 of the main process no worker outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and /proc: Linux")

TRIALS = 6


def _build(tmp_path: Path, trial: int) -> subprocess.Popen:
    """resnet18's full rank grid on two workers: several seconds of sweep to interrupt."""
    argv = [sys.executable, "-m", "costmodels.cli.main", "build", "--arch", "eyeriss", "--model", "resnet18",
            "--full-grid", "--jobs", "2", "--cache", str(tmp_path / "cache.sqlite"), "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=tmp_path)
    first = proc.stderr.readline()   # the sweep's first progress line: workers start next
    assert "to evaluate" in first, first
    deadline = time.monotonic() + 5.0
    while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05 + 0.1 * trial)
    return proc


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_exits_130_with_one_line_every_time(tmp_path):
    for trial in range(TRIALS):
        proc = _build(tmp_path, trial)
        assert len(_children(proc.pid)) >= 2
        start = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        if trial % 2:   # an impatient second Ctrl-C while the first is being handled
            time.sleep(0.01 * trial)
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"trial {trial}: hung after Ctrl-C")
        elapsed = time.monotonic() - start
        assert proc.returncode == 130, (trial, err)
        assert err.strip() == "costmodel build: interrupted", (trial, err)
        assert elapsed < 2.0, (trial, elapsed)
        assert not (tmp_path / "out").exists()


def test_no_worker_outlives_a_main_process_killed_with_kill_9(tmp_path):
    proc = _build(tmp_path, 1)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)   # the main process only: its workers are left to themselves
    proc.wait()
    deadline = time.monotonic() + 2.0
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [w for w in workers if _alive(w)]
    for worker in survivors:   # leave no orphan behind, even when the test fails
        os.kill(worker, signal.SIGKILL)
    proc.stdout.close()
    proc.stderr.close()
    assert not survivors, survivors
