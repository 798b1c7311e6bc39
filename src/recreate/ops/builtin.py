"""Built-in op converters: elementwise arithmetic and activations, shape and indexing,
reductions, concatenation, and functional forms of registered modules."""

from __future__ import annotations

import builtins
import math
import operator

import torch
import torch.nn.functional as F
from torch import nn

import numpy as np

from ..errors import ConversionError
from ..trace import Value, compose_permute, identity, tensor
from . import cases as C
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


_BINARY_CASES = {
    "add": C.binary("torch.add", alpha=True),
    "subtract": C.binary("operator.sub"),
    "multiply": C.binary("operator.mul"),
    "divide": C.binary("operator.truediv", positive_rhs=True),
    "torch_floor_divide": C.binary("operator.floordiv", positive_rhs=True),
    "torch_remainder": C.binary("torch.remainder", positive_rhs=True),
    "power": C.binary("torch.pow", positive_lhs=True),
    "maximum": C.binary("torch.maximum", scalar=False),
    "minimum": C.binary("torch.minimum", scalar=False),
    "equal": C.binary("operator.eq", scalar=False),
    "not_equal": C.binary("operator.ne", scalar=False),
    "less": C.binary("operator.lt"),
    "less_equal": C.binary("operator.le"),
    "greater": C.binary("operator.gt"),
    "greater_equal": C.binary("operator.ge"),
    "logical_and": C.binary("(lambda a, b: torch.logical_and(a > 0, b > 0))", scalar=False),
    "logical_or": C.binary("(lambda a, b: torch.logical_or(a > 0, b > 0))", scalar=False),
    "where": C.binary("(lambda a, b: torch.where(a > b, a, b * 2))", scalar=False),
}

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
    register_op(*_targets, cases=_BINARY_CASES[_fn])(_elementwise(_fn))


@register_op(operator.neg, torch.neg, "neg", "__neg__", cases=C.unary("operator.neg"))
def neg(cx, x):
    return cx.op("negative", [tensor(0)], [x], x.perm)


def _unary(keras_fn, **fixed):
    def conv(cx, x, *args, **kwargs):
        kwargs.pop("inplace", None)
        return cx.op(keras_fn, [tensor(0)], [x], x.perm, kwargs=dict(fixed))

    return conv


_UNARY_CASES = {"silu": "F.silu", "hard_silu": "F.hardswish", "relu6": "F.relu6",
                "logical_not": "(lambda a: torch.logical_not(a > 0))", "erf": "torch.erf"}
_POSITIVE = {"log", "sqrt", "rsqrt", "reciprocal"}

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
    register_op(*_targets, cases=C.unary(_UNARY_CASES.get(_fn, f"torch.{_fn}"), positive=_fn in _POSITIVE))(_unary(_fn))


@register_op(F.hardsigmoid, cases=C.unary("F.hardsigmoid", scale=4.0))
def hardsigmoid(cx, x, inplace=False):
    # torch: relu6(x + 3) / 6
    y = cx.op("add", [tensor(0), 3.0], [x], x.perm)
    y = cx.op("relu6", [tensor(0)], [y], x.perm)
    return cx.op("divide", [tensor(0), 6.0], [y], x.perm)


@register_op(F.gelu, cases=C.unary("(lambda a: F.gelu(a, approximate='tanh') + F.gelu(a))"))
def gelu(cx, x, approximate="none"):
    return cx.op("gelu", [tensor(0)], [x], x.perm, kwargs={"approximate": approximate == "tanh"})


@register_op(F.leaky_relu, cases=C.unary("(lambda a: F.leaky_relu(a, 0.2))"))
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


@register_op(F.softmax, torch.softmax, "softmax", F.log_softmax, torch.log_softmax, "log_softmax",
             cases=C.with_dim("(lambda a, dim: F.softmax(a, dim) + torch.log_softmax(a, dim=dim))", keepdim=False,
                              multi=False, none=False))
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


@register_op("view", "reshape", torch.reshape, "view_as", "reshape_as", cases=C.custom(C.view_build))
def view(cx, x, *shape, **kwargs):
    return _reshape_to(cx, x, cx.out_shape)


@register_op(torch.flatten, "flatten")
def flatten(cx, x, start_dim=0, end_dim=-1):
    return _reshape_to(cx, x, cx.out_shape)


@register_op("unflatten", torch.unflatten)
def unflatten(cx, x, *a, **k):
    return _reshape_to(cx, x, cx.out_shape)


@register_op("permute", torch.permute, cases=C.custom(C.permute_build))
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


@register_op("unsqueeze", torch.unsqueeze, "squeeze", torch.squeeze, cases=C.custom(C.squeeze_build))
def unsqueeze(cx, x, *args, **kwargs):
    return _reshape_to(cx, x, cx.out_shape)


@register_op("expand", "expand_as", "repeat", cases=C.custom(C.expand_build))
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


@register_op(torch.cat, torch.concat, torch.concatenate, cases=C.custom(C.cat_build))
def cat(cx, tensors, dim=0, **kwargs):
    dim = kwargs.get("axis", dim)
    vals, perm = _align(cx, list(tensors))
    rank = len(perm)
    axis = perm.index(dim % rank)
    return cx.op("concatenate", [[tensor(i) for i in range(len(vals))], axis], vals, perm)


