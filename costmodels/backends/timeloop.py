"""The real Timeloop as a backend: ``timeloop-mapper`` searches a mapping, ``timeloop-model``
evaluates a given one.

Each evaluation runs in a private temporary folder that holds a copy of the spec's Timeloop files,
the workload's problem file (``problem_yaml.write_problem``) and, for the model, the mapping
(``mapping_yaml.mapping_yaml``). The tool runs there in its own process group under a time limit;
past it the whole group is killed and the workload fails with the reason. Its outputs
(``timeloop-*.stats.txt``, ``timeloop-mapper.map.yaml``) are read by ``timeloop_output``.

Where the tools come from (``find_timeloop``):

1. ``--timeloop-bin DIR`` (or the ``COSTMODEL_TIMELOOP_BIN`` environment variable): the executables
   in DIR.
2. Otherwise ``pytimeloop``, when importable with an application API that ``pytimeloop_runner``
   drives (its ``detect_api``); it runs in a child process so the same time limit and isolation apply.
3. Otherwise ``timeloop-mapper`` / ``timeloop-model`` on PATH; the description says why pytimeloop
   was not used (``costmodel doctor`` shows it).

``timeloop-model`` gets no constraints file (a fixed mapping's cost does not depend on them, and
Timeloop v3.0.3 rejects valid mappings when given them), and no input is staged under a name the
Timeloop CLI skips (``staged_name``).

Energy: the spec's own table (``ERT.yaml``) unless ``target.yaml`` says ``energy_source: accelergy``
and Accelergy is installed; then Accelergy computes the table from the architecture and component
files (once per spec and process) and Timeloop gets that one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from costmodels.backends.base import BackendError, BackendTimeout, BackendUnavailable
from costmodels.errors import CostModelError
from costmodels.problems.workloads import Workload
from costmodels.timeloop.evaluation import Evaluation
from costmodels.timeloop.mapping import Mapping
from costmodels.timeloop.problem_yaml import write_problem
from costmodels.timeloop.spec import ArchSpec

DEFAULT_TIMEOUT_S = 1800.0
ENV_BIN = "COSTMODEL_TIMELOOP_BIN"
ENGINES = ("auto", "executables", "pytimeloop")
_LOG_TAIL = 1500
OUTPUT_PREFIXES = ("timeloop-mapper.", "timeloop-model.")


@dataclass(frozen=True)
class TimeloopTools:
    """How to start one Timeloop tool."""

    tool: str                     # "timeloop-mapper" or "timeloop-model"
    engine: str                   # "executables" or "pytimeloop"
    command: tuple[str, ...]      # argv before the input files
    version: str


# --- finding the tools ------------------------------------------------------------------------------

@lru_cache(maxsize=32)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def _executable_version(path: Path) -> str:
    """Timeloop's tools print no version; the content hash of the binary identifies the build."""
    resolved = path.resolve()
    stat = resolved.stat()
    return f"{path.name} sha256:{_file_digest(str(resolved), stat.st_mtime_ns, stat.st_size)}"


