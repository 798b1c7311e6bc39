"""Keras-only helper functions for recreate.layers.Op (reduce ATen ops); no torch here.

Each reproduces a PyTorch kernel's rule where keras.ops differs: argmax/argmin take the FIRST
extreme and treat NaN as the extreme (tf.argmax skips NaN), sort/topk are stable and put NaN
above +inf (tf.math.top_k orders NaN arbitrarily), var divides by max(0, N - correction),
logsumexp shifts by the finite maximum, cdist follows torch's matmul path for the Euclidean
distance where torch uses it. Sizes are read at run time where the axis can be the batch."""

from __future__ import annotations

import numpy as np
from keras import backend, ops


def _dtype(x) -> str:
    return backend.standardize_dtype(x.dtype)


def _is_float(x) -> bool:
    return "float" in _dtype(x)


def _size(x, axis):
    n = x.shape[axis]
    return n if n is not None else ops.shape(x)[axis]


def _arange_along(x, axis):
    """0, 1, ... along `axis` of x, shaped to broadcast against x (int32)."""
    rank = len(x.shape)
    idx = ops.arange(_size(x, axis), dtype="int32")
    return ops.reshape(idx, [-1 if i == axis else 1 for i in range(rank)])


def _arg_extreme(x, axis, keepdims=False, largest=True):
    """torch.argmax / argmin along one axis: the first index of the maximum (minimum), NaN
    counting as the extreme (its first occurrence wins). int64."""
    if isinstance(axis, (list, tuple)):
        (axis,) = axis
    if _dtype(x) == "bool":
        x = ops.cast(x, "int8")
    m = ops.max(x, axis=axis, keepdims=True) if largest else ops.min(x, axis=axis, keepdims=True)
    hit = ops.equal(x, m)
    if _is_float(x):
        hit = ops.logical_or(hit, ops.logical_and(ops.isnan(x), ops.isnan(m)))
    n = ops.cast(_size(x, axis), "int32")
    first = ops.min(ops.where(hit, _arange_along(x, axis), n), axis=axis, keepdims=keepdims)
    return ops.cast(first, "int64")


def _max_with_index(x, axis, keepdims=False, largest=True):
    """(values, indices) of torch.max(x, dim) / torch.min(x, dim): the value is the element
    at the index (bit-exact, signed zeros included)."""
    idx = _arg_extreme(x, axis, True, largest)
    if _dtype(x) == "bool":  # no gather of bools in tf
        values = ops.cast(ops.take_along_axis(ops.cast(x, "int8"), idx, axis=axis), "bool")
    else:
        values = ops.take_along_axis(x, idx, axis=axis)
    if not keepdims:
        values = ops.squeeze(values, axis)
        idx = ops.squeeze(idx, axis)
    return values, idx


def _sort_descending(x):
    """Stable descending sort along the last axis, NaN above +inf: (values, int32 indices).

    tf.math.top_k returns equal elements lower index first (so it is stable), but orders NaN
    arbitrarily: NaN is sorted as +inf first, then a second stable pass on "is NaN" moves
    the NaNs ahead (a least-significant-key-first radix sort)."""
    k = _size(x, -1)
    key = x
    if _dtype(x) in ("bool", "uint8", "int8", "int16", "uint16"):
        key = ops.cast(x, "int32")
    if not _is_float(x):
        _, idx = ops.top_k(key, k, sorted=True)
        return ops.take_along_axis(x, idx, axis=-1), idx
    nan = ops.isnan(x)
    _, idx = ops.top_k(ops.where(nan, float("inf"), key), k, sorted=True)
    flag = ops.take_along_axis(ops.cast(nan, "int32"), idx, axis=-1)
    _, order = ops.top_k(flag, k, sorted=True)
    idx = ops.take_along_axis(idx, order, axis=-1)
    return ops.take_along_axis(x, idx, axis=-1), idx


def _torch_sort(x, descending=False, k=None):
    """torch.sort(x, dim=-1, descending, stable=True) along the last axis, optionally the
    first k: (values, int64 indices). Ascending is the stable descending sort of the reversed
    axis, read backwards (equal elements keep their order; NaN comes last)."""
    if _dtype(x) == "bool":  # no gather of bools in tf
        values, idx = _torch_sort(ops.cast(x, "int8"), descending, k)
        return ops.cast(values, "bool"), idx
    if descending:
        values, idx = _sort_descending(x)
    else:
        n = _size(x, -1)
        values, idx = _sort_descending(ops.flip(x, axis=-1))
        values = ops.flip(values, axis=-1)
        idx = ops.subtract(ops.cast(n, "int32") - 1, ops.flip(idx, axis=-1))
    if k is not None:
        values, idx = values[..., :k], idx[..., :k]
    return values, ops.cast(idx, "int64")


def _torch_var(x, axis, keepdims=False, correction=1.0, root=False):
    """torch.var(x, dim, correction=c) (std when root): the sum of squared deviations over
    max(0, N - c), N the number of reduced elements (counted at run time)."""
    mean = ops.mean(x, axis=axis, keepdims=True)
    dev = ops.subtract(x, mean)
    total = ops.sum(ops.multiply(dev, dev), axis=axis, keepdims=keepdims)
    n = 1
    for a in axis:
        n = n * _size(x, a)
    divisor = ops.maximum(ops.cast(n, x.dtype) - correction, 0.0)
    out = ops.divide(total, divisor)
    return ops.sqrt(out) if root else out


