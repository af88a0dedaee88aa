"""Hostile input, command by command: every file or name a user hands the CLI, made bad in every way
found so far (issue 13), must end in exit code 2 and one line naming the culprit: no traceback, no
hang, and nothing written. The corpus is generated here, in each test's own folder.

Classes (each a parametrized test below):
- HOSTILE_YAML: YAML inputs (problem, mapping, a spec's target.yaml and architecture file)
- HOSTILE_ONNX: ``--onnx`` files
- HOSTILE_MODULE: ``--module`` factories
- misspelt ``--exclude``
- HOSTILE_PREDICTOR: ``--predictor`` zips
- HOSTILE_LUT: LUT files (``load_lut``; no command reads one)
- hostile results caches
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import zipfile
from pathlib import Path

import pytest

from hostile_helpers import assert_refused, run, tree

from costmodels.cli.main import main
from costmodels.lut.export import MAX_LUT_BYTES
from costmodels.network.extract import MAX_ONNX_BYTES
from costmodels.predictors.persistence import MAX_PREDICTOR_BYTES
from costmodels.timeloop.spec import SPECS_ROOT
from costmodels.user_files import MAX_FILE_BYTES

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n"
DEEP = "[" * 5000 + "]" * 5000 + "\n"
PROBLEM = ("problem:\n  shape: {name: CNN-Layer}\n  instance: {C: 16, M: 16, R: 3, S: 3, N: 1, P: 8, Q: 8}\n")








def hostile_file(folder: Path, kind: str, name: str, valid: bytes = b"", limit: int = MAX_FILE_BYTES) -> Path:
    """A file of ``kind`` at ``folder / name`` (a link to a device for ``device``; one byte over ``limit``
    for ``oversized``)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    if kind == "alias bomb":
        path.write_text(BOMB)
    elif kind == "deep nesting":
        path.write_text(DEEP)
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "utf-16":
        path.write_bytes(valid.decode().encode("utf-16"))
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "oversized":   # sparse: refused on its size before a byte is read
        with open(path, "wb") as handle:
            handle.truncate(limit + 1)
    elif kind == "unsafe tag":
        path.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    elif kind == "empty":
        path.write_text("")
    elif kind == "truncated":
        path.write_bytes(valid[: len(valid) // 2])
    else:
        raise AssertionError(kind)
    return path


# --- YAML inputs: problem, mapping, spec files ----------------------------------------------------------

YAML_KINDS = ("alias bomb", "deep nesting", "binary", "utf-16", "device", "folder", "oversized", "unsafe tag")
SPEC_COMMANDS = ("eval", "build", "heatmap", "fit", "lut")


def _spec_copy(folder: Path) -> Path:
    spec = folder / "myspec"
    shutil.copytree(SPECS_ROOT / "eyeriss", spec)
    return spec


def _spec_command(command: str, spec: Path, problem: Path, out: Path) -> list[str]:
    if command == "eval":
        return ["eval", "--arch", spec, problem]
    extra = {"build": [], "heatmap": ["--layer", "layer1.0.conv1"], "fit": [], "lut": []}[command]
    return [command, "--arch", spec, "--model", "resnet20", "--jobs", "1", "--out", out, *extra]


@pytest.mark.parametrize("kind", YAML_KINDS)
@pytest.mark.parametrize("role", ["problem", "mapping"])
def test_hostile_problem_and_mapping_files(capsys, tmp_path, monkeypatch, kind, role):
    monkeypatch.chdir(tmp_path)
    problem = tmp_path / "problem.yaml"
    problem.write_text(PROBLEM)
    if role == "problem":
        bad = hostile_file(tmp_path, kind, "bad.yaml", PROBLEM.encode())
        argv = ["eval", "--arch", "eyeriss", bad]
    else:
        bad = hostile_file(tmp_path, kind, "map.yaml", b"mapping: []\n")
        argv = ["eval", "--arch", "eyeriss", problem, "--mapping", bad]
    before = tree(tmp_path)
    code, out, err = run(capsys, *argv)
    assert_refused(code, err, "eval", re.escape(str(bad)))
    assert out == "" and tree(tmp_path) == before


@pytest.mark.parametrize("kind", YAML_KINDS)
@pytest.mark.parametrize("file", ["target.yaml", "arch/eyeriss_like.yaml"])
@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_hostile_spec_files(capsys, tmp_path, monkeypatch, kind, file, command):
    monkeypatch.chdir(tmp_path)
    spec = _spec_copy(tmp_path)
    bad = hostile_file(spec, kind, file, (spec / file).read_bytes())
    problem = tmp_path / "problem.yaml"
    problem.write_text(PROBLEM)
    out_dir = tmp_path / "out"
    before = tree(tmp_path)
    code, _, err = run(capsys, *_spec_command(command, spec, problem, out_dir))
    assert_refused(code, err, command, re.escape(str(bad)))
    assert tree(tmp_path) == before


# --- ONNX files -----------------------------------------------------------------------------------------

def _onnx_conv(kernel: int, size: int, op: str = "Conv") -> bytes:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    if op == "Conv":
        weight = numpy_helper.from_array(np.zeros((8, 3, kernel, kernel), np.float32), "conv.weight")
        node = helper.make_node("Conv", ["x", "conv.weight"], ["y"], kernel_shape=[kernel, kernel], name="conv")
        graph = helper.make_graph([node], "g", [x], [y], [weight])
    else:
        graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], name="relu")], "g", [x], [y])
    return onnx.helper.make_model(graph).SerializeToString()


