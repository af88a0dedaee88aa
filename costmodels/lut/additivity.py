"""Does a measured LUT add up? Its entries are sub-convolutions timed alone; a network runs them in
sequence, with other layers in between. Reported with every measured LUT:

- per sampled candidate: the measured time of the whole decomposed layer (its sub-convolutions as
  one ``nn.Sequential``) against the sum of its LUT entries;
- per network (built-in models only, which this toolkit can build as ``nn.Module``): the measured
  forward pass of the original network, and of one compressed network (every decomposed layer at
  its middle candidate), against the sum of the LUT rows of their conv layers. The forward pass runs
  with batch norm removed, as a deployed network has it folded into the convs. The rest (ReLU,
  residual additions, pooling, the classifier, the module calls) is in the measured time and not in
  the LUT's sum; it does not depend on the ranks, so it is measured as the same forward pass with
  every conv replaced by a stub that returns the output that conv gave (``overhead_s``), and
  reported added to the LUT's sum as well.

``error`` is ``lut_sum / measured - 1`` (negative when the LUT underestimates);
``error_with_overhead`` adds the network's measured non-conv overhead to the LUT's sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from costmodels.backends.torch_timing import DeviceTarget, TimingSettings, Timer, time_module, torch_dtype
from costmodels.lut.build import LUT, LUTRow
from costmodels.network.layers import ConvLayer
from costmodels.problems.candidates import Form, LayerCandidates, Tucker2Candidate

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_SAMPLE = 6


@dataclass(frozen=True)
class AdditivityCase:
    what: str
    lut_sum_s: float
    measured_s: float
    noisy: bool              # the end-to-end timing or a LUT entry summed was noisy
    overhead_s: float = 0.0  # networks: the measured non-conv part of the forward pass

    @property
    def error(self) -> float:
        return self.lut_sum_s / self.measured_s - 1.0

    @property
    def error_with_overhead(self) -> float:
        return (self.lut_sum_s + self.overhead_s) / self.measured_s - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "lut_sum_s": self.lut_sum_s, "measured_s": self.measured_s,
                "error": round(self.error, 4), "overhead_s": self.overhead_s,
                "error_with_overhead": round(self.error_with_overhead, 4), "noisy": self.noisy}


@dataclass(frozen=True)
class AdditivityReport:
    layers: tuple[AdditivityCase, ...]
    networks: tuple[AdditivityCase, ...]
    note: str

    @property
    def max_layer_error(self) -> float | None:
        return max((abs(c.error) for c in self.layers), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [c.to_dict() for c in self.layers], "networks": [c.to_dict() for c in self.networks],
                "max_abs_layer_error": None if self.max_layer_error is None else round(self.max_layer_error, 4),
                "error": "lut_sum / measured - 1", "note": self.note}

    def lines(self) -> list[str]:
        out = []
        if self.layers:
            errors = ", ".join(f"{c.error:+.1%}" for c in self.layers)
            out.append(f"additivity, {len(self.layers)} sampled decomposed layers (LUT sum vs measured): {errors}")
        for case in self.networks:
            out.append(f"additivity, {case.what}: LUT sum {case.lut_sum_s * 1e3:.3f} ms vs measured forward "
                       f"{case.measured_s * 1e3:.3f} ms ({case.error:+.1%}); with the non-conv overhead "
                       f"{case.overhead_s * 1e3:.3f} ms: {case.error_with_overhead:+.1%}"
                       f"{' [noisy]' if case.noisy else ''}")
        if self.note:
            out.append(f"additivity: {self.note}")
        return out


def conv_module(layer: ConvLayer) -> "nn.Module":
    import torch

    return torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding,
                           layer.dilation, layer.groups, bias=False)


def candidate_module(candidate: Tucker2Candidate) -> "nn.Module":
    """The layers that run a candidate, in sequence (one conv for the original)."""
    import torch

    subconvs = candidate.subconvs
    return conv_module(subconvs[0]) if len(subconvs) == 1 else torch.nn.Sequential(*map(conv_module, subconvs))


def _sample(rows: list[tuple[Tucker2Candidate, LUTRow]], count: int) -> list[tuple[Tucker2Candidate, LUTRow]]:
    if len(rows) <= count:
        return rows
    return [rows[round(i * (len(rows) - 1) / (count - 1))] for i in range(count)] if count > 1 else rows[:1]


def _middle(candidates: tuple[Tucker2Candidate, ...]) -> Tucker2Candidate:
    return candidates[(len(candidates) - 1) // 2]


def additivity_check(lut: LUT, layers: tuple[LayerCandidates, ...], target: DeviceTarget, model: str | None,
                     settings: TimingSettings = TimingSettings(), sample: int = DEFAULT_SAMPLE,
                     timer: Timer | None = None) -> AdditivityReport:
    """Measure the sampled decomposed layers and (for a built-in ``model``) the original and one
    compressed network on ``target``, beside the LUT's sums."""
    import torch

    by_key = {(r.layer, r.form, r.r1, r.r2): r for r in lut.rows}

    def row(candidate: Tucker2Candidate) -> LUTRow | None:
        return by_key.get((candidate.layer.name, candidate.form.value, candidate.r1, candidate.r2))

    dtype = torch_dtype(target.dtype)

    def placed(module: "nn.Module", x_shape: tuple[int, ...]) -> tuple["nn.Module", "torch.Tensor"]:
        return (module.to(device=target.device, dtype=dtype).eval(),
                torch.randn(*x_shape, device=target.device, dtype=dtype))

    rows = [(c, r) for lc in layers for c in lc.candidates if (r := row(c)) is not None]
    layer_cases = []
    for candidate, lut_row in _sample(rows, sample):
        layer = candidate.layer
        module, x = placed(candidate_module(candidate), (layer.batch, layer.in_channels, *layer.input_size))
        timing = time_module(module, x, target, settings, timer)
        layer_cases.append(AdditivityCase(f"{layer.name} {candidate.label}", lut_row.latency_s, timing.median_s,
                                          timing.noisy or lut_row.noisy))
    from costmodels.network.zoo import available_models
    if model is None or model not in available_models():
        return AdditivityReport(tuple(layer_cases), (), "network forward passes need a built-in model (--model)")
    chosen = {lc.layer.name: (lc.original if not lc.candidates else _middle(lc.candidates)) for lc in layers}
    originals = {lc.layer.name: lc.original for lc in layers}
    network_cases = []
    for what, picks in (("original network", originals), ("compressed network (middle candidate per layer)",
                                                             chosen)):
        picked_rows = [row(c) for c in picks.values()]
        if any(r is None for r in picked_rows):
            continue   # a row failed to measure: no sum to compare
        module, x = placed(*_network(model, layers, picks))
        timing = time_module(module, x, target, settings, timer)
        overhead = time_module(_stub_convs(module, x), x, target, settings, timer)
        network_cases.append(AdditivityCase(what, sum(r.latency_s for r in picked_rows), timing.median_s,
                                            timing.noisy or overhead.noisy or any(r.noisy for r in picked_rows),
                                            overhead.median_s))
    return AdditivityReport(tuple(layer_cases), tuple(network_cases),
                            "forward passes have batch norm removed (folded at inference); ReLU, residual adds, "
                            "pooling, the classifier and module calls are not in the LUT's sum: the overhead is "
                            "the same forward pass with every conv stubbed out")


