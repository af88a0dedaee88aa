"""Tucker-2 of a conv: exact at full rank, the same as TensorLy's partial Tucker and an independent HOSVD,
nested truncation, the two-factor form of a 1x1 conv, and layers that cannot be decomposed."""

import numpy as np
import pytest
import torch
from torch import nn

from haloc_core.decompose import (DecompositionError, LowRankConv, Tucker2Conv, decompose_conv, low_rank,
                                  tucker2)


def _conv(c=6, f=5, k=3, stride=1, padding=1, dilation=1, bias=True, groups=1, seed=0) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(c, f, k, stride, padding, dilation, groups=groups, bias=bias).double()
    return conv.eval()


def _hosvd(weight: np.ndarray, r1: int, r2: int):
    """Truncated HOSVD written out: leading left singular vectors of the mode-0 and mode-1 unfoldings."""
    f, c = weight.shape[:2]
    u_out = np.linalg.svd(weight.reshape(f, -1), full_matrices=False)[0][:, :r1]
    u_in = np.linalg.svd(np.moveaxis(weight, 1, 0).reshape(c, -1), full_matrices=False)[0][:, :r2]
    core = np.einsum("fckl,fa,cb->abkl", weight, u_out, u_in)
    return np.einsum("fa,abkl,cb->fckl", u_out, core, u_in)


@pytest.mark.parametrize("stride, padding, dilation, bias", [(1, 1, 1, True), (2, 1, 1, False), (1, 2, 2, True),
                                                            (2, 0, 1, True)])
def test_full_rank_tucker2_conv_is_exact(stride, padding, dilation, bias):
    conv = _conv(stride=stride, padding=padding, dilation=dilation, bias=bias)
    module = decompose_conv(conv, conv.out_channels, conv.in_channels)
    assert isinstance(module, Tucker2Conv)
    assert module.core.stride == conv.stride and module.core.padding == conv.padding
    assert module.core.dilation == conv.dilation and (module.last.bias is None) == (not bias)
    x = torch.randn(2, conv.in_channels, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(module(x), conv(x), atol=1e-10)


def test_three_convs_have_the_papers_shapes():
    conv = _conv(c=6, f=5, k=3)
    module = decompose_conv(conv, 4, 3)
    assert module.first.weight.shape == (3, 6, 1, 1)       # 1x1 C -> r2
    assert module.core.weight.shape == (4, 3, 3, 3)        # KxK r2 -> r1
    assert module.last.weight.shape == (5, 4, 1, 1)        # 1x1 r1 -> F


@pytest.mark.parametrize("r1, r2", [(5, 6), (3, 4), (2, 2), (1, 5)])
def test_agrees_with_tensorly_and_with_an_independent_hosvd(r1, r2):
    from tensorly.decomposition import partial_tucker
    weight = _conv().weight.detach().numpy()
    ours = tucker2(weight, r1, r2).weight()
    (core, (u_out, u_in)), _ = partial_tucker(weight, rank=[r1, r2], modes=[0, 1], n_iter_max=0, init="svd")
    theirs = np.einsum("fa,abkl,cb->fckl", u_out, core, u_in)
    np.testing.assert_allclose(ours, theirs, atol=1e-10)
    np.testing.assert_allclose(ours, _hosvd(weight, r1, r2), atol=1e-10)


def test_truncation_is_nested():
    weight = _conv(c=8, f=7).weight.detach().numpy()
    full = tucker2(weight, 7, 8)
    for r1, r2 in [(7, 8), (4, 5), (2, 3), (1, 1)]:
        np.testing.assert_allclose(full.truncated(r1, r2).weight(), tucker2(weight, r1, r2).weight(), atol=1e-10)
    errors = [np.linalg.norm(weight - full.truncated(r, r).weight()) for r in (1, 3, 5, 7)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]


def test_hooi_refines_the_hosvd():
    weight = _conv(c=8, f=7).weight.detach().numpy()
    hosvd = np.linalg.norm(weight - tucker2(weight, 3, 3).weight())
    hooi = np.linalg.norm(weight - tucker2(weight, 3, 3, hooi_iterations=20).weight())
    assert hooi <= hosvd + 1e-12


def test_pointwise_conv_takes_the_two_factor_form():
    conv = _conv(c=6, f=5, k=1, stride=2, padding=0)
    module = decompose_conv(conv, 5, 5)
    assert isinstance(module, LowRankConv) and module.first.stride == (2, 2)
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(module(x), conv(x), atol=1e-10)
    weight = conv.weight.detach().numpy()
    full = low_rank(weight, 5)
    np.testing.assert_allclose(full.truncated(2).weight(), low_rank(weight, 2).weight(), atol=1e-12)
    with pytest.raises(DecompositionError, match="one rank"):
        decompose_conv(conv, 3, 2)


def test_layers_that_cannot_be_decomposed():
    with pytest.raises(DecompositionError, match="grouped"):
        decompose_conv(_conv(c=6, f=6, groups=3), 2, 2)
    with pytest.raises(DecompositionError, match="outside"):
        decompose_conv(_conv(c=6, f=5), 6, 6)
