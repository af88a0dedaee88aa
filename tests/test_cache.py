"""The SQLite results cache: round trips, key sensitivity, hits and misses through a sweep,
concurrent writers, info/clear/export, location."""

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from costmodels.backends import BuiltinBackend
from costmodels.problems.workloads import Workload
from costmodels.sweep.cache import CacheError, ResultsCache, cache_key, default_cache_path
from costmodels.sweep.runner import run_sweep
from costmodels.timeloop.evaluation import Evaluation
from costmodels.timeloop.mapping import Mapping
from costmodels.timeloop.spec import SPECS_ROOT, load_spec

W1 = Workload(C=16, M=8, R=1, S=1, N=1, P=32, Q=32)
W2 = Workload(C=32, M=32, R=3, S=3, N=1, P=16, Q=16, Wstride=2, Hstride=2)


class CountingBackend:
    """A quick stand-in backend that counts its evaluations."""

    name = "counting"
    settings_key = "s=1"

    def __init__(self, version="1"):
        self.version = version
        self.calls = []

    def evaluate(self, workload, spec):
        self.calls.append(workload.key)
        cycles = workload.macs // spec.compute.instances + 1
        return Evaluation(workload.key, cycles, workload.macs * 2.2 + 0.1, workload.macs, workload.macs * 2.2,
                          workload.macs / (cycles * spec.compute.instances), (), Mapping(()), self.name,
                          self.version)


@pytest.fixture(scope="module")
def spec():
    return load_spec("eyeriss")


@pytest.fixture
def cache(tmp_path):
    with ResultsCache(tmp_path / "cache.sqlite") as c:
        yield c


def test_put_get_round_trip(cache):
    assert cache.get("k1") is None and len(cache) == 0 and "k1" not in cache
    value = {"cycles": 10, "energy_pj": 0.1 + 0.2, "nested": {"a": [1, 2.5, "x"]}}
    cache.put("k1", value, workload="w", backend="b")
    assert cache.get("k1") == value and "k1" in cache and len(cache) == 1
    cache.put("k1", {"cycles": 11})   # replace
    assert cache.get("k1") == {"cycles": 11} and len(cache) == 1
    cache.put("k2", {"cycles": 12})
    assert cache.get_many(["k2", "nope", "k1"]) == {"k1": {"cycles": 11}, "k2": {"cycles": 12}}


def test_values_are_plain_json(cache):
    import numpy as np
    cache.put("k", {"cycles": np.int64(7), "energy": np.float64(1.5)})
    assert cache.get("k") == {"cycles": 7, "energy": 1.5}
    with pytest.raises(TypeError):
        cache.put("bad", {"x": object()})
    raw = sqlite3.connect(cache.path).execute("SELECT value FROM results WHERE key='k'").fetchone()[0]
    assert json.loads(raw) == {"cycles": 7, "energy": 1.5}


