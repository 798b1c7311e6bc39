"""ATen op converters: shape, slicing, indexing, scatter and padding.

Layout: ops that only move, cut or pick along axes keep their operand's perm and name Keras
axes through `Value.keras_axis`; ops whose meaning is tied to memory order (view, as_strided,
masked_scatter, index_put) work in torch layout. Dynamic batch: sizes and bounds that came
from the batch size are read off torch.export's symbolic values (`_relative_bound`), so a
converted model slices, views and expands any batch.
"""

from __future__ import annotations

import math

import torch

import numpy as np

from ..errors import ConversionError
from ..trace import Value, identity, tensor
from . import builtin, register_op
from .aten_core import same

aten = torch.ops.aten
_BIG = 2**62  # ATen's "to the end" (INT64_MAX) and anything past any real size


def _overloads(*names):
    """The OpOverloads among `names` ("view_copy.default") this torch build has."""
    out = []
    for n in names:
        name, overload = n.split(".")
        packet = getattr(aten, name, None)
        if packet is not None and hasattr(packet, overload):
            out.append(getattr(packet, overload))
    return out


def _raw_arg(cx, pos: int, name: str):
    """The fx-level argument (a Node when it is a symbolic size) at `pos` / keyword `name`."""
    args, kwargs = cx.node.args, cx.node.kwargs
    return args[pos] if pos < len(args) else kwargs.get(name)


def _sym_expr(v):
    if isinstance(v, torch.SymInt):
        return v.node.expr
    return None


def _relative_bound(cx, pos: int, name: str, dim: int):
    """A slice bound that torch.export derived from the size of axis `dim` of argument 0:
    (True, c) when it is that size + c (c an integer), (False, None) when it is a plain int.
    Any other symbolic bound (a fraction of the batch, ...) is refused."""
    raw = _raw_arg(cx, pos, name)
    val = raw.meta.get("val") if isinstance(raw, torch.fx.Node) else None
    expr = _sym_expr(val)
    if expr is None or not expr.free_symbols:
        return False, None
    size = cx.node.args[0].meta["val"].shape[dim]
    size_expr = _sym_expr(size)
    diff = expr - (size_expr if size_expr is not None else int(size))
    diff = diff.simplify() if hasattr(diff, "simplify") else diff
    if getattr(diff, "is_Integer", False):
        return True, int(diff)
    raise ConversionError(f"{name}={expr} depends on the batch size in a way other than 'size + constant' "
                          f"(axis {dim} has size {size}): not representable with a dynamic batch")


def _batch_axes_of_input(cx, arg: int = 0) -> set:
    return cx.batch_axes(arg) or set()


def _slice_key(cx, x: Value, dim: int, start, end, step: int):
    """[start, stop, step] for a Keras getitem on axis `dim` of x (torch dim), with bounds
    relative to the end where they follow a dynamic size."""
    dim %= max(x.rank, 1)
    n = x.shape[dim]
    if dim in _batch_axes_of_input(cx):
        rel_s, c_s = _relative_bound(cx, 2, "start", dim)
        rel_e, c_e = _relative_bound(cx, 3, "end", dim)
        if rel_s:
            start = c_s if c_s < 0 else _BIG
        if rel_e:
            end = c_e if c_e < 0 else None
        start = None if start in (None, 0) else int(start)
        if end is not None and (end >= _BIG or end <= -_BIG):
            end = None if end > 0 else 0
        if start is not None and start >= _BIG:
            return [0, 0, int(step)]
        return [start, None if end is None else int(end), None if step == 1 else int(step)]
    s, e, st = slice(start, end, step).indices(n)
    if st == 1 and e < s:
        e = s
    return [None if s == 0 else s, None if e >= n else e, None if st == 1 else st]


def _getitem(cx, x: Value, key_per_torch_dim: dict, shape=None, perm=None, dtype=None):
    key = [[None, None, None] for _ in range(x.rank)]
    for d, k in key_per_torch_dim.items():
        key[x.keras_axis(d)] = k
    return cx.op("getitem", [tensor(0), key], [x], x.perm if perm is None else perm, shape=shape,
                 dtype=x.dtype if dtype is None else dtype)


def _drop_axis_perm(perm, dim):
    return tuple(p - (p > dim) for p in perm if p != dim)


def _cast(cx, v: Value, dtype) -> Value:
    if v.dtype == dtype:
        return v
    return cx.op("cast", [tensor(0), str(dtype).replace("torch.", "")], [v], v.perm, shape=v.shape, dtype=dtype)