ONNX_KINDS = {   # kind -> what the message must say besides the file name
    "binary": "not an ONNX model", "empty": "no graph nodes|not an ONNX model", "truncated": "not an ONNX model",
    "device": "not a regular file", "folder": "is a folder", "missing": "no such file",
    "oversized": "bytes are read|files up to", "kernel larger than input": "larger than the padded input",
    "no conv": "no Conv nodes",
}
NETWORK_COMMANDS = ("layers", "candidates", "workloads", "build", "heatmap", "fit", "lut")


def _network_command(command: str, source: list, out: Path) -> list:
    arch = [] if command in ("layers", "candidates", "workloads") else ["--arch", "eyeriss", "--jobs", "1"]
    outs = [] if command in ("layers", "candidates") else ["--out", out]
    layer = ["--layer", "conv"] if command == "heatmap" else []
    return [command, *source, *arch, *outs, *layer]


@pytest.mark.parametrize("kind", ONNX_KINDS)
@pytest.mark.parametrize("command", NETWORK_COMMANDS)
def test_hostile_onnx_files(capsys, tmp_path, monkeypatch, kind, command):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "net.onnx"
    if kind == "kernel larger than input":
        path.write_bytes(_onnx_conv(kernel=5, size=3))
    elif kind == "no conv":
        path.write_bytes(_onnx_conv(kernel=1, size=3, op="Relu"))
    elif kind != "missing":
        hostile_file(tmp_path, kind, "net.onnx", _onnx_conv(kernel=3, size=8), MAX_ONNX_BYTES)
    before = tree(tmp_path)
    code, out, err = run(capsys, *_network_command(command, ["--onnx", path], tmp_path / "out"))
    assert_refused(code, err, command, re.escape(str(path)) + ".*(" + ONNX_KINDS[kind] + ")")
    assert tree(tmp_path) == before


# --- --module factories ---------------------------------------------------------------------------------

MODULE_KINDS = {   # kind -> (module source or None for a module that does not exist, culprit)
    "missing module": (None, r"cannot import 'hm_missing_module'"),
    "syntax error": ("def make(:\n    pass\n", r"importing 'hm_syntax_error' failed: SyntaxError"),
    "raises on import": ("raise RuntimeError('no GPU here')\n", r"failed: RuntimeError: no GPU here"),
    "exits on import": ("import sys\nsys.exit(3)\n", r"failed: SystemExit: 3"),
    "factory raises": ("def make():\n    raise ValueError('bad width')\n", r"factory failed: ValueError: bad width"),
    "factory exits": ("import sys\ndef make():\n    sys.exit('usage: ...')\n", r"factory failed: SystemExit"),
    "returns a number": ("def make():\n    return 42\n", r"returned a int, not a torch.nn.Module"),
    "returns None": ("def make():\n    pass\n", r"returned a NoneType, not a torch.nn.Module"),
    "no such factory": ("x = 1\n", r"has no attribute 'make'"),
    "not callable": ("make = 5\n", r"'make' is not callable"),
    "forward fails": ("import torch.nn as nn\ndef make():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), "
                      "nn.Linear(5, 5))\n", r"Sequential failed to run on input shape \(1, 3, 8, 8\)"),
    "kernel larger than input": ("import torch.nn as nn\ndef make():\n    return nn.Conv2d(3, 8, 9)\n",
                                 r"Conv2d failed to run on input shape \(1, 3, 8, 8\)"),
}


