"""Built-in op converters: elementwise arithmetic and activations, shape and indexing,
reductions, concatenation, and functional forms of registered modules."""

from __future__ import annotations

import builtins
import dataclasses
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
            out.append(cx.torch(v))  # broadcast along trailing torch axes: v in torch's order
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
    "logical_and": (torch.logical_and, "logical_and"),
    "logical_or": (torch.logical_or, "logical_or"),
}.items():
    register_op(*_targets, cases=_BINARY_CASES[_fn])(_elementwise(_fn))


@register_op(torch.where, "where", cases=_BINARY_CASES["where"])
def _where(cx, condition, *args, **kwargs):
    if not args and not kwargs:
        raise ConversionError("torch.where(condition) with one argument returns the indices of the non-zero "
                              "elements (a data-dependent shape): use torch.where(condition, x, y) or a mask")
    return _elementwise("where")(cx, condition, *args, **kwargs)


def _bitwise_build(op_name: str):
    """Cases for &, |, ^, ~ on booleans, on integers and with a Python scalar."""
    def build(draw):
        from hypothesis import strategies as st

        fn = getattr(operator, op_name.split(".")[1])
        shape = C.draw_shape(draw, max_rank=3)
        kind = draw(st.sampled_from(["bool", "int", "int_scalar"] if op_name != "operator.invert" else ["bool", "int"]))
        rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
        if kind == "bool":
            xs = [rng.random(shape) > 0.5 for _ in range(2)]
        else:
            xs = [rng.integers(-20, 20, shape).astype(np.int64) for _ in range(2)]
        if op_name == "operator.invert":
            return fn, op_name, xs[:1]
        if kind == "int_scalar":
            k = int(draw(st.integers(-7, 7)))
            return (lambda a: fn(a, k)), f"{op_name}(x, {k})", xs[:1]
        return fn, op_name, xs

    return build


def _bitwise(logical: str, bitwise: str):
    """torch's &, |, ^ and ~: logical on booleans, bitwise on integers."""
    def conv(cx, *args, **kwargs):
        vals = [a for a in args if isinstance(a, Value)]
        booleans = all(v.dtype == torch.bool for v in vals) and all(
            isinstance(a, (bool, Value)) for a in args)
        return _elementwise(logical if booleans else bitwise)(cx, *args, **kwargs)

    return conv


for _logical, _bitwise_fn, _targets, _case in (
    ("logical_and", "bitwise_and", (operator.and_, operator.iand, "__and__", "__rand__", "__iand__",
                                    torch.bitwise_and, "bitwise_and"), "operator.and_"),
    ("logical_or", "bitwise_or", (operator.or_, operator.ior, "__or__", "__ror__", "__ior__",
                                  torch.bitwise_or, "bitwise_or"), "operator.or_"),
    ("logical_xor", "bitwise_xor", (operator.xor, operator.ixor, "__xor__", "__rxor__", "__ixor__",
                                    torch.bitwise_xor, "bitwise_xor"), "operator.xor"),
    ("logical_not", "bitwise_invert", (operator.invert, "__invert__", torch.bitwise_not, "bitwise_not"),
     "operator.invert"),
):
    register_op(*_targets, cases=C.custom(_bitwise_build(_case)))(_bitwise(_logical, _bitwise_fn))


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
    "logical_not": (torch.logical_not, "logical_not"),
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


@register_op(F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, "contiguous", "detach",
             "detach_", "requires_grad_", cases=C.custom(C.passthrough_build))
def passthrough(cx, x, *args, **kwargs):
    return x  # the same tensor in torch too (inference), so an in-place write to it shows in both


@register_op("clone", torch.clone, cases=C.custom(C.inplace_build))
def clone(cx, x, *args, **kwargs):
    return dataclasses.replace(x)  # a new tensor: in-place writes to the clone leave x alone


@register_op("float", "to", "type", "type_as", "double", "half", "int", "long", "bool", cases=C.custom(C.cast_build))
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
@register_op(builtins.getattr, cases=C.custom(C.shape_query("shape", "ndim", "dtype", "device")))
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