def _as_value(cx, v, dtype=None) -> Value:
    if isinstance(v, Value):
        return v
    return cx.const(np.asarray(v if dtype is None else torch.tensor(v, dtype=dtype).numpy()))


def _empty(cx) -> Value:
    """A result without elements (its shape is all it has)."""
    return cx.const(np.zeros(cx.out_shape, dtype=torch.empty(0, dtype=cx.out_dtype).numpy().dtype))


# ---- views --------------------------------------------------------------------------------
same("view", aten.view.default, aten.reshape.default, aten._unsafe_view.default,
     *_overloads("view_copy.default", "_reshape_copy.default"))


@register_op(aten.expand.default, *_overloads("expand_copy.default"))
def expand(cx, x, size, implicit=False):
    if tuple(cx.out_shape) == x.shape and not cx.batch_axes():
        return x
    return builtin.expand(cx, x, *size)


@register_op(aten.permute.default, *_overloads("permute_copy.default"))
def permute(cx, x, dims):
    return builtin.permute(cx, x, *dims)


@register_op(*_overloads("transpose.int", "transpose_copy.int"))
def transpose(cx, x, dim0, dim1):
    return builtin.transpose(cx, x, dim0, dim1)


@register_op(*_overloads("t.default", "t_copy.default"))
def t(cx, x):
    return x if x.rank < 2 else builtin.transpose(cx, x, 0, 1)


@register_op(*_overloads("alias.default", "alias_copy.default", "lift_fresh_copy.default", "detach_copy.default"))
def alias(cx, x):
    return x


@register_op(aten.unsqueeze.default, *_overloads("unsqueeze_copy.default"))
def unsqueeze(cx, x, dim):
    dim %= x.rank + 1
    perm = [p + (p >= dim) for p in x.perm]
    at = x.perm.index(dim) if dim < x.rank else x.rank  # next to the axis it comes before
    perm.insert(at, dim)
    return cx.op("expand_dims", [tensor(0), at], [x], tuple(perm), dtype=x.dtype)


@register_op(aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims,
             *_overloads("squeeze_copy.default", "squeeze_copy.dim", "squeeze_copy.dims"))
def squeeze(cx, x, dim=None):
    if dim is None:
        dims = range(x.rank)
    else:
        dims = [dim] if isinstance(dim, int) else list(dim)
    batch = _batch_axes_of_input(cx)
    drop = sorted({d % max(x.rank, 1) for d in dims if x.rank and x.shape[d % x.rank] == 1 and d % x.rank not in batch})
    if not drop:
        return x
    perm = x.perm
    for d in reversed(drop):
        perm = _drop_axis_perm(perm, d)
    return cx.op("squeeze", [tensor(0)], [x], perm, dtype=x.dtype, kwargs={"axis": [x.keras_axis(d) for d in drop]})


@register_op(aten.as_strided.default, *_overloads("as_strided_copy.default"))
def as_strided(cx, x, size, stride, storage_offset=None):
    """as_strided of a contiguous tensor: a gather of its elements in memory order (any
    strides, overlapping windows included); with a dynamic batch only a plain reshape."""
    meta = cx.node.args[0].meta.get("val")
    if meta is not None and (not meta.is_contiguous() or int(meta.storage_offset()) != 0):
        raise ConversionError("as_strided of a non-contiguous view addresses its base's memory, which the "
                              "converted graph does not keep: call .contiguous() before as_strided")
    size, stride, offset = [int(s) for s in size], [int(s) for s in stride], int(storage_offset or 0)
    contiguous = [int(math.prod(size[i + 1:])) for i in range(len(size))]
    numel = int(math.prod(x.shape))
    if offset == 0 and int(math.prod(size)) == numel and all(
            s == c or n == 1 for s, c, n in zip(stride, contiguous, size)):
        return builtin._reshape_to(cx, x, cx.out_shape)
    if _batch_axes_of_input(cx) or cx.batch_axes():
        raise ConversionError(f"as_strided(size={size}, stride={stride}) with a dynamic batch: only a plain "
                              "reshape of contiguous memory is supported; use view/unfold/expand instead")
    grid = np.full(size, offset, dtype=np.int64) if size else np.asarray(offset, dtype=np.int64)
    for d, (n, s) in enumerate(zip(size, stride)):
        shape = [1] * len(size)
        shape[d] = n
        grid = grid + np.arange(n, dtype=np.int64).reshape(shape) * s
    if grid.size and (grid.max() >= numel or grid.min() < 0):
        raise ConversionError(f"as_strided(size={size}, stride={stride}, offset={offset}) reads outside the "
                              f"tensor's {numel} elements")
    flat = cx.op("reshape", [tensor(0), [numel]], [cx.torch(x)], (0,), shape=(numel,), dtype=x.dtype)
    return cx.op("take", [tensor(0), tensor(1)], [flat, cx.const(grid.astype(np.int32))],
                 identity(len(size)), dtype=x.dtype, kwargs={"axis": 0})


