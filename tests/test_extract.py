"""Conv layers from an nn.Module (forward hooks) and from an ONNX file, checked against the zoo."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from costmodels.errors import CostModelError
from costmodels.network.extract import layers_from_module, layers_from_onnx
from costmodels.network.layers import ConvLayer
from costmodels.network.zoo import build_model, model_input_shape, zoo_layers


def _export(model: nn.Module, input_shape: tuple[int, ...], path: Path, **options) -> Path:
    # The TorchScript exporter takes well under a second for these models; the default dynamo
    # exporter takes about 6 s each. Its names come from the weight initializers, the route that
    # do_constant_folding=False exercises below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(model, (torch.zeros(input_shape),), str(path), dynamo=False,
                          input_names=["x"], **options)
    return path


class Assorted(nn.Module):
    """Every padding form, stride and dilation pairs, groups, and one conv module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.same = nn.Conv2d(3, 8, 3, padding="same", dilation=2)
        self.shared = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Sequential(
            nn.Conv2d(8, 16, (3, 5), stride=(2, 1), padding=(1, 2)),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding="valid", groups=4),
        )
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shared(self.bn(self.shared(self.same(x))))
        return self.head(self.body(x).mean((2, 3)))


ASSORTED_LAYERS = [
    ConvLayer("same", 3, 8, (3, 3), (1, 1), (2, 2), (2, 2), 1, (12, 10), (12, 10), 2),
    ConvLayer("shared", 8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, (12, 10), (12, 10), 2),
    ConvLayer("shared#2", 8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, (12, 10), (12, 10), 2),
    ConvLayer("body.0", 8, 16, (3, 5), (2, 1), (1, 2), (1, 1), 1, (12, 10), (6, 10), 2),
    ConvLayer("body.2", 16, 16, (3, 3), (1, 1), (0, 0), (1, 1), 4, (6, 10), (4, 8), 2),
]


# ------------------------------------------------------------------------------------ nn.Module


def test_module_layers_in_execution_order() -> None:
    assert layers_from_module(Assorted(), (2, 3, 12, 10)) == ASSORTED_LAYERS


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_module_same_padding_with_even_kernel_keeps_leading_pad() -> None:
    # torch pads an even 'same' kernel by 1 before and 2 after: the output keeps the input size
    (layer,) = layers_from_module(nn.Conv2d(4, 4, 4, padding="same"), (1, 4, 9, 9))
    assert (layer.padding, layer.input_size, layer.output_size) == ((1, 1), (9, 9), (9, 9))
    assert layer.name == "Conv2d"


def test_module_unbatched_input_is_one_image() -> None:
    (layer,) = layers_from_module(nn.Sequential(nn.Conv2d(3, 6, 1)), (3, 5, 7))
    assert (layer.name, layer.batch, layer.input_size) == ("0", 1, (5, 7))


def test_module_mode_and_statistics_are_left_alone() -> None:
    model = Assorted().train()
    model.body.eval()
    statistics = model.bn.state_dict()
    before = {key: value.clone() for key, value in statistics.items()}
    layers_from_module(model, (1, 3, 12, 10))
    assert model.training and model.bn.training and not model.body.training
    assert all(torch.equal(statistics[key], value) for key, value in before.items())


def test_module_hooks_are_removed() -> None:
    model = Assorted()
    layers_from_module(model, (1, 3, 12, 10))
    assert all(not m._forward_hooks for m in model.modules())


def test_module_without_convs() -> None:
    with pytest.raises(CostModelError, match="Sequential has no nn.Conv2d"):
        layers_from_module(nn.Sequential(nn.Linear(4, 4)), (1, 4))


def test_module_that_fails_on_the_shape() -> None:
    with pytest.raises(CostModelError, match=r"Assorted failed to run on input shape \(1, 4, 12, 10\)"):
        layers_from_module(Assorted(), (1, 4, 12, 10))


@pytest.mark.parametrize("shape", [(), (1, 0, 8, 8), (1, -3, 8, 8), (1, 3.0, 8, 8)])
def test_module_bad_input_shape(shape: tuple) -> None:
    with pytest.raises(CostModelError, match="input shape must be positive integers"):
        layers_from_module(Assorted(), shape)


# ------------------------------------------------------------------------------------ ONNX


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, bool], Path]:
    """Export a zoo model once per (name, options). The default folds each BN into its conv and
    so renames the weights; do_constant_folding=False keeps the torch parameter names."""
    folder = tmp_path_factory.mktemp("onnx")
    cache: dict[tuple[str, bool], Path] = {}

    def get(name: str, fold: bool) -> Path:
        if (name, fold) not in cache:
            torch.manual_seed(0)
            cache[name, fold] = _export(build_model(name), model_input_shape(name),
                                        folder / f"{name}-{fold}.onnx", do_constant_folding=fold)
        return cache[name, fold]

    return get