def _distribution_version(*names: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


@lru_cache(maxsize=1)
def pytimeloop_status() -> tuple[str | None, str]:
    """The pytimeloop application API that ``pytimeloop_runner`` drives here (see its
    ``detect_api``), or None and why not."""
    from costmodels.backends.pytimeloop_runner import detect_api

    if importlib.util.find_spec("pytimeloop") is None:
        return None, "pytimeloop is not importable"
    api, why = detect_api()
    if api is None:
        return None, f"pytimeloop is installed but not usable: {why}"
    version = _distribution_version("pytimeloop", "timeloop-python") or "unknown"
    return api, f"pytimeloop {version} ({api} API: {why})"


def find_timeloop(timeloop_bin: str | os.PathLike | None = None, tool: str = "timeloop-mapper",
                  engine: str = "auto") -> tuple[TimeloopTools | None, str]:
    """The tool to run and a one-line description, or None and why it cannot run."""
    if engine not in ENGINES:
        raise CostModelError(f"unknown Timeloop engine '{engine}'; allowed: {', '.join(ENGINES)}")
    bin_dir = timeloop_bin if timeloop_bin is not None else os.environ.get(ENV_BIN) or None
    if bin_dir is not None:
        if engine == "pytimeloop":
            return None, "--timeloop-bin names executables; the pytimeloop engine takes none"
        path = Path(bin_dir).resolve() / tool    # the tool runs from a private folder: no relative paths
        if not path.is_file() or not os.access(path, os.X_OK):
            where = "--timeloop-bin" if timeloop_bin is not None else ENV_BIN
            return None, f"{tool} not found (or not executable) in {bin_dir} ({where})"
        return TimeloopTools(tool, "executables", (str(path),), _executable_version(path)), f"{path}"
    reasons = []
    found = shutil.which(tool)
    if engine in ("auto", "pytimeloop"):
        from costmodels.backends.pytimeloop_runner import API_YAML_STR

        api, why = pytimeloop_status()
        if api == API_YAML_STR and not found:
            api, why = None, f"{why}: it runs {tool} itself (run_subprocess), which is not on PATH"
        if api is not None:
            command = (sys.executable, "-m", "costmodels.backends.pytimeloop_runner", tool.removeprefix("timeloop-"))
            return TimeloopTools(tool, "pytimeloop", command, why), f"{why} (in a child process)"
        reasons.append(why)
        if engine == "pytimeloop":
            return None, why
    if found:
        path = Path(found)
        fallback = f" (pytimeloop not used: {reasons[0]})" if reasons else ""
        return TimeloopTools(tool, "executables", (str(path),), _executable_version(path)), f"{path}{fallback}"
    reasons.append(f"{tool} is not on PATH (install Timeloop or give --timeloop-bin DIR)")
    return None, "; ".join(reasons)


@lru_cache(maxsize=1)
def accelergy_status() -> tuple[str | None, str]:
    """Accelergy's executable and version, or None and why not."""
    found = shutil.which("accelergy")
    if not found:
        return None, "accelergy is not on PATH: energy tables come from the specs' own ERT.yaml"
    version = _distribution_version("accelergy", "accelergy-timeloop-infrastructure") or "unknown"
    return found, f"accelergy {version} ({found})"


# --- running a tool ---------------------------------------------------------------------------------

def run_tool(argv: list[str], cwd: Path, timeout_s: float, label: str) -> tuple[int, str]:
    """Run ``argv`` in ``cwd`` in a new process group; return (exit status, the log's tail). Past
    ``timeout_s`` the whole group is killed and ``BackendTimeout`` raised."""
    log_path = cwd / f"{label}.log"
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            raise BackendError(f"{label}: cannot start {argv[0]}: {exc.strerror or exc}") from None
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise BackendTimeout(f"{label} did not finish within {timeout_s:g} s and was killed") from None
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            # The tool's own children (a shell script's, pytimeloop's) go with it.
            _kill_group(proc, only_leftovers=True)
    return code, _tail(log_path)


def _kill_group(proc: subprocess.Popen, only_leftovers: bool = False) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if not only_leftovers:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    text = data[-_LOG_TAIL:].decode(errors="replace").strip()
    return ("..." if len(data) > _LOG_TAIL else "") + text


def _last_lines(text: str, n: int = 6) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"


# --- staging a spec ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Staged:
    architecture: str
    components: tuple[str, ...]
    constraints: tuple[str, ...]
    mapper: str
    energy: str


def _target(spec: ArchSpec) -> dict[str, Any]:
    try:
        document = yaml.safe_load((spec.folder / "target.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BackendError(f"{spec.folder / 'target.yaml'}: cannot read: {exc}") from None
    target = document.get("target") if isinstance(document, dict) else None
    return target if isinstance(target, dict) else {}


def _stage(spec: ArchSpec, into: Path) -> _Staged:
    """Copy the spec's Timeloop files into ``into`` (same relative layout); name each role."""
    files = _target(spec).get("files") or {}

    def relative(path: Path) -> str:
        try:
            rel = path.resolve().relative_to(spec.folder.resolve()).as_posix()
        except ValueError:
            rel = f"extra/{path.name}"
        return staged_name(rel)

    roles: dict[str, str] = {}
    for role in ("architecture", "mapper", "energy"):
        if isinstance(files.get(role), str):
            roles[role] = relative(spec.folder / files[role])
    constraint_files = {relative(spec.folder / f) for f in files.get("constraints") or [] if isinstance(f, str)}
    staged: list[str] = []
    for path in spec.files:
        rel = relative(path)
        dest = into / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        staged.append(rel)
    missing = [r for r in ("architecture", "mapper", "energy") if roles.get(r) not in staged]
    if missing:
        raise BackendError(f"{spec.folder / 'target.yaml'}: cannot tell the {', '.join(missing)} file among "
                           f"the spec's files")
    named = set(roles.values()) | constraint_files
    return _Staged(architecture=roles["architecture"],
                   components=tuple(r for r in staged if r not in named),
                   constraints=tuple(r for r in staged if r in constraint_files),
                   mapper=roles["mapper"], energy=roles["energy"])


def staged_name(relative: str) -> str:
    """The name an input file gets in the run folder. The Timeloop CLI silently skips an input named
    like its own outputs (``timeloop-mapper.map.yaml`` is one), so such a file is renamed."""
    folder, _, name = relative.rpartition("/")
    if name.startswith(OUTPUT_PREFIXES):
        name = f"input-{name}"
    return f"{folder}/{name}" if folder else name


_ACCELERGY_TABLES: dict[str, dict[str, bytes]] = {}


class TimeloopBackend:
    """``--backend timeloop``: ``timeloop-mapper`` with the spec's mapper settings."""

    name = "timeloop"
    tool = "timeloop-mapper"

    def __init__(self, timeloop_bin: str | os.PathLike | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 engine: str = "auto"):
        if not timeout_s or timeout_s <= 0:
            raise CostModelError(f"timeout must be > 0 seconds, got {timeout_s}")
        self.timeloop_bin = None if timeloop_bin is None else str(timeloop_bin)
        self.timeout_s = float(timeout_s)
        tools, reason = find_timeloop(self.timeloop_bin, self.tool, engine)
        if tools is None:
            raise BackendUnavailable(f"backend '{self.name}' is not available: {reason}")
        self.tools = tools

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tools.command[0]!r}, timeout_s={self.timeout_s:g})"

    @property
    def version(self) -> str:
        return self.tools.version

    @property
    def settings_key(self) -> str:
        # The mapper's own settings are a spec file (in the spec hash). What else changes answers:
        # the engine, and Accelergy's table for specs that ask for one.
        path, accelergy = accelergy_status()
        return f"engine={self.tools.engine};accelergy={accelergy if path else 'none'}"

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, workload: Workload, spec: ArchSpec) -> Evaluation:
        with tempfile.TemporaryDirectory(prefix="costmodel-timeloop-") as tmp:
            folder = Path(tmp)
            staged = _stage(spec, folder)
            write_problem(workload, folder / "problem.yaml")
            energy = self._energy_files(spec, staged, folder)
            inputs = [staged.architecture, *staged.components, *staged.constraints, staged.mapper, "problem.yaml",
                      *energy]
            return self._run(workload, spec, folder, inputs, mapping=None)

    def _run(self, workload: Workload, spec: ArchSpec, folder: Path, inputs: list[str],
             mapping: Mapping | None) -> Evaluation:
        from costmodels.timeloop.output import TimeloopOutputError, read_timeloop_output

        code, log = run_tool([*self.tools.command, *inputs], folder, self.timeout_s, self.tool)
        if code != 0:
            raise BackendError(f"{self.tool} failed on {workload.name} (exit status {code}): {_last_lines(log)}")
        if not (folder / f"{self.tool}.stats.txt").is_file():
            what = "found no valid mapping" if self.tool == "timeloop-mapper" else "wrote no stats"
            raise BackendError(f"{self.tool} {what} for {workload.name}: {_last_lines(log)}")
        try:
            return read_timeloop_output(folder, spec, workload, prefix=self.tool, mapping=mapping,
                                        backend=self.name, backend_version=self.version)
        except (TimeloopOutputError, CostModelError) as exc:
            raise BackendError(f"{self.tool} output for {workload.name}: {exc}") from None

    def _energy_files(self, spec: ArchSpec, staged: _Staged, folder: Path) -> list[str]:
        """The energy (and area) tables to give Timeloop: Accelergy's where the spec asks for them and
        Accelergy is installed, else the spec's own."""
        if str(_target(spec).get("energy_source", "table")).lower() != "accelergy":
            return [staged.energy]
        executable, _ = accelergy_status()
        if executable is None:
            return [staged.energy]
        tables = _ACCELERGY_TABLES.get(spec.content_hash)
        if tables is None:
            out = folder / "accelergy"
            out.mkdir()
            argv = [executable, staged.architecture, *staged.components, "-o", "accelergy"]
            code, log = run_tool(argv, folder, self.timeout_s, "accelergy")
            if code != 0 or not (out / "ERT.yaml").is_file():
                raise BackendError(f"accelergy failed on spec {spec.name} (exit status {code}): {_last_lines(log)}")
            tables = {name: (out / name).read_bytes() for name in ("ERT.yaml", "ART.yaml") if (out / name).is_file()}
            _ACCELERGY_TABLES[spec.content_hash] = tables
        names = []
        for name, data in tables.items():
            (folder / f"accelergy-{name}").write_bytes(data)
            names.append(f"accelergy-{name}")
        return names


