"""Average pooling with PyTorch's divisors, for every argument combination.

torch (ATen's avg_pool kernels) divides each window's sum by
- `divisor_override` when given, else
- with count_include_pad: the window's size clipped to the padded input [-p, L + p)
  (so a ceil_mode window hanging over the padded end counts only what lies inside it),
- without: the number of input elements in the window.
Keras's AveragePooling divides by the full window ('valid') or by the input elements only
('same', with TensorFlow's own padding split), so it matches only where every divisor is the
full window size; this layer covers the rest: TensorFlow's average over the zero-padded
input, rescaled by (window size / torch's divisor), a static map. `window_sum` instead adds
each window in torch's order (row-major over the kernel offsets), so sums agree to the last
bit, which LPPool's p-th root of a nearly-cancelling sum needs (it is slower: one strided
slice per kernel offset).
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
from keras import ops

from ._common import serializable
from .max_pool import _ntuple, pool_output_size


def avg_divisors(size: int, k: int, s: int, p: int, ceil_mode: bool, count_include_pad: bool) -> np.ndarray:
    """Per-output divisor along one axis (the product over axes is the window's divisor)."""
    out = pool_output_size(size, k, s, p, 1, ceil_mode)
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def _zero_padded(x, pool_size, strides, padding, ceil_mode: bool):
    """x padded with torch's padding plus what ceil_mode's last windows hang over; the output sizes."""
    spatial = [int(s) for s in x.shape[1:-1]]
    outs = [pool_output_size(n, k, s, p, 1, ceil_mode) for n, k, s, p in zip(spatial, pool_size, strides, padding)]
    widths = [(0, 0)]
    for n, k, s, p, o in zip(spatial, pool_size, strides, padding, outs):
        widths.append((p, max(0, (o - 1) * s + k - n - p)))
    widths.append((0, 0))
    if any(w != (0, 0) for w in widths):
        x = ops.pad(x, widths)
    return x, outs


def window_sum(x, pool_size, strides, padding, ceil_mode: bool):
    """Sum over every torch pooling window of a channels-last tensor (zero padding), added
    in torch's order."""
    x, outs = _zero_padded(x, pool_size, strides, padding, ceil_mode)
    total = None
    for offsets in itertools.product(*(range(k) for k in pool_size)):
        idx = (slice(None), *(slice(j, j + (o - 1) * s + 1, s) for j, o, s in zip(offsets, outs, strides)), slice(None))
        total = x[idx] if total is None else total + x[idx]
    return total


def torch_divisors(spatial, pool_size, strides, padding, ceil_mode: bool, count_include_pad: bool,
                   divisor_override=None) -> np.ndarray:
    """torch's divisor for every output position (spatial axes only)."""
    div = np.ones((), np.float64)
    for n, k, s, p in zip(spatial, pool_size, strides, padding):
        div = np.multiply.outer(div, avg_divisors(n, k, s, p, ceil_mode, count_include_pad))
    return np.full_like(div, divisor_override) if divisor_override is not None else div


def avg_pool(x, pool_size, strides, padding, ceil_mode: bool, count_include_pad: bool, divisor_override=None,
             exact_sum: bool = False):
    """torch's avg_pool{1,2,3}d on a channels-last tensor with static spatial sizes.
    `exact_sum` adds each window in torch's order (bit-exact sums, slower)."""
    if len(x.shape) != len(pool_size) + 2 or any(s is None for s in x.shape[1:-1]):
        raise ValueError(f"{len(pool_size)}-d average pooling needs static spatial sizes, got input shape "
                         f"{tuple(x.shape)}")
    div = torch_divisors([int(s) for s in x.shape[1:-1]], pool_size, strides, padding, ceil_mode,
                         count_include_pad, divisor_override)[None, ..., None]
    if exact_sum:
        total = window_sum(x, pool_size, strides, padding, ceil_mode)
        return total / ops.convert_to_tensor(div.astype(np.float32), total.dtype)
    xp, _ = _zero_padded(x, pool_size, strides, padding, ceil_mode)
    mean = ops.average_pool(xp, pool_size, strides, "valid", data_format="channels_last")
    scale = np.prod(pool_size) / div
    if np.all(scale == 1):
        return mean
    return mean * ops.convert_to_tensor(scale.astype(np.float32), mean.dtype)


@serializable
class AveragePooling(keras.layers.Layer):
    """torch's AvgPool1d/2d/3d (padding, ceil_mode, count_include_pad, divisor_override) on a
    channels-last tensor with static spatial sizes.

    Example::

        AveragePooling((3, 3), strides=(2, 2), padding=(1, 1), ceil_mode=True, count_include_pad=False)
    """

    def __init__(self, pool_size, strides=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(k) for k in pool_size) if isinstance(pool_size, (tuple, list)) else (int(pool_size),)
        n = len(self.pool_size)
        self.strides = self.pool_size if strides is None else _ntuple(strides, n, "strides")
        self.padding = _ntuple(padding, n, "padding")
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        if divisor_override is not None and int(divisor_override) == 0:
            raise ValueError("divisor_override must not be zero")
        self.divisor_override = None if divisor_override is None else int(divisor_override)

    def compute_output_shape(self, input_shape):
        spatial = input_shape[1:-1]
        if len(spatial) != len(self.pool_size):
            raise ValueError(f"{len(self.pool_size)}-d average pooling got input shape {tuple(input_shape)}")
        out = tuple(None if n is None else pool_output_size(n, k, s, p, 1, self.ceil_mode)
                    for n, k, s, p in zip(spatial, self.pool_size, self.strides, self.padding))
        return (input_shape[0], *out, input_shape[-1])

    def call(self, x):
        return avg_pool(x, self.pool_size, self.strides, self.padding, self.ceil_mode, self.count_include_pad,
                        self.divisor_override)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": list(self.padding), "ceil_mode": self.ceil_mode,
                "count_include_pad": self.count_include_pad, "divisor_override": self.divisor_override}
