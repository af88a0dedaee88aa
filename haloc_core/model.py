"""The trained network a search works on (``CompressibleModel``), where it comes from, and the compressed
network of a choice.

* ``trained_zoo_model``: a zoo model trained first on the data (cached per model, data, seed and training
  set-up, so a second search with the same seed skips training);
* ``module_with_weights``: any ``nn.Module`` factory plus a state-dict file read with
  ``torch.load(..., weights_only=True)`` (never unpickled);
* ``TrainedNetwork.compressed(ranks)``: a copy whose searched convs are Tucker-2 modules decomposed from the
  trained weights (the original conv where the rank is ``None``).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from costmodels import CostModelError, atomic_write_bytes, build_model
from haloc_core.data import Dataset, SplitData
from haloc_core.decompose import (LowRankConv, LowRankFactors, Tucker2Conv, Tucker2Factors, decompose_conv,
                                  is_pointwise, low_rank, tucker2)
from haloc_core.space import Ranks
from haloc_core.supernet import get_module, set_module
from haloc_core.train import TrainConfig, evaluate, train

RankMap = dict[str, Ranks | None]


class ModelError(CostModelError):
    """A model that cannot be loaded or does not fit the LUT (weights file, layer names)."""


class TrainedNetwork:
    """A trained ``nn.Module`` and the names of its searched conv layers (the LUT's layer names)."""

    def __init__(self, module: nn.Module, layers: tuple[str, ...], device: torch.device | None = None,
                 hooi_iterations: int = 0):
        self.module = module.eval()
        self.layers = layers
        self.device = device or next(module.parameters()).device
        self.hooi_iterations = hooi_iterations
        for name in layers:
            try:
                conv = get_module(module, name)
            except AttributeError:
                raise ModelError(f"the LUT's layer '{name}' is not a module of the network") from None
            if not isinstance(conv, nn.Conv2d):
                raise ModelError(f"the LUT's layer '{name}' is a {type(conv).__name__}, not a Conv2d")
        self._factors: dict[str, Tucker2Factors | LowRankFactors] = {}

    def conv(self, name: str) -> nn.Conv2d:
        return get_module(self.module, name)

    def layer_weights(self) -> dict[str, np.ndarray]:
        return {name: self.conv(name).weight.detach().cpu().double().numpy() for name in self.layers}

    def _max_rank_factors(self, name: str) -> Tucker2Factors | LowRankFactors:
        """Full-rank HOSVD (or SVD) of a layer, computed once; nested, so every rank is a truncation."""
        if name not in self._factors:
            conv = self.conv(name)
            weight = conv.weight.detach().cpu().double().numpy()
            f, c = weight.shape[:2]
            self._factors[name] = low_rank(weight, min(f, c)) if is_pointwise(conv) else tucker2(weight, f, c)
        return self._factors[name]

    def _replacement(self, name: str, ranks: Ranks) -> nn.Module:
        conv = self.conv(name)
        if self.hooi_iterations:
            return decompose_conv(conv, ranks[0], ranks[1], self.hooi_iterations)
        factors = self._max_rank_factors(name)
        if isinstance(factors, LowRankFactors):
            return LowRankConv(conv, factors.truncated(ranks[0]))
        return Tucker2Conv(conv, factors.truncated(*ranks))

    def compressed(self, ranks: RankMap) -> nn.Module:
        """A copy of the network with each searched layer at its rank (``None``: the original conv)."""
        unknown = sorted(set(ranks) - set(self.layers))
        if unknown:
            raise ModelError(f"ranks for layer(s) {', '.join(unknown)} that are not searched")
        network = copy.deepcopy(self.module)
        for name, layer_ranks in ranks.items():
            if layer_ranks is not None:
                set_module(network, name, self._replacement(name, layer_ranks))
        return network.eval()

    def proxy_accuracy(self, ranks: RankMap, data: SplitData, max_batches: int) -> float:
        return evaluate(self.compressed(ranks), data.val, self.device, max_batches=max_batches)


def _cache_key(model: str, dataset: str, seed: int, config: TrainConfig) -> str:
    text = json.dumps({"model": model, "data": dataset, "seed": seed, "train": asdict(config),
                       "torch": torch.__version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trained_zoo_model(name: str, data: Dataset, config: TrainConfig, seed: int, cache: Path | None,
                      device: torch.device, progress: Callable[[int, int, float], None] | None = None
                      ) -> tuple[nn.Module, bool]:
    """A zoo model trained on ``data.train`` from a seeded initialisation; ``(module, from_cache)``."""
    torch.manual_seed(seed)
    module = build_model(name)
    path = cache / f"{name}-{data.name}-seed{seed}-{_cache_key(name, data.name, seed, config)}.pt" if cache else None
    if path is not None and path.is_file():
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return module.to(device).eval(), True
    train(module, data.train, config, seed, device, progress)
    if path is not None:
        buffer = io.BytesIO()
        torch.save({k: v.cpu() for k, v in module.state_dict().items()}, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    return module.eval(), False


def module_with_weights(factory: Callable[[], nn.Module], weights: Path, device: torch.device) -> nn.Module:
    """``factory()`` with the state dict in ``weights`` (read with ``weights_only=True``: no unpickling)."""
    module = factory()
    if not isinstance(module, nn.Module):
        raise ModelError(f"the factory returned a {type(module).__name__}, not a torch.nn.Module")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"--weights {weights}: no such file") from None
    except Exception as exc:   # torch raises several types for a file that is not a safe state dict
        raise ModelError(f"--weights {weights}: not a state dict torch can load safely: "
                         f"{str(exc).splitlines()[0][:200]}") from None
    if not isinstance(state, dict):
        raise ModelError(f"--weights {weights}: holds a {type(state).__name__}, expected a state dict")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"--weights {weights}: does not fit the module: {str(exc).splitlines()[0][:200]}") from None
    return module.to(device).eval()