# ---- joining and splitting ----------------------------------------------------------------
@register_op(aten.cat.default)
def cat(cx, tensors, dim=0):
    vals = [v if isinstance(v, Value) else _as_value(cx, v) for v in tensors]
    rank = len(cx.out_shape)
    # torch skips legacy empty 1-D tensors next to tensors of other ranks
    vals = [v for v in vals if not (v.rank == 1 and v.shape[0] == 0 and rank != 1)]
    vals = [_cast(cx, v, cx.out_dtype) for v in vals]
    if not vals:
        return _empty(cx)
    if len(vals) == 1:
        return vals[0]
    return builtin.cat(cx, vals, dim)


@register_op(aten.split_with_sizes.default, *_overloads("split_with_sizes_copy.default"))
def split_with_sizes(cx, x, split_sizes, dim=0):
    return builtin._slices(cx, x, dim, [int(s) for s in split_sizes])


@register_op(aten.split.Tensor, *_overloads("split_copy.Tensor"))
def split(cx, x, split_size, dim=0):
    n = x.shape[dim]
    sizes = builtin._split_sizes(n, int(split_size)) if n else [0]
    return builtin._slices(cx, x, dim, sizes)


@register_op(aten.unbind.int, *_overloads("unbind_copy.int"))
def unbind(cx, x, dim=0):
    dim %= x.rank
    if dim in _batch_axes_of_input(cx):
        raise ConversionError("unbind along the batch axis gives one output per sample: not representable "
                              "with a dynamic batch")
    perm = _drop_axis_perm(x.perm, dim)
    shape = tuple(s for i, s in enumerate(x.shape) if i != dim)
    return tuple(_getitem(cx, x, {dim: i}, shape=shape, perm=perm) for i in range(x.shape[dim]))


@register_op(aten.slice.Tensor, *_overloads("slice_copy.Tensor"))
def slice_(cx, x, dim=0, start=None, end=None, step=1):
    key = _slice_key(cx, x, dim, start, end, step)
    if key == [None, None, None]:
        return x
    return _getitem(cx, x, {dim % x.rank: key})


@register_op(aten.select.int, *_overloads("select_copy.int"))
def select(cx, x, dim, index):
    dim %= x.rank
    return _getitem(cx, x, {dim: int(index)}, perm=_drop_axis_perm(x.perm, dim))


@register_op(*_overloads("narrow.default", "narrow_copy.default"))
def narrow(cx, x, dim, start, length):
    dim %= x.rank
    start = int(start) % x.shape[dim] if int(start) < 0 else int(start)
    return _getitem(cx, x, {dim: [start, start + int(length), None]})


@register_op(aten.flip.default)
def flip(cx, x, dims):
    axes = sorted({x.keras_axis(d) for d in dims}) if x.rank else []
    if not axes:
        return x
    return cx.op("flip", [tensor(0)], [x], x.perm, dtype=x.dtype, kwargs={"axis": axes})


@register_op(*_overloads("roll.default"))
def roll(cx, x, shifts, dims=()):
    shifts, dims = [int(s) for s in shifts], [int(d) for d in dims]
    if not dims:  # over the flattened tensor
        n = int(math.prod(x.shape))
        flat = cx.op("reshape", [tensor(0), [-1]], [cx.torch(x)], (0,), shape=(n,), dtype=x.dtype)
        rolled = cx.op("roll", [tensor(0), shifts[0]], [flat], (0,), shape=(n,), dtype=x.dtype)
        return builtin._reshape_to(cx, rolled, cx.out_shape)
    if len(shifts) != len(dims):
        raise ConversionError(f"roll: {len(shifts)} shifts for {len(dims)} dims")
    return cx.op("roll", [tensor(0)], [x], x.perm, dtype=x.dtype,
                 kwargs={"shift": shifts, "axis": [x.keras_axis(d) for d in dims]})


