"""Hardware cost models for Tucker-2 compressed CNNs (after HALOC, AAAI 2023).

The public API, in pipeline order (network -> layers -> candidates -> workloads -> mapping/evaluation
-> sweep/cache -> LUT -> predictors). Names load on first use, so ``import costmodels`` stays cheap
and a command that never touches torch or scikit-learn does not import them.
"""

from __future__ import annotations

import importlib
from typing import Any

from costmodels.version import __version__

# name -> module that defines it
_PUBLIC = {
    # errors
    "CostModelError": "costmodels.errors", "MappingError": "costmodels.errors", "SpecError": "costmodels.errors",
    "UnknownNameError": "costmodels.errors",
    # reading user files and writing outputs
    "read_user_bytes": "costmodels.user_files",
    "atomic_write_bytes": "costmodels.io_utils", "atomic_write_text": "costmodels.io_utils",
    # network: conv layers of a model
    "ConvLayer": "costmodels.network.layers",
    "available_models": "costmodels.network.zoo", "zoo_layers": "costmodels.network.zoo",
    "build_model": "costmodels.network.zoo", "model_input_shape": "costmodels.network.zoo",
    "layers_from_module": "costmodels.network.extract", "layers_from_onnx": "costmodels.network.extract",
    "load_layers": "costmodels.network.sources",
    # problems: rank candidates and their sub-convolution workloads
    "Form": "costmodels.problems.candidates", "RankGrid": "costmodels.problems.candidates",
    "Tucker2Candidate": "costmodels.problems.candidates", "LayerCandidates": "costmodels.problems.candidates",
    "network_candidates": "costmodels.problems.candidates",
    "Workload": "costmodels.problems.workloads", "network_workloads": "costmodels.problems.workloads",
    "subconv_workloads": "costmodels.problems.workloads",
    # timeloop: its file formats, the arch spec and the records of a mapping and its evaluation
    "ArchSpec": "costmodels.timeloop.spec", "load_spec": "costmodels.timeloop.spec",
    "available_targets": "costmodels.timeloop.spec",
    "read_problem": "costmodels.timeloop.problem_yaml", "write_problem": "costmodels.timeloop.problem_yaml",
    "Mapping": "costmodels.timeloop.mapping", "Evaluation": "costmodels.timeloop.evaluation",
    "read_mapping": "costmodels.timeloop.mapping_yaml",
    # model: the analytical model and the mapper
    "evaluate": "costmodels.model.analytical", "find_mapping": "costmodels.model.mapper",
    # backends, sweeps and the cache
    "Backend": "costmodels.backends", "get_backend": "costmodels.backends",
    "ResultsCache": "costmodels.sweep.cache", "run_sweep": "costmodels.sweep.runner",
    "WorkloadCost": "costmodels.sweep.records", "WorkloadFailure": "costmodels.sweep.records",
    # the LUT
    "LUT": "costmodels.lut.build", "build_lut": "costmodels.lut.build", "write_lut": "costmodels.lut.build",
    "lut_summary": "costmodels.lut.build",
    "load_lut": "costmodels.lut.export", "LoadedLUT": "costmodels.lut.export", "LUTEntry": "costmodels.lut.export",
    "export_lut": "costmodels.lut.export", "sourced_lut": "costmodels.lut.export",
    "rank_heatmap": "costmodels.lut.heatmap",
    # predictors
    "fit_predictors": "costmodels.predictors.estimators", "Predictors": "costmodels.predictors.estimators",
    "save_predictors": "costmodels.predictors.persistence", "load_predictors": "costmodels.predictors.persistence",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'costmodels' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
