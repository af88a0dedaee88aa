"""Evaluation backends: what prices one workload on one spec.

A backend has a ``name`` (the ``--backend`` value), a ``version`` and a ``settings_key`` (the mapper
settings that change its answers); together with the workload and the spec files they key the
results cache. ``evaluate(workload, spec)`` returns an ``Evaluation`` or raises ``MappingError``
(``BackendError`` for a tool that failed or ran out of time), with the reason.

- ``builtin`` (default): the built-in mapper and analytical model.
- ``timeloop``: the real ``timeloop-mapper`` (through ``pytimeloop`` when importable, else the
  executables on PATH or in ``--timeloop-bin DIR``).
- ``timeloop-model``: the built-in mapper's mapping, evaluated by the real ``timeloop-model``.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from costmodels.backends.base import BackendError, BackendTimeout, BackendUnavailable
from costmodels.backends.builtin import BuiltinBackend
from costmodels.backends.timeloop import (
    DEFAULT_TIMEOUT_S,
    TimeloopBackend,
    TimeloopModelBackend,
    TimeloopTools,
    accelergy_status,
    find_timeloop,
)
from costmodels.errors import UnknownNameError
from costmodels.problems.workloads import Workload
from costmodels.timeloop.evaluation import Evaluation
from costmodels.timeloop.spec import ArchSpec

BACKEND_NAMES = ("builtin", "timeloop", "timeloop-model")

__all__ = ["Backend", "BackendError", "BackendTimeout", "BackendUnavailable", "BackendStatus", "BuiltinBackend",
           "TimeloopBackend", "TimeloopModelBackend", "TimeloopTools", "BACKEND_NAMES", "DEFAULT_TIMEOUT_S",
           "get_backend", "backend_status", "find_timeloop", "accelergy_status"]


@runtime_checkable
class Backend(Protocol):
    """What a sweep needs of a backend. Instances must pickle (they travel to worker processes)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def settings_key(self) -> str: ...

    def evaluate(self, workload: Workload, spec: ArchSpec) -> Evaluation: ...


class BackendStatus(NamedTuple):
    name: str
    available: bool
    reason: str


def get_backend(name: str, timeloop_bin: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                engine: str = "auto") -> Backend:
    """The backend called ``name``; ``UnknownNameError`` lists the names, ``BackendUnavailable`` says
    what is missing."""
    if name == "builtin":
        return BuiltinBackend()
    if name == "timeloop":
        return TimeloopBackend(timeloop_bin=timeloop_bin, timeout_s=timeout_s, engine=engine)
    if name == "timeloop-model":
        return TimeloopModelBackend(timeloop_bin=timeloop_bin, timeout_s=timeout_s, engine=engine)
    raise UnknownNameError("backend", name, BACKEND_NAMES)


def backend_status(timeloop_bin: str | None = None) -> list[BackendStatus]:
    """For ``costmodel doctor``: each backend, whether it can run here, and why (not)."""
    result = [BackendStatus("builtin", True, "built-in mapper and analytical model (always available)")]
    for name, tool in (("timeloop", "timeloop-mapper"), ("timeloop-model", "timeloop-model")):
        tools, reason = find_timeloop(timeloop_bin, tool)
        result.append(BackendStatus(name, tools is not None, reason))
    return result
