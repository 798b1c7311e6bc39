"""Built-in op converters: elementwise arithmetic and activations, shape and indexing,
reductions, concatenation, and functional forms of registered modules."""

from __future__ import annotations

import builtins
import math
import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConversionError
from ..trace import Value, compose_permute, identity, tensor
from . import register_op


# ---- broadcasting and layouts -----------------------------------------------------------------
def _align(cx, values):
    """Bring tensor operands to one perm (that of the highest-rank one); lower-rank operands
    are broadcast the torch way (trailing axes) and permuted to match."""
    vals = [v for v in values if isinstance(v, Value)]
    top = max(vals, key=lambda v: v.rank)
    perm = top.perm
    out = []
    for v in values:
        if not isinstance(v, Value):
            out.append(v)
        elif v.rank == top.rank:
            out.append(cx.to(v, perm))
        elif perm == identity(top.rank):
            out.append(v)
        elif v.data is not None:
            # A model constant (layer scale, bias): expand and permute it now, not in the graph.
            full = (1,) * (top.rank - v.rank) + v.shape
            out.append(cx.const(np.asarray(v.data).reshape(full), perm))
        else:
            full = (1,) * (top.rank - v.rank) + v.shape
            v = cx.torch(v)
            expanded = cx.op("reshape", [tensor(0), list(full)], [v], identity(len(full)), shape=full, dtype=v.dtype)
            out.append(cx.to(expanded, perm))
    return out, perm


def _template(values):
    tensors, args = [], []
    for v in values:
        if isinstance(v, Value):
            args.append(tensor(len(tensors)))
            tensors.append(v)
        else:
            args.append(v.item() if hasattr(v, "item") else v)
    return args, tensors


def _elementwise(keras_fn):
    def conv(cx, *args, **kwargs):
        kwargs.pop("out", None)
        alpha = kwargs.pop("alpha", None)
        args = list(args)
        if alpha is not None and alpha != 1:
            args[1] = _scaled(cx, args[1], alpha)
        vals, perm = _align(cx, args)
        tmpl, tensors = _template(vals)
        return cx.op(keras_fn, tmpl, tensors, perm)

    return conv


def _scaled(cx, v, alpha):
    if not isinstance(v, Value):
        return v * alpha
    return cx.op("multiply", [tensor(0), float(alpha)], [v], v.perm, shape=v.shape, dtype=v.dtype)


