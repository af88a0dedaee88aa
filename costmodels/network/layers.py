"""The conv layer record every later stage starts from."""

from __future__ import annotations

from dataclasses import dataclass


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class ConvLayer:
    """One 2-D convolution with its real shapes (NCHW, batch included).

    ``kernel``, ``stride``, ``padding`` and ``dilation`` are (height, width) pairs;
    ``input_size`` and ``output_size`` are (H, W).
    """

    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    input_size: tuple[int, int] = (1, 1)
    output_size: tuple[int, int] = (1, 1)
    batch: int = 1

    def __post_init__(self) -> None:
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"layer {self.name}: groups={self.groups} must divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )
        for value, what in ((self.in_channels, "in_channels"), (self.out_channels, "out_channels"),
                            (self.groups, "groups"), (self.batch, "batch")):
            if value < 1:
                raise ValueError(f"layer {self.name}: {what} must be >= 1, got {value}")
        for pair, what, least in ((self.kernel, "kernel", 1), (self.stride, "stride", 1), (self.padding, "padding", 0),
                                  (self.dilation, "dilation", 1), (self.input_size, "input size", 1)):
            if min(pair) < least:
                raise ValueError(f"layer {self.name}: {what} {pair[0]}x{pair[1]} must be >= {least}")
        if min(self.output_size) < 1:
            raise ValueError(f"layer {self.name}: output size {self.output_size[0]}x{self.output_size[1]}: the "
                             f"kernel {self.kernel[0]}x{self.kernel[1]} (dilation {self.dilation[0]}x"
                             f"{self.dilation[1]}) is larger than the padded input {self.input_size[0]}x"
                             f"{self.input_size[1]} (padding {self.padding[0]}x{self.padding[1]})")

    @classmethod
    def from_input(cls, name: str, in_channels: int, out_channels: int, kernel: int | tuple[int, int],
                   input_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                   padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                   groups: int = 1, batch: int = 1) -> "ConvLayer":
        """Build a layer from its input size, deriving the output size as PyTorch does."""
        k, s, p, d, hw = (_pair(v) for v in (kernel, stride, padding, dilation, input_size))
        out = tuple(conv_output_size(hw[i], k[i], s[i], p[i], d[i]) for i in range(2))
        return cls(name, in_channels, out_channels, k, s, p, d, groups, hw, out, batch)  # type: ignore[arg-type]

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def macs(self) -> int:
        oh, ow = self.output_size
        kh, kw = self.kernel
        return self.batch * oh * ow * self.out_channels * (self.in_channels // self.groups) * kh * kw

    @property
    def params(self) -> int:
        """Weight count (bias excluded: Tucker-2 leaves it unchanged)."""
        kh, kw = self.kernel
        return self.out_channels * (self.in_channels // self.groups) * kh * kw


def _pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    a, b = value
    return (int(a), int(b))