def _torch_logsumexp(x, axis, keepdims=False):
    """torch.logsumexp: log(sum(exp(x - m))) + m with m the maximum, taken as 0 where it is
    infinite (so a slice of -inf gives -inf and one holding +inf gives +inf)."""
    if 0 in x.shape:  # no elements (keras.ops.max asserts): 0, so an empty slice gives log(0) = -inf
        m = ops.zeros_like(ops.sum(x, axis=axis, keepdims=True))
    else:
        m = ops.max(x, axis=axis, keepdims=True)
    m = ops.where(ops.isinf(m), ops.zeros_like(m), m)
    s = ops.log(ops.sum(ops.exp(ops.subtract(x, m)), axis=axis, keepdims=keepdims))
    return ops.add(s, m if keepdims else ops.squeeze(m, axis))


def _p_norm(d, p, axis):
    """The p-norm of d along `axis` as torch's distance kernels compute it."""
    if p == 0:
        return ops.sum(ops.cast(ops.not_equal(d, 0), d.dtype), axis=axis)
    a = ops.abs(d)
    if p == float("inf"):
        # no elements: the result is empty, or 0 over an empty axis (keras.ops.max asserts)
        return ops.sum(a, axis=axis) if 0 in d.shape else ops.max(a, axis=axis)
    if p == 1:
        return ops.sum(a, axis=axis)
    if p == 2:
        return ops.sqrt(ops.sum(ops.multiply(d, d), axis=axis))
    return ops.power(ops.sum(ops.power(a, p), axis=axis), 1.0 / p)


def _torch_cdist(x1, x2, p=2.0, use_mm=False):
    """torch.cdist of (..., P, M) and (..., R, M): (..., P, R). With use_mm (p == 2 where
    torch picks its matrix-product path) the same formula as torch's _euclidean_dist."""
    if use_mm:
        n1 = ops.sum(ops.multiply(x1, x1), axis=-1, keepdims=True)
        n2 = ops.sum(ops.multiply(x2, x2), axis=-1, keepdims=True)
        a = ops.concatenate([ops.multiply(x1, -2.0), n1, ops.ones_like(n1)], axis=-1)
        b = ops.concatenate([x2, ops.ones_like(n2), n2], axis=-1)
        r = ops.matmul(a, ops.swapaxes(b, -1, -2))
        return ops.sqrt(ops.maximum(r, 0.0))
    d = ops.subtract(ops.expand_dims(x1, -2), ops.expand_dims(x2, -3))
    return _p_norm(d, p, -1)


def _torch_pdist(x, p=2.0):
    """torch.pdist of (N, M): the distances of rows i < j, in row-major order of (i, j)."""
    n = x.shape[0]
    i, j = np.triu_indices(n, 1)
    d = ops.subtract(ops.take(x, i.astype("int32"), axis=0), ops.take(x, j.astype("int32"), axis=0))
    return _p_norm(d, p, -1)


def _torch_softmax(x, axis, log=False):
    """softmax / log_softmax along `axis`; a 0-d tensor is a 1-element axis."""
    fn = ops.log_softmax if log else ops.softmax
    if len(x.shape) == 0:
        return ops.squeeze(fn(ops.expand_dims(x, 0), axis=0), 0)
    return fn(x, axis=axis)


def _torch_histc(x, bins, low=None, high=None, dtype=None):
    """torch.histc(x, bins, min, max) as torch's CPU kernel computes it, over every element of
    x (any order: a count): an element v in [low, high] goes to bin
    int((v - low) * bins / (high - low)) in x's dtype, the last bin holding `high`; elements
    outside the range and NaN are not counted. low/high None: the data's minimum and maximum
    (torch's min == max), widened by 1 each way where they are equal (one distinct value, or
    no elements). Counted as int32, returned in x's dtype.

    `dtype`: the torch tensor's dtype: a float16/bfloat16 input (computed in a float32 layer)
    finds its bins in that dtype, as torch's kernel does."""
    out_dtype = _dtype(x)
    if dtype in ("float16", "bfloat16") and out_dtype != dtype:
        x = ops.cast(x, dtype)
    flat = ops.reshape(x, (-1,))
    if low is None:
        # `initial`: keras.ops.min/max assert a non-empty tensor when run eagerly
        lo = ops.min(flat, initial=float("inf"))
        hi = ops.max(flat, initial=float("-inf"))
        same = ops.equal(lo, hi)
        lo = ops.where(same, ops.subtract(lo, 1.0), lo)
        hi = ops.where(same, ops.subtract(hi, -1.0), hi)
    else:
        lo = ops.convert_to_tensor(low, _dtype(flat))
        hi = ops.convert_to_tensor(high, _dtype(flat))
    inside = ops.logical_and(ops.greater_equal(flat, lo), ops.less_equal(flat, hi))  # False for NaN
    pos = ops.divide(ops.multiply(ops.subtract(flat, lo), ops.cast(bins, _dtype(flat))), ops.subtract(hi, lo))
    pos = ops.where(inside, pos, ops.zeros_like(pos))
    # int() truncates; pos == bins (v == high) is the last bin; the clip also keeps an
    # overflowed position (torch's undefined behaviour) inside
    idx = ops.clip(ops.cast(pos, "int32"), 0, bins - 1)
    counts = ops.segment_sum(ops.cast(inside, "int32"), idx, num_segments=bins)
    return ops.cast(counts, out_dtype)


HELPERS: dict = {
    "aten_arg_extreme": _arg_extreme,
    "aten_max_with_index": _max_with_index,
    "aten_sort": _torch_sort,
    "aten_var": _torch_var,
    "aten_logsumexp": _torch_logsumexp,
    "aten_cdist": _torch_cdist,
    "aten_pdist": _torch_pdist,
    "aten_softmax": _torch_softmax,
    "aten_histc": _torch_histc,
}