def _stub_convs(net: "nn.Module", x: "torch.Tensor") -> "nn.Module":
    """``net`` (changed in place) with every conv replaced by a stub that returns the output the conv
    gave on ``x``: what is left to time is everything but the convs."""
    import torch

    class ConvStub(torch.nn.Module):
        def __init__(self, out: torch.Tensor) -> None:
            super().__init__()
            self.out = out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out

    outputs: dict[str, torch.Tensor] = {}
    convs = [(name, m) for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out.clone()))
             for name, m in convs]
    with torch.inference_mode():
        net(x)
    for hook in hooks:
        hook.remove()
    for name, _ in convs:
        parent_name, _, attr = name.rpartition(".")
        setattr(net.get_submodule(parent_name) if parent_name else net, attr, ConvStub(outputs[name]))
    return net


def _network(model: str, layers: tuple[LayerCandidates, ...],
             picks: dict[str, Tucker2Candidate]) -> tuple["nn.Module", tuple[int, ...]]:
    """The built-in model with each layer replaced by its picked candidate and batch norm removed."""
    import torch

    from costmodels.network.zoo import build_model, model_input_shape

    net = build_model(model)
    for name, candidate in picks.items():
        if candidate.form is not Form.ORIGINAL:
            parent_name, _, attr = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, attr, candidate_module(candidate))
    for name, module in list(net.named_modules()):
        if isinstance(module, torch.nn.BatchNorm2d):
            parent_name, _, attr = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, attr, torch.nn.Identity())
    batch = layers[0].layer.batch if layers else 1
    return net, (batch, *model_input_shape(model)[1:])