@pytest.mark.parametrize("kind", MODULE_KINDS)
@pytest.mark.parametrize("command", NETWORK_COMMANDS)
def test_hostile_module_factories(capsys, tmp_path, monkeypatch, kind, command):
    source, culprit = MODULE_KINDS[kind]
    name = "hm_" + kind.replace(" ", "_")
    if source is not None:
        (tmp_path / "code").mkdir()
        (tmp_path / "code" / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path / "code"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, name, raising=False)
    before = tree(tmp_path)
    argv = _network_command(command, ["--module", f"{name}:make", "--input-shape", "1,3,8,8"], tmp_path / "out")
    code, _, err = run(capsys, *argv)
    assert_refused(code, err, command, culprit)
    assert {p for p in tree(tmp_path) - before if "__pycache__" not in p} == set()


# --- a misspelt --exclude -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["candidates", "workloads", "build", "fit", "lut"])
def test_misspelt_exclude_names_the_layers_that_exist(capsys, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    argv = _network_command(command, ["--model", "resnet20"], tmp_path / "out")
    code, _, err = run(capsys, *argv, "--exclude", "layer1.0.conv")
    assert_refused(code, err, command, r"unknown layer \(--exclude\) 'layer1.0.conv'; available: .*layer1.0.conv1")
    assert tree(tmp_path) == set()


# --- predictor files ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor_zip(tmp_path_factory) -> Path:
    """A real predictor file for eyeriss, fitted on part of resnet20."""
    from costmodels.backends import get_backend
    from costmodels.network.zoo import zoo_layers
    from costmodels.predictors.estimators import CostPredictor, Predictors
    from costmodels.predictors.persistence import save_predictors
    from costmodels.problems.candidates import RankGrid, network_candidates
    from costmodels.problems.workloads import network_workloads
    from costmodels.sweep.runner import run_sweep
    from costmodels.timeloop.spec import load_spec

    spec = load_spec("eyeriss")
    workloads = list(network_workloads(network_candidates(zoo_layers("resnet20"), RankGrid())).unique.values())[:20]
    costs = run_sweep(workloads, spec, get_backend("builtin"))
    evaluated = [costs[w.key] for w in workloads]
    predictors = Predictors(CostPredictor(spec, "cycles", "poly").fit(workloads, evaluated),
                            CostPredictor(spec, "energy", "poly").fit(workloads, evaluated))
    return save_predictors(tmp_path_factory.mktemp("predictor") / "good.zip", predictors)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _with_metadata(members: dict[str, bytes], change) -> dict[str, bytes]:
    metadata = json.loads(members["metadata.json"])
    change(metadata)
    return {**members, "metadata.json": json.dumps(metadata).encode()}


def _skops(value) -> bytes:
    import skops.io
    return skops.io.dumps(value)


MEMBER_LIMIT = 4 * 1024 ** 2
PREDICTOR_KINDS = {   # kind -> (members, or a file kind; what the message must say besides the file name)
    "pickle": ("binary", "not a predictor file"),
    "folder": ("folder", "is a folder"),
    "device": ("device", "not a regular file"),
    "oversized": ("oversized", "files up to"),
    "missing": ("missing", "no such file"),
    "no metadata": (lambda m: {k: v for k, v in m.items() if k != "metadata.json"}, "no member metadata.json"),
    "metadata not JSON": (lambda m: {**m, "metadata.json": b"\xff{"}, "metadata.json is not JSON"),
    "metadata a list": (lambda m: {**m, "metadata.json": b"[1, 2]"}, "not an object"),
    "spec a list": (lambda m: _with_metadata(m, lambda d: d.update(spec=[1])), "field 'spec' must be an object"),
    "features a string": (lambda m: _with_metadata(m, lambda d: d.update(features="x")),
                          "field 'features' must be an object"),
    "versions a list": (lambda m: _with_metadata(m, lambda d: d.update(versions=["1.0"])), "'versions' must be an object"),
    "targets a list": (lambda m: _with_metadata(m, lambda d: d.update(targets=["cycles"])),
                       "field 'targets' must be an object"),
    "unknown estimator": (lambda m: _with_metadata(m, lambda d: d["targets"]["cycles"].update(estimator="magic")),
                          "targets.cycles.estimator 'magic' is not one of"),
    "n_train a string": (lambda m: _with_metadata(m, lambda d: d["targets"]["energy"].update(n_train="many")),
                         "targets.energy.n_train 'many' is not a non-negative integer"),
    "domain of strings": (lambda m: _with_metadata(m, lambda d: d["targets"]["cycles"]["domain"].update(lowest="a")),
                          "must hold finite numbers"),
    "domain incomplete": (lambda m: _with_metadata(m, lambda d: d["targets"]["cycles"].update(domain={})),
                          "metadata of the cycles predictor is incomplete"),
    "member not skops": (lambda m: {**m, "cycles.skops": b"PK\x03\x04 not really"}, "cycles.skops is not a skops file"),
    "member a dict": (lambda m: {**m, "energy.skops": _skops({"coef": [1.0]})},
                      "energy.skops is not a working poly estimator"),
    "member missing": (lambda m: {k: v for k, v in m.items() if k != "energy.skops"}, "no energy predictor"),
    "member zip bomb": (lambda m: {**m, "cycles.skops": bytes(2 * MEMBER_LIMIT)}, "cycles.skops unpacks to"),
}


def _predictor_file(folder: Path, kind: str, good: Path) -> Path:
    make, _ = PREDICTOR_KINDS[kind]
    path = folder / "p.zip"
    if callable(make):
        return _zip(path, make(_members(good)))
    if make != "missing":
        hostile_file(folder, make, "p.zip", good.read_bytes(), MAX_PREDICTOR_BYTES)
    return path


def test_a_good_predictor_file_is_used(capsys, tmp_path, monkeypatch, predictor_zip):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "lut", "--arch", "eyeriss", "--model", "resnet20", "--source", "predict",
                       "--predictor", predictor_zip, "--out", tmp_path / "lut.csv")
    assert code == 0 and "predicted" in out and (tmp_path / "lut.csv").is_file()


