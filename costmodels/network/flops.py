"""The FLOPs convention of HALOC's tables, beside the conv MACs that the LUT prices.

The paper's ResNet-18 (1819.07M) and MobileNetV2 (314.19M) count conv and FC multiply-accumulates plus 2
operations per BatchNorm element and 1 per element entering the global average pool (ReLU, max pool,
residual adds and biases are free): the eval-mode rule of older thop releases. Low-rank compression
changes only the conv MACs, so a compressed network's paper-FLOPs are its conv MACs plus this overhead.
"""

from __future__ import annotations

from costmodels.network.zoo import build_model, model_input_shape, zoo_layers


def paper_flops_overhead(name: str) -> int:
    """FC MACs + 2 x BatchNorm elements + global-pool elements of a built-in model at batch 1."""
    import torch

    model = build_model(name)
    bn_elements = 0

    def count(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal bn_elements
        bn_elements += inputs[0].numel()

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(model_input_shape(name)))
    finally:
        for handle in handles:
            handle.remove()
    linear = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    last = zoo_layers(name)[-1]     # the global average pool reads the last conv's output (BN/ReLU keep it)
    return linear + 2 * bn_elements + last.out_channels * last.output_size[0] * last.output_size[1]


def paper_flops(name: str) -> int:
    """A built-in model's FLOPs counted the paper's way."""
    return sum(layer.macs for layer in zoo_layers(name)) + paper_flops_overhead(name)