for _fn, _targets in {
    "add": (operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__radd__"),
    "subtract": (operator.sub, operator.isub, torch.sub, torch.subtract, "sub", "sub_", "subtract"),
    "multiply": (operator.mul, operator.imul, torch.mul, torch.multiply, "mul", "mul_", "multiply"),
    "divide": (operator.truediv, operator.itruediv, torch.div, torch.true_divide, "div", "div_", "true_divide"),
    "torch_floor_divide": (operator.floordiv, torch.floor_divide, "floor_divide"),
    "torch_remainder": (operator.mod, torch.remainder, "remainder"),
    "power": (operator.pow, torch.pow, "pow", "pow_"),
    "maximum": (torch.maximum, "maximum"),
    "minimum": (torch.minimum, "minimum"),
    "equal": (operator.eq, torch.eq, "eq"),
    "not_equal": (operator.ne, torch.ne, "ne"),
    "less": (operator.lt, torch.lt, "lt"),
    "less_equal": (operator.le, torch.le, "le"),
    "greater": (operator.gt, torch.gt, "gt"),
    "greater_equal": (operator.ge, torch.ge, "ge"),
    "logical_and": (operator.and_, torch.logical_and, "logical_and"),
    "logical_or": (operator.or_, torch.logical_or, "logical_or"),
    "where": (torch.where, "where"),
}.items():
    register_op(*_targets)(_elementwise(_fn))


@register_op(operator.neg, torch.neg, "neg", "__neg__")
def neg(cx, x):
    return cx.op("negative", [tensor(0)], [x], x.perm)


def _unary(keras_fn, **fixed):
    def conv(cx, x, *args, **kwargs):
        kwargs.pop("inplace", None)
        return cx.op(keras_fn, [tensor(0)], [x], x.perm, kwargs=dict(fixed))

    return conv


for _fn, _targets in {
    "relu": (torch.relu, F.relu, "relu", "relu_", torch.relu_),
    "sigmoid": (torch.sigmoid, F.sigmoid, "sigmoid", "sigmoid_"),
    "tanh": (torch.tanh, F.tanh, "tanh", "tanh_"),
    "exp": (torch.exp, "exp"),
    "log": (torch.log, "log"),
    "sqrt": (torch.sqrt, "sqrt"),
    "rsqrt": (torch.rsqrt, "rsqrt"),
    "abs": (torch.abs, operator.abs, "abs"),
    "erf": (torch.erf, torch.special.erf, "erf"),
    "silu": (F.silu,),
    "hard_silu": (F.hardswish,),
    "relu6": (F.relu6,),
    "floor": (torch.floor, "floor"),
    "ceil": (torch.ceil, "ceil"),
    "sin": (torch.sin, "sin"),
    "cos": (torch.cos, "cos"),
    "logical_not": (torch.logical_not, operator.invert, "logical_not"),
    "square": (torch.square, "square"),
    "reciprocal": (torch.reciprocal, "reciprocal"),
}.items():
    register_op(*_targets)(_unary(_fn))


@register_op(F.hardsigmoid)
def hardsigmoid(cx, x, inplace=False):
    # torch: relu6(x + 3) / 6
    y = cx.op("add", [tensor(0), 3.0], [x], x.perm)
    y = cx.op("relu6", [tensor(0)], [y], x.perm)
    return cx.op("divide", [tensor(0), 6.0], [y], x.perm)


@register_op(F.gelu)
def gelu(cx, x, approximate="none"):
    return cx.op("gelu", [tensor(0)], [x], x.perm, kwargs={"approximate": approximate == "tanh"})


@register_op(F.leaky_relu)
def leaky_relu(cx, x, negative_slope=0.01, inplace=False):
    return cx.op("leaky_relu", [tensor(0)], [x], x.perm, kwargs={"negative_slope": float(negative_slope)})


@register_op(F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, "contiguous", "clone", "detach",
             torch.clone, "detach_", "requires_grad_")
def passthrough(cx, x, *args, **kwargs):
    return x


@register_op("float", "to", "type", "type_as", "double", "half", "int", "long", "bool")
def cast(cx, x, *args, **kwargs):
    dtype = str(cx.out_dtype).replace("torch.", "")
    if cx.out_dtype == x.dtype:
        return x
    return cx.op("cast", [tensor(0), dtype], [x], x.perm, dtype=cx.out_dtype)


@register_op(F.softmax, torch.softmax, "softmax", F.log_softmax, torch.log_softmax, "log_softmax")
def softmax(cx, x, dim=None, *args, **kwargs):
    if dim is None:
        raise ConversionError("softmax without dim is ambiguous; pass dim")
    fn = "log_softmax" if "log" in getattr(cx.node.target, "__name__", str(cx.node.target)) else "softmax"
    return cx.op(fn, [tensor(0)], [x], x.perm, kwargs={"axis": x.keras_axis(dim)})


# ---- shapes -----------------------------------------------------------------------------------
@register_op(builtins.getattr)
def getattr_(cx, x, name):
    if isinstance(x, Value):
        if name == "shape":
            return torch.Size(x.shape)
        if name == "dtype":
            return x.dtype
        if name == "ndim":
            return x.rank
        if name == "device":
            return torch.device("cpu")
        if name == "T" or name == "mT":
            raise ConversionError(f"tensor attribute {name} is not supported yet")
    return getattr(x, name)


@register_op("size")
def size(cx, x, dim=None):
    return torch.Size(x.shape) if dim is None else x.shape[dim]


@register_op("dim")
def dim(cx, x):
    return x.rank


@register_op("numel")
def numel(cx, x):
    return int(np.prod(x.shape))


def _reshape_to(cx, x, shape):
    """Reshape to `shape` (torch order; axis 0 follows the dynamic batch)."""
    x = cx.torch(x)
    shape = tuple(int(s) for s in shape)
    if shape and x.shape and shape[0] == x.shape[0]:
        target = [-1, *shape[1:]] if all(s != -1 for s in shape[1:]) else [shape[0], *shape[1:]]
    else:
        target = [-1, *shape[1:]] if shape else []
    return cx.op("reshape", [tensor(0), target], [x], identity(len(shape)), shape=shape)


@register_op("view", "reshape", torch.reshape, "view_as", "reshape_as")
def view(cx, x, *shape, **kwargs):
    return _reshape_to(cx, x, cx.out_shape)


@register_op(torch.flatten, "flatten")
def flatten(cx, x, start_dim=0, end_dim=-1):
    return _reshape_to(cx, x, cx.out_shape)


@register_op("unflatten", torch.unflatten)
def unflatten(cx, x, *a, **k):
    return _reshape_to(cx, x, cx.out_shape)


@register_op("permute", torch.permute)
def permute(cx, x, *dims, **kwargs):
    dims = kwargs.get("dims", dims)
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    dims = tuple(d % x.rank for d in dims)
    # No Keras op: only the bookkeeping changes.
    return Value(x.t, compose_permute(x.perm, dims), cx.out_shape, x.dtype)


@register_op("transpose", torch.transpose, torch.swapaxes, "swapaxes")
def transpose(cx, x, d0, d1):
    dims = list(range(x.rank))
    d0, d1 = d0 % x.rank, d1 % x.rank
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Value(x.t, compose_permute(x.perm, tuple(dims)), cx.out_shape, x.dtype)


@register_op("unsqueeze", torch.unsqueeze, "squeeze", torch.squeeze)
def unsqueeze(cx, x, *args, **kwargs):
    return _reshape_to(cx, x, cx.out_shape)


@register_op("expand", "expand_as", "repeat")
def expand(cx, x, *sizes, **kwargs):
    out = cx.out_shape
    x = cx.torch(x)
    if cx.node.target == "repeat":
        reps = list(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)) else list(sizes)
        if reps and x.shape and reps[0] != 1 and x.shape[0] != 1:
            raise ConversionError("repeat along the batch axis is not supported")
        return cx.op("tile", [tensor(0), [1, *reps[1:]] if len(reps) == x.rank else reps], [x], identity(len(out)))
    if x.rank == len(out) and x.shape[0] == 1 and out[0] != 1:
        ref = Value(cx.batch_ref, identity(len(cx.batch_ref.shape)), (), None)
        return cx.op("broadcast_batch", [tensor(0), tensor(1), list(out)], [x, ref], identity(len(out)))
    return cx.op("broadcast_to", [tensor(0), [-1 if False else d for d in out]], [x], identity(len(out)))


