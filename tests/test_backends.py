"""Backends: the built-in one, the Timeloop ones driven through fake executables (argument order,
private folder, errors, time limit, Accelergy), and live Timeloop runs where Timeloop is installed."""

import os
import pickle
import shutil
import stat
import time
from pathlib import Path

import pytest
import yaml

from costmodels.backends import (
    BACKEND_NAMES,
    Backend,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BuiltinBackend,
    TimeloopBackend,
    TimeloopModelBackend,
    backend_status,
    find_timeloop,
    get_backend,
)
from costmodels.backends import timeloop as timeloop_module
from costmodels.backends.pytimeloop_runner import merge
from costmodels.errors import MappingError, UnknownNameError
from costmodels.sweep.records import WorkloadCost, WorkloadFailure
from costmodels.sweep.runner import run_sweep
from costmodels.timeloop.mapping_yaml import mapping_yaml, read_mapping
from costmodels.timeloop.output import read_timeloop_output
from costmodels.timeloop.problem_yaml import problem_yaml, read_problem
from costmodels.timeloop.spec import SPECS_ROOT, load_spec

REFERENCE = Path(__file__).parent / "data" / "timeloop_reference"
SMALL, OTHER = "r20_sub1_1x1_16_8", "r20_s2_3x3_32_32"


@pytest.fixture(scope="module")
def spec():
    return load_spec("eyeriss")


def workload(name):
    return read_problem(REFERENCE / "workloads" / f"{name}.yaml")