@register_op("size", cases=C.custom(C.shape_query("size", "size_d")))
def size(cx, x, dim=None):
    return torch.Size(x.shape) if dim is None else x.shape[dim]


@register_op("dim", cases=C.custom(C.shape_query("dim")))
def dim(cx, x):
    return x.rank


@register_op("numel", cases=C.custom(C.shape_query("numel")))
def numel(cx, x):
    return int(np.prod(x.shape))


def _reshape_to(cx, x, shape):
    """Reshape to `shape` (torch order). The axis that follows the batch size (known from a
    trace with one more sample) becomes -1; without that knowledge axis 0 is taken to."""
    x = cx.torch(x)
    shape = tuple(int(s) for s in shape)
    axes = cx.batch_axes()
    if axes is not None and len(axes) <= 1:
        target = list(shape)
        if axes:
            target[next(iter(axes))] = -1
    elif shape and x.shape and shape[0] == x.shape[0]:
        target = [-1, *shape[1:]] if all(s != -1 for s in shape[1:]) else [shape[0], *shape[1:]]
    else:
        target = [-1, *shape[1:]] if shape else []
    return cx.op("reshape", [tensor(0), target], [x], identity(len(shape)), shape=shape)


@register_op("view", "reshape", torch.reshape, "view_as", "reshape_as", cases=C.custom(C.view_build))
def view(cx, x, *shape, **kwargs):
    return _reshape_to(cx, x, cx.out_shape)


@register_op(torch.flatten, "flatten", cases=C.custom(C.flatten_build))
def flatten(cx, x, start_dim=0, end_dim=-1):
    return _reshape_to(cx, x, cx.out_shape)


@register_op("unflatten", torch.unflatten, cases=C.custom(C.unflatten_build))
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


@register_op("transpose", torch.transpose, torch.swapaxes, "swapaxes", cases=C.custom(C.transpose_build))
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
    axes = cx.batch_axes()
    if axes:
        # Axes that follow the batch take their size at run time: from x where x has it,
        # else from the model's batch.
        ref = Value(cx.batch_ref, identity(len(cx.batch_ref.shape)), (), None)
        return cx.op("expand_dynamic", [tensor(0), tensor(1), list(out), sorted(axes)], [x, ref], identity(len(out)))
    if x.rank == len(out) and x.shape[0] == 1 and out[0] != 1 and axes is None:
        ref = Value(cx.batch_ref, identity(len(cx.batch_ref.shape)), (), None)
        return cx.op("broadcast_batch", [tensor(0), tensor(1), list(out)], [x, ref], identity(len(out)))
    return cx.op("broadcast_to", [tensor(0), list(out)], [x], identity(len(out)))


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
    batch = cx.batch_axes(0)
    if batch and dim % x.rank in batch:
        # Splitting the axis that follows the batch (RAFT's chunk of the two images' features
        # stacked along the batch): equal parts, sized at run time.
        if len(set(sizes)) != 1 or sum(sizes) != x.shape[dim]:
            raise ConversionError(f"splitting the batch-sized axis {dim} into unequal parts {sizes} depends on "
                                  "the batch size; split it into equal parts (chunk) instead")
        outs = []
        for i in range(len(sizes)):
            shape = list(x.shape)
            shape[dim % x.rank] = sizes[i]
            outs.append(cx.op("chunk_axis", [tensor(0), i, len(sizes), axis], [x], x.perm, shape=tuple(shape),
                              dtype=x.dtype))
        return tuple(outs)
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


@register_op("split", torch.split, cases=C.custom(C.split_sections_build))
def split(cx, x, split_size_or_sections, dim=0):
    return _slices(cx, x, dim, _split_sizes(x.shape[dim], split_size_or_sections))


