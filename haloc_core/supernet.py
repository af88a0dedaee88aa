"""The weight-shared supernet of a rank search.

Truncated HOSVD is nested, so one max-rank factorisation per searched layer holds every candidate: the
rank-(r1, r2) candidate is the first r2 channels after the 1x1 C->r2 conv and the first r1 after the core.
A layer runs in one of two ways:

* one option (``SupernetLayer.choice``): the sliced factors, so a sampled path costs one candidate's compute
  (the weight step) and equals that candidate exactly;
* a mixture (``SupernetLayer.gates``, one weight per option): the original layer scaled by its gate plus the
  max-rank factors under channel masks (FBNetV2-style channel masking; the alpha step). With a one-hot
  gate vector the masked forward equals that option's path.

The original layer is an option of every layer and is trained like the factors.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as functional
from torch import nn

from haloc_core.decompose import is_pointwise, low_rank, tucker2
from haloc_core.space import LayerOptions, Ranks


def get_module(root: nn.Module, name: str) -> nn.Module:
    module = root
    for part in name.split("."):
        module = getattr(module, part)
    return module


def set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(get_module(root, parent) if parent else root, leaf, module)


class SupernetLayer(nn.Module):
    """Every option of one searched conv layer, sharing one max-rank factorisation."""

    def __init__(self, conv: nn.Conv2d, options: LayerOptions):
        super().__init__()
        self.ranks: tuple[Ranks | None, ...] = options.ranks
        self.original_index = options.original_index
        self.original = copy.deepcopy(conv)
        self.pointwise = is_pointwise(conv)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        candidates = [r for r in self.ranks if r is not None]
        max_r1, max_r2 = max(r[0] for r in candidates), max(r[1] for r in candidates)
        weight = conv.weight.detach().cpu().double().numpy()
        dtype, device = conv.weight.dtype, conv.weight.device
        as_parameter = lambda a: nn.Parameter(torch.as_tensor(a.copy(), dtype=dtype, device=device))
        if self.pointwise:
            factors = low_rank(weight, max_r1)
            self.first = as_parameter(factors.in_factor.T[:, :, None, None])
            self.core = None
        else:
            tucker = tucker2(weight, max_r1, max_r2)
            self.first = as_parameter(tucker.in_factor.T[:, :, None, None])
            self.core = as_parameter(tucker.core)
            factors = tucker
        self.last = as_parameter(factors.out_factor[:, :, None, None])
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None
        r1 = torch.tensor([r[0] if r else 0 for r in self.ranks], device=device)
        r2 = torch.tensor([r[1] if r else 0 for r in self.ranks], device=device)
        # masks[j, k] = 1 when channel k is inside option j's rank (all zero for the original option)
        self.register_buffer("mask_r1", (torch.arange(max_r1, device=device)[None] < r1[:, None]).to(dtype))
        self.register_buffer("mask_r2", (torch.arange(max_r2, device=device)[None] < r2[:, None]).to(dtype))
        self.choice: int = self.original_index
        self.gates: torch.Tensor | None = None

    def _first(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.pointwise:   # the two-factor form keeps the layer's stride and padding on its first conv
            return functional.conv2d(x, weight, None, self.stride, self.padding)
        return functional.conv2d(x, weight)

    def _core(self, h: torch.Tensor, core: torch.Tensor) -> torch.Tensor:
        return functional.conv2d(h, core, None, self.stride, self.padding, self.dilation)

    def path(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Option ``index`` alone, at its own compute."""
        ranks = self.ranks[index]
        if ranks is None:
            return self.original(x)
        r1, r2 = ranks
        h = self._first(x, self.first[:r2])
        if self.core is not None:
            h = self._core(h, self.core[:r1, :r2])
        return functional.conv2d(h, self.last[:, :r1], self.bias)

    def mixture(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """The original layer scaled by its gate plus the max-rank factors under channel masks: after the core
        ``m1 = sum_j g_j [k < r1_j]``, after the first conv ``m2 = sum_j g_j [k < r2_j] / G`` with ``G`` the
        factored options' total gate (so the two masks scale the factored branch by ``G`` once, not twice).
        Exact for one-hot gates and for gates on one factored option; otherwise the product of the marginal
        masks stands for the mixture (FBNetV2's channel masking, extended to Tucker-2's two ranks)."""
        factored = 1.0 - gates[self.original_index]
        m2 = (gates @ self.mask_r2) / factored.clamp(min=1e-12)
        m1 = gates @ self.mask_r1
        if self.core is None:   # two-factor form: one rank, one mask
            h = self._first(x, self.first) * m1[None, :, None, None]
        else:
            h = self._first(x, self.first) * m2[None, :, None, None]
            h = self._core(h, self.core) * m1[None, :, None, None]
        bias = None if self.bias is None else self.bias * factored
        return functional.conv2d(h, self.last, bias) + gates[self.original_index] * self.original(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gates is not None:
            return self.mixture(x, self.gates)
        return self.path(x, self.choice)


class Supernet(nn.Module):
    """A copy of the trained network whose searched convs are ``SupernetLayer``s (in ``layers``' order)."""

    def __init__(self, network: nn.Module, options: Sequence[LayerOptions]):
        super().__init__()
        self.network = copy.deepcopy(network)
        self.names = tuple(o.layer for o in options)
        layers = []
        for layer_options in options:
            conv = get_module(self.network, layer_options.layer)
            if not isinstance(conv, nn.Conv2d):
                raise TypeError(f"layer '{layer_options.layer}' is a {type(conv).__name__}, not a Conv2d")
            layer = SupernetLayer(conv, layer_options)
            set_module(self.network, layer_options.layer, layer)
            layers.append(layer)
        self.layers: tuple[SupernetLayer, ...] = tuple(layers)

    def sample(self, choices: Sequence[int]) -> None:
        """Run one option per layer (the weight step)."""
        for layer, index in zip(self.layers, choices, strict=True):
            layer.choice, layer.gates = int(index), None

    def mix(self, gates: Sequence[torch.Tensor]) -> None:
        """Run each layer as a gate-weighted mixture of its options (the alpha step)."""
        for layer, layer_gates in zip(self.layers, gates, strict=True):
            layer.gates = layer_gates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)
