"""Timeloop CNN-layer problem files: write a workload the way `timeloop-mapper` reads it, and read
one back (ours or Timeloop's own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from costmodels.errors import WorkloadFileError
from costmodels.io_utils import atomic_write_text
from costmodels.problems.workloads import COEFFICIENTS, DIMENSIONS, Workload
from costmodels.user_files import InputFileError, load_yaml_file

# The CNN-layer shape of Timeloop: which dimensions index each data space. Inputs' width and height
# are sums of a weight term and an output term scaled by the dilation and stride coefficients.
_SHAPE: dict[str, Any] = {
    "coefficients": [{"default": 1, "name": c} for c in COEFFICIENTS],
    "data-spaces": [
        {"name": "Weights", "projection": [[["C"]], [["M"]], [["R"]], [["S"]]]},
        {"name": "Inputs", "projection": [[["N"]], [["C"]], [["R", "Wdilation"], ["P", "Wstride"]],
                                          [["S", "Hdilation"], ["Q", "Hstride"]]]},
        {"name": "Outputs", "projection": [[["N"]], [["M"]], [["Q"]], [["P"]]], "read-write": True},
    ],
    "dimensions": list(DIMENSIONS),
    "name": "CNN-Layer",
}


def problem_document(workload: Workload) -> dict[str, Any]:
    instance = {**workload.bounds, **workload.coefficients}
    return {"problem": {"instance": instance, "shape": _SHAPE}}


def problem_yaml(workload: Workload) -> str:
    # Sorted keys and block style reproduce the layout of Timeloop's own problem files.
    return yaml.safe_dump(problem_document(workload), default_flow_style=False, sort_keys=True)


def write_problem(workload: Workload, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, problem_yaml(workload))
    return path


def read_problem(path: str | Path) -> Workload:
    """Read a CNN-layer problem file; any other shape is refused with the field at fault."""
    path = Path(path)
    try:
        document = load_yaml_file(path)
    except InputFileError as exc:
        raise WorkloadFileError(str(exc)) from None
    return parse_problem(document, str(path))


def parse_problem(document: Any, source: str) -> Workload:
    problem = document.get("problem") if isinstance(document, dict) else None
    if not isinstance(problem, dict):
        raise WorkloadFileError(f"{source}: field 'problem': missing; expected a Timeloop problem file")
    shape = problem.get("shape")
    if isinstance(shape, dict) and shape.get("name", "CNN-Layer") != "CNN-Layer":
        raise WorkloadFileError(f"{source}: field 'problem.shape.name': '{shape.get('name')}' "
                                f"is not supported; allowed: CNN-Layer")
    instance = problem.get("instance")
    if not isinstance(instance, dict):
        raise WorkloadFileError(f"{source}: field 'problem.instance': missing or not a mapping")
    unknown = set(instance) - set(DIMENSIONS) - set(COEFFICIENTS)
    if unknown:
        raise WorkloadFileError(f"{source}: field 'problem.instance.{sorted(unknown)[0]}': unknown; allowed: "
                                f"{', '.join(DIMENSIONS + COEFFICIENTS)}")
    values: dict[str, int] = {}
    for name in DIMENSIONS + COEFFICIENTS:
        value = instance.get(name, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise WorkloadFileError(f"{source}: field 'problem.instance.{name}': must be a positive integer, "
                                    f"got {value!r}")
        values[name] = value
    return Workload(**values)