def _batch_multiples(cx, pos: int, name: str) -> dict:
    """{index: k} for the entries of the int-list argument at `pos` that torch.export made
    k * (the batch size), e.g. RAFT's `coords.repeat(batch_size, 1, 1, 1)`. Any other
    symbolic entry is refused: it cannot follow the batch."""
    raw = _raw_arg(cx, pos, name)
    out = {}
    for i, r in enumerate(raw if isinstance(raw, (list, tuple)) else []):
        val = r.meta.get("val") if isinstance(r, torch.fx.Node) else None
        expr = _sym_expr(val)
        if expr is None or not expr.free_symbols:
            continue
        coeff, rest = expr.as_coeff_Mul()
        if len(expr.free_symbols) != 1 or not rest.is_Symbol or not getattr(coeff, "is_Integer", False):
            raise ConversionError(f"{cx.node.target}: entry {i} of {name} is {expr}, which is not a multiple of "
                                  "the batch size: not representable with a dynamic batch")
        out[i] = int(coeff)
    return out


@register_op(aten.repeat.default)
def repeat(cx, x, repeats):
    reps = [int(r) for r in repeats]
    by_batch = _batch_multiples(cx, 1, "repeats")
    if len(reps) == x.rank and not by_batch:  # tile in the Keras layout
        return cx.op("tile", [tensor(0), [reps[p] for p in x.perm]], [x], x.perm, dtype=x.dtype)
    x = cx.torch(x)
    full = (1,) * (len(reps) - x.rank) + tuple(x.shape)
    if full != x.shape:
        x = builtin._reshape_to(cx, x, full) if x.rank else cx.op(
            "reshape", [tensor(0), list(full)], [x], identity(len(full)), shape=full, dtype=x.dtype)
    if by_batch:  # a count that is the batch size (times k): taken from the batch at run time
        ref = Value(cx.batch_ref, identity(len(cx.batch_ref.shape)), (), None)
        return cx.op("aten_tile_by_batch", [tensor(0), tensor(1), reps, {str(i): k for i, k in by_batch.items()}],
                     [x, ref], identity(len(reps)), dtype=x.dtype)
    return cx.op("tile", [tensor(0), reps], [x], identity(len(reps)), dtype=x.dtype)


@register_op(*_overloads("unfold.default"))
def unfold(cx, x, dimension, size, step):
    """Tensor.unfold: windows of `size` every `step` along `dimension`, as a new last axis."""
    if x.rank == 0:
        return builtin._reshape_to(cx, x, cx.out_shape)
    dim = dimension % x.rank
    if dim in _batch_axes_of_input(cx):
        raise ConversionError("unfold along the batch axis is not supported with a dynamic batch")
    n = x.shape[dim]
    count = (n - size) // step + 1
    index = np.arange(count)[:, None] * step + np.arange(size)[None, :]
    k = x.keras_axis(dim)
    perm = (*x.perm[:k], dim, x.rank, *x.perm[k + 1:])
    return cx.op("take", [tensor(0), tensor(1)], [x, cx.const(index.astype(np.int32))], perm, dtype=x.dtype,
                 kwargs={"axis": k})


# ---- padding ------------------------------------------------------------------------------
@register_op(aten.constant_pad_nd.default)
def constant_pad_nd(cx, x, pad, value=0):
    """F.pad(mode="constant"): pairs from the last axis backwards; negative widths crop."""
    pad = [int(p) for p in pad]
    widths = {x.rank - 1 - i: (pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)}
    crop = {d: [(-a if a < 0 else None), (b if b < 0 else None), None] for d, (a, b) in widths.items()
            if a < 0 or b < 0}
    if crop:
        shape = tuple(n + min(widths.get(d, (0, 0))[0], 0) + min(widths.get(d, (0, 0))[1], 0)
                      for d, n in enumerate(x.shape))
        x = _getitem(cx, x, crop, shape=shape)
    kw = [[0, 0] for _ in range(x.rank)]
    for d, (a, b) in widths.items():
        kw[x.keras_axis(d)] = [max(a, 0), max(b, 0)]
    if not any(a or b for a, b in kw):
        return Value(x.t, x.perm, cx.out_shape, x.dtype)
    fill = bool(value) if x.dtype == torch.bool else (int(value) if not x.dtype.is_floating_point else float(value))
    return cx.op("pad", [tensor(0), kw], [x], x.perm, dtype=x.dtype, kwargs={"constant_values": fill})