@register_op("tensor_split", torch.tensor_split, cases=C.custom(C.tensor_split_build))
def tensor_split(cx, x, indices_or_sections=None, dim=0, *, sections=None, indices=None, tensor_indices_or_sections=None):
    """torch.tensor_split: n sections (the first size % n one longer) or split points; the
    parts are found by running torch's own tensor_split on positions, so clipping and
    decreasing indices (an empty or repeated part) follow torch."""
    spec = next(a for a in (indices_or_sections, sections, indices, tensor_indices_or_sections) if a is not None)
    if isinstance(spec, Value):
        if spec.data is None:
            raise ConversionError("tensor_split with split points computed from inputs is not supported")
        spec = np.asarray(spec.data).tolist()
    n = x.shape[dim]
    parts = torch.tensor_split(torch.arange(n), spec)
    sizes = [len(p) for p in parts]
    starts = [int(p[0]) if len(p) else 0 for p in parts]
    if starts == [sum(sizes[:i]) for i in range(len(sizes))] and sum(sizes) == n:
        return _slices(cx, x, dim, sizes)
    axis, outs = x.keras_axis(dim), []
    for start, size in zip(starts, sizes):  # overlapping parts (decreasing split points)
        index = [[None, None, None] for _ in range(x.rank)]
        index[axis] = [start, start + size, None]
        shape = list(x.shape)
        shape[dim % x.rank] = size
        outs.append(cx.op("getitem", [tensor(0), index], [x], x.perm, shape=tuple(shape), dtype=x.dtype))
    return tuple(outs)


@register_op("unbind", torch.unbind, cases=C.custom(C.unbind_build))
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
    index = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, list) for i in index):  # x[..., [-2], :] (Falcon): a constant index tensor
        if any(isinstance(e, bool) or not isinstance(e, int) for i in index if isinstance(i, list) for e in i):
            raise ConversionError(f"index {index!r}: only lists of integers are supported")
        index = tuple(cx.const(np.asarray(i, dtype=np.int64)) if isinstance(i, list) else i for i in index)
    if any(isinstance(i, Value) for i in index):
        return _advanced_index(cx, x, index)
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


