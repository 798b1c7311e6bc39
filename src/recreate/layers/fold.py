"""torch.nn.Unfold (im2col) and torch.nn.Fold (col2im) with every argument.

The blocks are laid out as torch lays them out: (N, C*kh*kw, L), row c*kh*kw + ki*kw + kj
(channel slowest), column oh*out_w + ow. Spatial sizes must be static (they are in
converted models). Unfold is one gather (exact); Fold is one segment sum (overlaps add up).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ._common import serializable


def pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)


def blocks(size: tuple[int, int], kernel, dilation, padding, stride) -> tuple[int, int]:
    """Number of sliding-block positions along each axis (torch's formula)."""
    return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                 for s, k, d, p, st in zip(size, kernel, dilation, padding, stride))


def block_index(size, kernel, dilation, padding, stride) -> np.ndarray:
    """(kh*kw, L) flat positions in the padded (H+2p, W+2p) grid of every block element."""
    oh, ow = blocks(size, kernel, dilation, padding, stride)
    wp = size[1] + 2 * padding[1]
    ki, kj = np.meshgrid(np.arange(kernel[0]), np.arange(kernel[1]), indexing="ij")
    bh, bw = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
    rows = ki.reshape(-1, 1) * dilation[0] + bh.reshape(1, -1) * stride[0]
    cols = kj.reshape(-1, 1) * dilation[1] + bw.reshape(1, -1) * stride[1]
    return rows * wp + cols


class _Blocks(keras.layers.Layer):
    def __init__(self, kernel_size, dilation=1, padding=0, stride=1, channels_last: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = pair(kernel_size)
        self.dilation = pair(dilation)
        self.padding = pair(padding)
        self.stride = pair(stride)
        self.channels_last = bool(channels_last)

    def _args(self):
        return self.kernel_size, self.dilation, self.padding, self.stride

    def get_config(self):
        return {**super().get_config(), "kernel_size": list(self.kernel_size), "dilation": list(self.dilation),
                "padding": list(self.padding), "stride": list(self.stride), "channels_last": self.channels_last}


@serializable
class Unfold(_Blocks):
    """`torch.nn.Unfold(kernel_size, dilation, padding, stride)`: a (N, H, W, C) tensor
    (channels_last=True) or (N, C, H, W) -> (N, C*kh*kw, L) in torch's order."""

    def _hw(self, shape):
        if len(shape) != 4:
            raise ValueError(f"Unfold needs a batched 4-D tensor, got shape {tuple(shape)}")
        h, w = (shape[1], shape[2]) if self.channels_last else (shape[2], shape[3])
        c = shape[3] if self.channels_last else shape[1]
        return h, w, c

    def compute_output_shape(self, input_shape):
        h, w, c = self._hw(input_shape)
        k = self.kernel_size[0] * self.kernel_size[1]
        oh, ow = blocks((h, w), *self._args())
        return (input_shape[0], None if c is None else c * k, oh * ow)

    def call(self, x):
        h, w, c = self._hw(x.shape)
        if h is None or w is None or c is None:
            raise ValueError(f"Unfold needs static spatial and channel sizes, got shape {x.shape}")
        if not self.channels_last:
            x = ops.transpose(x, (0, 2, 3, 1))
        ph, pw = self.padding
        if ph or pw:
            x = ops.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        idx = block_index((h, w), *self._args())  # (K, L)
        k, n_blocks = idx.shape
        flat = ops.reshape(x, (-1, (h + 2 * ph) * (w + 2 * pw), c))
        patches = ops.take(flat, ops.convert_to_tensor(idx, dtype="int32"), axis=1)  # (N, K, L, C)
        patches = ops.transpose(patches, (0, 3, 1, 2))  # (N, C, K, L)
        return ops.reshape(patches, (-1, c * k, n_blocks))


@serializable
class Fold(_Blocks):
    """`torch.nn.Fold(output_size, kernel_size, dilation, padding, stride)`: (N, C*kh*kw, L)
    in torch's order -> (N, H, W, C) (channels_last=True) or (N, C, H, W); overlapping
    block elements are summed, positions no block covers are zero."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1, channels_last: bool = True,
                 **kwargs):
        super().__init__(kernel_size, dilation, padding, stride, channels_last, **kwargs)
        self.output_size = pair(output_size)

    def _channels(self, shape):
        if len(shape) != 3:
            raise ValueError(f"Fold needs a batched 3-D (N, C*kh*kw, L) tensor, got shape {tuple(shape)}")
        k = self.kernel_size[0] * self.kernel_size[1]
        ck, n_blocks = shape[1], shape[2]
        oh, ow = blocks(self.output_size, *self._args())
        if ck is not None and ck % k:
            raise ValueError(f"Fold: {ck} rows is not a multiple of kernel size {k}")
        if n_blocks is not None and n_blocks != oh * ow:
            raise ValueError(f"Fold: {n_blocks} blocks given, output_size {self.output_size} and the other "
                             f"arguments give {oh * ow}")
        return None if ck is None else ck // k

    def compute_output_shape(self, input_shape):
        c = self._channels(input_shape)
        h, w = self.output_size
        return (input_shape[0], h, w, c) if self.channels_last else (input_shape[0], c, h, w)

    def call(self, x):
        c = self._channels(x.shape)
        if c is None:
            raise ValueError(f"Fold needs a static channel size, got shape {x.shape}")
        h, w = self.output_size
        ph, pw = self.padding
        hp, wp = h + 2 * ph, w + 2 * pw
        idx = block_index((h, w), *self._args()).reshape(-1)  # (K*L,), k slowest like torch's rows
        y = ops.reshape(x, (-1, c, idx.shape[0]))
        y = ops.transpose(y, (2, 0, 1))  # (K*L, N, C)
        y = ops.segment_sum(y, ops.convert_to_tensor(idx, dtype="int32"), num_segments=hp * wp)
        y = ops.reshape(y, (hp, wp, -1, c))
        y = ops.transpose(y, (2, 0, 1, 3))[:, ph:ph + h, pw:pw + w, :]
        return y if self.channels_last else ops.transpose(y, (0, 3, 1, 2))

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size)}
