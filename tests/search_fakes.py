"""Small LUTs and a fake trained network for the search-core tests (no mapper runs, no training).

``fake_lut`` prices every workload of a zoo model with a staircase cost: the 14 x 12 PE array is used in
whole tiles of channels, plus a fixed per-workload overhead, so (as on Eyeriss) small ranks are not free
and a full-rank Tucker-2 costs more than the original layer. ``FakeNetwork`` holds, per searched layer, a
low-rank-plus-noise weight of the layer's shape and scores ranks with a smooth accuracy proxy."""

from __future__ import annotations

import math

import numpy as np

from costmodels.lut.build import LUT, assemble_lut
from costmodels.network.zoo import zoo_layers
from costmodels.problems.candidates import RankGrid, network_candidates
from costmodels.problems.workloads import network_workloads
from costmodels.sweep.records import WorkloadCost
from costmodels.timeloop.spec import load_spec


def staircase_cost(key: str, workload) -> WorkloadCost:
    tiles = math.ceil(workload.C / 14) * math.ceil(workload.M / 12)
    cycles = 400 + tiles * workload.R * workload.S * workload.P * workload.Q * workload.N
    return WorkloadCost(key, cycles, 3.0 * workload.macs + 50.0 * cycles, 0.5, "fake")


def fake_lut(model: str = "resnet20", grid: RankGrid = RankGrid()) -> LUT:
    layers = network_candidates(zoo_layers(model), grid)
    unique = network_workloads(layers).unique
    return assemble_lut(model, tuple(layers), load_spec("eyeriss"),
                        {k: staircase_cost(k, w) for k, w in unique.items()})


class FakeNetwork:
    """A ``CompressibleModel`` whose weights are ``F x C x K x K`` low-rank (a quarter of the channels)
    plus noise, and whose proxy accuracy grows with every layer's kept rank share."""

    def __init__(self, lut: LUT, seed: int = 0):
        rng = np.random.default_rng(seed)
        kernels = {layer.name: layer.kernel for layer in zoo_layers(lut.network)}
        self.weights: dict[str, np.ndarray] = {}
        self.calls = 0
        for row in lut.rows:
            if row.form == "original":
                f, c = row.r1, row.r2
                k1, k2 = kernels[row.layer]
                rank = max(min(f, c) // 4, 1)
                signal = rng.normal(size=(f, rank)) @ rng.normal(size=(rank, c * k1 * k2))
                self.weights[row.layer] = (signal + 0.3 * rng.normal(size=signal.shape)).reshape(f, c, k1, k2)

    def layer_weights(self) -> dict[str, np.ndarray]:
        return self.weights

    def proxy_accuracy(self, ranks, data, max_batches: int) -> float:
        self.calls += 1
        shares = [1.0 if r is None else (r[0] * r[1]) / float(np.prod(self.weights[name].shape[:2]))
                  for name, r in ranks.items()]
        return float(np.mean([1.0 - math.exp(-8.0 * s) for s in shares]))