@register_op(operator.setitem, cases=C.custom(C.setitem_build))
def setitem(cx, x, index, value):
    """`x[index] = value` on a traced tensor: x with the region replaced (the graph rebinds x,
    see trace._write_in_place). Basic indices (ints, step-1 slices, Ellipsis) with a tensor or
    scalar value broadcast to the region; or a boolean mask with a scalar or broadcastable
    value (`x[x > 0] = 0`). The region is written with a constant mask and `where`, exact."""
    if not isinstance(x, Value):
        raise ConversionError("item assignment into a non-tensor is not supported")
    x = cx.torch(x)
    index = index if isinstance(index, tuple) else (index,)
    if len(index) == 1 and isinstance(index[0], Value) and "bool" in str(index[0].dtype):
        mask = cx.torch(index[0])
        if mask.rank < x.rank:  # a mask over the leading axes selects whole trailing blocks
            mask = _reshape_from(cx, mask, (*mask.shape, *[1] * (x.rank - mask.rank)))
        val = cx.torch(value) if isinstance(value, Value) else value
        tensors = [mask] + ([val] if isinstance(val, Value) else []) + [x]
        args = [tensor(0), tensor(1) if isinstance(val, Value) else value, tensor(len(tensors) - 1)]
        return cx.op("where", args, tensors, identity(x.rank), shape=x.shape, dtype=x.dtype)
    if any(isinstance(i, (Value, list)) or i is None for i in index):
        raise ConversionError(f"item assignment with index {index!r} is not supported (integer-tensor or None "
                              "indices): use torch.where, or index_put/scatter on a registered module")
    n_real = sum(1 for i in index if i is not Ellipsis)
    full = []
    for i in index:
        full += [slice(None)] * (x.rank - n_real) if i is Ellipsis else [i]
    full += [slice(None)] * (x.rank - len(full))
    batch = cx.batch_axes(0) or set()
    starts, sizes, dropped = [], [], []
    for d, (i, n) in enumerate(zip(full, x.shape)):
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step != 1:
                raise ConversionError(f"item assignment with step {step} on axis {d} is not supported")
            size = max(0, stop - start)
        else:
            start, size = int(i) % n, 1
            dropped.append(d)
        if d in batch and (start, size) != (0, n):
            raise ConversionError(f"item assignment into part of axis {d}, which follows the batch size, "
                                  "is not supported")
        starts.append(start)
        sizes.append(size)
    if 0 in sizes:
        return x
    region_shape = tuple(s for d, s in enumerate(sizes) if d not in dropped)
    region = cx.op("getitem", [tensor(0), [a if d in dropped else [None, None, None] if (a, s) == (0, n) else
                                           [a, a + s, None] for d, (a, s, n) in enumerate(zip(starts, sizes, x.shape))]],
                   [x], identity(len(region_shape)), shape=region_shape, dtype=x.dtype)
    # The value broadcast to the region (where() with an all-true condition is exact).
    val = value
    if isinstance(value, Value):
        val = cx.torch(value)
        if val.dtype != x.dtype:
            val = cx.op("cast", [tensor(0), str(x.dtype).replace("torch.", "")], [val], val.perm, shape=val.shape,
                        dtype=x.dtype)
    true = cx.const(np.ones([1] * len(region_shape), dtype=bool))
    tensors = [true] + ([val] if isinstance(val, Value) else []) + [region]
    filled = cx.op("where", [tensor(0), tensor(1) if isinstance(val, Value) else value, tensor(len(tensors) - 1)],
                   tensors, identity(len(region_shape)), shape=region_shape, dtype=x.dtype)
    if dropped:
        filled = _reshape_from(cx, filled, tuple(sizes))
    widths = [[a, n - a - s] for a, s, n in zip(starts, sizes, x.shape)]
    padded = cx.op("pad", [tensor(0), widths], [filled], identity(x.rank), shape=x.shape, dtype=x.dtype)
    mask = np.zeros([1 if d in batch else n for d, n in enumerate(x.shape)], dtype=bool)
    mask[tuple(slice(None) if d in batch else slice(a, a + s) for d, (a, s) in enumerate(zip(starts, sizes)))] = True
    return cx.op("where", [tensor(0), tensor(1), tensor(2)], [cx.const(mask), padded, x], identity(x.rank),
                 shape=x.shape, dtype=x.dtype)