@pytest.mark.parametrize("kind", PREDICTOR_KINDS)
def test_hostile_predictor_files(capsys, tmp_path, monkeypatch, predictor_zip, kind):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("costmodels.predictors.persistence.MAX_MEMBER_BYTES", MEMBER_LIMIT)   # a small bomb
    path = _predictor_file(tmp_path, kind, predictor_zip)
    before = tree(tmp_path)
    code, _, err = run(capsys, "lut", "--arch", "eyeriss", "--model", "resnet20", "--source", "predict",
                       "--predictor", path, "--out", tmp_path / "lut.csv")
    assert_refused(code, err, "lut", re.escape(str(path)) + ".*" + PREDICTOR_KINDS[kind][1])
    assert tree(tmp_path) == before


# --- LUT files (read by the search core through load_lut) -----------------------------------------------

@pytest.fixture(scope="module")
def good_lut(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lut")
    code = main(["build", "--arch", "eyeriss", "--model", "resnet20", "--jobs", "1", "--out", str(folder)])
    assert code == 0
    return folder / "lut.csv"


def _csv_changed(text: str, column: str, value: str) -> str:
    lines = text.splitlines()
    index = lines[0].split(",").index(column)
    cells = lines[1].split(",")
    cells[index] = value
    return "\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n"


LUT_KINDS = {   # kind -> (file kind or a function of the good CSV's text; what the message must say)
    "binary": ("binary", "not UTF-8"), "utf-16": ("utf-16", "not UTF-8"), "folder": ("folder", "is a folder"),
    "device": ("device", "not a regular file"), "missing": ("missing", "no such file"),
    "oversized": ("oversized", "files up to"),   # over MAX_LUT_BYTES
    "NaN cycles": (lambda t: _csv_changed(t, "cycles", "nan"), "column cycles: 'nan' is not a finite"),
    "infinite latency": (lambda t: _csv_changed(t, "latency_s", "inf"), "column latency_s: 'inf' is not a finite"),
    "negative energy": (lambda t: _csv_changed(t, "energy_pj", "-5"), "column energy_pj: '-5' is not a finite"),
    "word for a number": (lambda t: _csv_changed(t, "macs", "many"), "row 1: bad value"),
    "huge field": (lambda t: _csv_changed(t, "layer", "x" * 200_000), "not a readable CSV"),
    "no columns": (lambda t: "a,b\n1,2\n", "missing column"),
    "deep JSON": (lambda t: "{\"rows\": " + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply|not valid JSON"),
    "JSON rows not a list": (lambda t: '{"rows": {"a": 1}}', "needs a 'rows' list"),
    "newer format": (lambda t: "# format_version: 99\n" + t, "newer than this toolkit reads"),
}


@pytest.mark.parametrize("kind", LUT_KINDS)
def test_hostile_lut_files(tmp_path, good_lut, kind):
    from costmodels.lut.export import LUTFileError, load_lut

    good = good_lut
    make, culprit = LUT_KINDS[kind]
    path = tmp_path / "lut.csv"
    if callable(make):
        path.write_text(make(good.read_text()))
    elif make != "missing":
        hostile_file(tmp_path, make, "lut.csv", good.read_bytes(), MAX_LUT_BYTES)
    assert len(load_lut(good).entries) > 0
    with pytest.raises(LUTFileError) as caught:
        load_lut(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)) and re.search(culprit, message), message


# --- results caches -------------------------------------------------------------------------------------

def _foreign_schema(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
                           "INSERT INTO meta VALUES ('schema', '7');"
                           "CREATE TABLE results (key TEXT, blob BLOB); INSERT INTO results VALUES ('k', x'00');")
    conn.close()
    return path


CACHE_COMMANDS = {
    "cache info": ["cache", "--cache", "{cache}", "info"],
    "cache export": ["cache", "--cache", "{cache}", "export", "{folder}/out.jsonl"],
    "build": ["build", "--arch", "eyeriss", "--model", "resnet20", "--jobs", "1", "--cache", "{cache}",
              "--out", "{folder}/out"],
}


@pytest.mark.parametrize("kind", ["not a database", "other schema", "folder"])
@pytest.mark.parametrize("command", CACHE_COMMANDS)
def test_hostile_caches(capsys, tmp_path, monkeypatch, kind, command):
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "results.sqlite"
    if kind == "not a database":
        cache.write_text("my thesis, chapter 1\n")
    elif kind == "other schema":
        _foreign_schema(cache)
    else:
        cache.mkdir()
    before = tree(tmp_path)
    argv = [a.format(cache=cache, folder=tmp_path) for a in CACHE_COMMANDS[command]]
    code, _, err = run(capsys, *argv)
    culprit = {"not a database": "not a database", "other schema": "cache schema 7 is not supported.*`costmodel cache --cache .* clear`",
               "folder": "cannot open"}[kind]
    assert_refused(code, err, argv[0], re.escape(str(cache)) + ".*" + culprit)
    assert tree(tmp_path) == before


def test_a_cache_of_another_schema_is_cleared_by_cache_clear(capsys, tmp_path):
    cache = _foreign_schema(tmp_path / "results.sqlite")
    code, _, err = run(capsys, "cache", "--cache", cache, "info")
    assert code == 2 and f"`costmodel cache --cache {cache} clear`" in err
    code, out, _ = run(capsys, "cache", "--cache", cache, "clear")
    assert code == 0 and "removed 1 entries" in out
    code, out, _ = run(capsys, "cache", "--cache", cache, "info", "--json")
    assert code == 0 and json.loads(out)["entries"] == 0


def test_cache_clear_does_not_delete_a_file_that_is_not_a_cache(capsys, tmp_path):
    precious = tmp_path / "thesis.sqlite"
    precious.write_text("my thesis, chapter 1\n")
    code, _, err = run(capsys, "cache", "--cache", precious, "clear")
    assert_refused(code, err, "cache", re.escape(str(precious)) + ".*not a database")
    assert precious.read_text() == "my thesis, chapter 1\n"