@register_op(torch.stack, cases=C.custom(C.stack_build))
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


@register_op("chunk", torch.chunk, cases=C.custom(C.split_build))
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


@register_op(operator.getitem, cases=C.custom(C.getitem_build))
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
    register_op(*_targets, cases=C.with_dim(f"torch.{_fn}", multi=_fn != "prod"))(_reduce(_fn))


# ---- linear algebra ------------------------------------------------------------------------
@register_op(torch.matmul, operator.matmul, "matmul", torch.bmm, "bmm", cases=C.custom(C.matmul_build))
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


@register_op(torch.roll, "roll", cases=C.custom(C.roll_build))
def roll(cx, x, shifts, dims=None):
    if dims is None:
        flat = cx.torch(x)
        if x.shape[0] != 1:
            raise ConversionError("torch.roll without dims flattens across the batch axis; pass dims")
        return cx.op("roll", [tensor(0), int(shifts)], [flat], identity(x.rank))
    shifts = [shifts] if isinstance(shifts, int) else list(shifts)
    dims = [dims] if isinstance(dims, int) else list(dims)
    return cx.op("roll", [tensor(0)], [x], x.perm,
                 kwargs={"shift": [int(s) for s in shifts], "axis": [x.keras_axis(d) for d in dims]})


@register_op(F.batch_norm)
def batch_norm(cx, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    if training or running_mean is None:
        raise ConversionError("F.batch_norm in training mode (batch statistics) cannot be converted; call model.eval()")
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[x.rank]
    m = cls(x.shape[1], eps=eps, affine=weight is not None)
    _copy_constants(m, {"weight": weight, "bias": bias, "running_mean": running_mean, "running_var": running_var})
    return cx.module(m, [x])


def _sdpa_cases(draw):
    from hypothesis import strategies as st

    b, h, lq, lk, e = (draw(st.integers(1, 4)) for _ in range(5))
    kind = draw(st.sampled_from(["none", "bool", "float", "causal"]))
    scale = draw(st.sampled_from([None, 0.3]))
    q, k, v = C.draw_inputs(draw, (b, h, lq, e), (b, h, lk, e), (b, h, lk, e))
    if kind == "bool":
        mask = torch.tensor(np.random.default_rng(lq * 7 + lk).random((lq, lk)) > 0.3)
        mask[:, 0] = True
        return (lambda q_, k_, v_: F.scaled_dot_product_attention(q_, k_, v_, attn_mask=mask, scale=scale)), \
            f"sdpa bool mask scale={scale}", [q, k, v]
    if kind == "float":
        mask = torch.tensor(np.random.default_rng(lk).standard_normal((h, lq, lk)).astype(np.float32))
        return (lambda q_, k_, v_: F.scaled_dot_product_attention(q_, k_, v_, attn_mask=mask, scale=scale)), \
            f"sdpa float mask scale={scale}", [q, k, v]
    causal = kind == "causal"
    return (lambda q_, k_, v_: F.scaled_dot_product_attention(q_, k_, v_, is_causal=causal, scale=scale)), \
        f"sdpa causal={causal} scale={scale}", [q, k, v]


@register_op(F.scaled_dot_product_attention, cases=C.custom(_sdpa_cases))
def scaled_dot_product_attention(cx, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    if enable_gqa and q.shape[-3] != k.shape[-3]:
        raise ConversionError("scaled_dot_product_attention(enable_gqa=True) with fewer key heads is not supported yet")
    q, k, v = cx.torch(q), cx.torch(k), cx.torch(v)
    e = q.shape[-1]
    scale = float(scale) if scale is not None else 1.0 / math.sqrt(e)
    lq, lk = q.shape[-2], k.shape[-2]
    r = q.rank
    sshape = (*q.shape[:-1], lk)
    kt = cx.op("swapaxes", [tensor(0), -1, -2], [k], identity(r), shape=(*k.shape[:-2], e, lk), dtype=k.dtype)
    s = cx.op("matmul", [tensor(0), tensor(1)], [q, kt], identity(r), shape=sshape, dtype=q.dtype)
    s = cx.op("multiply", [tensor(0), scale], [s], identity(r), shape=sshape, dtype=q.dtype)
    if is_causal:
        attn_mask = cx.const(np.tril(np.ones((lq, lk), dtype=bool)))
    if attn_mask is not None:
        (s, m), _ = _align(cx, [s, attn_mask])
        if m.dtype == torch.bool:
            s = cx.op("where", [tensor(0), tensor(1), float("-inf")], [m, s], identity(r), shape=sshape, dtype=q.dtype)
        else:
            s = cx.op("add", [tensor(0), tensor(1)], [s, m], identity(r), shape=sshape, dtype=q.dtype)
    p = cx.op("softmax", [tensor(0)], [s], identity(r), shape=sshape, dtype=q.dtype, kwargs={"axis": -1})
    return cx.op("matmul", [tensor(0), tensor(1)], [p, v], identity(r))
