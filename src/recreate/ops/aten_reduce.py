"""ATen op converters: reductions (sum, mean, amax, any, var, norms, ...), arg/max with
indices, scans (cumsum, cumprod), sorting (sort, topk), softmax and pairwise distances.

Layout: a reduction maps the reduced torch dims onto Keras axes (`Value.keras_axis`), so a
channels-last value stays channels-last; with keepdim the perm is kept, without it the
remaining axes keep their order. Sorting moves the sorted dim to the last Keras axis (the
result keeps that perm: no transpose back).

dtypes follow torch: sum/prod/cumsum of bool or integers accumulate in int64 (or in the
`dtype=` argument), any/all give bool (uint8 for uint8), argmax and indices are int64; the
input is cast to the result's dtype (`cx.out_dtype`) before reducing. Empty dim lists follow
each schema: sum/mean/amax/var/norm reduce everything, any.dims/all.dims reduce nothing.
Ties: max.dim/argmax/argmin return the first extreme (NaN counts as the extreme), sort and
topk are stable (see recreate.layers.op_helpers.reduce).
"""

from __future__ import annotations

import math
import operator

import torch

from ..errors import ConversionError
from ..layers.op import Op
from ..trace import Value, identity, tensor
from . import find_op, register_op

aten = torch.ops.aten

_KERAS_DTYPES = {torch.bool: "bool", torch.uint8: "uint8", torch.int8: "int8", torch.int16: "int16",
                 torch.int32: "int32", torch.int64: "int64", torch.float16: "float16",
                 torch.bfloat16: "bfloat16", torch.float32: "float32", torch.float64: "float64"}


def _overloads(*names):
    """The OpOverloads among `names` ("sum.dim_IntList") that this torch has."""
    out = []
    for n in names:
        name, overload = n.split(".")
        packet = getattr(aten, name, None)
        if packet is not None and overload in packet.overloads():
            out.append(getattr(packet, overload))
    return out


def _kdtype(dtype) -> str:
    name = _KERAS_DTYPES.get(dtype)
    if name is None:
        raise ConversionError(f"dtype {dtype} has no Keras equivalent (complex and quantized tensors are not supported)")
    return name


def _cast(cx, v: Value, dtype) -> Value:
    if v.dtype == dtype:
        return v
    return cx.op("cast", [tensor(0), _kdtype(dtype)], [v], v.perm, shape=v.shape, dtype=dtype)


def _nonzero(cx, v: Value) -> Value:
    """v != 0 as bool (NaN is nonzero)."""
    if v.dtype == torch.bool:
        return v
    return cx.op("not_equal", [tensor(0), 0], [v], v.perm, shape=v.shape, dtype=torch.bool)


# ---- dims and layout ---------------------------------------------------------------------------
def _dims(x: Value, dim, empty_means_all=True) -> list[int]:
    """The reduced torch dims, non-negative and sorted. None (and [] where the schema says so)
    means every dim; a 0-d tensor has none to reduce."""
    if x.rank == 0:
        return []
    if dim is None or (empty_means_all and isinstance(dim, (list, tuple)) and not dim):
        return list(range(x.rank))
    dims = [dim] if isinstance(dim, int) else list(dim)
    for d in dims:
        if not -x.rank <= d < x.rank:
            raise ConversionError(f"dim {d} out of range for a tensor of rank {x.rank}")
    return sorted({d % x.rank for d in dims})


def _reduced_perm(x: Value, dims, keepdim) -> tuple:
    """The perm of the result of reducing `dims` of x: kept as it is with keepdim, else the
    remaining torch axes renumbered in their Keras order."""
    if keepdim:
        return x.perm
    rest = [p for p in x.perm if p not in dims]
    order = sorted(rest)
    return tuple(order.index(p) for p in rest)


def _reduced_shape(x: Value, dims, keepdim) -> tuple:
    if keepdim:
        return tuple(1 if i in dims else s for i, s in enumerate(x.shape))
    return tuple(s for i, s in enumerate(x.shape) if i not in dims)


def _reduce(cx, x: Value, fn: str, dims, keepdim, kwargs=None, dtype=None) -> Value:
    """keras.ops.<fn>(x, axis=<dims as Keras axes>, keepdims=keepdim) (or a helper taking
    the same arguments)."""
    if not dims:
        return x
    axes = sorted(x.keras_axis(d) for d in dims)
    return cx.op(fn, [tensor(0)], [x], _reduced_perm(x, dims, keepdim), shape=_reduced_shape(x, dims, keepdim),
                 dtype=dtype if dtype is not None else x.dtype,
                 kwargs={"axis": axes, "keepdims": bool(keepdim), **(kwargs or {})})