@register_op(torch.cat, torch.concat, torch.concatenate)
def cat(cx, tensors, dim=0, **kwargs):
    dim = kwargs.get("axis", dim)
    vals, perm = _align(cx, list(tensors))
    rank = len(perm)
    axis = perm.index(dim % rank)
    return cx.op("concatenate", [[tensor(i) for i in range(len(vals))], axis], vals, perm)


@register_op(torch.stack)
def stack(cx, tensors, dim=0):
    vals = [cx.torch(v) for v in tensors]
    rank = vals[0].rank + 1
    return cx.op("stack", [[tensor(i) for i in range(len(vals))], dim % rank], vals, identity(rank))


def _split_sizes(total, split, chunks=None):
    if chunks is not None:
        size = math.ceil(total / chunks)
        return [min(size, total - i) for i in range(0, total, size)]
    if isinstance(split, int):
        return [min(split, total - i) for i in range(0, total, split)]
    return list(split)


def _slices(cx, x, dim, sizes):
    axis = x.keras_axis(dim)
    outs, start = [], 0
    for n in sizes:
        index = [[None, None, None]] * x.rank
        index = [list(i) for i in index]
        index[axis] = [start, start + n, None]
        shape = list(x.shape)
        shape[dim % x.rank] = n
        outs.append(cx.op("getitem", [tensor(0), index], [x], x.perm, shape=tuple(shape), dtype=x.dtype))
        start += n
    return tuple(outs)


