"""Errors shared by the backends."""

from __future__ import annotations

from costmodels.errors import CostModelError, MappingError


class BackendError(MappingError):
    """An external tool failed on a workload (non-zero exit, no output, unreadable output). A sweep
    records it as that workload's failure and goes on."""


class BackendTimeout(BackendError):
    """An external tool ran past its time limit and was killed."""


class BackendUnavailable(CostModelError):
    """The backend cannot run on this machine (a tool is missing); the message says what to install."""
