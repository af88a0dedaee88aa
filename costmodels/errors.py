"""Errors that the CLI turns into a one-line message and exit code 2 (never a traceback)."""


class CostModelError(Exception):
    """Base class for errors caused by user input (files, names, flags)."""


class SpecError(CostModelError):
    """A malformed architecture spec; the message names the file and the field."""

    def __init__(self, file: str, field: str, problem: str):
        self.file = file
        self.field = field
        self.problem = problem
        super().__init__(f"{file}: field '{field}': {problem}")


class UnknownNameError(CostModelError):
    """A model, arch or other named thing that does not exist; lists what does."""

    def __init__(self, kind: str, name: str, available: list[str] | tuple[str, ...]):
        self.kind = kind
        self.name = name
        self.available = tuple(available)
        super().__init__(f"unknown {kind} '{name}'; available: {', '.join(sorted(self.available))}")


class WorkloadFileError(CostModelError):
    """A Timeloop problem file that cannot be read as a CNN-layer workload."""


class MappingError(CostModelError):
    """A mapping that cannot run on the target (buffer overflow, fan-out, unmet constraint), or a
    workload for which no legal mapping exists. The message says why."""