def _advanced_index(cx, x, index):
    """x[index] where some entries are integer tensors (torch's advanced indexing): the
    index tensors broadcast together; their result axes replace the indexed axes where those
    are adjacent, else lead. Computed as one gather on x with the indexed axes flattened."""
    x = cx.torch(x)
    if any(i is None for i in index):
        raise ConversionError("indexing with tensors and None together is not supported: unsqueeze separately")
    n_real = sum(1 for i in index if i is not Ellipsis)
    full = []
    for i in index:
        full += [slice(None)] * (x.rank - n_real) if i is Ellipsis else [i]
    full += [slice(None)] * (x.rank - len(full))
    for i in full:
        if isinstance(i, Value) and ("bool" in str(i.dtype) or "float" in str(i.dtype)):
            raise ConversionError(f"indexing with a {i.dtype} tensor is not supported (a boolean mask gives a "
                                  "data-dependent shape): use torch.where or multiply by the mask")
    batch = cx.batch_axes(0)
    if any(isinstance(i, int) for i in full):
        # torch (unlike NumPy) applies integer indices first, as selects: x[:, idx, :, 0]
        # indexes x[:, :, :, 0] with idx, and the result axes stay in place (measured).
        kept = [d for d, i in enumerate(full) if not isinstance(i, int)]
        sl = [int(i) if isinstance(i, int) else [None, None, None] for i in full]
        shape = tuple(x.shape[d] for d in kept)
        x = cx.op("getitem", [tensor(0), sl], [x], identity(len(shape)), shape=shape, dtype=x.dtype)
        batch = None if batch is None else {kept.index(d) for d in batch if d in kept}
        full = [full[d] for d in kept]
    # 1. slices on the other axes
    if any(isinstance(i, slice) and i != slice(None) for i in full):
        sl = [[i.start, i.stop, i.step] if isinstance(i, slice) else [None, None, None] for i in full]
        shape = tuple(len(range(*i.indices(n))) if isinstance(i, slice) else n for i, n in zip(full, x.shape))
        x = cx.op("getitem", [tensor(0), sl], [x], identity(x.rank), shape=shape, dtype=x.dtype)
    adv = [d for d, i in enumerate(full) if not isinstance(i, slice)]
    rest = [d for d in range(x.rank) if d not in adv]
    # 2. indexed axes first, flattened into one index (wrapping negative indices)
    order = adv + rest
    if order != list(range(x.rank)):
        x = cx.op("transpose", [tensor(0), order], [x], identity(x.rank),
                  shape=tuple(x.shape[d] for d in order), dtype=x.dtype)
    sizes = [x.shape[i] for i in range(len(adv))]

    def follows_batch(d):  # without batch knowledge, torch axis 0 is taken to
        return d in batch if batch is not None else d == 0

    flat, offset = None, 0
    for k, d in enumerate(adv):
        stride = int(np.prod(sizes[k + 1:])) if k + 1 < len(sizes) else 1
        i = full[d]
        if not isinstance(i, Value):
            offset += int(i) % sizes[k] * stride
            continue
        if not follows_batch(d):
            # negative indices count from the end (not along the batch axis, whose size is
            # only known at run time)
            i = cx.op("torch_remainder", [tensor(0), sizes[k]], [i], i.perm, shape=i.shape, dtype=i.dtype)
        i = cx.torch(i)
        term = i if stride == 1 else cx.op("multiply", [tensor(0), stride], [i], i.perm, shape=i.shape,
                                            dtype=i.dtype)
        if flat is None:
            flat = term
        else:
            shape = tuple(np.broadcast_shapes(flat.shape, term.shape))
            flat = cx.op("add", [tensor(0), tensor(1)], [flat, term], identity(len(shape)), shape=shape,
                         dtype=i.dtype)
    if offset:
        flat = cx.op("add", [tensor(0), offset], [flat], flat.perm, shape=flat.shape, dtype=flat.dtype)
    rest_shape = [x.shape[len(adv) + j] for j in range(len(rest))]
    dynamic = [j for j, d in enumerate(rest) if follows_batch(d)]
    if dynamic and any(follows_batch(d) for d in adv):
        raise ConversionError("indexing the batch axis with tensors while another axis also follows the batch")
    # the indexed axes flattened into one (-1 unless a remaining axis follows the batch), then a take
    lead = int(np.prod(sizes)) if dynamic else -1
    x = cx.op("reshape", [tensor(0), [lead, *[-1 if j in dynamic else n for j, n in enumerate(rest_shape)]]], [x],
              identity(1 + len(rest)), shape=(int(np.prod(sizes)), *rest_shape), dtype=x.dtype)
    out_lead = list(flat.shape)
    y = cx.op("take", [tensor(0), tensor(1)], [x, flat], identity(len(out_lead) + len(rest)),
              shape=(*out_lead, *rest_shape), dtype=x.dtype, kwargs={"axis": 0})
    # 3. adjacent indexed axes: their result axes go where the first of them was
    out = tuple(cx.out_shape)
    if adv == list(range(adv[0], adv[-1] + 1)) and adv[0] > 0:
        nb = len(out_lead)
        move = list(range(nb, nb + adv[0])) + list(range(nb)) + list(range(nb + adv[0], nb + len(rest)))
        y = cx.op("transpose", [tensor(0), move], [y], identity(len(move)), shape=out, dtype=x.dtype)
    return Value(y.t, y.perm, out, y.dtype)


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


