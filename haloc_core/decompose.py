"""Tucker-2 decomposition of a trained conv layer and the modules that replace it.

A conv weight ``W (F x C x K1 x K2)`` is decomposed on its output (mode 0) and input (mode 1) axes:
``W ~ core x_0 U_out x_1 U_in`` with ``U_out (F x r1)``, ``U_in (C x r2)`` and ``core (r1 x r2 x K1 x K2)``.
Inference becomes 1x1 C->r2 (weight ``U_in^T``), K1xK2 r2->r1 (the core, with the layer's stride, padding
and dilation) and 1x1 r1->F (weight ``U_out``, the layer's bias). A 1x1 conv takes the two-factor SVD form
instead (1x1 C->r with the stride, 1x1 r->F).

TensorLy's ``partial_tucker`` is the reference implementation; its signature changed twice (``modes``
became optional and moved after ``rank``, and it now returns ``((core, factors), errors)``), so it is called
only through ``_partial_tucker`` and the version is pinned in constraints.txt. With no HOOI iterations the
result is the truncated HOSVD, which is nested: the rank-(r1, r2) factors are the first r1 / r2 columns of
the max-rank ones and the core is the leading block (``Tucker2Factors.truncated``). HOOI refines one rank
pair at a time and is not nested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from costmodels import CostModelError


class DecompositionError(CostModelError):
    """A layer that cannot take the requested decomposition (grouped conv, rank out of range)."""


@dataclass(frozen=True)
class Tucker2Factors:
    """``W ~ core x_0 out_factor x_1 in_factor`` (float64)."""

    out_factor: np.ndarray   # F x r1
    core: np.ndarray         # r1 x r2 x K1 x K2
    in_factor: np.ndarray    # C x r2

    @property
    def ranks(self) -> tuple[int, int]:
        return self.core.shape[0], self.core.shape[1]

    def truncated(self, r1: int, r2: int) -> "Tucker2Factors":
        """The rank-(r1, r2) truncated HOSVD, read off the max-rank one."""
        max_r1, max_r2 = self.ranks
        if not (1 <= r1 <= max_r1 and 1 <= r2 <= max_r2):
            raise DecompositionError(f"ranks ({r1}, {r2}) outside 1..({max_r1}, {max_r2})")
        return Tucker2Factors(self.out_factor[:, :r1], self.core[:r1, :r2], self.in_factor[:, :r2])

    def weight(self) -> np.ndarray:
        """The reconstructed F x C x K1 x K2 weight."""
        return np.einsum("fa,abkl,cb->fckl", self.out_factor, self.core, self.in_factor)


def _one_blas_thread():
    """The SVDs here are of a few hundred rows at most; BLAS threads only add spin-waiting, which on a machine
    shared by several processes made one 64 x 576 SVD take seconds instead of milliseconds."""
    return threadpool_limits(limits=1, user_api="blas")


def _partial_tucker(weight: np.ndarray, ranks: tuple[int, int], hooi_iterations: int) -> tuple[np.ndarray, list]:
    """TensorLy's partial Tucker on modes (0, 1), whatever its return convention."""
    from tensorly.decomposition import partial_tucker

    with _one_blas_thread():
        result = partial_tucker(weight, rank=list(ranks), modes=[0, 1], n_iter_max=hooi_iterations, init="svd",
                                svd="truncated_svd", tol=0.0)
    if isinstance(result[0], (tuple, list)):   # >= 0.8: ((core, factors), reconstruction errors)
        result = result[0]
    core, factors = result
    return np.asarray(core), [np.asarray(f) for f in factors]


def tucker2(weight: np.ndarray, r1: int, r2: int, hooi_iterations: int = 0) -> Tucker2Factors:
    """Tucker-2 of a conv weight at ranks (r1, r2): truncated HOSVD, refined by ``hooi_iterations`` of HOOI."""
    w = np.asarray(weight, dtype=np.float64)
    f, c = w.shape[:2]
    if not (1 <= r1 <= f and 1 <= r2 <= c):
        raise DecompositionError(f"ranks (r1={r1}, r2={r2}) outside 1..(F={f}, C={c})")
    core, (out_factor, in_factor) = _partial_tucker(w, (r1, r2), hooi_iterations)
    return Tucker2Factors(out_factor, core, in_factor)


