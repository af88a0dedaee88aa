"""Tucker-2 rank candidates of a conv layer, per HALOC's two design principles.

A dense KxK conv ``W (F x C x K1 x K2)`` becomes 1x1 C->r2, K1xK2 r2->r1 (the layer's stride,
padding and dilation), 1x1 r1->F. A 1x1 conv becomes the two-factor low-rank form 1x1 C->r, 1x1 r->F.
Ranks lie on a grid of multiples of a step because accelerator latency moves in steps with the
channel count, not smoothly with FLOPs (HALOC Fig. 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from costmodels.errors import UnknownNameError
from costmodels.network.layers import ConvLayer


class Form(str, Enum):
    TUCKER2 = "tucker2"      # 3 sub-convs
    LOW_RANK = "lowrank"     # 1x1 split into 2 sub-convs
    ORIGINAL = "original"    # the layer as it is


@dataclass(frozen=True)
class RankGrid:
    """How rank candidates are chosen.

    ``narrow_steps`` maps a channel bound to the step used when a rank is bounded by that many
    channels or fewer (HALOC: 16 for <=64 channels, 8 for <=32).
    """

    step: int = 32
    narrow_steps: tuple[tuple[int, int], ...] = ((32, 8), (64, 16))
    equal_ranks: bool = True
    exclude: tuple[str, ...] = field(default=())
    exclude_first: bool = True

    def __post_init__(self) -> None:
        steps = [self.step, *(s for _, s in self.narrow_steps)]
        if any(s < 1 for s in steps):
            raise ValueError(f"rank steps must be >= 1, got {steps}")

    def step_for(self, channels: int) -> int:
        for bound, step in sorted(self.narrow_steps):
            if channels <= bound:
                return step
        return self.step

    def ranks(self, channels: int) -> list[int]:
        step = self.step_for(channels)
        return list(range(step, channels + 1, step))


@dataclass(frozen=True)
class Tucker2Candidate:
    """One decomposition of a layer. ``r2`` is the input-side rank, ``r1`` the output-side rank
    (HALOC's notation: M2 is r2 x C, the core r1 x r2 x K1 x K2, M1 is r1 x F)."""

    layer: ConvLayer
    form: Form
    r1: int
    r2: int

    @property
    def label(self) -> str:
        if self.form is Form.ORIGINAL:
            return "original"
        if self.form is Form.LOW_RANK:
            return f"r{self.r1}"
        return f"r{self.r1}" if self.r1 == self.r2 else f"r1={self.r1},r2={self.r2}"

    @property
    def subconvs(self) -> tuple[ConvLayer, ...]:
        """The layers that replace the original, in execution order."""
        layer = self.layer
        if self.form is Form.ORIGINAL:
            return (layer,)
        if self.form is Form.LOW_RANK:
            # Subsampling commutes with a pointwise conv, so a strided 1x1 keeps its stride on the
            # first factor and the second runs on the (smaller) output grid.
            first = replace(layer, name=f"{layer.name}.sub1", out_channels=self.r2)
            last = replace(layer, name=f"{layer.name}.sub2", in_channels=self.r2, stride=(1, 1),
                           padding=(0, 0), input_size=layer.output_size)
            return (first, last)
        first = replace(layer, name=f"{layer.name}.sub1", out_channels=self.r2, kernel=(1, 1), stride=(1, 1),
                        padding=(0, 0), dilation=(1, 1), output_size=layer.input_size)
        core = replace(layer, name=f"{layer.name}.sub2", in_channels=self.r2, out_channels=self.r1)
        last = replace(layer, name=f"{layer.name}.sub3", in_channels=self.r1, kernel=(1, 1), stride=(1, 1),
                       padding=(0, 0), dilation=(1, 1), input_size=layer.output_size)
        return (first, core, last)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.subconvs)

    @property
    def params(self) -> int:
        return sum(s.params for s in self.subconvs)


def decomposable_form(layer: ConvLayer) -> Form:
    if layer.groups != 1:
        return Form.ORIGINAL
    return Form.LOW_RANK if layer.kernel == (1, 1) else Form.TUCKER2


def candidates_for(layer: ConvLayer, grid: RankGrid, excluded: bool = False) -> list[Tucker2Candidate]:
    """Rank candidates of one layer; grouped/depthwise and excluded layers get none."""
    form = Form.ORIGINAL if excluded else decomposable_form(layer)
    if form is Form.ORIGINAL:
        return []
    c, f = layer.in_channels, layer.out_channels
    if form is Form.LOW_RANK or grid.equal_ranks:
        return [Tucker2Candidate(layer, form, r, r) for r in grid.ranks(min(c, f))]
    return [Tucker2Candidate(layer, form, r1, r2) for r1 in grid.ranks(f) for r2 in grid.ranks(c)]


@dataclass(frozen=True)
class LayerCandidates:
    """A layer, whether it is decomposed, and its candidates (empty when it stays as it is)."""

    layer: ConvLayer
    excluded: bool
    candidates: tuple[Tucker2Candidate, ...]

    @property
    def original(self) -> Tucker2Candidate:
        return Tucker2Candidate(self.layer, Form.ORIGINAL, self.layer.out_channels, self.layer.in_channels)


def network_candidates(layers: list[ConvLayer] | tuple[ConvLayer, ...], grid: RankGrid) -> list[LayerCandidates]:
    """Candidates for every layer of a network, honouring the grid's exclusions."""
    unknown = sorted(set(grid.exclude) - {layer.name for layer in layers})
    if unknown:
        raise UnknownNameError("layer (--exclude)", unknown[0], [layer.name for layer in layers])
    result = []
    for index, layer in enumerate(layers):
        excluded = layer.name in grid.exclude or (grid.exclude_first and index == 0)
        result.append(LayerCandidates(layer, excluded, tuple(candidates_for(layer, grid, excluded))))
    return result
