"""Timeloop CNN-layer workloads of layers and Tucker-2 candidates, deduplicated by content.

Timeloop's CNN-layer problem names the weight width R (paired with the output width P and
Wstride) and the weight height S (paired with the output height Q and Hstride). Padding is not
part of the problem: the input halo is, through the projections.
"""

from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass, fields

from costmodels.network.layers import ConvLayer
from costmodels.problems.candidates import LayerCandidates, Tucker2Candidate

DIMENSIONS = ("C", "M", "R", "S", "N", "P", "Q")
COEFFICIENTS = ("Wstride", "Hstride", "Wdilation", "Hdilation")
DATA_SPACES = ("Weights", "Inputs", "Outputs")


@dataclass(frozen=True)
class Workload:
    """One Timeloop CNN-layer problem instance (a dense convolution, no groups)."""

    C: int
    M: int
    R: int
    S: int
    N: int
    P: int
    Q: int
    Wstride: int = 1
    Hstride: int = 1
    Wdilation: int = 1
    Hdilation: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"workload field {f.name} must be a positive integer, got {value!r}")

    @classmethod
    def from_layer(cls, layer: ConvLayer) -> "Workload":
        """The workload of one group of ``layer`` (a grouped conv runs ``groups`` of these)."""
        (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
        oh, ow = layer.output_size
        return cls(C=layer.in_channels // layer.groups, M=layer.out_channels // layer.groups, R=kw, S=kh,
                   N=layer.batch, P=ow, Q=oh, Wstride=sw, Hstride=sh, Wdilation=dw, Hdilation=dh)

    @property
    def bounds(self) -> dict[str, int]:
        return {d: getattr(self, d) for d in DIMENSIONS}

    @property
    def coefficients(self) -> dict[str, int]:
        return {c: getattr(self, c) for c in COEFFICIENTS}

    @property
    def macs(self) -> int:
        return self.C * self.M * self.R * self.S * self.N * self.P * self.Q

    @property
    def input_width(self) -> int:
        return (self.P - 1) * self.Wstride + (self.R - 1) * self.Wdilation + 1

    @property
    def input_height(self) -> int:
        return (self.Q - 1) * self.Hstride + (self.S - 1) * self.Hdilation + 1

    @property
    def data_space_sizes(self) -> dict[str, int]:
        return {
            "Weights": self.C * self.M * self.R * self.S,
            "Inputs": self.N * self.C * self.input_width * self.input_height,
            "Outputs": self.N * self.M * self.P * self.Q,
        }

    @property
    def key(self) -> str:
        """Stable content hash: equal shapes give equal keys on every machine and run."""
        text = ",".join(f"{f.name}={v}" for f, v in zip(fields(self), astuple(self)))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        stride = "" if (self.Wstride, self.Hstride) == (1, 1) else (
            f"s{self.Hstride}" if self.Wstride == self.Hstride else f"s{self.Hstride}x{self.Wstride}")
        dil = "" if (self.Wdilation, self.Hdilation) == (1, 1) else f"d{self.Hdilation}x{self.Wdilation}"
        batch = "" if self.N == 1 else f"_n{self.N}"
        return f"{self.S}x{self.R}{stride}{dil}_{self.C}_{self.M}_{self.Q}x{self.P}{batch}"


@dataclass(frozen=True)
class WorkloadUse:
    """A workload and how many times a layer runs it (``groups`` for a grouped conv)."""

    workload: Workload
    count: int = 1


def layer_workloads(layer: ConvLayer) -> tuple[WorkloadUse, ...]:
    return (WorkloadUse(Workload.from_layer(layer), layer.groups),)


def subconv_workloads(candidate: Tucker2Candidate) -> tuple[WorkloadUse, ...]:
    """The workloads of a candidate's sub-convolutions, in execution order."""
    return tuple(use for sub in candidate.subconvs for use in layer_workloads(sub))


@dataclass(frozen=True)
class NetworkWorkloads:
    """Every layer's original workload and every candidate's sub-conv workloads, with the unique
    shapes among them (each is evaluated once by a sweep)."""

    layers: tuple[LayerCandidates, ...]
    unique: dict[str, Workload]

    @property
    def n_candidates(self) -> int:
        return sum(len(lc.candidates) for lc in self.layers)

    @property
    def n_workload_uses(self) -> int:
        return sum(len(layer_workloads(lc.layer)) + sum(len(subconv_workloads(c)) for c in lc.candidates)
                   for lc in self.layers)


def network_workloads(layers: list[LayerCandidates] | tuple[LayerCandidates, ...]) -> NetworkWorkloads:
    unique: dict[str, Workload] = {}
    for lc in layers:
        uses = list(layer_workloads(lc.layer))
        for candidate in lc.candidates:
            uses.extend(subconv_workloads(candidate))
        for use in uses:
            unique.setdefault(use.workload.key, use.workload)
    return NetworkWorkloads(tuple(layers), unique)
