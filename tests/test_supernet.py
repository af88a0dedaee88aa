"""The weight-shared supernet: a sampled path equals the candidate decomposed on its own, and the masked
mixture with one-hot gates equals the sampled path."""

import pytest
import torch
from torch import nn

from haloc_core.decompose import decompose_conv
from haloc_core.space import LayerOptions
from haloc_core.supernet import Supernet, SupernetLayer


def _options(name: str, ranks) -> LayerOptions:
    n = len(ranks)
    return LayerOptions(name, tuple(ranks), (1.0,) * n, (1.0,) * n, (1.0,) * n, (1,) * n, (1,) * n)


def _conv(c, f, k, stride=1, padding=1, dilation=1, seed=0):
    torch.manual_seed(seed)
    return nn.Conv2d(c, f, k, stride, padding, dilation).double().eval()


CASES = [
    (_conv(8, 6, 3), (None, (2, 2), (4, 4), (6, 6))),
    (_conv(8, 6, 3, stride=2, padding=2, dilation=2), (None, (2, 4), (6, 8), (3, 5))),
    (_conv(8, 6, 1, stride=2, padding=0), (None, (2, 2), (5, 5))),
]


@pytest.mark.parametrize("conv, ranks", CASES)
def test_sampled_path_and_one_hot_mixture_equal_the_candidate(conv, ranks):
    layer = SupernetLayer(conv, _options("conv", ranks))
    x = torch.randn(2, conv.in_channels, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        for index, option in enumerate(ranks):
            alone = conv(x) if option is None else decompose_conv(conv, *option)(x)
            assert torch.allclose(layer.path(x, index), alone, atol=1e-10), option
            one_hot = torch.zeros(len(ranks), dtype=torch.float64)
            one_hot[index] = 1.0
            assert torch.allclose(layer.mixture(x, one_hot), alone, atol=1e-10), option


def test_soft_gates_mix_original_and_masked_factors():
    conv = _conv(8, 6, 3)
    layer = SupernetLayer(conv, _options("conv", (None, (2, 2), (6, 8))))
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    gates = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    with torch.no_grad():   # the max-rank option is exact here, so the mixture is the original layer
        assert torch.allclose(layer.mixture(x, gates), conv(x), atol=1e-10)


def test_sampled_path_costs_one_candidates_compute():
    conv = _conv(8, 6, 3)
    layer = SupernetLayer(conv, _options("conv", (None, (2, 2), (6, 6))))
    seen = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: seen.append(m))
    try:
        with torch.no_grad():
            layer.path(torch.randn(1, 8, 5, 5, dtype=torch.float64), 1)
    finally:
        handle.remove()
    assert layer.original not in seen   # the factored path does not run the original layer


def test_supernet_replaces_the_searched_layers_in_a_copy():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1)).double().eval()
    supernet = Supernet(net, [_options("2", (None, (2, 2), (6, 4)))])
    assert isinstance(supernet.network[2], SupernetLayer) and isinstance(net[2], nn.Conv2d)
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        supernet.sample([0])
        assert torch.allclose(supernet(x), net(x), atol=1e-10)
        supernet.sample([2])
        assert torch.allclose(supernet(x), net(x), atol=1e-10)        # full rank: F = 6, C = 4
        supernet.sample([1])
        assert not torch.allclose(supernet(x), net(x), atol=1e-6)