def _multi_op(cx, fn: str, args, tensors, outs, kwargs=None) -> list[Value]:
    """One Op layer whose helper returns several tensors; `outs`: (perm, shape, dtype) each."""
    layer = Op(fn, args=args, kwargs=kwargs or {}, name=cx.conv.fresh(cx.node.name))
    res = layer(*[v.t for v in tensors])
    return [Value(t, tuple(p), tuple(s), d) for t, (p, s, d) in zip(res, outs)]


def _used(cx, i: int) -> bool:
    """Whether output `i` of this multi-output node is read."""
    return any(u.target is operator.getitem and u.args[1] == i for u in cx.node.users)


def _out_dtype(cx, i: int):
    m = cx.out_meta
    return m[i].dtype if isinstance(m, (list, tuple)) else m.dtype


# ---- sum, mean, prod, nansum, count_nonzero -----------------------------------------------------
def _sum_like(fn, nan_to_zero=False):
    def conv(cx, x, dim=None, keepdim=False, *, dtype=None):
        out = cx.out_dtype
        if nan_to_zero and x.dtype.is_floating_point:
            x = cx.op("where", [{"__tensor__": 1}, 0.0, tensor(0)], [x, cx.op("isnan", [tensor(0)], [x], x.perm,
                      shape=x.shape, dtype=torch.bool)], x.perm, shape=x.shape, dtype=x.dtype)
        x = _cast(cx, x, out)
        return _reduce(cx, x, fn, _dims(x, dim), keepdim)

    return conv


_sum = _sum_like("sum")
register_op(*_overloads("sum.dim_IntList"))(_sum)
register_op(*_overloads("nansum.default"))(_sum_like("sum", nan_to_zero=True))
register_op(*_overloads("mean.dim"))(_sum_like("mean"))


@register_op(*_overloads("sum.default"))
def sum_all(cx, x, *, dtype=None):
    return _sum(cx, x, None, False)


@register_op(*_overloads("mean.default"))
def mean_all(cx, x, *, dtype=None):
    x = _cast(cx, x, cx.out_dtype)
    return _reduce(cx, x, "mean", _dims(x, None), False)


@register_op(*_overloads("prod.default", "prod.dim_int"))
def prod(cx, x, dim=None, keepdim=False, *, dtype=None):
    x = _cast(cx, x, cx.out_dtype)
    return _reduce(cx, x, "prod", _dims(x, dim), keepdim)


@register_op(*_overloads("count_nonzero.default", "count_nonzero.dim_IntList"))
def count_nonzero(cx, x, dim=None):
    x = _cast(cx, _nonzero(cx, x), torch.int64)
    return _reduce(cx, x, "sum", _dims(x, dim), False)


# ---- amax, amin, any, all ----------------------------------------------------------------------
def _empty(cx, x: Value, dims, keepdim, dtype=None) -> Value | None:
    """The result of a max-like reduction of a tensor with no elements: torch raises when a
    reduced dim is empty; otherwise the result is empty too, made by a sum (keras.ops.max
    asserts a non-empty input when run eagerly). None when x has elements."""
    if 0 not in x.shape:
        return None
    if any(x.shape[d] == 0 for d in dims) or not dims:
        raise ConversionError(f"{cx.node.target} over an empty dim of {x.shape} (torch raises)")
    dtype = dtype if dtype is not None else x.dtype
    return _reduce(cx, _cast(cx, x, dtype), "sum", dims, keepdim)


def _extreme(largest):
    def conv(cx, x, dim=(), keepdim=False):
        empty = _empty(cx, x, _dims(x, dim), keepdim)
        if empty is not None:
            return empty
        if x.dtype == torch.bool:  # keras/tf have no max of bools: any / all
            return _reduce(cx, x, "any" if largest else "all", _dims(x, dim), keepdim)
        return _reduce(cx, x, "max" if largest else "min", _dims(x, dim), keepdim)

    return conv


register_op(*_overloads("amax.default"))(_extreme(True))
register_op(*_overloads("amin.default"))(_extreme(False))


@register_op(*_overloads("max.default", "min.default"))
def max_all(cx, x):
    return _extreme(cx.node.target is aten.max.default)(cx, x, None, False)


def _any_all(fn):
    def conv(cx, x, dim=None, keepdim=False):
        # any.dims / all.dims: an empty list reduces nothing (int dim overloads never have one)
        v = _reduce(cx, _nonzero(cx, x), fn, _dims(x, dim, empty_means_all=False), keepdim, dtype=torch.bool)
        return _cast(cx, v, cx.out_dtype)

    return conv