def test_every_put_is_committed_and_visible_to_other_connections(cache):
    cache.put("k", {"cycles": 1})
    other = sqlite3.connect(cache.path)
    assert other.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_key_is_stable_and_content_sensitive(spec, tmp_path):
    backend = BuiltinBackend()
    key = cache_key(W1, spec, backend)
    assert len(key) == 64 and key == cache_key(Workload(**W1.__dict__), load_spec("eyeriss"), BuiltinBackend())
    assert cache_key(W2, spec, backend) != key
    assert cache_key(replace(W1, Wstride=2, P=16), spec, backend) != key
    # Another process computes the same key.
    code = textwrap.dedent(f"""
        from types import SimpleNamespace
        from costmodels.sweep.cache import cache_key
        from costmodels.timeloop.spec import load_spec
        from costmodels.problems.workloads import Workload
        backend = SimpleNamespace(name="counting", version="1", settings_key="s=1")
        print(cache_key(Workload(**{W1.__dict__!r}), load_spec("eyeriss"), backend))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == cache_key(W1, spec, CountingBackend("1"))
    # A changed spec file (even a comment in the mapper settings), backend version or settings.
    folder = tmp_path / "spec"
    shutil.copytree(SPECS_ROOT / "eyeriss", folder)
    assert cache_key(W1, load_spec(folder), backend) == key      # same content, other folder: same key
    (folder / "mapper" / "mapper.yaml").write_text((folder / "mapper" / "mapper.yaml").read_text() + "# x\n")
    assert cache_key(W1, load_spec(folder), backend) != key
    assert cache_key(W1, spec, CountingBackend("1")) != cache_key(W1, spec, CountingBackend("2"))
    other = CountingBackend("1")
    other.settings_key = "s=2"
    assert cache_key(W1, spec, other) != cache_key(W1, spec, CountingBackend("1"))


def test_sweep_hits_and_misses(spec, tmp_path, cache):
    backend = CountingBackend()
    first = run_sweep([W1, W2, W1], spec, backend, cache=cache)
    assert sorted(backend.calls) == sorted([W1.key, W2.key]) and len(cache) == 2
    backend.calls.clear()
    seen = []
    second = run_sweep([W2, W1], spec, backend, cache=cache, progress=lambda *a: seen.append(a))
    assert backend.calls == [] and second == {W2.key: first[W2.key], W1.key: first[W1.key]}
    assert seen == [(2, 2, 2)]
    # A changed spec invalidates: everything is evaluated again.
    folder = tmp_path / "spec"
    shutil.copytree(SPECS_ROOT / "eyeriss", folder)
    ert = folder / "ERT.yaml"
    ert.write_text(ert.read_text() + "\n# recalibrated\n")
    run_sweep([W1, W2], load_spec(folder), backend, cache=cache)
    assert sorted(backend.calls) == sorted([W1.key, W2.key]) and len(cache) == 4
    # So does a new backend version.
    backend.calls.clear()
    run_sweep([W1], spec, CountingBackend("2"), cache=cache)
    assert len(cache) == 5


def test_cached_record_carries_the_whole_evaluation(spec, cache):
    run_sweep([W1], spec, BuiltinBackend(), cache=cache)
    record = cache.get(cache_key(W1, spec, BuiltinBackend()))
    assert record["workload_key"] == W1.key and record["workload"] == W1.name and record["cycles"] == 2048
    assert record["evaluation"]["cycles"] == 2048 and len(record["evaluation"]["levels"]) == len(spec.storage)
    assert record["mapping"] == record["evaluation"]["mapping"]["compact"]


def test_unreadable_entry_is_recomputed(spec, cache):
    backend = CountingBackend()
    cache.put(cache_key(W1, spec, backend), {"cycles": "lots"})
    result = run_sweep([W1], spec, backend, cache=cache)
    assert backend.calls == [W1.key] and result[W1.key].cycles == W1.macs // 168 + 1
    assert cache.get(cache_key(W1, spec, backend))["cycles"] == result[W1.key].cycles


_WRITER = """
import sys
from costmodels.sweep.cache import ResultsCache
path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cache = ResultsCache(path)
for i in range(n):
    cache.put(f"{name}-{i}", {"writer": name, "i": i}, workload=name)
    if i % 25 == 0:
        assert cache.get(f"{name}-{i}") == {"writer": name, "i": i}
print(len(cache))
"""


def test_concurrent_writers(tmp_path):
    path = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), name, "300"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    with ResultsCache(path) as cache:
        assert len(cache) == 600
        assert cache.get("a-299") == {"writer": "a", "i": 299} and cache.get("b-0") == {"writer": "b", "i": 0}
        assert cache.info().by_spec == {" ()": 600}
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_info_clear_export(spec, tmp_path, cache):
    run_sweep([W1, W2], spec, BuiltinBackend(), cache=cache)
    info = cache.info()
    assert info.entries == 2 and info.path == cache.path and info.size_bytes > 0
    assert info.by_backend == {f"builtin {BuiltinBackend().version}": 2}
    assert info.by_spec == {f"eyeriss ({spec.content_hash})": 2}
    assert info.oldest <= info.newest and json.loads(json.dumps(info.to_dict()))["entries"] == 2

    n = cache.export(tmp_path / "all.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert n == 2 and {line["workload"] for line in lines} == {W1.name, W2.name}
    assert all(line["backend"] == "builtin" and line["value"]["cycles"] > 0 for line in lines)
    assert cache.export(tmp_path / "all.csv") == 2
    rows = list(csv.DictReader((tmp_path / "all.csv").open()))
    assert {r["workload"] for r in rows} == {W1.name, W2.name} and all(int(r["cycles"]) > 0 for r in rows)
    cache.export(tmp_path / "x.txt", "csv")
    assert (tmp_path / "x.txt").read_text().startswith("key,workload_key")

    assert cache.clear() == 2 and len(cache) == 0 and cache.info().entries == 0


def test_location(tmp_path, monkeypatch):
    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path / "env.sqlite"))
    assert default_cache_path() == tmp_path / "env.sqlite" and ResultsCache().path == tmp_path / "env.sqlite"
    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path))
    assert default_cache_path() == tmp_path / "results.sqlite"
    assert ResultsCache(tmp_path / "arg.sqlite").path == tmp_path / "arg.sqlite"
    monkeypatch.delenv("COSTMODEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = default_cache_path()
    assert path.name == "results.sqlite" and "haloc-costmodels" in str(path)
    if sys.platform.startswith("linux"):
        assert path == tmp_path / "xdg" / "haloc-costmodels" / "results.sqlite"


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CacheError, match=str(path)):
        ResultsCache(path).get("k")


def test_a_cache_travels_as_its_path(cache):
    import pickle
    cache.put("k", {"v": 1})
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.path == cache.path and clone.get("k") == {"v": 1}
    clone.close()


def test_cache_commands(spec, tmp_path, capsys):
    import argparse

    from costmodels.cli.cache import add_cache_parser

    parser = argparse.ArgumentParser()
    add_cache_parser(parser.add_subparsers(dest="command"))
    path = tmp_path / "cmd.sqlite"

    def run(*argv):
        args = parser.parse_args(["cache", "--cache", str(path), *argv])
        code = args.func(args)
        return code, capsys.readouterr().out

    assert run("info") == (0, f"{path}: no cache yet (0 entries)\n")
    with ResultsCache(path) as cache:
        run_sweep([W1, W2], spec, BuiltinBackend(), cache=cache)
    code, out = run("info")
    assert code == 0 and f"{path}: 2 entries" in out and "backend builtin" in out and "spec eyeriss" in out
    code, out = run("info", "--json")
    assert json.loads(out)["entries"] == 2
    code, out = run("export", str(tmp_path / "e.csv"))
    assert code == 0 and "wrote 2 entries" in out and (tmp_path / "e.csv").exists()
    code, out = run("export", str(tmp_path / "e.out"), "--format", "jsonl")
    assert len((tmp_path / "e.out").read_text().splitlines()) == 2
    assert run("clear") == (0, f"{path}: removed 2 entries\n")
    assert ResultsCache(path).info().entries == 0
