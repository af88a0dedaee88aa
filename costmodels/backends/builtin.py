"""The built-in backend: the deterministic mapper (``mapper.find_mapping``) and analytical model."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from .. import __version__
from ..evaluation import Evaluation
from ..spec import ArchSpec
from ..workloads import Workload

# The sources whose behaviour decides the built-in backend's numbers: a change to any of them gives a
# new version, so cached results of the old code are not reused.
_SOURCES = ("model.py", "mapper.py", "mapping.py", "evaluation.py", "spec.py", "workloads.py")


@lru_cache(maxsize=1)
def builtin_version() -> str:
    from ..model import BACKEND_VERSION

    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for name in _SOURCES:
        path = root / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<missing>") + b"\0")
    return f"{__version__} model {BACKEND_VERSION} src {digest.hexdigest()[:12]}"


class BuiltinBackend:
    """``--backend builtin``: best mapping under the spec's metrics, exact factors, no padding."""

    name = "builtin"
    settings_key = "objective=spec-metrics;padding=no"

    @property
    def version(self) -> str:
        return builtin_version()

    def evaluate(self, workload: Workload, spec: ArchSpec) -> Evaluation:
        from ..mapper import find_mapping

        evaluation = find_mapping(workload, spec).evaluation
        return replace(evaluation, backend=self.name, backend_version=self.version)

    def __repr__(self) -> str:
        return "BuiltinBackend()"
