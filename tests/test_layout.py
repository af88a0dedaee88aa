"""The package's shape: no import cycles, no cross-module private imports, a public API at the root that
``haloc_core`` uses alone, and a README whose architecture section names the subpackages that exist."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import costmodels

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("costmodels", "haloc_core")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import that runs, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str | None, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, None, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                found.extend((base, alias.name, child.lineno) for alias in child.names)
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        edges = set()
        for module, imported, _ in _imports(name, path):
            target = f"{module}.{imported}" if imported and f"{module}.{imported}" in MODULES else module
            if target in MODULES and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for name, path in MODULES.items():
        for module, imported, line in _imports(name, path):
            if module.split(".")[0] not in PACKAGES or module == name:
                continue
            if imported and imported.startswith("_") and not imported.startswith("__"):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {module}.{imported}")
    assert not offenders, "\n".join(offenders)


def test_haloc_core_uses_only_the_public_api():
    offenders = []
    for name, path in MODULES.items():
        if not name.startswith("haloc_core"):
            continue
        for module, imported, line in _imports(name, path):
            if module.startswith("costmodels") and (module != "costmodels" or imported not in costmodels.__all__):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {module}.{imported or ''}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("name", costmodels.__all__)
def test_public_api_names_resolve(name):
    assert getattr(costmodels, name) is not None


def test_unknown_public_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        costmodels.nope  # noqa: B018


def test_every_module_imports():
    for name in MODULES:
        importlib.import_module(name)


def test_readme_architecture_names_every_subpackage():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`costmodels/(\w+)/`", section))
    present = {p.name for p in (ROOT / "costmodels").iterdir() if (p / "__init__.py").is_file()}
    assert named == present, f"README names {sorted(named)}, the tree has {sorted(present)}"


def test_readme_python_example_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", readme.split("## Architecture", 1)[1], re.S)[0]
    exec(compile(example, "README.md", "exec"), {})
    assert re.match(r"\d+ LUT rows; \d+ cycles originally", capsys.readouterr().out)
