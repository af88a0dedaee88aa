"""Hostile output destinations (issue 13): ``--out`` naming a file, the filesystem root, a path under a file
or an unwritable folder is exit code 2 and one line naming it, before any work and with nothing written;
a command's several outputs appear together or not at all (a folder standing where one should go stops
them all); files already in the output folder survive; outputs get 0666 less the umask."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from hostile_helpers import assert_refused, run, tree

from costmodels.cli.main import main

FOLDER_COMMANDS = {   # command -> (argv, the files it writes)
    "build": (["build", "--arch", "eyeriss", "--model", "resnet20", "--jobs", "1"], ["lut.csv", "summary.json"]),
    "heatmap": (["heatmap", "--arch", "eyeriss", "--model", "resnet20", "--layer", "layer2.1.conv1", "--step", "16",
                 "--jobs", "1"], ["layer2_1_conv1-eyeriss.csv", "layer2_1_conv1-eyeriss.png"]),
    "fit": (["fit", "--arch", "eyeriss", "--model", "resnet20", "--estimator", "poly", "--no-check", "--jobs", "1"],
            ["predictor.zip", "accuracy.md", "accuracy.json"]),
    "workloads": (["workloads", "--model", "resnet20"], ["index.json"]),
}
FILE_COMMANDS = {   # command -> argv before the output file (appended, or given with --out)
    "lut": ["lut", "--arch", "eyeriss", "--model", "resnet20", "--jobs", "1", "--out"],
    "cache export": ["cache", "export"],
}
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False








def bad_destination(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """(destination, what the message must say about it)."""
    if kind == "a file":
        (tmp_path / "taken").write_text("mine\n")
        return tmp_path / "taken", "is a file, not a folder"
    if kind == "the root":
        return Path("/"), "is the filesystem root"
    if kind == "under a file":
        (tmp_path / "taken").write_text("mine\n")
        return tmp_path / "taken" / "out", "'.*taken' is a file, not a folder"
    if kind == "unwritable folder":
        if ROOT:   # root writes through permission bits; /proc refuses everyone
            if not Path("/proc/self").is_dir():
                pytest.skip("needs /proc when run as root")
            return Path("/proc/costmodel-out"), "not writable"
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        return locked / "out", "not writable"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["a file", "the root", "under a file", "unwritable folder"])
@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_bad_output_folders_are_refused_before_the_work(capsys, tmp_path, monkeypatch, command, kind):
    monkeypatch.chdir(tmp_path)
    out, culprit = bad_destination(tmp_path, kind)
    before = tree(tmp_path)
    argv, _ = FOLDER_COMMANDS[command]
    code, stdout, err = run(capsys, *argv, "--out", out)
    assert_refused(code, err, command, re.escape(str(out)) + ": .*" + culprit)
    assert "workloads, " not in err   # refused before the sweep started
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind", ["a folder", "under a file", "unwritable folder"])
@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_bad_output_files_are_refused(capsys, tmp_path, monkeypatch, command, kind):
    monkeypatch.chdir(tmp_path)
    if kind == "a folder":
        (tmp_path / "taken").mkdir()
        out, culprit = tmp_path / "taken", "is a folder; give a file name"
    else:
        out, culprit = bad_destination(tmp_path, kind)
    if command == "cache export":
        code = main(["build", "--arch", "eyeriss", "--model", "resnet20", "--jobs", "1", "--out", "built"])
        assert code == 0
        capsys.readouterr()
    before = tree(tmp_path)
    code, _, err = run(capsys, *FILE_COMMANDS[command], out / "lut.csv" if kind != "a folder" else out)
    named = out if kind == "a folder" else out / "lut.csv"
    assert_refused(code, err, command, re.escape(str(named)) + ": .*" + culprit)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_outputs_appear_together_or_not_at_all(capsys, tmp_path, monkeypatch, command):
    """A folder where the last output should go: none of the outputs is left, the folder's other files
    are untouched, and no staging folder remains."""
    monkeypatch.chdir(tmp_path)
    argv, files = FOLDER_COMMANDS[command]
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    (out / files[-1]).mkdir()
    before = tree(tmp_path)
    code, _, err = run(capsys, *argv, "--out", out)
    assert_refused(code, err, command, re.escape(str(out / files[-1])) + ": is a folder")
    assert tree(tmp_path) == before and (out / "notes.txt").read_text() == "keep me\n"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_follow_the_umask_and_keep_other_files(capsys, tmp_path, monkeypatch, umask):
    monkeypatch.chdir(tmp_path)
    previous = os.umask(umask)
    try:
        existing = tmp_path / "existing"
        existing.mkdir()
        (existing / "notes.txt").write_text("keep me\n")
        for out in (existing, tmp_path / "new" / "deep"):
            code, _, _ = run(capsys, *FOLDER_COMMANDS["build"][0], "--out", out)
            assert code == 0
            assert sorted(os.listdir(out)) == sorted(["lut.csv", "summary.json"] + (["notes.txt"] if out == existing
                                                                                    else []))
            for name in ("lut.csv", "summary.json"):
                assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask
        assert stat.S_IMODE((tmp_path / "new" / "deep").stat().st_mode) == 0o777 & ~umask
        assert (existing / "notes.txt").read_text() == "keep me\n"
        code, _, _ = run(capsys, "cache", "export", tmp_path / "cache.csv")
        assert code == 0 and stat.S_IMODE((tmp_path / "cache.csv").stat().st_mode) == 0o666 & ~umask
    finally:
        os.umask(previous)


def test_build_where_every_workload_fails_reports_without_a_traceback(capsys, tmp_path, monkeypatch):
    """A Timeloop that fails every run: the failures are listed, the summary says nothing was priced."""
    if sys.platform == "win32":
        pytest.skip("needs a shell script as a fake Timeloop")
    monkeypatch.chdir(tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("timeloop-model", "timeloop-mapper"):
        (fake / tool).write_text("#!/bin/sh\necho 'ERROR: license expired' >&2\nexit 3\n")
        (fake / tool).chmod(0o755)
    code, out, err = run(capsys, "build", "--arch", "eyeriss", "--model", "resnet20", "--jobs", "1", "--no-cache",
                         "--backend", "timeloop-model", "--timeloop-bin", fake, "--out", tmp_path / "out")
    assert code == 1 and "Traceback" not in err
    assert "original network: not priced" in out and "46 of 46 workloads failed" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"] == 0 and summary["original"] is None and len(summary["failures"]) == 46