def _einsum_parts(args) -> tuple[str, list]:
    """torch.einsum's three call forms -> (equation without spaces, operands): (eq, *ops),
    (eq, [ops]) and the sublist form (op, [0, 1], op, [1, 2], ..., [0, 2])."""
    if isinstance(args[0], str):
        ops = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
        return args[0].replace(" ", ""), ops
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def spell(sub):
        return "".join("..." if i is Ellipsis else letters[i] for i in sub)

    rest = list(args)
    out = rest.pop() if len(rest) % 2 else None  # (op, sub) pairs, then the output sublist
    ops, subs = rest[0::2], [spell(sub) for sub in rest[1::2]]
    return ",".join(subs) + ("" if out is None else "->" + spell(out)), ops


@register_op(torch.einsum, cases=C.custom(C.einsum_build))
def einsum(cx, *args):
    from .aten_nn import einsum_op

    equation, ops = _einsum_parts(args)
    return einsum_op(cx, equation, ops)


@register_op(F.linear, cases=C.custom(C.linear_build))
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


register_op(F.adaptive_avg_pool1d, cases=C.custom(C.adaptive_avg_pool(1)))(
    _via_module(lambda s: nn.AdaptiveAvgPool1d(s)))
register_op(F.adaptive_avg_pool2d, cases=C.custom(C.adaptive_avg_pool(2)))(
    _via_module(lambda s: nn.AdaptiveAvgPool2d(s)))
register_op(F.adaptive_avg_pool3d, cases=C.custom(C.adaptive_avg_pool(3)))(
    _via_module(lambda s: nn.AdaptiveAvgPool3d(s)))
register_op(F.max_pool1d, F.max_pool1d_with_indices, cases=C.custom(C.max_pool(1)))(
    _via_module(lambda *a, **k: nn.MaxPool1d(*a, **k)))
register_op(F.max_pool2d, F.max_pool2d_with_indices, cases=C.custom(C.max_pool(2)))(
    _via_module(lambda *a, **k: nn.MaxPool2d(*a, **k)))
register_op(F.max_pool3d, F.max_pool3d_with_indices, cases=C.custom(C.max_pool(3)))(
    _via_module(lambda *a, **k: nn.MaxPool3d(*a, **k)))


@register_op(F.avg_pool2d, cases=C.custom(C.avg_pool2d_build))
def avg_pool2d(cx, x, *args, **kwargs):
    return cx.module(nn.AvgPool2d(*args, **kwargs), [x])


@register_op(F.interpolate, cases=C.custom(C.interpolate_build))
def interpolate(cx, x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    if antialias:
        raise ConversionError("F.interpolate(antialias=True) is not supported by the tracer yet")
    return cx.module(nn.Upsample(size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners,
                                 recompute_scale_factor=recompute_scale_factor), [x])


@register_op(F.pad, cases=C.custom(C.pad_build))
def pad(cx, x, pad, mode="constant", value=None):
    from ..layers.pad import Pad

    mode = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}.get(mode, "constant")
    cl = x.rank >= 3 and x.perm != identity(x.rank)
    if cl:
        x = cx.to(x, tuple((0, *range(2, x.rank), 1)))
    return cx.layer(Pad(tuple(pad), mode=mode, value=float(value or 0.0), channels_last=cl), [x], x.perm)