register_op(*_overloads("any.default", "any.dim", "any.dims"))(_any_all("any"))
register_op(*_overloads("all.default", "all.dim", "all.dims"))(_any_all("all"))


@register_op(*_overloads("aminmax.default"))
def aminmax(cx, x, *, dim=None, keepdim=False):
    dims = _dims(x, dim)
    return tuple(_extreme(largest)(cx, x, dims, keepdim) for largest in (False, True))


# ---- argmax, argmin, max.dim, min.dim ----------------------------------------------------------
def _flat_torch(cx, x: Value) -> Value:
    """x in torch's memory order, flattened to one axis."""
    x = cx.torch(x)
    n = 1
    for s in x.shape:
        n *= s
    return cx.op("reshape", [tensor(0), [-1]], [x], (0,), shape=(n,), dtype=x.dtype)


def _argext(largest):
    def conv(cx, x, dim=None, keepdim=False):
        if x.rank and 0 in x.shape:
            return _empty(cx, x, _dims(x, dim), keepdim, torch.int64)
        if x.rank == 0:
            return cx.op("zeros_like", [tensor(0)], [x], (), kwargs={"dtype": "int64"}, shape=(), dtype=torch.int64)
        if dim is None:
            flat = _flat_torch(cx, x)
            r = cx.op("aten_arg_extreme", [tensor(0)], [flat], (0,), shape=(1,) if keepdim else (),
                      dtype=torch.int64, kwargs={"axis": 0, "keepdims": True, "largest": largest})
            shape = (1,) * x.rank if keepdim else ()
            return cx.op("reshape", [tensor(0), list(shape)], [r], identity(len(shape)), shape=shape, dtype=torch.int64)
        (d,) = _dims(x, dim)
        return _reduce(cx, x, "aten_arg_extreme", [d], keepdim, kwargs={"largest": largest}, dtype=torch.int64)

    return conv


register_op(*_overloads("argmax.default"))(_argext(True))
register_op(*_overloads("argmin.default"))(_argext(False))


@register_op(*_overloads("max.dim", "min.dim"))
def max_dim(cx, x, dim, keepdim=False):
    largest = cx.node.target is aten.max.dim
    if x.rank == 0:
        idx = cx.op("zeros_like", [tensor(0)], [x], (), kwargs={"dtype": "int64"}, shape=(), dtype=torch.int64)
        return x, idx
    (d,) = _dims(x, dim)
    if 0 in x.shape:
        return _empty(cx, x, [d], keepdim), _empty(cx, x, [d], keepdim, torch.int64)
    if not _used(cx, 1):
        return _extreme(largest)(cx, x, [d], keepdim), None
    perm, shape = _reduced_perm(x, [d], keepdim), _reduced_shape(x, [d], keepdim)
    kw = {"axis": x.keras_axis(d), "keepdims": bool(keepdim), "largest": largest}
    values, idx = _multi_op(cx, "aten_max_with_index", [tensor(0)], [x], [(perm, shape, x.dtype),
                                                                          (perm, shape, torch.int64)], kw)
    return values, idx


# ---- var, std, var_mean, std_mean --------------------------------------------------------------
def _correction(correction, unbiased):
    if correction is not None:
        return float(correction)
    return 1.0 if unbiased is None or unbiased else 0.0


def _var(cx, x, dim, correction, keepdim, root):
    if not x.dtype.is_floating_point:
        raise ConversionError(f"{cx.node.target} of a {x.dtype} tensor (torch needs a floating dtype)")
    dims = _dims(x, dim)
    if not dims:  # a 0-d tensor: one element, N = 1
        return cx.op("aten_var", [tensor(0)], [x], x.perm, shape=x.shape, dtype=x.dtype,
                     kwargs={"axis": [], "keepdims": True, "correction": correction, "root": root})
    return _reduce(cx, x, "aten_var", dims, keepdim, kwargs={"correction": correction, "root": root})


def _var_conv(root: bool, with_mean: bool):
    def conv(cx, x, dim=None, *args, correction=None, keepdim=False, unbiased=None):
        # var.correction(x, dim=None, *, correction=None, keepdim=False);
        # var.dim(x, dim, unbiased=True, keepdim=False); var.default(x, unbiased=True)
        target = cx.node.target
        if target._overloadname == "default":  # (x, unbiased=True): no dim
            unbiased = dim if dim is not None else unbiased
            dim = None
        elif target._overloadname == "dim" and args:
            unbiased = args[0]
            keepdim = args[1] if len(args) > 1 else keepdim
        c = _correction(correction, unbiased)
        out = _var(cx, x, dim, c, keepdim, root)
        if not with_mean:
            return out
        mean = _reduce(cx, x, "mean", _dims(x, dim), keepdim)
        return out, mean

    return conv


