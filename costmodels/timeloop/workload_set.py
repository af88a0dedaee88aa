"""Write a network's unique workloads as Timeloop problem files, plus an index that ties every
layer and candidate to the files it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from costmodels.io_utils import atomic_write_text, output_folder
from costmodels.network.layers import ConvLayer
from costmodels.problems.candidates import Tucker2Candidate
from costmodels.problems.workloads import NetworkWorkloads, WorkloadUse, layer_workloads, subconv_workloads
from costmodels.timeloop.problem_yaml import write_problem

INDEX_NAME = "index.json"


def workload_filename(use: WorkloadUse) -> str:
    return f"{use.workload.name}_{use.workload.key[:8]}.yaml"


def _uses(uses: tuple[WorkloadUse, ...]) -> list[dict[str, Any]]:
    return [{"key": u.workload.key, "count": u.count, "file": workload_filename(u)} for u in uses]


def _layer(layer: ConvLayer) -> dict[str, Any]:
    return {"in_channels": layer.in_channels, "out_channels": layer.out_channels, "kernel": list(layer.kernel),
            "stride": list(layer.stride), "padding": list(layer.padding), "dilation": list(layer.dilation),
            "groups": layer.groups, "input_size": list(layer.input_size), "output_size": list(layer.output_size),
            "batch": layer.batch, "macs": layer.macs, "params": layer.params}


def _candidate(c: Tucker2Candidate) -> dict[str, Any]:
    return {"form": c.form.value, "r1": c.r1, "r2": c.r2, "macs": c.macs, "params": c.params,
            "workloads": _uses(subconv_workloads(c))}


def write_workload_set(network: str, workloads: NetworkWorkloads, out_dir: str | Path) -> Path:
    """Write one YAML per unique workload and ``index.json``; returns the index path.

    The files are written into a staging folder and moved into ``out_dir`` together (an index always
    points at complete files; a failure leaves none of them).
    """
    out = Path(out_dir)
    with output_folder(out) as staging:
        for workload in workloads.unique.values():
            write_problem(workload, staging / workload_filename(WorkloadUse(workload)))
        atomic_write_text(staging / INDEX_NAME, json.dumps(_index(network, workloads), indent=1) + "\n")
    return out / INDEX_NAME


def _index(network: str, workloads: NetworkWorkloads) -> dict[str, Any]:
    return {
        "network": network,
        "unique_workloads": {key: {"file": workload_filename(WorkloadUse(w)), **w.bounds, **w.coefficients,
                                   "macs": w.macs}
                             for key, w in sorted(workloads.unique.items())},
        "layers": [{"name": lc.layer.name, **_layer(lc.layer), "decomposed": bool(lc.candidates),
                    "excluded": lc.excluded, "original": _uses(layer_workloads(lc.layer)),
                    "candidates": [_candidate(c) for c in lc.candidates]}
                   for lc in workloads.layers],
    }
