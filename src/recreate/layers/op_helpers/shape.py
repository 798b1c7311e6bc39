"""Keras-only helper functions for recreate.layers.Op (shape, indexing and scatter ATen ops);
no torch here. Sizes are read with ops.shape, so an axis of unknown size (the batch) works."""

from __future__ import annotations

import math

from keras import backend, ops

from .._common import add


def _static_prod(sizes):
    """The product of `sizes` when all are known ints, else -1 (reshape infers it)."""
    if all(isinstance(s, int) for s in sizes):
        return int(math.prod(sizes))
    return -1


def _flat_index(shape, indices, axes):
    """One index into the axes `axes` (of a tensor of `shape`) flattened in order, from one
    (broadcasting) index tensor per axis; negative indices count from the end."""
    flat, stride = None, 1
    for k in reversed(range(len(axes))):
        n = shape[axes[k]]
        i = indices[k]
        i = ops.where(ops.less(i, 0), ops.add(i, ops.cast(n, i.dtype)), i)
        if not (isinstance(stride, int) and stride == 1):
            i = ops.multiply(i, ops.cast(stride, i.dtype))
        flat = i if flat is None else add(i, flat)  # not ops.add: see _common.add
        stride = stride * n
    return flat


def _indexed_first(x, axes):
    """x with the axes `axes` moved first and flattened into one: (prod, *rest), and rest."""
    rank = len(x.shape)
    shape = ops.shape(x)
    rest = [a for a in range(rank) if a not in axes]
    order = list(axes) + rest
    if order != list(range(rank)):
        x = ops.transpose(x, order)
    lead = _static_prod([shape[a] for a in axes])
    return ops.reshape(x, (lead, *[shape[a] for a in rest])), rest


def _tile_by_batch(x, ref, reps, by_batch):
    """tile(x, reps) where the counts at the axes in `by_batch` ({axis: k}) are k times
    `ref`'s run-time batch size."""
    counts = list(reps)
    for axis, k in by_batch.items():
        counts[int(axis)] = ops.shape(ref)[0] * int(k)
    return ops.tile(x, counts)


def _index_gather(x, *indices, axes):
    """torch's advanced indexing x[..., i0, ..., i1, ...] with index tensors on `axes`: the
    result is (*broadcast index shape, *the other axes in order)."""
    flat = _flat_index(ops.shape(x), indices, axes)
    x, _ = _indexed_first(x, axes)
    return ops.take(x, flat, axis=0)


def _index_put(x, values, *indices, axes, place, accumulate):
    """torch.index_put(x, indices, values, accumulate): `values` broadcast to x[indices]
    (whose index axes sit at `place` among the other axes) written (or added) into x."""
    rank = len(x.shape)
    shape = ops.shape(x)
    flat = _flat_index(shape, indices, axes)
    xt, rest = _indexed_first(x, axes)
    rest_shape = [shape[a] for a in rest]
    fshape = list(ops.shape(flat))
    sr = len(fshape)
    target = [*rest_shape[:place], *fshape, *rest_shape[place:]]
    values = ops.broadcast_to(ops.cast(values, x.dtype), target)
    if place:
        move = list(range(place, place + sr)) + list(range(place)) + list(range(place + sr, len(target)))
        values = ops.transpose(values, move)
    index = ops.reshape(flat, (-1, 1))
    updates = ops.reshape(values, (-1, *rest_shape))
    out = ops.scatter_update(xt, index, updates, reduction="add" if accumulate else None)
    order = list(axes) + rest
    out = ops.reshape(out, [shape[a] for a in order])
    if order != list(range(rank)):
        inv = [order.index(a) for a in range(rank)]
        out = ops.transpose(out, inv)
    return out


def _extreme(dtype, lowest: bool):
    import numpy as np

    name = backend.standardize_dtype(dtype)
    if "float" in name:
        return -np.inf if lowest else np.inf
    if "bool" in name:
        return not lowest
    info = np.iinfo(name)
    return info.min if lowest else info.max


