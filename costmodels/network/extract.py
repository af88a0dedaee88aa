"""Conv layers of a user's model: a ``torch.nn.Module`` traced on an input shape, or an ONNX file.

torch and onnx are imported inside the functions: the CLI imports this module for every command,
and importing torch alone takes seconds.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from costmodels.errors import CostModelError
from costmodels.network.layers import ConvLayer
from costmodels.user_files import read_user_bytes

MAX_ONNX_BYTES = 2 * 1024 ** 3   # protobuf's own limit on one message

if TYPE_CHECKING:
    import onnx
    import torch


def layers_from_module(module: torch.nn.Module, input_shape: tuple[int, ...]) -> list[ConvLayer]:
    """Every ``nn.Conv2d`` call of one forward pass on zeros of ``input_shape``, in execution order.

    Names come from ``named_modules()``; a conv module called more than once gets one layer per
    call, the later ones named ``name#2``, ``name#3``... The module runs in eval mode (so BN running
    statistics stay untouched and batch-1 BN works) and is put back in its own mode afterwards.
    """
    import torch

    if not input_shape or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in input_shape):
        raise CostModelError(f"input shape must be positive integers, got {input_shape!r}")
    convs: dict[torch.nn.Module, str] = {
        m: name or type(m).__name__ for name, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)}
    if not convs:
        raise CostModelError(f"{type(module).__name__} has no nn.Conv2d layers")

    calls: list[tuple[str, torch.nn.Conv2d, tuple[int, ...], tuple[int, ...]]] = []

    def record(conv: torch.nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        calls.append((convs[conv], cast("torch.nn.Conv2d", conv), tuple(inputs[0].shape), tuple(output.shape)))

    handles = [conv.register_forward_hook(record) for conv in convs]
    modes = {m: m.training for m in module.modules()}
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(input_shape, device=device, dtype=dtype))
    except Exception as exc:  # any failure of user code is a bad model/shape pair, not our bug
        raise CostModelError(
            f"{type(module).__name__} failed to run on input shape {tuple(input_shape)}: "
            f"{type(exc).__name__}: {exc}") from exc
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training

    names = _unique([name for name, *_ in calls])
    return [_torch_layer(name, conv, in_shape, out_shape)
            for name, (_, conv, in_shape, out_shape) in zip(names, calls)]


def _torch_layer(name: str, conv: torch.nn.Conv2d, in_shape: tuple[int, ...],
                 out_shape: tuple[int, ...]) -> ConvLayer:
    kernel, stride, dilation = (_pair(list(v)) for v in (conv.kernel_size, conv.stride, conv.dilation))
    if conv.padding == "same":
        # torch puts the odd pixel of a 'same' pad at the end; ConvLayer keeps the leading pad
        padding = _pair([d * (k - 1) // 2 for d, k in zip(dilation, kernel)])
    elif isinstance(conv.padding, str):  # 'valid', the only other string torch accepts
        padding = (0, 0)
    else:
        padding = _pair(list(conv.padding))
    # an unbatched (C, H, W) input is one image
    batch = in_shape[0] if len(in_shape) == 4 else 1
    return ConvLayer(name, conv.in_channels, conv.out_channels, kernel, stride, padding, dilation,
                     conv.groups, _pair(list(in_shape[-2:])), _pair(list(out_shape[-2:])), batch)


def _unique(names: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique


# ---------------------------------------------------------------------------------------------
# ONNX


def layers_from_onnx(path: str | Path) -> list[ConvLayer]:
    """Every top-level ``Conv`` node of an ONNX file, in graph order, with shapes from ONNX shape
    inference.

    The padding kept is the leading (top, left) pad; the output size is the inferred one, so an
    asymmetric pad is still priced right. A symbolic batch dimension (``dynamic_axes``) counts as
    batch 1; symbolic spatial or channel dimensions are an error.

    Names match ``layers_from_module`` for a torch export: the weight initializer's name without
    ``.weight`` (the dynamo exporter, or the TorchScript one when BN was not folded into the conv),
    else the module path in the TorchScript exporter's node name (``/layer1/layer1.0/conv1/Conv``),
    else the node name.
    """
    import onnx

    path = Path(path)
    data = read_user_bytes(path, MAX_ONNX_BYTES)
    try:
        # weights are not needed, only their shapes: external weight files are never opened
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise CostModelError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.graph.node:
        raise CostModelError(f"{path}: not an ONNX model (no graph nodes)")
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise CostModelError(f"{path}: ONNX shape inference failed ({type(exc).__name__}: {exc})") from exc

    shapes = _known_shapes(model.graph)
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv" and node.domain in ("", "ai.onnx")]
    if not convs:
        raise CostModelError(f"{path}: the graph has no Conv nodes")
    names = _unique([_onnx_layer_name(node, index, initializers) for index, node in enumerate(convs)])
    return [_onnx_layer(path, name, node, shapes) for name, node in zip(names, convs)]


def _known_shapes(graph: onnx.GraphProto) -> dict[str, list[int | None]]:
    """Tensor name -> dims, None for a symbolic or unknown dim."""
    shapes: dict[str, list[int | None]] = {t.name: list(t.dims) for t in graph.initializer}
    for info in (*graph.input, *graph.value_info, *graph.output):
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    return shapes


def _onnx_layer_name(node: onnx.NodeProto, index: int, initializers: dict[str, onnx.TensorProto]) -> str:
    weight = node.input[1] if len(node.input) > 1 else ""
    if weight in initializers and weight.endswith(".weight"):
        return weight[: -len(".weight")]
    scope = _torchscript_module_path(node.name)
    return scope or node.name or f"Conv_{index}"


def _torchscript_module_path(node_name: str) -> str:
    """``/layer1/layer1.0/downsample/downsample.0/Conv`` -> ``layer1.0.downsample.0``.

    The TorchScript exporter names a node by the scopes of the modules it ran in, ending with the
    op; a child of a container shows as ``<container scope>.<index>``, any other child by its
    attribute name.
    """
    if not node_name.startswith("/"):
        return ""
    parts: list[str] = []
    previous = None
    for scope in node_name.split("/")[1:-1]:
        if previous is not None and scope.startswith(previous + "."):
            parts.append(scope[len(previous) + 1:])
        else:
            parts.append(scope)
        previous = scope
    return ".".join(parts)


def _onnx_layer(path: Path, name: str, node: onnx.NodeProto, shapes: dict[str, list[int | None]]) -> ConvLayer:
    import onnx

    def fail(problem: str) -> CostModelError:
        return CostModelError(f"{path}: Conv node '{node.name or name}': {problem}")

    def dims(tensor: str) -> tuple[int | None, list[int]]:
        """(leading dim, None when symbolic; the other three dims, all known)."""
        shape = shapes.get(tensor)
        if shape is None:
            raise fail(f"the shape of '{tensor}' cannot be inferred")
        if len(shape) != 4:
            raise fail(f"'{tensor}' has shape {shape}; only 2-D convolutions (4-D tensors) are supported")
        rest = [d for d in shape[1:] if d is not None]
        if len(rest) != 3:
            raise fail(f"the shape of '{tensor}' is not fully known: {shape}")
        return shape[0], rest

    if len(node.input) < 2:
        raise fail("has no weight input")
    batch, (in_channels, *in_size) = dims(node.input[0])
    out_channels, (weight_channels, *weight_kernel) = dims(node.input[1])
    _, (_, *out_size) = dims(node.output[0])

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    groups = int(attrs.get("group", 1))
    kernel = [int(k) for k in attrs.get("kernel_shape", weight_kernel)]
    stride = [int(s) for s in attrs.get("strides", (1, 1))]
    dilation = [int(d) for d in attrs.get("dilations", (1, 1))]
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max((o - 1) * s + (k - 1) * d + 1 - i, 0)
                  for i, o, k, s, d in zip(in_size, out_size, kernel, stride, dilation)]
        # SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the beginning
        padding = [t // 2 if auto_pad == "SAME_UPPER" else (t + 1) // 2 for t in totals]
    elif auto_pad == "VALID":
        padding = [0, 0]
    else:
        padding = [int(p) for p in attrs.get("pads", (0, 0, 0, 0))[:2]]
    if out_channels is None:
        raise fail(f"the weight '{node.input[1]}' has no known output-channel count")
    if in_channels != weight_channels * groups:
        raise fail(f"input has {in_channels} channels but the weight with {weight_channels} channels "
                   f"per group and group={groups} expects {weight_channels * groups}")
    try:
        return ConvLayer(name, in_channels, out_channels, _pair(kernel), _pair(stride), _pair(padding),
                         _pair(dilation), groups, _pair(in_size), _pair(out_size), 1 if batch is None else batch)
    except ValueError as exc:
        raise fail(str(exc)) from exc


def _pair(values: list[int]) -> tuple[int, int]:
    first, second = values
    return (first, second)