@register_op("chunk", torch.chunk)
def chunk(cx, x, chunks, dim=0):
    return _slices(cx, x, dim, _split_sizes(x.shape[dim], None, chunks))


@register_op("split", torch.split)
def split(cx, x, split_size_or_sections, dim=0):
    return _slices(cx, x, dim, _split_sizes(x.shape[dim], split_size_or_sections))


@register_op("unbind", torch.unbind)
def unbind(cx, x, dim=0):
    parts = _slices(cx, x, dim, [1] * x.shape[dim])
    out = []
    for p in parts:
        shape = tuple(s for i, s in enumerate(p.shape) if i != dim % x.rank)
        out.append(_reshape_from(cx, p, shape))
    return tuple(out)


def _reshape_from(cx, v, shape):
    v = cx.torch(v)
    return cx.op("reshape", [tensor(0), [-1, *shape[1:]] if shape and v.shape[0] == shape[0] else list(shape)], [v],
                 identity(len(shape)), shape=shape, dtype=v.dtype)


@register_op(operator.getitem)
def getitem(cx, x, index):
    if not isinstance(x, Value):
        return x[index]
    if isinstance(index, Value):
        raise ConversionError("indexing with a tensor is not supported yet")
    index = index if isinstance(index, tuple) else (index,)
    if any(i is None for i in index) or any(isinstance(i, (list, Value)) for i in index):
        x = cx.torch(x)
    # expand Ellipsis to full rank (torch dims)
    n_real = sum(1 for i in index if i is not None and i is not Ellipsis)
    full = []
    for i in index:
        if i is Ellipsis:
            full += [slice(None)] * (x.rank - n_real)
        else:
            full.append(i)
    full += [slice(None)] * (x.rank - sum(1 for i in full if i is not None))
    has_none = any(i is None for i in full)
    if has_none:
        key = full
        perm_out = identity(len(cx.out_shape))
    else:
        key = [full[p] for p in x.perm]  # keras axis order
        kept_torch = [d for d in range(x.rank) if not isinstance(full[d], int)]
        renum = {d: i for i, d in enumerate(kept_torch)}
        perm_out = tuple(renum[p] for p in x.perm if p in renum)
    js = []
    for k in key:
        if isinstance(k, slice):
            js.append([k.start, k.stop, k.step])
        elif k is None:
            js.append(None)
        elif isinstance(k, int):
            js.append(int(k))
        else:
            raise ConversionError(f"index {k!r} is not supported")
    return cx.op("getitem", [tensor(0), js], [x], perm_out)


# ---- reductions -----------------------------------------------------------------------------
def _reduce(keras_fn):
    def conv(cx, x, dim=None, keepdim=False, *args, **kwargs):
        dim = kwargs.pop("axis", dim)
        kwargs.pop("dtype", None)
        if dim is None:
            return cx.op(keras_fn, [tensor(0)], [x], (), shape=())
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = [d % x.rank for d in dims]
        axes = [x.keras_axis(d) for d in dims]
        if keepdim:
            perm = x.perm
        else:
            kept = [d for d in range(x.rank) if d not in dims]
            renum = {d: i for i, d in enumerate(kept)}
            perm = tuple(renum[p] for p in x.perm if p in renum)
        return cx.op(keras_fn, [tensor(0)], [x], perm, kwargs={"axis": axes, "keepdims": bool(keepdim)})

    return conv


