"""Load an architecture spec folder (Timeloop YAML vocabulary) into a typed description.

A spec folder holds ``target.yaml`` (name, clock, which files are which) and the Timeloop files it
names: the architecture tree, constraints, mapper settings and the energy reference table (ERT).
Storage levels are ordered innermost first, as Timeloop numbers them.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costmodels.errors import SpecError, UnknownNameError
from costmodels.problems.workloads import DATA_SPACES, DIMENSIONS
from costmodels.user_files import InputFileError, load_yaml_file

SPECS_ROOT = Path(__file__).resolve().parents[2] / "arch_specs"
METRICS = ("delay", "energy", "edp", "last-level-accesses")
_INSTANCE_RANGE = re.compile(r"^(?P<base>[A-Za-z_][\w-]*)\[(?P<lo>\d+)\.\.(?P<hi>\d+)\]$")


@dataclass(frozen=True)
class StorageLevel:
    name: str
    component_class: str
    instances: int
    mesh_x: int
    size_words: int | None          # None: unbounded (DRAM)
    word_bits: int
    block_size: int                 # words per access (vector width)
    read_bandwidth: float | None    # words/cycle per instance; None: unlimited
    write_bandwidth: float | None
    read_energy: float              # pJ per block access (per cluster member, see cluster_size)
    write_energy: float
    cluster_size: int               # instances sharing one physical array; energy is charged per cluster
    energy_source: str              # "ERT", or "Timeloop SRAM estimate" where the ERT has no read/write
    keep: frozenset[str]            # data spaces this level must hold
    bypass: frozenset[str]          # data spaces this level must not hold

    @property
    def mesh_y(self) -> int:
        return self.instances // self.mesh_x


@dataclass(frozen=True)
class ComputeLevel:
    name: str
    instances: int
    mesh_x: int
    mac_energy: float               # pJ per MAC

    @property
    def mesh_y(self) -> int:
        return self.instances // self.mesh_x


@dataclass(frozen=True)
class LoopConstraint:
    """A temporal or spatial constraint on one level's loops.

    ``factors`` maps a dimension to its fixed factor (0: the whole remaining bound); dimensions not
    listed are free. ``permutation`` lists dimensions innermost first (a partial list fixes the
    innermost loops). For spatial constraints, the first ``split`` dimensions of the permutation
    go to the mesh's X axis and the rest to Y.
    """

    target: str
    kind: str                       # "temporal" or "spatial"
    factors: tuple[tuple[str, int], ...]
    permutation: tuple[str, ...] | None
    split: int | None
    source: str                     # "architecture" or "mapspace"

    @property
    def factor_map(self) -> dict[str, int]:
        return dict(self.factors)


@dataclass(frozen=True)
class ArchSpec:
    name: str
    description: str
    folder: Path
    clock_hz: float
    compute: ComputeLevel
    storage: tuple[StorageLevel, ...]   # innermost first
    constraints: tuple[LoopConstraint, ...]
    metrics: tuple[str, ...]
    files: tuple[Path, ...]             # the Timeloop input files, for the Timeloop backend
    content_hash: str                   # over every file of the spec

    def level(self, name: str) -> StorageLevel:
        for level in self.storage:
            if level.name == name:
                return level
        raise KeyError(name)

    def constraints_for(self, target: str, kind: str) -> tuple[LoopConstraint, ...]:
        return tuple(c for c in self.constraints if c.target == target and c.kind == kind)

    def fanout(self, index: int) -> tuple[int, int]:
        """(X, Y) fan-out from storage level ``index`` to the level below it (or the MACs)."""
        inner = self.compute if index == 0 else self.storage[index - 1]
        outer = self.storage[index]
        return inner.mesh_x // outer.mesh_x, inner.mesh_y // outer.mesh_y

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.compute.instances


def available_targets(root: Path = SPECS_ROOT) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "target.yaml").is_file()) if root.is_dir() else []


def load_spec(name_or_folder: str | Path, root: Path = SPECS_ROOT) -> ArchSpec:
    """Load a target by name (a folder under ``arch_specs/``) or by path to a spec folder.

    A folder that exists but lacks ``target.yaml`` is reported as that missing file; a name that is
    neither a folder here nor one under ``root`` as an unknown arch."""
    folder = Path(name_or_folder)
    if not folder.is_dir():
        candidate = root / str(name_or_folder)
        if isinstance(name_or_folder, Path) or "/" in str(name_or_folder) or not candidate.is_dir():
            raise UnknownNameError("arch", str(name_or_folder), available_targets(root))
        folder = candidate
    if not (folder / "target.yaml").is_file():
        raise SpecError(str(folder / "target.yaml"), "<file>", "missing: a spec folder needs a target.yaml "
                                                              "(name, clock_hz, files)")
    return _SpecReader(folder.resolve()).read()


class _SpecReader:
    def __init__(self, folder: Path):
        self.folder = folder

    def read(self) -> ArchSpec:
        target_file = self.folder / "target.yaml"
        target = self._section(target_file, "target")
        name = self._get(target, "name", str, target_file, "target.name")
        clock = _number(self._get(target, "clock_hz", object, target_file, "target.clock_hz"), target_file,
                        "target.clock_hz", positive=True)
        files = self._get(target, "files", dict, target_file, "target.files")
        arch_file = self._file(files, "architecture", target_file)
        energy_file = self._file(files, "energy", target_file)
        mapper_file = self._file(files, "mapper", target_file)
        constraint_files = [self._path(f, target_file, "target.files.constraints")
                            for f in self._get(files, "constraints", list, target_file, "target.files.constraints")]
        component_paths: list[Path] = []
        if "components" in files:
            components = self._path(files["components"], target_file, "target.files.components")
            component_paths = sorted(components.glob("*.yaml")) if components.is_dir() else [components]

        energies = self._energy_table(energy_file)
        compute, storage = self._architecture(arch_file, energies)
        level_names = {s.name for s in storage} | {compute.name}
        constraints: list[LoopConstraint] = []
        bypass: dict[str, tuple[set[str], set[str]]] = {}
        for path in constraint_files:
            constraints.extend(self._constraints(path, level_names, bypass))
        storage = tuple(
            StorageLevel(**{**s.__dict__, "keep": frozenset(bypass.get(s.name, (set(), set()))[0]),
                            "bypass": frozenset(bypass.get(s.name, (set(), set()))[1])})
            for s in storage)
        metrics = self._metrics(mapper_file)
        all_files = [target_file, arch_file, *component_paths, *constraint_files, mapper_file, energy_file]
        digest = hashlib.sha256()
        for path in all_files:
            digest.update(path.relative_to(self.folder).as_posix().encode() + b"\0" + path.read_bytes())
        return ArchSpec(name=name, description=str(target.get("description", "")), folder=self.folder,
                        clock_hz=float(clock), compute=compute, storage=storage, constraints=tuple(constraints),
                        metrics=metrics, files=tuple(all_files[1:]), content_hash=digest.hexdigest()[:16])

    # --- helpers -------------------------------------------------------------------------------
    def _load(self, path: Path) -> Any:
        try:
            return load_yaml_file(path)
        except InputFileError as exc:
            raise SpecError(str(path), "<file>", exc.problem) from None

    def _section(self, path: Path, key: str) -> dict:
        document = self._load(path)
        if not isinstance(document, dict) or not isinstance(document.get(key), dict):
            raise SpecError(str(path), key, "missing top-level mapping")
        return document[key]

    @staticmethod
    def _get(mapping: dict, key: str, kind: type | tuple[type, ...], path: Path, field: str) -> Any:
        if key not in mapping:
            raise SpecError(str(path), field, "missing")
        value = mapping[key]
        if kind is object:
            return value
        if not isinstance(value, kind) or isinstance(value, bool):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise SpecError(str(path), field, f"expected {names}, got {value!r}")
        return value

    def _path(self, relative: Any, path: Path, field: str) -> Path:
        if not isinstance(relative, str) or not relative:
            raise SpecError(str(path), field, f"expected a relative path inside the spec folder, got {relative!r}")
        if Path(relative).is_absolute():
            raise SpecError(str(path), field, f"'{relative}' is absolute; allowed: a path relative to the spec "
                                              f"folder {self.folder}")
        resolved = (self.folder / relative).resolve()
        if not resolved.is_relative_to(self.folder):
            raise SpecError(str(path), field, f"'{relative}' ({self.folder / relative}) resolves to {resolved}, "
                                              f"outside the spec folder {self.folder}; allowed: a path inside it")
        if not resolved.exists():
            raise SpecError(str(path), field, f"file not found: {resolved}")
        return resolved

    def _file(self, files: dict, key: str, path: Path) -> Path:
        return self._path(self._get(files, key, str, path, f"target.files.{key}"), path, f"target.files.{key}")

    def _energy_table(self, path: Path) -> dict[str, dict[str, float]]:
        tables = self._get(self._section(path, "ERT"), "tables", list, path, "ERT.tables")
        result: dict[str, dict[str, float]] = {}
        for i, table in enumerate(tables):
            field = f"ERT.tables[{i}]"
            if not isinstance(table, dict):
                raise SpecError(str(path), field, "expected a mapping with name and actions")
            full = self._get(table, "name", str, path, f"{field}.name")
            base = re.sub(r"\[\d+\.\.\d+\]", "", full).split(".")[-1]
            actions: dict[str, float] = {}
            for j, action in enumerate(self._get(table, "actions", list, path, f"{field}.actions")):
                afield = f"{field}.actions[{j}]"
                if not isinstance(action, dict):
                    raise SpecError(str(path), afield, "expected a mapping with name and energy")
                aname = self._get(action, "name", str, path, f"{afield}.name")
                energy = _number(self._get(action, "energy", object, path, f"{afield}.energy"), path,
                                 f"{afield}.energy", positive=False)
                # Timeloop v3 charges the most expensive argument variant of an action.
                actions[aname] = max(actions.get(aname, 0.0), float(energy))
            result[base] = actions
        return result

    def _architecture(self, path: Path, energies: dict[str, dict[str, float]]
                      ) -> tuple[ComputeLevel, list[StorageLevel]]:
        arch = self._section(path, "architecture")
        if str(arch.get("version")) != "0.3":
            raise SpecError(str(path), "architecture.version", f"'{arch.get('version')}' is not supported; "
                                                               "allowed: 0.3")
        leaves: list[tuple[str, dict, int, str]] = []   # (name, attributes, instances, field)

        def walk(nodes: Any, field: str, multiplier: int, inherited: dict) -> None:
            if not isinstance(nodes, list):
                raise SpecError(str(path), field, "expected a list of nodes")
            for i, node in enumerate(nodes):
                nfield = f"{field}[{i}]"
                if not isinstance(node, dict) or "name" not in node:
                    raise SpecError(str(path), f"{nfield}.name", "missing")
                _known_keys(node, _NODE_KEYS, path, nfield)
                base, count = _instances(node["name"], path, f"{nfield}.name")
                attributes = {**inherited, **_attributes(node, path, nfield)}
                for j, component in enumerate(node.get("local") or []):
                    cfield = f"{nfield}.local[{j}]"
                    if not isinstance(component, dict) or "name" not in component:
                        raise SpecError(str(path), f"{cfield}.name", "missing")
                    _known_keys(component, _COMPONENT_KEYS, path, cfield)
                    cname, ccount = _instances(component["name"], path, f"{cfield}.name")
                    attrs = {**attributes, **_attributes(component, path, cfield), "class": component.get("class")}
                    leaves.append((cname, attrs, multiplier * count * ccount, cfield))
                if "subtree" in node:
                    walk(node["subtree"], f"{nfield}.subtree", multiplier * count, attributes)

        walk(self._get(arch, "subtree", list, path, "architecture.subtree"), "architecture.subtree", 1, {})
        computes = [leaf for leaf in leaves if leaf[1].get("class") in _COMPUTE_CLASSES]
        if len(computes) != 1:
            raise SpecError(str(path), "architecture.subtree", f"expected exactly one compute component "
                                                               f"(class {'/'.join(_COMPUTE_CLASSES)}), found "
                                                               f"{len(computes)}")
        storage: list[StorageLevel] = []
        compute_level: ComputeLevel | None = None
        for name, attrs, instances, field in leaves:
            if name not in energies:
                raise SpecError(str(path), f"{field}.name", f"component '{name}' has no entry in the energy "
                                                            f"table; known: {', '.join(sorted(energies))}")
            mesh_x = _number(attrs.get("meshX", 1), path, f"{field}.attributes.meshX", integer=True)
            if instances % mesh_x:
                raise SpecError(str(path), f"{field}.attributes.meshX",
                                f"{mesh_x} must divide the {instances} instances")
            if attrs.get("class") in _COMPUTE_CLASSES:
                actions = energies[name]
                action = next((a for a in _COMPUTE_ACTIONS if a in actions), None)
                if action is None:
                    raise SpecError(str(path), f"{field}.name", f"energy table of '{name}' lacks a compute "
                                                                f"action; allowed: {', '.join(_COMPUTE_ACTIONS)}")
                compute_level = ComputeLevel(name, instances, mesh_x, actions[action])
                continue
            storage.append(self._storage(name, attrs, instances, mesh_x, energies[name], path, field))
        assert compute_level is not None
        storage.reverse()
        return compute_level, storage

    def _storage(self, name: str, attrs: dict, instances: int, mesh_x: int, actions: dict[str, float],
                 path: Path, field: str) -> StorageLevel:
        def number(key: str, default: Any = None, integer: bool = True) -> Any:
            value = attrs.get(key, default)
            return None if value is None else _number(value, path, f"{field}.attributes.{key}", integer=integer)

        word_bits = number("word-bits", number("datawidth", 16))
        block = number("block-size", 1)
        cluster = number("cluster-size", 1)
        if instances % cluster:
            raise SpecError(str(path), f"{field}.attributes.cluster-size",
                            f"{cluster} must divide the {instances} instances")
        if "memory_depth" in attrs:
            size = number("memory_depth") * number("memory_width", word_bits * block) // word_bits
        elif "depth" in attrs:
            size = number("depth") * number("width", word_bits * block) // word_bits
        else:
            size = None
        is_dram = attrs.get("class") == "DRAM"
        if "read" in actions and "write" in actions:
            read_energy, write_energy, source = actions["read"], actions["write"], "ERT"
        elif "read" in actions or "write" in actions or is_dram or size is None:
            missing = "write" if "read" in actions else "read"
            raise SpecError(str(path), f"{field}.name", f"energy table of '{name}' lacks action '{missing}'")
        else:
            # Timeloop v3.0.3 prices storage reads, fills and updates only from ERT actions named read and
            # write. Without them (a register whose ERT entry is 'access') it keeps its built-in SRAM
            # estimate for an array of ceil(size / block) rows of word_bits * block * cluster bits.
            rows = -(-size // block)
            read_energy = write_energy = _sram_estimate(rows, word_bits * block * cluster) / cluster
            source = "Timeloop SRAM estimate"
        read_bw = number("read_bandwidth", integer=False)
        write_bw = number("write_bandwidth", integer=False)
        return StorageLevel(name=name, component_class=str(attrs.get("class")), instances=instances, mesh_x=mesh_x,
                            size_words=size, word_bits=word_bits, block_size=block,
                            read_bandwidth=None if read_bw is None else float(read_bw),
                            write_bandwidth=None if write_bw is None else float(write_bw),
                            read_energy=read_energy, write_energy=write_energy, cluster_size=cluster,
                            energy_source=source, keep=frozenset(), bypass=frozenset())

    def _constraints(self, path: Path, levels: set[str], bypass: dict[str, tuple[set[str], set[str]]]
                     ) -> list[LoopConstraint]:
        document = self._load(path)
        if not isinstance(document, dict) or len(document) != 1:
            raise SpecError(str(path), "<top>", "expected one of: architecture_constraints, mapspace_constraints")
        (section, body), = document.items()
        if section not in ("architecture_constraints", "mapspace_constraints"):
            raise SpecError(str(path), section, "unknown section; allowed: architecture_constraints, "
                                                "mapspace_constraints")
        if not isinstance(body, dict):
            raise SpecError(str(path), section, "expected a mapping with targets")
        source = "architecture" if section.startswith("architecture") else "mapspace"
        targets = self._get(body, "targets", list, path, f"{section}.targets")
        result = []
        for i, entry in enumerate(targets):
            field = f"{section}.targets[{i}]"
            if not isinstance(entry, dict):
                raise SpecError(str(path), field, "expected a mapping")
            _known_keys(entry, _CONSTRAINT_KEYS, path, field)
            target = self._get(entry, "target", str, path, f"{field}.target")
            if target not in levels:
                raise SpecError(str(path), f"{field}.target", f"unknown level '{target}'; allowed: "
                                                              f"{', '.join(sorted(levels))}")
            kind = self._get(entry, "type", str, path, f"{field}.type")
            if kind in ("bypass", "datatype"):    # two names of one constraint in Timeloop v3
                keep, skip = bypass.setdefault(target, (set(), set()))
                for key, into in (("keep", keep), ("bypass", skip)):
                    for space in entry.get(key) or []:
                        if space not in DATA_SPACES:
                            raise SpecError(str(path), f"{field}.{key}", f"unknown data space '{space}'; "
                                                                         f"allowed: {', '.join(DATA_SPACES)}")
                        into.add(space)
                continue
            if kind not in ("temporal", "spatial"):
                raise SpecError(str(path), f"{field}.type", f"'{kind}' is not modelled; allowed: bypass, "
                                                            "datatype, spatial, temporal")
            factors = _parse_factors(entry.get("factors"), path, f"{field}.factors")
            permutation = None
            if "permutation" in entry:
                text = str(entry["permutation"]).replace(" ", "")
                bad = [d for d in text if d not in DIMENSIONS]
                if bad or len(set(text)) != len(text):
                    raise SpecError(str(path), f"{field}.permutation", f"'{entry['permutation']}' must list "
                                                                       f"distinct dimensions of {''.join(DIMENSIONS)}")
                permutation = tuple(text)
            split = entry.get("split")
            if split is not None:
                split = _number(split, path, f"{field}.split", integer=True, positive=False)
            result.append(LoopConstraint(target, kind, factors, permutation, split, source))
        return result

    def _metrics(self, path: Path) -> tuple[str, ...]:
        mapper = self._section(path, "mapper")
        metrics = mapper.get("optimization-metrics", ["delay", "energy"])
        if not isinstance(metrics, list) or not metrics or any(m not in METRICS for m in metrics):
            raise SpecError(str(path), "mapper.optimization-metrics", f"{metrics!r}; allowed values: "
                                                                      f"{', '.join(METRICS)}")
        for key in _MAPPER_COUNTS:
            if key in mapper:
                _number(mapper[key], path, f"mapper.{key}", integer=True, positive=False)
        return tuple(metrics)


# Attributes the built-in model reads, and those that only feed Accelergy's energy estimates (the ERT
# already holds their result). Any other attribute changes Timeloop's model in a way this one does not
# reproduce (multiple buffering, shared bandwidth, networks, ...), so the loader refuses it.
_MODELLED_ATTRIBUTES = frozenset({"meshX", "word-bits", "datawidth", "block-size", "cluster-size", "memory_depth",
                                  "memory_width", "depth", "width", "read_bandwidth", "write_bandwidth"})
_ENERGY_ONLY_ATTRIBUTES = frozenset({"technology", "latency", "type", "n_banks", "nports", "num-ports",
                                     "n_rdwr_ports", "n_buffets", "update_fifo_depth"})
_INTEGER_ATTRIBUTES = frozenset({"meshX", "word-bits", "datawidth", "block-size", "cluster-size", "memory_depth",
                                 "memory_width", "depth", "width", "n_banks", "nports", "num-ports", "n_rdwr_ports",
                                 "n_buffets", "update_fifo_depth"})
_RATE_ATTRIBUTES = frozenset({"read_bandwidth", "write_bandwidth"})
# Mapper settings that are counts (the built-in mapper uses only optimization-metrics; the others are
# still checked, as timeloop-mapper reads them).
_MAPPER_COUNTS = ("num-threads", "timeout", "victory-condition", "max-permutations-per-if-visit", "search-size",
                  "sync-interval", "log-interval")
_NODE_KEYS = frozenset({"name", "attributes", "local", "subtree"})
_COMPONENT_KEYS = frozenset({"name", "class", "subclass", "attributes"})
_CONSTRAINT_KEYS = frozenset({"target", "type", "factors", "permutation", "split", "keep", "bypass"})
_COMPUTE_CLASSES = ("intmac", "fpmac", "mac", "compute")
_COMPUTE_ACTIONS = ("mac_random", "compute")     # the first one present prices a MAC


def _known_keys(entry: dict, allowed: frozenset[str], path: Path, field: str) -> None:
    unknown = sorted(str(k) for k in entry if k not in allowed)
    if unknown:
        raise SpecError(str(path), f"{field}.{unknown[0]}", f"'{unknown[0]}' is not modelled by the built-in "
                                                            f"model; allowed: {', '.join(sorted(allowed))}")


def _attributes(entry: dict, path: Path, field: str) -> dict:
    attributes = entry.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise SpecError(str(path), f"{field}.attributes", f"expected a mapping, got {attributes!r}")
    for key, value in attributes.items():
        if key not in _MODELLED_ATTRIBUTES and key not in _ENERGY_ONLY_ATTRIBUTES:
            allowed = ", ".join(sorted(_MODELLED_ATTRIBUTES | _ENERGY_ONLY_ATTRIBUTES))
            raise SpecError(str(path), f"{field}.attributes.{key}", f"'{key}' is not modelled by the built-in "
                                                                    f"model; allowed: {allowed}")
        if key in _INTEGER_ATTRIBUTES:
            _number(value, path, f"{field}.attributes.{key}", integer=True)
        elif key in _RATE_ATTRIBUTES:
            _number(value, path, f"{field}.attributes.{key}")
    return attributes


def _number(value: Any, path: Path, field: str, *, positive: bool = True, integer: bool = False) -> Any:
    """A finite number from a spec file: an int where ``integer``, > 0 where ``positive`` (else >= 0)."""
    kinds = (int,) if integer else (int, float)
    allowed = (("a positive" if positive else "a non-negative") + (" integer" if integer else " finite number"))
    if (not isinstance(value, kinds) or isinstance(value, bool) or not math.isfinite(value)
            or value < 0 or (positive and value == 0)):
        raise SpecError(str(path), field, f"{value!r} is not allowed; allowed: {allowed}")
    return value


def _sram_estimate(rows: int, width_bits: int) -> float:
    """Timeloop's built-in SRAM energy per access (pJ) for ``rows`` x ``width_bits``: a line through
    Eyeriss data points (0.5 KB: 1 unit, 100 KB: 6 units) for a 16-bit access, scaled by the width."""
    kilobytes = rows * width_bits / (8 * 1024)
    units = (6.0 - 1.0) / (100.0 - 0.5) * (kilobytes - 0.5) + 1.0
    return units * width_bits / 16


def _instances(name: Any, path: Path, field: str) -> tuple[str, int]:
    if not isinstance(name, str):
        raise SpecError(str(path), field, f"expected a name, got {name!r}")
    match = _INSTANCE_RANGE.match(name)
    if not match:
        return name, 1
    lo, hi = int(match["lo"]), int(match["hi"])
    if hi < lo:
        raise SpecError(str(path), field, f"empty instance range in '{name}'")
    return match["base"], hi - lo + 1


def _parse_factors(text: Any, path: Path, field: str) -> tuple[tuple[str, int], ...]:
    if text is None:
        return ()
    if not isinstance(text, str):
        raise SpecError(str(path), field, f"expected a string like 'N=1 C=0', got {text!r}")
    result = []
    for token in text.split():
        dim, _, value = token.partition("=")
        if dim not in DIMENSIONS or not value.isdigit():
            raise SpecError(str(path), field, f"bad factor '{token}'; expected DIM=INT with DIM one of "
                                              f"{', '.join(DIMENSIONS)}")
        result.append((dim, int(value)))
    return tuple(result)