@register_op(F.layer_norm, cases=C.custom(C.layer_norm_build))
def layer_norm(cx, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    m = nn.LayerNorm(normalized_shape, eps=eps, elementwise_affine=weight is not None or bias is not None,
                     bias=bias is not None)
    _copy_constants(m, {"weight": weight, "bias": bias})
    return cx.module(m, [x])


def constant_tensor(v, what: str):
    """The torch tensor of a model constant Value (a parameter or buffer used by a functional
    call: F.conv2d's weight, deform_conv2d's bias); None stays None."""
    if v is None:
        return None
    data = getattr(v, "data", None)
    if data is None:
        raise ConversionError(f"the {what} of a functional call must be a parameter or buffer of the model "
                              "(a computed tensor cannot become a Keras variable)")
    return torch.from_numpy(np.array(data))


def _copy_constants(m, values):
    with torch.no_grad():
        for name, v in values.items():
            if v is not None:
                getattr(m, name).copy_(constant_tensor(v, name))


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


@register_op(F.batch_norm, cases=C.custom(C.batch_norm_build))
def batch_norm(cx, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    if training or running_mean is None:
        raise ConversionError("F.batch_norm in training mode (batch statistics) cannot be converted; call model.eval()")
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[x.rank]
    m = cls(x.shape[1], eps=eps, affine=weight is not None or bias is not None)
    _copy_constants(m, {"weight": weight, "bias": bias, "running_mean": running_mean, "running_var": running_var})
    return cx.module(m, [x])


def _sdpa_cases(draw):
    from hypothesis import strategies as st

    b, h, lq, lk, e = (draw(st.integers(1, 4)) for _ in range(5))
    kind = draw(st.sampled_from(["none", "bool", "float", "causal", "gqa", "batch_mask", "multi_query"]))
    scale = draw(st.sampled_from([None, 0.3]))
    ev = draw(st.integers(1, 4))
    if kind == "gqa":
        hk = draw(st.integers(1, 3))
        q, k, v = C.draw_inputs(draw, (b, hk * h, lq, e), (b, hk, lk, e), (b, hk, lk, ev))
        causal = draw(st.booleans())
        return (lambda q_, k_, v_: F.scaled_dot_product_attention(q_, k_, v_, is_causal=causal, scale=scale,
                                                                  enable_gqa=True)), \
            f"sdpa gqa causal={causal} scale={scale}", [q, k, v]
    if kind == "multi_query":  # one key/value head broadcast over the query heads (Falcon), no enable_gqa
        q, k, v = C.draw_inputs(draw, (b, h + 1, lq, e), (b, 1, lk, e), (b, 1, lk, ev))
        return (lambda q_, k_, v_: F.scaled_dot_product_attention(q_, k_, v_, scale=scale)), \
            f"sdpa multi-query scale={scale}", [q, k, v]
    q, k, v = C.draw_inputs(draw, (b, h, lq, e), (b, h, lk, e), (b, h, lk, ev))
    if kind == "batch_mask":
        # a per-sample boolean mask (a model input) with some rows fully masked: torch gives zeros
        mask = np.random.default_rng(lq * 7 + lk + b).random((b, 1, lq, lk)) > 0.5
        return (lambda q_, k_, v_, m_: F.scaled_dot_product_attention(q_, k_, v_, attn_mask=m_, scale=scale)), \
            f"sdpa per-sample bool mask scale={scale}", [q, k, v, mask]
    if kind == "bool":
        mask = torch.tensor(np.random.default_rng(lq * 7 + lk).random((lq, lk)) > 0.3)
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
    from ..layers.sdpa import ScaledDotProductAttention

    if dropout_p:
        raise ConversionError(f"scaled_dot_product_attention(dropout_p={dropout_p}) drops attention weights at "
                              "random even in eval mode: pass dropout_p=0.0 when not training")
    if q.rank >= 3 and q.shape[-3] != k.shape[-3] and k.shape[-3] == 1 and v.shape[-3] == 1:
        enable_gqa = True  # one key/value head broadcasts (Falcon's multi-query): GQA with one group
    if q.rank >= 3 and q.shape[-3] != k.shape[-3]:
        if not enable_gqa:
            raise ConversionError(f"query has {q.shape[-3]} heads, key {k.shape[-3]}: torch needs enable_gqa=True")
        if q.shape[-3] % k.shape[-3]:
            raise ConversionError(f"enable_gqa: key heads ({k.shape[-3]}) must divide query heads ({q.shape[-3]})")
    layer = ScaledDotProductAttention(scale=None if scale is None else float(scale), is_causal=bool(is_causal),
                                      enable_gqa=bool(enable_gqa))
    tensors = [cx.torch(q), cx.torch(k), cx.torch(v)]
    if attn_mask is not None:
        if not isinstance(attn_mask, Value):
            attn_mask = cx.const(np.asarray(attn_mask))
        tensors.append(cx.torch(attn_mask))
    out = cx.layer(layer, tensors, identity(len(cx.out_shape)))
    return Value(out.t, out.perm, out.shape, q.dtype)