def _edge_pad(mode):
    def conv(cx, x, padding):
        pad = [int(p) for p in padding]
        for i in range(len(pad) // 2):
            d = x.rank - 1 - i
            a, b = pad[2 * i], pad[2 * i + 1]
            n = x.shape[d]
            index = np.arange(-a, n + b)
            index = np.abs(index) if mode == "reflect" else np.clip(index, 0, n - 1)
            if mode == "reflect":
                index = np.where(index > n - 1, 2 * (n - 1) - index, index)
            if (a, b) == (0, 0):
                continue
            shape = list(x.shape)
            shape[d] = len(index)
            x = cx.op("take", [tensor(0), tensor(1)], [x, cx.const(index.astype(np.int32))], x.perm,
                      shape=tuple(shape), dtype=x.dtype, kwargs={"axis": x.keras_axis(d)})
        return x

    return conv


register_op(*_overloads("reflection_pad1d.default", "reflection_pad2d.default",
                        "reflection_pad3d.default"))(_edge_pad("reflect"))
register_op(*_overloads("replication_pad1d.default", "replication_pad2d.default",
                        "replication_pad3d.default"))(_edge_pad("replicate"))


# ---- advanced indexing --------------------------------------------------------------------
def _expand_masks(cx, indices, what: str):
    """Constant boolean masks become their integer positions (np.nonzero, known now); a
    computed mask selects a data-dependent number of elements: refused."""
    out = []
    for i in indices:
        if isinstance(i, Value) and i.dtype in (torch.bool, torch.uint8):
            if i.data is None:
                raise ConversionError(f"{what} with a boolean mask computed from the inputs selects a "
                                      "data-dependent number of elements: use torch.where(mask, x, other) or "
                                      "multiply by the mask instead")
            out += [cx.const(p.astype(np.int64)) for p in np.nonzero(np.asarray(i.data))]
        else:
            out.append(i)
    return out


def _index_plan(x, indices):
    """(indexed torch axes, their index Values, where their result axes go in torch's result)."""
    axes = [d for d, i in enumerate(indices) if i is not None]
    adjacent = axes == list(range(axes[0], axes[-1] + 1))
    return axes, [indices[d] for d in axes], (axes[0] if adjacent else 0)


@register_op(aten.index.Tensor, *_overloads("_unsafe_index.Tensor"))
def index(cx, x, indices):
    """x[indices] (torch's advanced indexing; None entries keep the axis whole): one gather
    on x in its own layout. The index tensors broadcast together; their axes replace the
    indexed axes where those are adjacent, else lead the result."""
    indices = _expand_masks(cx, list(indices), "indexing")
    indices = [None if i is None else cx.torch(_as_value(cx, i)) for i in indices]
    axes, idx, place = _index_plan(x, indices)
    out_rank = len(cx.out_shape)
    sr = out_rank - (x.rank - len(axes))
    rest_torch = [d for d in range(x.rank) if d not in axes]
    keras_axes = [x.keras_axis(d) for d in axes]
    rest_keras = [k for k in range(x.rank) if k not in keras_axes]

    def out_pos(torch_axis):
        j = rest_torch.index(torch_axis)
        return j if j < place else j + sr

    perm = (*range(place, place + sr), *(out_pos(x.perm[k]) for k in rest_keras))
    return cx.op("aten_index_gather", [tensor(0), *(tensor(i + 1) for i in range(len(idx)))], [x, *idx],
                 perm, dtype=x.dtype, kwargs={"axes": keras_axes})


@register_op(aten.index_put.default, *_overloads("_unsafe_index_put.default", "index_put_copy.default"))
def index_put(cx, x, indices, values, accumulate=False):
    """x[indices] = values (or += with accumulate), in torch layout. A computed boolean
    mask works when the values do not depend on which elements it picks (one value, or
    values broadcast along the masked axes): a where."""
    x = cx.torch(x)
    values = cx.torch(_cast(cx, _as_value(cx, values), x.dtype)) if isinstance(values, Value) else values
    masks = [(d, i) for d, i in enumerate(indices) if isinstance(i, Value) and i.dtype == torch.bool
             and i.data is None]
    if masks:
        return _mask_put(cx, x, list(indices), masks, values, accumulate)
    indices = _expand_masks(cx, list(indices), "index_put")
    indices = [None if i is None else cx.torch(_as_value(cx, i)) for i in indices]
    axes, idx, place = _index_plan(x, indices)
    values = _as_value(cx, np.asarray(values, dtype=torch.empty(0, dtype=x.dtype).numpy().dtype)) \
        if not isinstance(values, Value) else values
    return cx.op("aten_index_put", [tensor(0), tensor(1), *(tensor(i + 2) for i in range(len(idx)))],
                 [x, values, *idx], identity(x.rank), shape=x.shape, dtype=x.dtype,
                 kwargs={"axes": axes, "place": place, "accumulate": bool(accumulate)})


def _mask_put(cx, x, indices, masks, values, accumulate):
    if len(masks) != 1 or any(i is not None for d, i in enumerate(indices) if d != masks[0][0]):
        raise ConversionError("index_put with a computed boolean mask together with other indices selects a "
                              "data-dependent set of elements: use torch.where")
    d, mask = masks[0]
    after = x.rank - d - mask.rank  # axes after the masked ones
    if isinstance(values, Value) and values.rank > after:
        lead = values.shape[:values.rank - after]
        if math.prod(lead) != 1:
            raise ConversionError(f"x[mask] = values with values of shape {values.shape}: one value per "
                                  "selected element needs their data-dependent count: use torch.where")
        values = builtin._reshape_to(cx, values, values.shape[values.rank - after:]) if after else cx.op(
            "reshape", [tensor(0), []], [values], (), shape=(), dtype=values.dtype)
    full = (1,) * d + tuple(mask.shape) + (1,) * after
    mask = cx.torch(mask)
    if len(full) != mask.rank:  # expand_dims keeps an axis of unknown (batch) size
        new_axes = [*range(d), *range(d + mask.rank, len(full))]
        mask = cx.op("expand_dims", [tensor(0), new_axes], [mask], identity(len(full)), shape=full, dtype=torch.bool)
    new = values
    if accumulate:
        new = builtin._elementwise("add")(cx, x, values)
    tensors = [mask] + ([new] if isinstance(new, Value) else []) + [x]
    fill = tensor(1) if isinstance(new, Value) else new
    out = cx.op("where", [tensor(0), fill, tensor(len(tensors) - 1)], tensors, identity(x.rank), shape=x.shape,
                dtype=x.dtype)
    return _cast(cx, out, x.dtype)


@register_op(aten.index_select.default)
def index_select(cx, x, dim, index):
    index = cx.torch(_as_value(cx, index))
    if x.rank == 0:
        return builtin._reshape_to(cx, x, cx.out_shape)
    if index.rank == 0:
        index = cx.op("reshape", [tensor(0), [1]], [index], (0,), shape=(1,), dtype=index.dtype)
    return cx.op("take", [tensor(0), tensor(1)], [x, index], x.perm, dtype=x.dtype,
                 kwargs={"axis": x.keras_axis(dim)})


@register_op(aten.embedding.default)
def embedding(cx, weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    weight, indices = cx.torch(weight), cx.torch(_as_value(cx, indices))
    return cx.op("take", [tensor(0), tensor(1)], [weight, indices], identity(len(cx.out_shape)), dtype=weight.dtype,
                 kwargs={"axis": 0})


@register_op(*_overloads("embedding_renorm.default"))
def embedding_renorm(cx, weight, indices, max_norm, norm_type):
    weight, indices = cx.torch(weight), cx.torch(indices)
    return cx.op("aten_embedding_renorm", [tensor(0), tensor(1), float(max_norm), float(norm_type)],
                 [weight, indices], identity(weight.rank), shape=weight.shape, dtype=weight.dtype)


@register_op(aten.gather.default)
def gather(cx, x, dim, index, sparse_grad=False):
    """torch.gather: index may be smaller than x on the other axes (x is cut to it first)."""
    if 0 in index.shape:
        return _empty(cx)
    if x.rank == 0 or index.rank == 0:
        xt = builtin._reshape_to(cx, x, (1,)) if x.rank == 0 else x
        it = cx.op("reshape", [tensor(0), [1] * xt.rank], [index], identity(xt.rank), shape=(1,) * xt.rank,
                   dtype=index.dtype) if index.rank == 0 else index
        y = gather(cx, xt, dim if x.rank else 0, it)
        return builtin._reshape_to(cx, y, cx.out_shape)
    dim %= x.rank
    index = cx.to(index, x.perm)
    batch_x, batch_i = _batch_axes_of_input(cx, 0), _batch_axes_of_input(cx, 2)
    cut = {}
    for d in range(x.rank):
        if d != dim and index.shape[d] != x.shape[d]:
            if d in batch_x or d in batch_i:
                raise ConversionError(f"gather: index and input differ on axis {d}, which follows the batch")
            cut[d] = [None, index.shape[d], None]
    if cut:
        shape = tuple(index.shape[d] if d in cut else n for d, n in enumerate(x.shape))
        x = _getitem(cx, x, cut, shape=shape)
    return cx.op("take_along_axis", [tensor(0), tensor(1)], [x, index], x.perm, dtype=x.dtype,
                 kwargs={"axis": x.keras_axis(dim)})


# ---- scatter ------------------------------------------------------------------------------
_REDUCE = {"sum": "sum", "add": "sum", "prod": "prod", "multiply": "prod", "mean": "mean", "amax": "amax",
           "amin": "amin"}


def _scatter(cx, x, dim, index, src, reduce=None, include_self=True):
    if x.rank == 0:  # as a 1-element vector
        def vec(v):
            return cx.op("reshape", [tensor(0), [1]], [v], (0,), shape=(1,), dtype=v.dtype) if isinstance(
                v, Value) and v.rank == 0 else v
        y = _scatter(cx, vec(x), 0, vec(index), vec(src), reduce, include_self)
        return cx.op("reshape", [tensor(0), []], [y], (), shape=(), dtype=x.dtype)
    dim %= x.rank
    x = cx.torch(x)
    index = cx.torch(index)
    if index.shape and 0 in index.shape:
        return x
    if isinstance(src, Value):
        src = cx.torch(src)
    else:
        src = bool(src) if x.dtype == torch.bool else (float(src) if x.dtype.is_floating_point else int(src))
    if dim in _batch_axes_of_input(cx, 0):
        raise ConversionError("scatter along the batch axis is not supported with a dynamic batch")
    tensors = [x, index] + ([src] if isinstance(src, Value) else [])
    return cx.op("aten_scatter_dense", [tensor(0), tensor(1), tensor(2) if isinstance(src, Value) else src, dim,
                                        None if reduce is None else _REDUCE[reduce], bool(include_self)],
                 tensors, identity(x.rank), shape=x.shape, dtype=x.dtype)


@register_op(aten.scatter.src, aten.scatter.value)
def scatter(cx, x, dim, index, src):
    return _scatter(cx, x, dim, index, src)


@register_op(aten.scatter.reduce, aten.scatter.value_reduce)
def scatter_reduce_legacy(cx, x, dim, index, src, reduce):
    return _scatter(cx, x, dim, index, src, reduce)


@register_op(aten.scatter_add.default)
def scatter_add(cx, x, dim, index, src):
    return _scatter(cx, x, dim, index, src, "sum")


@register_op(aten.scatter_reduce.two)
def scatter_reduce(cx, x, dim, index, src, reduce, include_self=True):
    return _scatter(cx, x, dim, index, src, reduce, include_self)


def _slice_scatter(cx, x, src, dim, start, end, step):
    dim %= x.rank
    src = cx.to(_cast(cx, src, x.dtype), x.perm)
    k = x.keras_axis(dim)
    batch = dim in _batch_axes_of_input(cx)
    if batch:
        key = _slice_key(cx, x, dim, start, end, step)
        if key != [None, None, None]:
            raise ConversionError("slice_scatter into part of the batch axis is not supported with a dynamic batch")
        return src
    n = x.shape[dim]
    s, e, st = slice(start, end, step).indices(n)
    positions = list(range(s, e, st)) if st > 0 else []
    if not positions:
        return x
    if st == 1:  # head, src, tail: two slices and a concatenation
        parts = []
        if s:
            parts.append(_getitem(cx, x, {dim: [None, s, None]}, shape=_with(x.shape, dim, s)))
        parts.append(src)
        if e < n:
            parts.append(_getitem(cx, x, {dim: [e, None, None]}, shape=_with(x.shape, dim, n - e)))
        if len(parts) == 1:
            return src
        return cx.op("concatenate", [[tensor(i) for i in range(len(parts))], k], parts, x.perm, shape=x.shape,
                     dtype=x.dtype)
    index = np.arange(n)  # positions into x and src concatenated
    index[positions] = n + np.arange(len(positions))
    both = cx.op("concatenate", [[tensor(0), tensor(1)], k], [x, src], x.perm,
                 shape=_with(x.shape, dim, n + len(positions)), dtype=x.dtype)
    return cx.op("take", [tensor(0), tensor(1)], [both, cx.const(index.astype(np.int32))], x.perm, shape=x.shape,
                 dtype=x.dtype, kwargs={"axis": k})


def _with(shape, dim, n):
    shape = list(shape)
    shape[dim] = n
    return tuple(shape)


@register_op(aten.slice_scatter.default)
def slice_scatter(cx, x, src, dim=0, start=None, end=None, step=1):
    return _slice_scatter(cx, x, _as_value(cx, src), dim, start, end, step)


@register_op(aten.select_scatter.default)
def select_scatter(cx, x, src, dim, index):
    dim %= x.rank
    index = int(index) % x.shape[dim]
    src = cx.torch(_as_value(cx, src))
    shape = _with(x.shape, dim, 1)
    src = cx.op("reshape", [tensor(0), [-1 if i == 0 and src.rank and src.shape[0] == shape[0] and
                                        _batch_axes_of_input(cx) else n for i, n in enumerate(shape)]],
                [src], identity(x.rank), shape=shape, dtype=src.dtype)
    return _slice_scatter(cx, x, src, dim, index, index + 1, 1)


@register_op(*_overloads("masked_scatter.default"))
def masked_scatter(cx, x, mask, source):
    """Positions where the mask holds take the source's leading elements in row-major order:
    a running count over the flattened mask picks them (no data-dependent shape)."""
    x, mask, source = cx.torch(x), cx.torch(_as_value(cx, mask)), cx.torch(_as_value(cx, source))
    return cx.op("aten_masked_scatter", [tensor(0), tensor(1), tensor(2)], [x, mask, source],
                 identity(len(cx.out_shape)), dtype=x.dtype)


# ---- matrices -----------------------------------------------------------------------------
@register_op(aten.diagonal.default, *_overloads("diagonal_copy.default"))
def diagonal(cx, x, offset=0, dim1=0, dim2=1):
    d1, d2 = dim1 % x.rank, dim2 % x.rank
    batch = _batch_axes_of_input(cx)
    if d1 in batch or d2 in batch:
        raise ConversionError("diagonal over the batch axis is not supported with a dynamic batch")
    n1, n2 = x.shape[d1], x.shape[d2]
    if offset >= 0:
        i = np.arange(max(0, min(n1, n2 - offset)))
        flat = i * n2 + i + offset
    else:
        i = np.arange(max(0, min(n1 + offset, n2)))
        flat = (i - offset) * n2 + i
    rest_torch = [d for d in range(x.rank) if d not in (d1, d2)]
    rest_keras = [k for k in range(x.rank) if x.perm[k] in rest_torch]
    perm = (*(rest_torch.index(x.perm[k]) for k in rest_keras), x.rank - 2)
    return cx.op("aten_take_flat2", [tensor(0), flat.astype(np.int32).tolist(), x.keras_axis(d1),
                                     x.keras_axis(d2)], [x], perm, dtype=x.dtype)


def _triangle(upper: bool):
    def conv(cx, x, diagonal=0):
        n, m = x.shape[-2], x.shape[-1]
        rows, cols = np.arange(n)[:, None], np.arange(m)[None, :]
        keep = (cols - rows >= diagonal) if upper else (cols - rows <= diagonal)
        mask = cx.const(keep.reshape((1,) * (x.rank - 2) + keep.shape), x.perm)
        return cx.op("aten_where_zero", [tensor(0), tensor(1)], [mask, x], x.perm, dtype=x.dtype)

    return conv


register_op(aten.tril.default)(_triangle(False))
register_op(aten.triu.default)(_triangle(True))


# ---- data-dependent shapes ----------------------------------------------------------------
@register_op(*_overloads("nonzero.default", "nonzero_numpy.default", "masked_select.default"))
def nonzero(cx, x, *args, **kwargs):
    name = getattr(cx.node.target, "__name__", str(cx.node.target))
    raise ConversionError(f"{name}: the number of elements it returns depends on the input's values "
                          "(a data-dependent output size), which a Keras graph cannot represent: keep shapes "
                          "fixed (torch.where(mask, x, 0), a mask multiply) or register a converter for the "
                          "module around it")
