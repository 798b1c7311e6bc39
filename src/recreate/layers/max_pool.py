"""Max pooling with PyTorch's semantics where Keras's MaxPooling falls short: dilation,
ceil_mode's partial windows, and the indices torch returns with return_indices=True.

Windows are separable (a box is the product of per-axis windows), so the spatial axes are
reduced one at a time, innermost first: each window's elements are gathered along the axis
(a static index array) and reduced. Reducing the innermost axis first reproduces torch's
choice among ties: torch scans a box in row-major order and keeps the first maximum
(`val > maxval`), or the last NaN (`|| isnan(val)`); the first maximum of the first row
that holds the box's maximum is that element. Positions in the padding never win. A box
whose every element is -inf keeps torch's starting index (the window's first coordinate at
or right of 0, along every axis); so does a box without any input element along some axis
(possible only with dilation), whose value is -inf and whose index may lie past the input,
exactly as torch reports it.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ._common import serializable

INDEX_DTYPE = "int64"


def values_and_indices_spec(layer, x):
    """compute_output_spec of a pooling layer with torch's return_indices: the pooled values
    in x's dtype, and with return_indices their flat indices (int64) of the same shape."""
    shape = layer.compute_output_shape(x.shape)
    if not layer.return_indices:
        return keras.KerasTensor(shape, dtype=x.dtype)
    return [keras.KerasTensor(shape[0], dtype=x.dtype), keras.KerasTensor(shape[1], dtype=INDEX_DTYPE)]