register_op(*_overloads("var.correction", "var.dim", "var.default"))(_var_conv(False, False))
register_op(*_overloads("std.correction", "std.dim", "std.default"))(_var_conv(True, False))
register_op(*_overloads("var_mean.correction", "var_mean.dim", "var_mean.default"))(_var_conv(False, True))
register_op(*_overloads("std_mean.correction", "std_mean.dim", "std_mean.default"))(_var_conv(True, True))


# ---- norms, logsumexp --------------------------------------------------------------------------
@register_op(*_overloads("linalg_vector_norm.default"))
def vector_norm(cx, x, ord=2, dim=None, keepdim=False, *, dtype=None):
    ord = float(ord)
    x = _cast(cx, x, cx.out_dtype)
    dims = _dims(x, dim)
    if ord == 0:
        return _reduce(cx, _cast(cx, _nonzero(cx, x), x.dtype), "sum", dims, keepdim)
    a = cx.op("abs", [tensor(0)], [x], x.perm, shape=x.shape, dtype=x.dtype)
    if ord in (float("inf"), float("-inf")):
        return _extreme(ord > 0)(cx, a, dims, keepdim)
    if ord == 1:
        return _reduce(cx, a, "sum", dims, keepdim)
    if ord == 2:
        sq = cx.op("multiply", [tensor(0), tensor(0)], [x], x.perm, shape=x.shape, dtype=x.dtype)
        s = _reduce(cx, sq, "sum", dims, keepdim)
        return cx.op("sqrt", [tensor(0)], [s], s.perm, shape=s.shape, dtype=s.dtype)
    p = cx.op("power", [tensor(0), ord], [a], x.perm, shape=x.shape, dtype=x.dtype)
    s = _reduce(cx, p, "sum", dims, keepdim)
    return cx.op("power", [tensor(0), 1.0 / ord], [s], s.perm, shape=s.shape, dtype=s.dtype)


@register_op(*_overloads("logsumexp.default"))
def logsumexp(cx, x, dim, keepdim=False):
    x = _cast(cx, x, cx.out_dtype)
    dims = _dims(x, dim)
    if not dims:
        return x
    return _reduce(cx, x, "aten_logsumexp", dims, keepdim)


# ---- histc -------------------------------------------------------------------------------------
@register_op(*_overloads("histc.default"))
def histc(cx, x, bins=100, min=0, max=0):
    """A histogram of every element (the batch too), shape (bins,) in x's dtype. min == max
    means the data's range, found at run time (it follows the batch); otherwise the range is
    fixed and checked as torch checks it."""
    if not x.dtype.is_floating_point:
        raise ConversionError(f"histc of a {x.dtype} tensor (torch has only floating kernels)")
    bins = int(bins)
    if bins <= 0:
        raise ConversionError(f"histc: bins must be > 0, got {bins}")
    low, high = float(min), float(max)
    kwargs = {"bins": bins, "dtype": _kdtype(x.dtype)}
    if low != high:
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ConversionError(f"histc: range of [{low}, {high}] is not finite (torch raises)")
        if low > high:
            raise ConversionError(f"histc: max ({high}) must be larger than min ({low}) (torch raises)")
        kwargs.update(low=low, high=high)
    return cx.op("aten_histc", [tensor(0)], [x], (0,), shape=(bins,), dtype=x.dtype, kwargs=kwargs)


# ---- scans -------------------------------------------------------------------------------------
def _scan(fn):
    def conv(cx, x, dim, *, dtype=None):
        x = _cast(cx, x, cx.out_dtype)
        if x.rank == 0:
            return x
        _dims(x, dim)
        return cx.op(fn, [tensor(0)], [x], x.perm, shape=x.shape, dtype=x.dtype, kwargs={"axis": x.keras_axis(dim)})

    return conv


register_op(*_overloads("cumsum.default"))(_scan("cumsum"))
register_op(*_overloads("cumprod.default"))(_scan("cumprod"))


