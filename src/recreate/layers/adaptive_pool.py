"""Adaptive pooling with PyTorch's bins, for every input/output size.

Bin i of n over length L is [floor(i*L/n), ceil((i+1)*L/n)). Keras's own
AdaptiveMaxPooling layers (3.15) pool with a window of ceil(L/n)+1 and crash the process
(SIGFPE in TF's max_pool) when that window is longer than the input (output size 1, or an
output as large as the input); recreate's converter uses Keras's AdaptiveAveragePooling,
which survives those sizes and matches, and this layer for max pooling.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ._common import serializable
from .max_pool import separable_max, values_and_indices_spec


def torch_bins(length: int, n: int) -> list[tuple[int, int]]:
    return [((i * length) // n, -((-(i + 1) * length) // n)) for i in range(n)]


@serializable
class AdaptivePooling(keras.layers.Layer):
    """Channels-last adaptive max or average pooling over the spatial axes.

    `output_size` has one entry per spatial axis; None keeps that axis's size. The spatial
    input size must be static (it is in converted models). Pooling is separable (a box is
    the product of per-axis bins), so each axis is reduced bin by bin. With
    `return_indices=True` (max only) it returns [values, indices]: torch's int64 flat index
    of each maximum into its channel's input plane (the first maximum in row-major order).
    """

    def __init__(self, output_size, mode: str = "max", return_indices: bool = False, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("max", "avg"):
            raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
        if return_indices and mode != "max":
            raise ValueError("return_indices=True needs mode='max'")
        self.output_size = tuple(None if o is None else int(o) for o in output_size)
        self.mode = mode
        self.return_indices = bool(return_indices)

    def _sizes(self, shape):
        spatial = shape[1:-1]
        if len(spatial) != len(self.output_size):
            raise ValueError(f"{len(self.output_size)}-d adaptive pooling got input shape {tuple(shape)}")
        return [s if o is None else o for s, o in zip(spatial, self.output_size)]

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0], *self._sizes(input_shape), input_shape[-1])
        return [shape, shape] if self.return_indices else shape

    def compute_output_spec(self, x):
        return values_and_indices_spec(self, x)

    def call(self, x):
        if self.return_indices:
            return list(separable_max(x, [_bin_windows(int(length), n) for length, n in
                                          zip(x.shape[1:-1], self._sizes(x.shape))], True))
        reduce = ops.max if self.mode == "max" else ops.mean
        for axis, n in enumerate(self._sizes(x.shape), start=1):
            length = x.shape[axis]
            if length is None:
                raise ValueError("adaptive pooling needs a static spatial size")
            if n == length:
                continue
            parts = []
            for lo, hi in torch_bins(length, n):
                idx = [slice(None)] * len(x.shape)
                idx[axis] = slice(lo, hi)
                parts.append(reduce(x[tuple(idx)], axis=axis, keepdims=True))
            x = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=axis)
        return x

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size), "mode": self.mode,
                "return_indices": self.return_indices}


def _bin_windows(length: int, n: int):
    """torch's bins along one axis as (coordinates, valid) arrays of shape (n, longest bin)."""
    bins = torch_bins(length, n)
    k = max(hi - lo for lo, hi in bins)
    lo = np.array([b[0] for b in bins])[:, None]
    hi = np.array([b[1] for b in bins])[:, None]
    pos = lo + np.arange(k)[None, :]
    return pos, pos < hi