def _scatter_dense(x, index, src, dim, reduce, include_self):
    """torch.scatter / scatter_add / scatter_reduce along `dim` without a scatter kernel:
    a one-hot match of each index against every target position, reduced over the index
    axis (exact, TFLite-friendly, duplicates handled as torch's CPU kernel does: the last
    write wins for a plain scatter). `index` may be smaller than x on every axis; `src` is
    cut to index's shape (or is a Python scalar). reduce: None, "sum", "prod", "mean",
    "amax", "amin"."""
    rank = len(x.shape)
    xs, ishape = ops.shape(x), ops.shape(index)
    if not isinstance(src, (int, float, bool)) and rank:
        cut = tuple(slice(0, ishape[d]) for d in range(rank))
        src = src[cut]
    if isinstance(src, (int, float, bool)):
        src = ops.full(ishape, src, dtype=x.dtype)
    src = ops.cast(src, x.dtype)
    dtype = backend.standardize_dtype(x.dtype)
    n = xs[dim]
    # dim last: (..., m) -> one-hot (..., n, m)
    last = [d for d in range(rank) if d != dim] + [dim]
    idx = ops.transpose(index, last) if last != list(range(rank)) else index
    val = ops.transpose(src, last) if last != list(range(rank)) else src
    positions = ops.arange(n, dtype=idx.dtype)
    hit = ops.equal(ops.expand_dims(idx, -2), ops.reshape(positions, (-1, 1)))  # (..., n, m)
    vals = ops.expand_dims(val, -2)
    count = ops.sum(ops.cast(hit, "int32"), axis=-1)
    touched = ops.greater(count, 0)
    if reduce is None:
        m = ops.shape(idx)[-1]
        order = ops.arange(m, dtype="int32")
        pos = ops.max(ops.where(hit, order, -1), axis=-1)  # the last write to each target
        agg = ops.take_along_axis(val, ops.maximum(pos, 0), axis=-1)
    elif reduce in ("sum", "mean"):
        agg = ops.sum(ops.where(hit, vals, ops.zeros((), dtype)), axis=-1)
    elif reduce == "prod":
        agg = ops.prod(ops.where(hit, vals, ops.ones((), dtype)), axis=-1)
    elif reduce == "amax":
        agg = ops.max(ops.where(hit, vals, ops.full((), _extreme(dtype, True), dtype)), axis=-1)
    elif reduce == "amin":
        agg = ops.min(ops.where(hit, vals, ops.full((), _extreme(dtype, False), dtype)), axis=-1)
    else:
        raise ValueError(f"scatter reduce {reduce!r}")
    back = [last.index(d) for d in range(rank)]
    if last != list(range(rank)):
        agg, touched, count = (ops.transpose(t, back) for t in (agg, touched, count))
    # the region index covers, padded back to x's shape on the other axes
    widths = []
    for d in range(rank):
        if d == dim or (x.shape[d] is not None and index.shape[d] == x.shape[d]) or (
                x.shape[d] is None and index.shape[d] is None):
            widths.append((0, 0))
        else:
            widths.append((0, xs[d] - ishape[d]))
    if any(w != (0, 0) for w in widths):
        agg = ops.pad(agg, widths)
        touched = ops.pad(touched, widths)
        count = ops.pad(count, widths)
    if reduce is None:
        return ops.where(touched, agg, x)
    if reduce == "sum":
        new = ops.add(x, agg) if include_self else agg
    elif reduce == "prod":
        new = ops.multiply(x, agg) if include_self else agg
    elif reduce == "amax":
        new = ops.maximum(x, agg) if include_self else agg
    elif reduce == "amin":
        new = ops.minimum(x, agg) if include_self else agg
    else:  # mean
        total = ops.add(x, agg) if include_self else agg
        count = ops.add(count, 1) if include_self else ops.maximum(count, 1)
        if "int" in dtype:
            new = ops.floor_divide(total, ops.cast(count, x.dtype))
        else:
            new = ops.divide(total, ops.cast(count, x.dtype))
    return ops.where(touched, ops.cast(new, x.dtype), x)


def _masked_scatter(x, mask, source):
    """torch.masked_scatter: x with the positions where `mask` (broadcast to x) is true
    filled, in row-major order, with the leading elements of `source`."""
    x = ops.where(mask, x, x)  # x and mask broadcast together (torch's result shape)
    mask = ops.broadcast_to(mask, ops.shape(x))
    flat = ops.reshape(mask, (-1,))
    pos = ops.cumsum(ops.cast(flat, "int32")) - 1
    pos = ops.maximum(pos, 0)
    src = ops.reshape(ops.cast(source, x.dtype), (-1,))
    picked = ops.take(src, pos, axis=0)
    picked = ops.reshape(picked, ops.shape(x))
    return ops.where(mask, picked, x)


def _where_zero(mask, x):
    """x where `mask`, else 0 (tril/triu)."""
    return ops.where(mask, x, ops.zeros((), x.dtype))


def _slice_axis(x, axis, start, stop, step=1):
    """x[..., start:stop:step, ...] on `axis` (Python slice semantics, None allowed)."""
    key = [slice(None)] * len(x.shape)
    key[axis] = slice(start, stop, step)
    return x[tuple(key)]


def _embedding_renorm(weight, indices, max_norm, norm_type):
    """torch.embedding_renorm_: rows of `weight` that `indices` uses and whose norm exceeds
    max_norm scaled to max_norm (torch's scale max_norm / (norm + 1e-7))."""
    rows = ops.shape(weight)[0]
    idx = ops.reshape(ops.cast(indices, "int32"), (-1, 1))
    used = ops.scatter(idx, ops.ones(ops.shape(idx)[:1], "int32"), (rows,))
    used = ops.greater(used, 0)
    if norm_type == 2:
        norm = ops.sqrt(ops.sum(ops.square(weight), axis=-1))
    elif norm_type == 1:
        norm = ops.sum(ops.abs(weight), axis=-1)
    elif math.isinf(norm_type):
        norm = ops.max(ops.abs(weight), axis=-1)
    else:
        norm = ops.power(ops.sum(ops.power(ops.abs(weight), norm_type), axis=-1), 1.0 / norm_type)
    scale = ops.where(ops.logical_and(used, ops.greater(norm, max_norm)), max_norm / (norm + 1e-7), 1.0)
    return weight * ops.expand_dims(ops.cast(scale, weight.dtype), -1)


def _take_flat2(x, index, axis1, axis2):
    """The axes axis1, axis2 (of known sizes) moved last, merged into one and indexed with
    the constant `index` (torch.diagonal)."""
    rank = len(x.shape)
    shape = ops.shape(x)
    rest = [a for a in range(rank) if a not in (axis1, axis2)]
    x = ops.transpose(x, rest + [axis1, axis2])
    x = ops.reshape(x, (*[shape[a] for a in rest], x.shape[-2] * x.shape[-1]))
    return ops.take(x, ops.convert_to_tensor(index, "int32"), axis=-1)


HELPERS: dict = {
    "aten_take_flat2": _take_flat2,
    "aten_index_gather": _index_gather,
    "aten_tile_by_batch": _tile_by_batch,
    "aten_index_put": _index_put,
    "aten_scatter_dense": _scatter_dense,
    "aten_masked_scatter": _masked_scatter,
    "aten_where_zero": _where_zero,
    "aten_slice_axis": _slice_axis,
    "aten_embedding_renorm": _embedding_renorm,
}
