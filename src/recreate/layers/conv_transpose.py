"""torch.nn.ConvTranspose{1,2,3}d on a channels-last tensor, every argument included."""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


def _tuple(value, rank: int, name: str) -> tuple[int, ...]:
    t = (int(value),) * rank if isinstance(value, int) else tuple(int(v) for v in value)
    if len(t) != rank:
        raise ValueError(f"{name} must be an int or {rank} ints, got {value!r}")
    return t


@serializable
class ConvTranspose(keras.layers.Layer):
    """PyTorch's transposed convolution (the adjoint of Conv{n}d), channels-last.

    Unlike keras.layers.Conv*DTranspose it takes `groups`, any `output_padding` below
    max(stride, dilation), strides together with dilation, and torch's integer `padding`
    (cropped from both ends of the full output). Output size per spatial axis:
    `(n - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1`.

    `kernel` has shape (*kernel_size, filters // groups, in_channels): Keras's transposed-conv
    layout, which torch's weight (in, out // groups, *k) reaches with the same axis move as for
    groups=1. It runs as a stride-1 convolution of the zero-upsampled input with the flipped
    kernel: only stride-1 convolutions, which TensorFlow's CPU kernels compute correctly for
    every shape (its strided ones do not; see converters/conv.py).

    Example::

        y = ConvTranspose(8, (3, 3), strides=2, padding=1, output_padding=1, groups=2)(x)
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding=0, output_padding=0, dilation_rate=1,
                 groups: int = 1, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        rank = 1 if isinstance(kernel_size, int) else len(kernel_size)
        if rank not in (1, 2, 3):
            raise ValueError(f"kernel_size must have 1, 2 or 3 entries, got {kernel_size!r}")
        self.rank = rank
        self.filters = int(filters)
        self.kernel_size = _tuple(kernel_size, rank, "kernel_size")
        self.strides = _tuple(strides, rank, "strides")
        self.padding = _tuple(padding, rank, "padding")
        self.output_padding = _tuple(output_padding, rank, "output_padding")
        self.dilation_rate = _tuple(dilation_rate, rank, "dilation_rate")
        self.groups = int(groups)
        self.use_bias = bool(use_bias)
        if self.groups < 1 or self.filters % self.groups:
            raise ValueError(f"filters={self.filters} must be divisible by groups={self.groups}")
        if min(self.kernel_size + self.strides + self.dilation_rate) < 1:
            raise ValueError("kernel_size, strides and dilation_rate must be positive")
        if min(self.padding + self.output_padding) < 0:
            raise ValueError("padding and output_padding must be >= 0")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.groups:
            raise ValueError(f"input channels ({channels}) must be known and divisible by groups={self.groups}")
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, self.filters // self.groups, channels),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def _out_size(self, size, i):
        if size is None:
            return None
        k_eff = self.dilation_rate[i] * (self.kernel_size[i] - 1)
        return (size - 1) * self.strides[i] - 2 * self.padding[i] + k_eff + self.output_padding[i] + 1

    def compute_output_shape(self, input_shape):
        spatial = [self._out_size(s, i) for i, s in enumerate(input_shape[1:-1])]
        return (input_shape[0], *spatial, self.filters)

    def call(self, x):
        for i in range(self.rank):
            s, k_eff = self.strides[i], self.dilation_rate[i] * (self.kernel_size[i] - 1)
            x = _upsample_zeros(x, 1 + i, s)  # length n * s: (n - 1) * s + 1 plus s - 1 trailing zeros
            lo = k_eff - self.padding[i]
            hi = k_eff - self.padding[i] + self.output_padding[i] - (s - 1)
            x = _pad_or_crop(x, 1 + i, lo, hi)
        return self._conv(x)

    def _conv(self, x):
        k = ops.flip(self.kernel, axis=tuple(range(self.rank)))
        g = self.groups
        cin = self.kernel.shape[-1]
        out_g = self.filters // g
        # (*k, out/g, in) -> (*k, in/g, out): output channel j*out/g + o reads group j's inputs.
        k = ops.reshape(k, (*self.kernel_size, out_g, g, cin // g))
        k = ops.transpose(k, (*range(self.rank), self.rank + 2, self.rank + 1, self.rank))
        k = ops.reshape(k, (*self.kernel_size, cin // g, self.filters))
        y = ops.conv(x, k, strides=1, padding="valid", dilation_rate=self.dilation_rate)
        if self.bias is not None:
            y = y + self.bias
        return y

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": list(self.padding),
                "output_padding": list(self.output_padding), "dilation_rate": list(self.dilation_rate),
                "groups": self.groups, "use_bias": self.use_bias}


def _upsample_zeros(x, axis: int, s: int):
    """Insert s - 1 zeros after every element along `axis` (static or dynamic length)."""
    if s == 1:
        return x
    x = ops.expand_dims(x, axis + 1)
    widths = [(0, 0)] * len(x.shape)
    widths[axis + 1] = (0, s - 1)
    x = ops.pad(x, widths)
    shape = list(x.shape)
    dynamic = ops.shape(x)
    dims = [shape[j] if shape[j] is not None else dynamic[j] for j in range(len(shape))]
    merged = dims[axis] * s
    return ops.reshape(x, (-1, *dims[1:axis], merged, *dims[axis + 2:]))


def _pad_or_crop(x, axis: int, lo: int, hi: int):
    """Zero-pad (positive) or crop (negative) `lo` before and `hi` after along `axis`."""
    if lo < 0 or hi < 0:
        idx = [slice(None)] * len(x.shape)
        idx[axis] = slice(max(0, -lo), hi if hi < 0 else None)
        x = x[tuple(idx)]
    if lo > 0 or hi > 0:
        widths = [(0, 0)] * len(x.shape)
        widths[axis] = (max(0, lo), max(0, hi))
        x = ops.pad(x, widths)
    return x