@dataclass(frozen=True)
class LowRankFactors:
    """A 1x1 conv's ``W (F x C) ~ out_factor @ in_factor.T``; the singular values sit in ``out_factor``."""

    out_factor: np.ndarray   # F x r
    in_factor: np.ndarray    # C x r

    @property
    def rank(self) -> int:
        return self.out_factor.shape[1]

    def truncated(self, rank: int) -> "LowRankFactors":
        if not 1 <= rank <= self.rank:
            raise DecompositionError(f"rank {rank} outside 1..{self.rank}")
        return LowRankFactors(self.out_factor[:, :rank], self.in_factor[:, :rank])

    def weight(self) -> np.ndarray:
        return (self.out_factor @ self.in_factor.T)[:, :, None, None]


def low_rank(weight: np.ndarray, rank: int) -> LowRankFactors:
    """Truncated SVD of a 1x1 conv weight (nested by construction)."""
    w = np.asarray(weight, dtype=np.float64)
    matrix = w.reshape(w.shape[0], w.shape[1])
    if not 1 <= rank <= min(matrix.shape):
        raise DecompositionError(f"rank {rank} outside 1..{min(matrix.shape)}")
    with _one_blas_thread():
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    return LowRankFactors(u[:, :rank] * s[:rank], vt[:rank].T)


def _check_conv(conv: nn.Conv2d) -> None:
    if conv.groups != 1:
        raise DecompositionError(f"a grouped conv (groups={conv.groups}) has no Tucker-2 form here")
    if conv.padding_mode != "zeros":
        raise DecompositionError(f"padding_mode '{conv.padding_mode}': only zero padding keeps the 1x1 "
                                 f"factor outside the padded core exact")


def _parameter(array: np.ndarray, like: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(torch.as_tensor(np.ascontiguousarray(array), dtype=like.dtype, device=like.device))


class Tucker2Conv(nn.Module):
    """1x1 C->r2, K1xK2 r2->r1 (the original's stride, padding, dilation), 1x1 r1->F (the original's bias)."""

    def __init__(self, conv: nn.Conv2d, factors: Tucker2Factors):
        super().__init__()
        _check_conv(conv)
        r1, r2 = factors.ranks
        weight = conv.weight
        self.first = nn.Conv2d(conv.in_channels, r2, 1, bias=False)
        self.core = nn.Conv2d(r2, r1, conv.kernel_size, conv.stride, conv.padding, conv.dilation, bias=False)
        self.last = nn.Conv2d(r1, conv.out_channels, 1, bias=conv.bias is not None)
        self.first.weight = _parameter(factors.in_factor.T[:, :, None, None], weight)
        self.core.weight = _parameter(factors.core, weight)
        self.last.weight = _parameter(factors.out_factor[:, :, None, None], weight)
        if conv.bias is not None:
            self.last.bias = nn.Parameter(conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.core(self.first(x)))


class LowRankConv(nn.Module):
    """1x1 C->r with the original's stride and padding, then 1x1 r->F with its bias."""

    def __init__(self, conv: nn.Conv2d, factors: LowRankFactors):
        super().__init__()
        _check_conv(conv)
        weight = conv.weight
        self.first = nn.Conv2d(conv.in_channels, factors.rank, 1, conv.stride, conv.padding, bias=False)
        self.last = nn.Conv2d(factors.rank, conv.out_channels, 1, bias=conv.bias is not None)
        self.first.weight = _parameter(factors.in_factor.T[:, :, None, None], weight)
        self.last.weight = _parameter(factors.out_factor[:, :, None, None], weight)
        if conv.bias is not None:
            self.last.bias = nn.Parameter(conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.first(x))


def is_pointwise(conv: nn.Conv2d) -> bool:
    return tuple(conv.kernel_size) == (1, 1)


def decompose_conv(conv: nn.Conv2d, r1: int, r2: int, hooi_iterations: int = 0) -> nn.Module:
    """The module that replaces ``conv`` at ranks (r1, r2): Tucker-2, or the two-factor form for a 1x1 conv
    (which takes r1 == r2)."""
    weight = conv.weight.detach().cpu().double().numpy()
    if is_pointwise(conv):
        if r1 != r2:
            raise DecompositionError(f"a 1x1 conv takes one rank, got r1={r1}, r2={r2}")
        return LowRankConv(conv, low_rank(weight, r1))
    return Tucker2Conv(conv, tucker2(weight, r1, r2, hooi_iterations))