for _fn, _targets in {
    "mean": (torch.mean, "mean"),
    "sum": (torch.sum, "sum"),
    "amax": (torch.amax, "amax"),
    "amin": (torch.amin, "amin"),
    "prod": (torch.prod, "prod"),
}.items():
    register_op(*_targets)(_reduce(_fn))


# ---- linear algebra ------------------------------------------------------------------------
@register_op(torch.matmul, operator.matmul, "matmul", torch.bmm, "bmm")
def matmul(cx, a, b):
    a, b = cx.torch(a), cx.torch(b)
    return cx.op("matmul", [tensor(0), tensor(1)], [a, b], identity(len(cx.out_shape)))


@register_op(F.linear)
def linear(cx, x, weight, bias=None):
    w = cx.torch(weight)
    x = cx.torch(x)
    wt = cx.op("transpose", [tensor(0), [1, 0]], [w], (0, 1), shape=(w.shape[1], w.shape[0]), dtype=w.dtype)
    y = cx.op("matmul", [tensor(0), tensor(1)], [x, wt], identity(len(cx.out_shape)))
    if bias is not None:
        y = cx.op("add", [tensor(0), tensor(1)], [y, cx.torch(bias)], y.perm)
    return y


# ---- functional forms of registered modules ------------------------------------------------
def _via_module(make):
    def conv(cx, x, *args, **kwargs):
        kwargs.pop("inplace", None)
        return cx.module(make(*args, **kwargs), [x])

    return conv


register_op(F.adaptive_avg_pool1d)(_via_module(lambda s: nn.AdaptiveAvgPool1d(s)))
register_op(F.adaptive_avg_pool2d)(_via_module(lambda s: nn.AdaptiveAvgPool2d(s)))
register_op(F.adaptive_avg_pool3d)(_via_module(lambda s: nn.AdaptiveAvgPool3d(s)))
register_op(F.max_pool1d)(_via_module(lambda *a, **k: nn.MaxPool1d(*a, **k)))
register_op(F.max_pool2d)(_via_module(lambda *a, **k: nn.MaxPool2d(*a, **k)))
register_op(F.max_pool3d)(_via_module(lambda *a, **k: nn.MaxPool3d(*a, **k)))


@register_op(F.avg_pool2d)
def avg_pool2d(cx, x, *args, **kwargs):
    return cx.module(nn.AvgPool2d(*args, **kwargs), [x])


@register_op(F.interpolate)
def interpolate(cx, x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    if antialias:
        raise ConversionError("F.interpolate(antialias=True) is not supported by the tracer yet")
    return cx.module(nn.Upsample(size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners,
                                 recompute_scale_factor=recompute_scale_factor), [x])


@register_op(F.pad)
def pad(cx, x, pad, mode="constant", value=None):
    from ..layers.pad import Pad

    mode = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}.get(mode, "constant")
    cl = x.rank >= 3 and x.perm != identity(x.rank)
    if cl:
        x = cx.to(x, tuple((0, *range(2, x.rank), 1)))
    return cx.layer(Pad(tuple(pad), mode=mode, value=float(value or 0.0), channels_last=cl), [x], x.perm)


@register_op(F.layer_norm)
def layer_norm(cx, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    m = nn.LayerNorm(normalized_shape, eps=eps, elementwise_affine=weight is not None, bias=bias is not None)
    _copy_constants(m, {"weight": weight, "bias": bias})
    return cx.module(m, [x])


def _copy_constants(m, values):
    with torch.no_grad():
        for name, v in values.items():
            if v is None:
                continue
            data = getattr(v, "data", None)
            if data is None:
                raise ConversionError(f"{name} of a functional call must be a parameter or buffer of the model")
            getattr(m, name).copy_(torch.from_numpy(np.asarray(data)))