# ---- sort, topk --------------------------------------------------------------------------------
def _sorted(cx, x, dim, descending, k=None):
    """(values, int64 indices) of the stable sort of x along torch dim `dim` (first k)."""
    if x.rank == 0:
        idx = cx.op("zeros_like", [tensor(0)], [x], (), kwargs={"dtype": "int64"}, shape=(), dtype=torch.int64)
        return x, idx
    (d,) = _dims(x, dim)
    x = cx.to(x, tuple(p for p in x.perm if p != d) + (d,))
    shape = x.shape if k is None else tuple(k if i == d else s for i, s in enumerate(x.shape))
    outs = [(x.perm, shape, x.dtype), (x.perm, shape, torch.int64)]
    values, idx = _multi_op(cx, "aten_sort", [tensor(0)], [x], outs, {"descending": bool(descending), "k": k})
    return values, idx


@register_op(*_overloads("sort.default"))
def sort(cx, x, dim=-1, descending=False):
    return _sorted(cx, x, dim, descending)


@register_op(*_overloads("sort.stable"))
def sort_stable(cx, x, *, stable=None, dim=-1, descending=False):
    return _sorted(cx, x, dim, descending)


@register_op(*_overloads("topk.default"))
def topk(cx, x, k, dim=-1, largest=True, sorted=True):
    # sorted=False leaves the order to the kernel; the sorted order is one torch may return
    n = x.shape[dim] if x.rank else 1
    if not 0 <= k <= n:
        raise ConversionError(f"topk: k={k} out of range for a dim of size {n}")
    return _sorted(cx, x, dim, largest, k=int(k))


# ---- softmax -----------------------------------------------------------------------------------
def _softmax(cx, x, dim, log):
    x = _cast(cx, x, cx.out_dtype)
    axis = x.keras_axis(dim) if x.rank else 0
    return cx.op("aten_softmax", [tensor(0)], [x], x.perm, shape=x.shape, dtype=x.dtype,
                 kwargs={"axis": axis, "log": log})


@register_op(aten._softmax.default, aten._log_softmax.default)
def softmax(cx, x, dim, half_to_float=False):
    return _softmax(cx, x, dim, cx.node.target is aten._log_softmax.default)


@register_op(*_overloads("softmax.int", "log_softmax.int"))
def softmax_int(cx, x, dim, dtype=None):
    return _softmax(cx, x, dim, cx.node.target is aten.log_softmax.int)


# ---- pairwise distances ------------------------------------------------------------------------
def _check_p(p):
    p = float(p)
    if p < 0:
        raise ConversionError(f"distance with p={p}: torch needs p >= 0")
    return p


@register_op(*_overloads("_cdist_forward.default"))
def cdist_forward(cx, x1, x2, p, compute_mode=None):
    p = _check_p(p)
    mode = 0 if compute_mode is None else int(compute_mode)
    # torch's rule (ATen _cdist_forward): the matrix-product path for p == 2 when asked
    # (mode 1) or by default when either set has more than 25 rows
    use_mm = p == 2.0 and (mode == 1 or (mode == 0 and (x1.shape[-2] > 25 or x2.shape[-2] > 25)))
    x1 = _cast(cx, cx.torch(x1), cx.out_dtype)
    x2 = _cast(cx, cx.torch(x2), cx.out_dtype)
    return cx.op("aten_cdist", [tensor(0), tensor(1)], [x1, x2], identity(len(cx.out_shape)),
                 kwargs={"p": p, "use_mm": use_mm})


@register_op(*_overloads("cdist.default"))
def cdist(cx, x1, x2, p=2.0, compute_mode=None):
    modes = {None: 0, "use_mm_for_euclid_dist_if_necessary": 0, "use_mm_for_euclid_dist": 1,
             "donot_use_mm_for_euclid_dist": 2}
    return cdist_forward(cx, x1, x2, p, modes.get(compute_mode, compute_mode))


@register_op(*_overloads("_pdist_forward.default", "pdist.default"))
def pdist_forward(cx, x, p=2.0):
    p = _check_p(p)
    axes = cx.batch_axes(0)
    if axes and 0 in axes:
        raise ConversionError("pdist over a dynamic batch of rows: its output length depends on the batch size; "
                              "convert with a fixed batch")
    return cx.op("aten_pdist", [tensor(0)], [cx.torch(x)], (0,), kwargs={"p": p})


# ---- binary max/min (the export IR's max.other) ------------------------------------------------
for _name, _core in (("max.other", "maximum.default"), ("min.other", "minimum.default")):
    _fn = find_op(getattr(aten, _core.split(".")[0]).default)
    _free = [t for t in _overloads(_name) if find_op(t) is None]
    if _fn is not None and _free:
        register_op(*_free)(_fn)