@pytest.mark.parametrize("name, fold", [
    ("resnet20", True), ("resnet20", False),
    ("mobilenetv2", True), ("mobilenetv2", False),
    ("resnet18", True),
])
def test_onnx_matches_zoo(name: str, fold: bool, exported: Callable[[str, bool], Path]) -> None:
    path = exported(name, fold)
    weights = {t.name for t in onnx.load(str(path), load_external_data=False).graph.initializer}
    # both naming routes are really taken: scope names when BN was folded, weight names otherwise
    assert (f"{zoo_layers(name)[0].name}.weight" in weights) is not fold
    assert layers_from_onnx(path) == zoo_layers(name)


def test_onnx_dynamic_batch_counts_as_one(tmp_path: Path) -> None:
    path = _export(build_model("resnet20"), (1, 3, 32, 32), tmp_path / "dynamic.onnx",
                   dynamic_axes={"x": {0: "N"}})
    x = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert x.dim_param == "N"
    assert layers_from_onnx(path) == zoo_layers("resnet20")


def test_onnx_matches_module_for_assorted_convs(tmp_path: Path) -> None:
    model = Assorted().eval()
    path = _export(model, (2, 3, 12, 10), tmp_path / "assorted.onnx")
    assert layers_from_onnx(path) == layers_from_module(model, (2, 3, 12, 10)) == ASSORTED_LAYERS


def _conv_file(path: Path, x_shape: list, w_shape: list[int], before: Sequence[onnx.NodeProto] = (),
               **attrs) -> Path:
    """A one-Conv ONNX file built by hand, for forms torch never exports."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = helper.make_tensor("w", TensorProto.FLOAT, w_shape, [0.0] * math.prod(w_shape))
    conv_input = before[-1].output[0] if before else "x"
    nodes = [*before, helper.make_node("Conv", [conv_input, "w"], ["y"], name="the_conv", **attrs)]
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(n.domain, 1) for n in before)]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=opsets), str(path))
    return path


@pytest.mark.parametrize("attrs, padding, output_size", [
    # 9x10 input, 4x3 kernel, stride 2: totals of 3 (H) and 1 (W) padding pixels
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (1, 0), (5, 5)),
    ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, (2, 1), (5, 5)),
    ({"auto_pad": "VALID", "strides": [2, 2]}, (0, 0), (3, 4)),
    # pads are (H begin, W begin, H end, W end); the leading ones are kept
    ({"pads": [1, 0, 2, 1]}, (1, 0), (9, 9)),
])
def test_onnx_padding_forms(tmp_path: Path, attrs: dict, padding: tuple[int, int],
                            output_size: tuple[int, int]) -> None:
    path = _conv_file(tmp_path / "conv.onnx", [3, 4, 9, 10], [8, 4, 4, 3], **attrs)
    (layer,) = layers_from_onnx(path)
    assert (layer.name, layer.batch, layer.padding, layer.output_size) == ("the_conv", 3, padding, output_size)


def test_onnx_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.onnx"
    with pytest.raises(CostModelError, match=f"{path}: no such file"):
        layers_from_onnx(path)


@pytest.mark.parametrize("content", [b"this is not an ONNX file\n", b""])
def test_onnx_broken_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(CostModelError, match=f"{path}: not an ONNX model"):
        layers_from_onnx(path)


def test_onnx_without_convs(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(tmp_path / "relu.onnx"))
    with pytest.raises(CostModelError, match="relu.onnx: the graph has no Conv nodes"):
        layers_from_onnx(tmp_path / "relu.onnx")


def test_onnx_conv_after_an_unknown_op(tmp_path: Path) -> None:
    custom = helper.make_node("Mystery", ["x"], ["z"], domain="example.custom")
    path = _conv_file(tmp_path / "custom.onnx", [1, 4, 9, 9], [8, 4, 3, 3], before=[custom])
    with pytest.raises(CostModelError, match="custom.onnx: Conv node 'the_conv': the shape of 'z' cannot be inferred"):
        layers_from_onnx(path)


@pytest.mark.parametrize("x_shape, w_shape, problem", [
    ([1, 4, "H", 9], [8, 4, 3, 3], "the shape of 'x' is not fully known"),
    ([1, 4, 9], [8, 4, 3], r"'x' has shape \[1, 4, 9\]; only 2-D convolutions"),
])
def test_onnx_unsupported_shapes(tmp_path: Path, x_shape: list, w_shape: list[int], problem: str) -> None:
    path = _conv_file(tmp_path / "conv.onnx", x_shape, w_shape)
    with pytest.raises(CostModelError, match=f"conv.onnx: Conv node 'the_conv': {problem}"):
        layers_from_onnx(path)
