"""Built-in models: ResNet-18 and MobileNetV2 (ImageNet, 224x224), ResNet-20 and VGG-16 (CIFAR-10, 32x32),
and ``digits-cnn`` (scikit-learn's 8x8 digits, the rank search's offline demo).

Each model exists twice, from one shared configuration:

* as a ``torch.nn`` module (``build_model``), written here because torchvision is not installable;
  attribute names follow torchvision so that layers are called ``layer3.0.conv2``,
  ``layer2.0.downsample.0`` or ``features.3.conv.0.0``;
* as a plain shape walk (``zoo_layers``) that yields the same conv layers without torch. Every CLI
  command lists a model's layers, and importing torch alone takes about 2.5 s, far over the 0.3 s
  that listing should cost. ``tests/test_zoo.py`` checks that the walk and a forward-hook trace of
  the module agree layer for layer (names, shapes, strides, padding, groups).

Model choices:

* ``resnet18``, ``mobilenetv2``: torchvision's ``resnet18`` and ``mobilenet_v2`` (width 1.0), 1000 classes.
* ``resnet20``: He et al. 2016, section 4.2 (3 stages of 16/32/64 channels, 3 basic blocks each).
  The shortcut that changes shape is a 1x1 conv + BN ("option B" of the paper, as torchvision's
  ResNets do) rather than the parameter-free zero-padding "option A", so the two downsample convs
  ``layer2.0.downsample.0`` and ``layer3.0.downsample.0`` are layers to price and compress.
* ``vgg16``: the 13 3x3 convs of VGG-16 with BN (torchvision's ``vgg16_bn`` feature layout), and
  the small CIFAR classifier of the common CIFAR VGG (one Linear 512 -> 10 on the 1x1x512 map).
* ``digits-cnn``: a small VGG-style net for 1x8x8 digits (32, 32, pool, 64, 64, pool, 128, pool, then
  Linear 128 -> 10): four 3x3 convs after the first carry rank candidates, and it trains in seconds on
  two cores, so ``costmodel search`` can be shown end to end on data that ships with scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from costmodels.errors import UnknownNameError
from costmodels.network.layers import ConvLayer, conv_output_size

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ResNetConfig:
    stem_width: int
    stem_kernel: int
    stem_stride: int
    stem_max_pool: bool
    stages: tuple[tuple[int, int, int], ...]  # (width, basic blocks, stride of the first block)
    num_classes: int


@dataclass(frozen=True)
class MobileNetV2Config:
    stem_width: int
    # (expansion t, output channels c, repeats n, stride s of the first repeat), MobileNetV2 Table 2
    blocks: tuple[tuple[int, int, int, int], ...]
    last_width: int
    num_classes: int


@dataclass(frozen=True)
class VGGConfig:
    features: tuple[int | str, ...]  # conv widths, "M" for a 2x2 max pool
    num_classes: int
    in_channels: int = 3


ModelConfig = ResNetConfig | MobileNetV2Config | VGGConfig


@dataclass(frozen=True)
class ZooModel:
    name: str
    dataset: str
    input_shape: tuple[int, int, int, int]
    config: ModelConfig


MODELS: dict[str, ZooModel] = {
    model.name: model
    for model in (
        ZooModel("resnet18", "imagenet", (1, 3, 224, 224), ResNetConfig(
            stem_width=64, stem_kernel=7, stem_stride=2, stem_max_pool=True,
            stages=((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)), num_classes=1000)),
        ZooModel("mobilenetv2", "imagenet", (1, 3, 224, 224), MobileNetV2Config(
            stem_width=32,
            blocks=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                    (6, 160, 3, 2), (6, 320, 1, 1)),
            last_width=1280, num_classes=1000)),
        ZooModel("resnet20", "cifar10", (1, 3, 32, 32), ResNetConfig(
            stem_width=16, stem_kernel=3, stem_stride=1, stem_max_pool=False,
            stages=((16, 3, 1), (32, 3, 2), (64, 3, 2)), num_classes=10)),
        ZooModel("vgg16", "cifar10", (1, 3, 32, 32), VGGConfig(
            features=(64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                      512, 512, 512, "M"),
            num_classes=10)),
        ZooModel("digits-cnn", "digits", (1, 1, 8, 8), VGGConfig(
            features=(32, 32, "M", 64, 64, "M", 128, "M"), num_classes=10, in_channels=1)),
    )
}


def available_models() -> list[str]:
    return sorted(MODELS)


def _model(name: str) -> ZooModel:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownNameError("model", name, available_models()) from None


def model_input_shape(name: str) -> tuple[int, int, int, int]:
    """The NCHW input the model is priced at, batch 1."""
    return _model(name).input_shape


def zoo_layers(name: str, batch: int = 1) -> list[ConvLayer]:
    """The conv layers of a built-in model in execution order, without importing torch."""
    return list(_zoo_layers(name, batch))


def build_model(name: str) -> nn.Module:
    """A randomly initialised torch module of a built-in model, in eval mode."""
    model = _model(name)
    return _torch_model(model.config).eval()


# ---------------------------------------------------------------------------------------------
# Shape walk. It mirrors the forward passes below: same layer names, same order of execution.


@dataclass(frozen=True)
class _Activation:
    channels: int
    size: tuple[int, int]


class _Walk:
    def __init__(self, batch: int):
        self.batch = batch
        self.layers: list[ConvLayer] = []

    def conv(self, name: str, x: _Activation, out_channels: int, kernel: int, stride: int = 1,
             padding: int = 0, groups: int = 1) -> _Activation:
        layer = ConvLayer.from_input(name, x.channels, out_channels, kernel, x.size, stride, padding,
                                     groups=groups, batch=self.batch)
        self.layers.append(layer)
        return _Activation(out_channels, layer.output_size)


def _pool(x: _Activation, kernel: int, stride: int, padding: int = 0) -> _Activation:
    height, width = (conv_output_size(s, kernel, stride, padding, 1) for s in x.size)
    return _Activation(x.channels, (height, width))


def _walk_resnet(walk: _Walk, x: _Activation, config: ResNetConfig) -> None:
    x = walk.conv("conv1", x, config.stem_width, config.stem_kernel, config.stem_stride,
                  config.stem_kernel // 2)
    if config.stem_max_pool:
        x = _pool(x, 3, 2, 1)
    for stage, (width, blocks, first_stride) in enumerate(config.stages, start=1):
        for block in range(blocks):
            prefix, stride = f"layer{stage}.{block}", first_stride if block == 0 else 1
            y = walk.conv(f"{prefix}.conv1", x, width, 3, stride, 1)
            y = walk.conv(f"{prefix}.conv2", y, width, 3, 1, 1)
            if stride != 1 or x.channels != width:
                walk.conv(f"{prefix}.downsample.0", x, width, 1, stride)
            x = y


def _walk_mobilenetv2(walk: _Walk, x: _Activation, config: MobileNetV2Config) -> None:
    x = walk.conv("features.0.0", x, config.stem_width, 3, 2, 1)
    index = 1
    for expansion, out_channels, repeats, first_stride in config.blocks:
        for repeat in range(repeats):
            prefix, hidden = f"features.{index}.conv", x.channels * expansion
            y, part = x, 0
            if expansion != 1:
                y = walk.conv(f"{prefix}.0.0", y, hidden, 1)
                part = 1
            y = walk.conv(f"{prefix}.{part}.0", y, hidden, 3, first_stride if repeat == 0 else 1, 1,
                          groups=hidden)
            x = walk.conv(f"{prefix}.{part + 1}", y, out_channels, 1)
            index += 1
    walk.conv(f"features.{index}.0", x, config.last_width, 1)


def _walk_vgg(walk: _Walk, x: _Activation, config: VGGConfig) -> None:
    index = 0
    for item in config.features:
        if item == "M":
            x = _pool(x, 2, 2)
            index += 1
        else:
            x = walk.conv(f"features.{index}", x, int(item), 3, 1, 1)
            index += 3  # Conv2d, BatchNorm2d, ReLU


@lru_cache(maxsize=64)  # bounded: batch is any integer a user passes
def _zoo_layers(name: str, batch: int) -> tuple[ConvLayer, ...]:
    model = _model(name)
    _, channels, height, width = model.input_shape
    walk, x, config = _Walk(batch), _Activation(channels, (height, width)), model.config
    if isinstance(config, ResNetConfig):
        _walk_resnet(walk, x, config)
    elif isinstance(config, MobileNetV2Config):
        _walk_mobilenetv2(walk, x, config)
    else:
        _walk_vgg(walk, x, config)
    return tuple(walk.layers)


# ---------------------------------------------------------------------------------------------
# torch.nn definitions. They live in a function so that importing this module stays torch-free.


def _torch_model(config: ModelConfig) -> nn.Module:
    resnet, mobilenetv2, vgg = _torch_classes()
    if isinstance(config, ResNetConfig):
        return resnet(config)
    if isinstance(config, MobileNetV2Config):
        return mobilenetv2(config)
    return vgg(config)


@cache
def _torch_classes() -> tuple[Callable[[ResNetConfig], nn.Module], Callable[[MobileNetV2Config], nn.Module],
                              Callable[[VGGConfig], nn.Module]]:
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, in_channels: int, width: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.downsample: nn.Module | None = None
            if stride != 1 or in_channels != width:
                self.downsample = nn.Sequential(nn.Conv2d(in_channels, width, 1, stride, bias=False),
                                                nn.BatchNorm2d(width))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class ResNet(nn.Module):
        def __init__(self, config: ResNetConfig):
            super().__init__()
            width = config.stem_width
            self.conv1 = nn.Conv2d(3, width, config.stem_kernel, config.stem_stride,
                                   config.stem_kernel // 2, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1) if config.stem_max_pool else nn.Identity()
            for stage, (stage_width, blocks, stride) in enumerate(config.stages, start=1):
                layers = []
                for block in range(blocks):
                    layers.append(BasicBlock(width, stage_width, stride if block == 0 else 1))
                    width = stage_width
                setattr(self, f"layer{stage}", nn.Sequential(*layers))
            self.stages = len(config.stages)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(width, config.num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            for stage in range(1, self.stages + 1):
                x = getattr(self, f"layer{stage}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    def conv_bn_relu6(in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                      groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
            super().__init__()
            hidden = in_channels * expansion
            self.use_res_connect = stride == 1 and in_channels == out_channels
            layers: list[nn.Module] = []
            if expansion != 1:
                layers.append(conv_bn_relu6(in_channels, hidden, 1))
            layers += [
                conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                nn.Conv2d(hidden, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self, config: MobileNetV2Config):
            super().__init__()
            width = config.stem_width
            features: list[nn.Module] = [conv_bn_relu6(3, width, 3, 2)]
            for expansion, out_channels, repeats, stride in config.blocks:
                for repeat in range(repeats):
                    features.append(InvertedResidual(width, out_channels, stride if repeat == 0 else 1,
                                                     expansion))
                    width = out_channels
            features.append(conv_bn_relu6(width, config.last_width, 1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(config.last_width, config.num_classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(torch.flatten(x, 1))

    class VGG(nn.Module):
        def __init__(self, config: VGGConfig):
            super().__init__()
            layers: list[nn.Module] = []
            channels = config.in_channels
            for item in config.features:
                if item == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.BatchNorm2d(int(item)),
                               nn.ReLU(inplace=True)]
                    channels = int(item)
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Linear(channels, config.num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.features(x), 1))

    return ResNet, MobileNetV2, VGG