def pool_output_size(size: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> int:
    """PyTorch's pooling output length: a last window may start in the input or the left
    padding, never in the right padding."""
    eff = d * (k - 1) + 1
    num = size + 2 * p - eff
    out = (math.ceil(num / s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def window_positions(size: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> np.ndarray:
    """(outputs, k) input coordinates of every window along one axis; outside [0, size) is padding."""
    out = pool_output_size(size, k, s, p, d, ceil_mode)
    if out < 1:
        raise ValueError(f"pooling of a length-{size} axis with kernel {k}, stride {s}, padding {p}, "
                         f"dilation {d} has no output")
    return np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d


def _expand(a: np.ndarray, rank: int, axis: int):
    """Place a 2-d (outputs, k) array at axes (axis, axis + 1) of a rank-`rank` tensor."""
    shape = [1] * rank
    shape[axis], shape[axis + 1] = a.shape
    return a.reshape(shape)


def select_window_max(g, kax: int, valid, start, step: int, stride: int, inner):
    """Reduce axis `kax` of the gathered windows `g` the way torch's max pooling does.

    valid: bool tensor broadcastable to g (False in padding), or None when all are valid.
    Window element j sits at input coordinate start + j * step (`start` broadcastable to the
    reduced shape). inner: the flat index from the axes already reduced, gathered like g, or
    None. Returns (values, flat indices) with `kax` removed.
    """
    k = g.shape[kax]
    neg_inf = ops.convert_to_tensor(-np.inf, g.dtype)
    masked = g if valid is None else ops.where(valid, g, neg_inf)
    is_nan = ops.isnan(masked)  # padding holds -inf, never NaN
    has_nan = ops.any(is_nan, axis=kax)
    # where(not nan, masked, -inf), not where(nan, -inf, masked): TFLite cannot lower a select
    # whose first branch is a broadcast scalar on a rank-6 tensor of dynamic shape (3-d pooling).
    best = ops.max(ops.where(ops.logical_not(is_nan), masked, neg_inf), axis=kax, keepdims=True)
    offsets = ops.convert_to_tensor(np.arange(k).reshape([k if a == kax else 1 for a in range(len(g.shape))]), "int32")
    hit = ops.equal(masked, best)
    if valid is not None:
        # where, not logical_and: TFLite's LOGICAL_AND broadcasts up to 4-d only and aborts the
        # process on these rank-5/6 operands (2-d/3-d pooling with indices).
        hit = ops.where(valid, hit, False)
    first = ops.min(ops.where(hit, offsets, k), axis=kax)
    last_nan = ops.max(ops.where(is_nan, offsets, -1), axis=kax)
    chosen = ops.where(has_nan, last_nan, first)
    values = ops.where(has_nan, ops.convert_to_tensor(np.nan, g.dtype), ops.squeeze(best, axis=kax))
    index = ops.cast((ops.cast(start, "int32") + chosen * step), INDEX_DTYPE) * stride
    if inner is not None:
        # chosen == k only where a window has no valid element; separable_max overrides those
        picked = ops.take_along_axis(inner, ops.expand_dims(ops.minimum(chosen, k - 1), kax), axis=kax)
        index = index + ops.squeeze(picked, axis=kax)
    return values, index


def separable_max(x, windows, return_indices: bool):
    """Max over separable windows of a channels-last tensor.

    `windows[i]` is the (outputs, k) array of input coordinates (out of range = padding)
    along spatial axis i, or a pair (coordinates, valid mask) for windows of different
    lengths (adaptive pooling's bins). Returns the pooled values, and with `return_indices`
    also torch's flat index of each maximum into the input's spatial plane (row-major, int64).
    """
    if len(windows) != len(x.shape) - 2 or any(s is None for s in x.shape[1:-1]):
        raise ValueError(f"{len(windows)}-d pooling needs a static channels-last input, got shape {tuple(x.shape)}")
    spatial = [int(s) for s in x.shape[1:-1]]
    strides = [int(np.prod(spatial[i + 1:])) for i in range(len(spatial))]
    index = None
    rank = len(spatial) + 2
    # torch's index before any element beats -inf: its window start (first coordinate >= 0)
    # along every axis. It stays when a window holds no input element along some axis.
    start, empty = np.zeros([1] * rank, np.int64), np.zeros([1] * rank, bool)
    for i in reversed(range(len(spatial))):
        axis, size = i + 1, spatial[i]
        if isinstance(windows[i], tuple):
            pos, valid = (np.asarray(a) for a in windows[i])
            valid = valid & (pos >= 0) & (pos < size)
        else:
            pos = np.asarray(windows[i])
            valid = (pos >= 0) & (pos < size)
        g = ops.take(x, ops.convert_to_tensor(np.clip(pos, 0, size - 1).reshape(-1), "int32"), axis=axis)
        shape = [-1, *g.shape[1:]]
        shape[axis:axis + 1] = list(pos.shape)
        g = ops.reshape(g, shape)
        valid_t = ops.convert_to_tensor(_expand(valid, rank + 1, axis))
        if not return_indices:
            x = ops.max(g if valid.all() else ops.where(valid_t, g, ops.convert_to_tensor(-np.inf, g.dtype)),
                        axis=axis + 1)
            continue
        if index is not None:
            index = ops.reshape(ops.take(index, ops.convert_to_tensor(np.clip(pos, 0, size - 1).reshape(-1), "int32"),
                                         axis=axis), shape)
        at_axis = [-1 if a == axis else 1 for a in range(rank)]
        step = int(pos[0, 1] - pos[0, 0]) if pos.shape[1] > 1 else 1
        if not np.array_equal(pos, pos[:, :1] + step * np.arange(pos.shape[1])):
            raise ValueError("window coordinates must be arithmetic progressions")
        x, index = select_window_max(g, axis + 1, None if valid.all() else valid_t, pos[:, 0].reshape(at_axis),
                                     step, strides[i], index)
        first = pos[np.arange(len(pos)), np.argmax(pos >= 0, axis=1)]
        start = start + (first * strides[i]).reshape(at_axis)
        empty = empty | ~valid.any(axis=1).reshape(at_axis)
        if empty.any():
            index = ops.where(ops.convert_to_tensor(empty), ops.convert_to_tensor(start), index)
    return (x, index) if return_indices else x


def _ntuple(v, n: int, name: str) -> tuple[int, ...]:
    t = tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * n
    if len(t) != n:
        raise ValueError(f"{name} must have {n} entries, got {v!r}")
    return t


@serializable
class MaxPooling(keras.layers.Layer):
    """torch's max_pool{1,2,3}d on a channels-last tensor: every argument, dilation and
    ceil_mode included; with `return_indices=True` it returns [values, indices], the indices
    torch returns (int64, flat into each channel's input plane, row-major).

    Example::

        MaxPooling((3, 3), strides=(2, 2), padding=(1, 1), dilation=(2, 2), return_indices=True)
    """

    def __init__(self, pool_size, strides=None, padding=0, dilation=1, ceil_mode: bool = False,
                 return_indices: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(k) for k in pool_size) if isinstance(pool_size, (tuple, list)) else (int(pool_size),)
        n = len(self.pool_size)
        self.strides = self.pool_size if strides is None else _ntuple(strides, n, "strides")
        self.padding = _ntuple(padding, n, "padding")
        self.dilation = _ntuple(dilation, n, "dilation")
        self.ceil_mode = bool(ceil_mode)
        self.return_indices = bool(return_indices)

    def _args(self):
        return zip(self.pool_size, self.strides, self.padding, self.dilation)

    def compute_output_shape(self, input_shape):
        spatial = input_shape[1:-1]
        if len(spatial) != len(self.pool_size):
            raise ValueError(f"{len(self.pool_size)}-d max pooling got input shape {tuple(input_shape)}")
        out = tuple(None if s is None else pool_output_size(s, k, st, p, d, self.ceil_mode)
                    for s, (k, st, p, d) in zip(spatial, self._args()))
        shape = (input_shape[0], *out, input_shape[-1])
        return [shape, shape] if self.return_indices else shape

    def compute_output_spec(self, x):
        return values_and_indices_spec(self, x)

    def call(self, x):
        if any(s is None for s in x.shape[1:-1]):
            raise ValueError(f"max pooling needs static spatial sizes, got input shape {tuple(x.shape)}")
        windows = [window_positions(int(s), k, st, p, d, self.ceil_mode) for s, (k, st, p, d) in zip(x.shape[1:-1], self._args())]
        out = separable_max(x, windows, self.return_indices)
        return list(out) if self.return_indices else out

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": list(self.padding), "dilation": list(self.dilation), "ceil_mode": self.ceil_mode,
                "return_indices": self.return_indices}
