"""Evaluation backends: what prices one workload on one spec.

A backend has a ``name`` (the ``--backend`` value), a ``version`` and a ``settings_key`` (the mapper
settings that change its answers); together with the workload and the spec files they key the
results cache. ``evaluate(workload, spec)`` returns an ``Evaluation`` or raises ``MappingError``
(``BackendError`` for a tool that failed or ran out of time), with the reason.

- ``builtin`` (default): the built-in mapper and analytical model.
- ``timeloop``: the real ``timeloop-mapper`` (through ``pytimeloop`` when importable, else the
  executables on PATH or in ``--timeloop-bin DIR``).
- ``timeloop-model``: the built-in mapper's mapping, evaluated by the real ``timeloop-model``.
- ``torch``: each workload timed on a local CPU or CUDA GPU (``torch_timing``); its target is a
  ``DeviceTarget`` instead of a spec.
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple, Protocol, runtime_checkable

from costmodels.backends.base import BackendError, BackendTimeout, BackendUnavailable
from costmodels.backends.builtin import BuiltinBackend
from costmodels.backends.torch_timing import DeviceTarget, TimingSettings, TorchTimingBackend, device_target
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

BACKEND_NAMES = ("builtin", "timeloop", "timeloop-model", "torch")
MEASURED_BACKENDS = ("torch",)

# What a backend prices on: a simulated accelerator's spec, or (``torch``) a local device.
Target = ArchSpec | DeviceTarget

__all__ = ["Backend", "BackendError", "BackendTimeout", "BackendUnavailable", "BackendStatus", "BuiltinBackend",
           "TimeloopBackend", "TimeloopModelBackend", "TimeloopTools", "BACKEND_NAMES", "DEFAULT_TIMEOUT_S",
           "get_backend", "backend_status", "find_timeloop", "accelergy_status", "DeviceTarget", "TimingSettings",
           "TorchTimingBackend", "device_target", "MEASURED_BACKENDS", "Target"]


@runtime_checkable
class Backend(Protocol):
    """What a sweep needs of a backend. Instances must pickle (they travel to worker processes),
    unless the backend has ``parallel = False`` (it measures this machine): then a sweep evaluates
    serially in its own process."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def settings_key(self) -> str: ...

    def evaluate(self, workload: Workload, spec: Target) -> Evaluation: ...


class BackendStatus(NamedTuple):
    name: str
    available: bool
    reason: str


def get_backend(name: str, timeloop_bin: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                engine: str = "auto", device: str = "cpu", dtype: str = "float32", threads: int | None = None,
                clock: str = "wall") -> Backend:
    """The backend called ``name``; ``UnknownNameError`` lists the names, ``BackendUnavailable`` says
    what is missing. ``device``, ``dtype``, ``threads`` and ``clock`` choose the target of ``torch``
    (its ``target`` attribute)."""
    if name == "builtin":
        return BuiltinBackend()
    if name == "timeloop":
        return TimeloopBackend(timeloop_bin=timeloop_bin, timeout_s=timeout_s, engine=engine)
    if name == "timeloop-model":
        return TimeloopModelBackend(timeloop_bin=timeloop_bin, timeout_s=timeout_s, engine=engine)
    if name == "torch":
        return TorchTimingBackend(device_target(device, dtype, threads, clock))
    raise UnknownNameError("backend", name, BACKEND_NAMES)


def backend_status(timeloop_bin: str | None = None) -> list[BackendStatus]:
    """For ``costmodel doctor``: each backend, whether it can run here, and why (not)."""
    result = [BackendStatus("builtin", True, "built-in mapper and analytical model (always available)")]
    for name, tool in (("timeloop", "timeloop-mapper"), ("timeloop-model", "timeloop-model")):
        tools, reason = find_timeloop(timeloop_bin, tool)
        result.append(BackendStatus(name, tools is not None, reason))
    torch_ok = importlib.util.find_spec("torch") is not None
    result.append(BackendStatus("torch", torch_ok, "times workloads on this machine's CPU or CUDA GPUs (see devices)"
                                if torch_ok else "torch is not importable"))
    return result
