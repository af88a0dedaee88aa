"""The built-in backend: the deterministic mapper (``mapper.find_mapping``) and analytical model."""

from __future__ import annotations

import ast
import hashlib
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from costmodels.problems.workloads import Workload
from costmodels.timeloop.evaluation import Evaluation
from costmodels.timeloop.spec import ArchSpec
from costmodels.version import __version__

# The sources whose behaviour decides the built-in backend's numbers: a change to any of them gives a
# new version, so cached results of the old code are not reused. Each is hashed as its syntax tree
# without import statements or comments, so moving modules or rewording comments keeps the cache.
_SOURCES = ("model/analytical.py", "model/mapper.py", "timeloop/mapping.py", "timeloop/evaluation.py",
            "timeloop/spec.py", "problems/workloads.py")


def _behaviour_text(path: Path) -> bytes:
    if not path.is_file():
        return b"<missing>"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            kept = [n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom))]
            node.body = kept or [ast.Pass()]
    return ast.dump(tree).encode()


@lru_cache(maxsize=1)
def builtin_version() -> str:
    from costmodels.model.analytical import BACKEND_VERSION

    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for name in _SOURCES:
        digest.update(Path(name).stem.encode() + b"\0" + _behaviour_text(root / name) + b"\0")
    return f"{__version__} model {BACKEND_VERSION} src {digest.hexdigest()[:12]}"


class BuiltinBackend:
    """``--backend builtin``: best mapping under the spec's metrics, exact factors, no padding."""

    name = "builtin"
    settings_key = "objective=spec-metrics;padding=no"

    @property
    def version(self) -> str:
        return builtin_version()

    def evaluate(self, workload: Workload, spec: ArchSpec) -> Evaluation:
        from costmodels.model.mapper import find_mapping

        evaluation = find_mapping(workload, spec).evaluation
        return replace(evaluation, backend=self.name, backend_version=self.version)

    def __repr__(self) -> str:
        return "BuiltinBackend()"