class TimeloopModelBackend(TimeloopBackend):
    """``--backend timeloop-model``: the built-in mapper's mapping, evaluated by ``timeloop-model``."""

    name = "timeloop-model"
    tool = "timeloop-model"

    @property
    def settings_key(self) -> str:
        from costmodels.backends.builtin import BuiltinBackend

        builtin = BuiltinBackend()
        return f"mapping=builtin {builtin.version} {builtin.settings_key};{super().settings_key}"

    def evaluate(self, workload: Workload, spec: ArchSpec, mapping: Mapping | None = None) -> Evaluation:
        from costmodels.model.mapper import find_mapping
        from costmodels.timeloop.mapping_yaml import mapping_yaml

        if mapping is None:
            mapping = find_mapping(workload, spec).mapping
        with tempfile.TemporaryDirectory(prefix="costmodel-timeloop-") as tmp:
            folder = Path(tmp)
            staged = _stage(spec, folder)
            write_problem(workload, folder / "problem.yaml")
            (folder / "map.yaml").write_text(mapping_yaml(mapping, spec) + "\n")
            energy = self._energy_files(spec, staged, folder)
            # No constraints: they do not enter the evaluation of a given mapping, and Timeloop
            # v3.0.3's timeloop-model rejects even timeloop-mapper's own mappings when given them
            # (it compares spatial splits literally and checks permutations against the wrong list).
            inputs = [staged.architecture, *staged.components, "problem.yaml", "map.yaml", *energy]
            return self._run(workload, spec, folder, inputs, mapping=mapping)