def fake_tool(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def recording_mapper(bin_dir: Path, log: Path, run: str = SMALL) -> Path:
    """A timeloop-mapper that records its arguments, folder and problem, then 'finds' the reference
    mapping of ``run``."""
    log.mkdir(parents=True, exist_ok=True)
    ref = REFERENCE / "runs" / run
    return fake_tool(bin_dir, "timeloop-mapper", f"""
printf '%s\\n' "$@" > "{log}/argv"
pwd > "{log}/cwd"
cp problem.yaml "{log}/problem.yaml"
cp "{ref}/timeloop-mapper.stats.txt" "{ref}/timeloop-mapper.map.yaml" .
""")


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


# --- registry and status ---------------------------------------------------------------------------

def test_unknown_backend_lists_the_names():
    with pytest.raises(UnknownNameError) as info:
        get_backend("gem5")
    message = str(info.value)
    assert "unknown backend 'gem5'" in message and all(name in message for name in BACKEND_NAMES)


def test_missing_timeloop_is_a_clear_error(tmp_path):
    with pytest.raises(BackendUnavailable, match=f"timeloop-mapper not found .*in {tmp_path}"):
        get_backend("timeloop", timeloop_bin=str(tmp_path))
    with pytest.raises(BackendUnavailable, match="backend 'timeloop-model' is not available"):
        get_backend("timeloop-model", timeloop_bin=str(tmp_path))


def test_backend_status_says_why(tmp_path):
    status = backend_status(str(tmp_path))
    assert [s.name for s in status] == list(BACKEND_NAMES)
    name, available, reason = status[0]
    assert (name, available) == ("builtin", True)
    assert status[1].available is False and "timeloop-mapper not found" in status[1].reason
    recording_mapper(tmp_path, tmp_path / "log")
    status = backend_status(str(tmp_path))
    assert status[1].available and str(tmp_path / "timeloop-mapper") in status[1].reason
    assert not status[2].available


def test_env_var_names_the_bin_folder(tmp_path, monkeypatch):
    recording_mapper(tmp_path, tmp_path / "log")
    monkeypatch.setenv(timeloop_module.ENV_BIN, str(tmp_path))
    tools, _ = find_timeloop(None, "timeloop-mapper")
    assert tools is not None and tools.command == (str(tmp_path / "timeloop-mapper"),)


# --- builtin ---------------------------------------------------------------------------------------

def test_builtin_backend(spec):
    backend = get_backend("builtin")
    assert isinstance(backend, BuiltinBackend) and isinstance(backend, Backend)
    ev = backend.evaluate(workload(SMALL), spec)
    assert ev.cycles == 2048 and ev.backend == "builtin" and ev.backend_version == backend.version
    assert backend.version == BuiltinBackend().version and " src " in backend.version
    assert pickle.loads(pickle.dumps(backend)).version == backend.version


# --- timeloop-mapper through a fake executable ------------------------------------------------------

def test_mapper_runs_in_a_private_folder_with_timeloop_arguments(spec, tmp_path):
    log = tmp_path / "log"
    recording_mapper(tmp_path / "bin", log)
    backend = get_backend("timeloop", timeloop_bin=str(tmp_path / "bin"))
    assert backend.name == "timeloop" and backend.version.startswith("timeloop-mapper sha256:")
    assert "engine=executables" in backend.settings_key
    w = workload(SMALL)
    ev = backend.evaluate(w, spec)
    expected = read_timeloop_output(REFERENCE / "runs" / SMALL, spec, w, backend="timeloop",
                                    backend_version=backend.version)
    assert ev == expected
    argv = (log / "argv").read_text().split()
    assert argv == ["arch/eyeriss_like.yaml", "arch/components/smartbuffer_RF.yaml",
                    "arch/components/smartbuffer_SRAM.yaml", "constraints/eyeriss_like_arch_constraints.yaml",
                    "constraints/eyeriss_like_map_constraints.yaml", "mapper/mapper.yaml", "problem.yaml", "ERT.yaml"]
    assert (log / "problem.yaml").read_text() == problem_yaml(w)
    folder = Path((log / "cwd").read_text().strip())
    assert folder.name.startswith("costmodel-timeloop-") and not folder.exists()   # removed afterwards


def test_backend_pickles(tmp_path):
    recording_mapper(tmp_path, tmp_path / "log")
    backend = TimeloopBackend(timeloop_bin=tmp_path, timeout_s=12)
    clone = pickle.loads(pickle.dumps(backend))
    assert (clone.version, clone.settings_key, clone.timeout_s) == (backend.version, backend.settings_key, 12.0)


def test_mapper_failure_reports_exit_status_and_output(spec, tmp_path):
    fake_tool(tmp_path, "timeloop-mapper", "echo 'ERROR: arch spec is broken' >&2\nexit 3\n")
    with pytest.raises(BackendError, match=r"exit status 3\).*ERROR: arch spec is broken"):
        TimeloopBackend(timeloop_bin=tmp_path).evaluate(workload(SMALL), spec)


def test_mapper_without_stats_found_no_mapping(spec, tmp_path):
    fake_tool(tmp_path, "timeloop-mapper", "echo 'no valid mappings found'\n")
    with pytest.raises(MappingError, match="found no valid mapping for .*no valid mappings found"):
        TimeloopBackend(timeloop_bin=tmp_path).evaluate(workload(SMALL), spec)


def test_mapper_garbage_output_is_a_failure(spec, tmp_path):
    fake_tool(tmp_path, "timeloop-mapper", "echo garbage > timeloop-mapper.stats.txt\n")
    with pytest.raises(BackendError, match="timeloop-mapper.stats.txt: not a readable Timeloop stats file"):
        TimeloopBackend(timeloop_bin=tmp_path).evaluate(workload(SMALL), spec)


def test_hung_mapper_is_killed_with_its_children(spec, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    fake_tool(tmp_path / "bin", "timeloop-mapper", f"""
echo $$ > "{pids}/shell"
sleep 60 &
echo $! > "{pids}/sleep"
wait
""")
    backend = TimeloopBackend(timeloop_bin=tmp_path / "bin", timeout_s=1)
    start = time.monotonic()
    with pytest.raises(BackendTimeout, match="timeloop-mapper did not finish within 1 s and was killed"):
        backend.evaluate(workload(SMALL), spec)
    assert time.monotonic() - start < 15
    shell, sleeper = (int((pids / name).read_text()) for name in ("shell", "sleep"))
    deadline = time.monotonic() + 5
    while not (_dead(shell) and _dead(sleeper)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _dead(shell) and _dead(sleeper)


def test_sweep_records_a_timeout_and_goes_on(spec, tmp_path):
    ref = REFERENCE / "runs" / SMALL
    fake_tool(tmp_path, "timeloop-mapper", f"""
if grep -q "C: 32" problem.yaml; then exec sleep 60; fi
cp "{ref}/timeloop-mapper.stats.txt" "{ref}/timeloop-mapper.map.yaml" .
""")
    backend = TimeloopBackend(timeloop_bin=tmp_path, timeout_s=1)
    small, other = workload(SMALL), workload(OTHER)
    results = run_sweep([other, small], spec, backend, cache=None, jobs=1)
    assert list(results) == [other.key, small.key]
    assert isinstance(results[small.key], WorkloadCost) and results[small.key].cycles == 2048
    failure = results[other.key]
    assert isinstance(failure, WorkloadFailure) and failure.workload == other.name
    assert "did not finish within 1 s" in failure.reason


# --- timeloop-model through a fake executable -------------------------------------------------------

def test_timeloop_model_evaluates_the_builtin_mapping(spec, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    ref = REFERENCE / "runs" / SMALL
    fake_tool(tmp_path / "bin", "timeloop-model", f"""
printf '%s\\n' "$@" > "{log}/argv"
cp map.yaml "{log}/map.yaml"
cp "{ref}/timeloop-mapper.stats.txt" timeloop-model.stats.txt
""")
    backend = get_backend("timeloop-model", timeloop_bin=str(tmp_path / "bin"))
    assert isinstance(backend, TimeloopModelBackend)
    assert f"mapping=builtin {BuiltinBackend().version}" in backend.settings_key
    w = workload(SMALL)
    ev = backend.evaluate(w, spec)
    from costmodels.model.mapper import find_mapping
    mapping = find_mapping(w, spec).mapping
    assert ev.mapping == mapping and ev.backend == "timeloop-model" and ev.cycles == 2048
    assert (log / "map.yaml").read_text().strip() == mapping_yaml(mapping, spec).strip()
    assert read_mapping(log / "map.yaml", spec) == mapping
    argv = (log / "argv").read_text().split()
    assert "mapper/mapper.yaml" not in argv and argv[-3:] == ["problem.yaml", "map.yaml", "ERT.yaml"]
    # A given mapping is evaluated as it is.
    given = read_mapping(ref / "timeloop-mapper.map.yaml", spec)
    assert backend.evaluate(w, spec, mapping=given).mapping == given


# --- Accelergy ---------------------------------------------------------------------------------------

@pytest.fixture
def accelergy_on_path(tmp_path, monkeypatch):
    bin_dir = tmp_path / "accelergy-bin"
    fake_tool(bin_dir, "accelergy", f"""
out=""
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then out="$2"; shift; fi
  shift
done
mkdir -p "$out"
cp "{SPECS_ROOT / 'eyeriss' / 'ERT.yaml'}" "$out/ERT.yaml"
echo "# computed by accelergy" >> "$out/ERT.yaml"
echo run >> "{bin_dir}/calls"
""")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    timeloop_module.accelergy_status.cache_clear()
    timeloop_module._ACCELERGY_TABLES.clear()
    yield bin_dir
    timeloop_module.accelergy_status.cache_clear()
    timeloop_module._ACCELERGY_TABLES.clear()


def test_accelergy_table_where_the_spec_asks(tmp_path, accelergy_on_path):
    folder = tmp_path / "spec"
    shutil.copytree(SPECS_ROOT / "eyeriss", folder)
    target = yaml.safe_load((folder / "target.yaml").read_text())
    target["target"]["energy_source"] = "accelergy"
    (folder / "target.yaml").write_text(yaml.safe_dump(target))
    spec = load_spec(folder)
    log = tmp_path / "log"
    recording_mapper(tmp_path / "bin", log)
    backend = TimeloopBackend(timeloop_bin=tmp_path / "bin")
    assert "accelergy=accelergy" in backend.settings_key
    for _ in range(2):
        backend.evaluate(workload(SMALL), spec)
    argv = (log / "argv").read_text().split()
    assert argv[-1] == "accelergy-ERT.yaml" and "ERT.yaml" not in argv
    assert (accelergy_on_path / "calls").read_text().count("run") == 1   # once per spec and process
    # A spec that does not ask keeps its own table.
    backend.evaluate(workload(SMALL), load_spec("eyeriss"))
    assert (log / "argv").read_text().split()[-1] == "ERT.yaml"


# --- pytimeloop runner -------------------------------------------------------------------------------

def test_runner_merges_input_files():
    merged = {}
    merge(merged, {"architecture": {"version": "0.3"}, "compound_components": {"classes": [1]}}, "a.yaml")
    merge(merged, {"compound_components": {"classes": [2]}, "problem": {"instance": {"C": 1}}}, "b.yaml")
    assert merged == {"architecture": {"version": "0.3"}, "compound_components": {"classes": [1, 2]},
                      "problem": {"instance": {"C": 1}}}
    with pytest.raises(SystemExit, match="c.yaml.*'version' is given twice"):
        merge(merged, {"architecture": {"version": "0.4"}}, "c.yaml")


# --- live Timeloop -----------------------------------------------------------------------------------

MAPPER, MAPPER_WHY = find_timeloop(None, "timeloop-mapper")
MODEL, MODEL_WHY = find_timeloop(None, "timeloop-model")


@pytest.mark.skipif(MODEL is None, reason=f"Timeloop is not installed here: {MODEL_WHY}")
def test_live_timeloop_model_reproduces_the_reference(spec):
    w = workload(SMALL)
    mapping = read_mapping(REFERENCE / "runs" / SMALL / "timeloop-mapper.map.yaml", spec)
    ev = TimeloopModelBackend(timeout_s=300).evaluate(w, spec, mapping=mapping)
    ref = read_timeloop_output(REFERENCE / "runs" / SMALL, spec, w)
    assert ev.cycles == ref.cycles and ev.energy_pj == pytest.approx(ref.energy_pj, rel=1e-6)


@pytest.mark.skipif(MAPPER is None, reason=f"Timeloop is not installed here: {MAPPER_WHY}")
def test_live_timeloop_mapper_finds_a_mapping(tmp_path):
    folder = tmp_path / "spec"
    shutil.copytree(SPECS_ROOT / "eyeriss", folder)
    mapper = yaml.safe_load((folder / "mapper" / "mapper.yaml").read_text())
    mapper["mapper"].update({"victory-condition": 100, "timeout": 1000, "num-threads": 2})
    (folder / "mapper" / "mapper.yaml").write_text(yaml.safe_dump(mapper))
    spec = load_spec(folder)
    w = workload(SMALL)
    ev = TimeloopBackend(timeout_s=300).evaluate(w, spec)
    assert ev.backend == "timeloop" and ev.mapping.covers(w)
    assert ev.cycles >= w.macs // spec.compute.instances and ev.energy_pj > 0


# --- costmodel doctor --------------------------------------------------------------------------------

def test_doctor_reports_backends_and_reasons(tmp_path, capsys):
    import argparse
    import json

    from costmodels.cli.cache import add_doctor_parser
    from costmodels.doctor import doctor_checks, doctor_report

    recording_mapper(tmp_path / "bin", tmp_path / "log")
    report = doctor_report(timeloop_bin=tmp_path / "bin", cache_path=tmp_path / "c.sqlite")
    lines = report.splitlines()
    assert "backends:" in lines
    assert any(line.split()[:2] == ["ok", "builtin"] for line in lines)
    assert any(line.split()[:2] == ["ok", "timeloop"] and str(tmp_path / "bin" / "timeloop-mapper") in line
               for line in lines)
    assert any(line.split()[:2] == ["--", "timeloop-model"] and "timeloop-model not found" in line
               for line in lines)
    assert any("accelergy" in line for line in lines) and any("dask.distributed" in line for line in lines)
    assert f"{tmp_path / 'c.sqlite'}: not created yet" in report and "eyeriss" in report
    assert not (tmp_path / "c.sqlite").exists()          # the doctor only looks

    parser = argparse.ArgumentParser()
    add_doctor_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor", "--json", "--timeloop-bin", str(tmp_path), "--cache",
                              str(tmp_path / "c.sqlite")])
    assert args.func(args) == 0
    checks = json.loads(capsys.readouterr().out)
    by_name = {c["name"]: c for c in checks}
    assert by_name["builtin"]["ok"] and not by_name["timeloop"]["ok"]
    assert "timeloop-mapper not found" in by_name["timeloop"]["detail"]
    assert [c.name for c in doctor_checks(tmp_path)][:3] == ["costmodels", "python", "cores"]


# --- Timeloop v3.0.3 quirks: no constraints for timeloop-model, input names the CLI skips ----------

def test_timeloop_model_gets_no_constraints_file(spec, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    ref = REFERENCE / "runs" / SMALL
    fake_tool(tmp_path / "bin", "timeloop-model", f"""
printf '%s\\n' "$@" > "{log}/argv"
ls -R > "{log}/files"
cp "{ref}/timeloop-mapper.stats.txt" timeloop-model.stats.txt
""")
    backend = get_backend("timeloop-model", timeloop_bin=str(tmp_path / "bin"))
    backend.evaluate(workload(SMALL), spec)
    argv = (log / "argv").read_text().split()
    assert not [a for a in argv if "constraints" in a], argv
    assert argv[0] == "arch/eyeriss_like.yaml" and "map.yaml" in argv
    assert not [a for a in argv if Path(a).name.startswith("timeloop-")]


def test_inputs_named_like_timeloop_outputs_are_renamed():
    assert timeloop_module.staged_name("timeloop-mapper.map.yaml") == "input-timeloop-mapper.map.yaml"
    assert timeloop_module.staged_name("maps/timeloop-model.map.yaml") == "maps/input-timeloop-model.map.yaml"
    assert timeloop_module.staged_name("arch/eyeriss_like.yaml") == "arch/eyeriss_like.yaml"
    assert timeloop_module.staged_name("timeloop_mapper.yaml") == "timeloop_mapper.yaml"


def test_a_spec_file_named_like_an_output_reaches_the_tool(tmp_path):
    folder = tmp_path / "spec"
    shutil.copytree(SPECS_ROOT / "eyeriss", folder)
    (folder / "mapper" / "mapper.yaml").rename(folder / "mapper" / "timeloop-mapper.map.yaml")
    target = folder / "target.yaml"
    target.write_text(target.read_text().replace("mapper/mapper.yaml", "mapper/timeloop-mapper.map.yaml"))
    log = tmp_path / "log"
    recording_mapper(tmp_path / "bin", log)
    renamed = load_spec(folder)
    TimeloopBackend(timeloop_bin=tmp_path / "bin").evaluate(workload(SMALL), renamed)
    argv = (log / "argv").read_text().split()
    assert "mapper/input-timeloop-mapper.map.yaml" in argv and "mapper/timeloop-mapper.map.yaml" not in argv


# --- pytimeloop: which application API is installed ----------------------------------------------------

# Fake pytimeloop packages, one per API shape. Each app records what it was given and writes the
# files the Timeloop tool would, from the reference run.
_YAML_STR_APP = '''
import os, shutil
REF = {ref!r}

class _App:
    tool = None
    def __init__(self, yaml_str_cfg, log_level=20, default_out_dir="."):
        self.yaml_str_cfg = yaml_str_cfg
    def run(self):
        raise AssertionError("the runner must not use the in-memory run()")
    def run_subprocess(self, out_dir=None):
        with open(os.path.join(out_dir, "given.yaml"), "w") as f:
            f.write(self.yaml_str_cfg)
        shutil.copy(os.path.join(REF, "timeloop-mapper.stats.txt"), os.path.join(out_dir, self.tool + ".stats.txt"))
        shutil.copy(os.path.join(REF, "timeloop-mapper.map.yaml"), os.path.join(out_dir, self.tool + ".map.yaml"))

class ModelApp(_App):
    tool = "timeloop-model"

class MapperApp(_App):
    tool = "timeloop-mapper"
'''

_CONFIG_OBJECT_APP = '''
import os, shutil
from pytimeloop.config import Config
REF = {ref!r}

class _App:
    def __init__(self, cfg, out_dir, name):
        assert isinstance(cfg, Config)
        self.cfg, self.out_dir, self.name = cfg, out_dir, name
    def run(self):
        with open(os.path.join(self.out_dir, "given.yaml"), "w") as f:
            f.write(self.cfg.text)
        shutil.copy(os.path.join(REF, "timeloop-mapper.stats.txt"), os.path.join(self.out_dir, self.name + ".stats.txt"))
        shutil.copy(os.path.join(REF, "timeloop-mapper.map.yaml"), os.path.join(self.out_dir, self.name + ".map.yaml"))

ModelApp = type("ModelApp", (_App,), {{}})
MapperApp = type("MapperApp", (_App,), {{}})
'''

_CONFIG = '''
class Config:
    def __init__(self, text, kind):
        assert kind == "yaml"
        self.text = text
'''


def fake_pytimeloop(root: Path, shape: str) -> Path:
    package = root / "pytimeloop"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    ref = str(REFERENCE / "runs" / SMALL)
    if shape == "yaml-str":
        (package / "app.py").write_text(_YAML_STR_APP.format(ref=ref))
        (root / "bindings").mkdir()
        (root / "bindings" / "__init__.py").write_text("")
        (root / "bindings" / "config.py").write_text("class Configurator:\n    pass\n")
    elif shape == "config-object":
        (package / "app.py").write_text(_CONFIG_OBJECT_APP.format(ref=ref))
        (package / "config.py").write_text(_CONFIG)
    elif shape == "v4-only":   # apps without the classes this toolkit drives
        (package / "app.py").write_text("def call_mapper(spec, output_dir):\n    pass\n")
    elif shape == "no-config":   # apps built from some other configuration object
        (package / "app.py").write_text("class ModelApp:\n    def __init__(self, spec):\n        pass\n"
                                        "MapperApp = ModelApp\n")
    elif shape == "broken":
        (package / "app.py").write_text("raise ImportError('libtimeloop-model.so: cannot open shared object')\n")
    return root


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install a fake pytimeloop of the given shape for this process and its children."""
    import sys

    def install(shape: str) -> Path:
        root = fake_pytimeloop(tmp_path / f"site-{shape}", shape)
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
        for name in [m for m in sys.modules if m.split(".")[0] in ("pytimeloop", "bindings")]:
            monkeypatch.delitem(sys.modules, name)
        timeloop_module.pytimeloop_status.cache_clear()
        return root

    yield install
    timeloop_module.pytimeloop_status.cache_clear()


@pytest.mark.parametrize("shape,api", [("yaml-str", "yaml-str"), ("config-object", "config-object"),
                                       ("v4-only", None), ("no-config", None), ("broken", None)])
def test_pytimeloop_api_is_detected(installed, shape, api):
    from costmodels.backends.pytimeloop_runner import detect_api

    installed(shape)
    found, why = detect_api()
    assert found == api, why
    if shape == "broken":
        assert "cannot open shared object" in why
    if shape == "no-config":
        assert "takes 'spec'" in why and "pytimeloop.config.Config is missing" in why


def test_unusable_pytimeloop_falls_back_to_the_executables_and_says_why(installed, tmp_path, monkeypatch):
    installed("v4-only")
    recording_mapper(tmp_path / "bin", tmp_path / "log")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    tools, why = find_timeloop(None, "timeloop-mapper")
    assert tools is not None and tools.engine == "executables"
    assert why.startswith(str(tmp_path / "bin" / "timeloop-mapper")) and "pytimeloop not used" in why
    assert "no ModelApp/MapperApp" in why
    status = {s.name: s for s in backend_status()}
    assert status["timeloop"].available and "pytimeloop not used" in status["timeloop"].reason


def test_yaml_str_pytimeloop_needs_the_tool_it_runs(installed):
    installed("yaml-str")
    tools, why = find_timeloop(None, "timeloop-mapper", engine="pytimeloop")
    assert tools is None and "run_subprocess" in why and "not on PATH" in why


@pytest.mark.parametrize("shape", ["yaml-str", "config-object"])
def test_runner_drives_each_pytimeloop_api(installed, shape, spec, tmp_path, monkeypatch):
    installed(shape)
    if shape == "yaml-str":   # its run_subprocess starts the tool: one must be on PATH
        fake_tool(tmp_path / "bin", "timeloop-mapper", "exit 0\n")
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    backend = TimeloopBackend(engine="pytimeloop")
    assert backend.tools.engine == "pytimeloop" and shape in backend.version
    w = workload(SMALL)
    ev = backend.evaluate(w, spec)
    expected = read_timeloop_output(REFERENCE / "runs" / SMALL, spec, w, backend="timeloop",
                                    backend_version=backend.version)
    assert ev == expected


def test_relative_timeloop_bin_is_resolved(tmp_path, monkeypatch):
    # the tool runs from a private temporary folder, where a relative path would name nothing
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "timeloop-model"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    tools, why = find_timeloop("bin", "timeloop-model")
    assert tools is not None, why
    assert tools.command[0] == str(tool)
