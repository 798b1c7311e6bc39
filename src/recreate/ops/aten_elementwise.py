"""ATen op converters: elementwise arithmetic, comparisons, math functions, activations,
casts and copies.

Every converter keeps its operands' layout (perm) and follows torch's type promotion: the
operands are cast to the computation dtype first (the result's dtype, `cx.out_dtype`, or for
comparisons torch.result_type of the operands), so int + float scalar is float, int / int is
float and comparisons are bool, whatever keras.ops would infer. Special values (NaN, inf,
signed zero quotients) follow torch's kernels; see recreate.layers.op_helpers.elementwise.
"""

from __future__ import annotations

import dataclasses

import torch

import numpy as np

from ..errors import ConversionError
from ..trace import Value, identity, tensor
from . import register_op

aten = torch.ops.aten

_KERAS_DTYPES = {torch.bool: "bool", torch.uint8: "uint8", torch.int8: "int8", torch.int16: "int16",
                 torch.int32: "int32", torch.int64: "int64", torch.float16: "float16",
                 torch.bfloat16: "bfloat16", torch.float32: "float32", torch.float64: "float64"}


def _overloads(*names):
    """The OpOverloads among `names` ("add.Tensor") that this torch has."""
    out = []
    for n in names:
        name, overload = n.split(".")
        packet = getattr(aten, name, None)
        if packet is not None and hasattr(packet, overload):
            out.append(getattr(packet, overload))
    return out

_UNSIGNED = (torch.uint8,)


def _kdtype(dtype) -> str:
    name = _KERAS_DTYPES.get(dtype)
    if name is None:
        raise ConversionError(f"dtype {dtype} has no Keras equivalent (complex and quantized tensors are not supported)")
    return name


def _is_float(dtype) -> bool:
    return dtype.is_floating_point


# ---- operands: layout, broadcasting, promotion ------------------------------------------------
def _align(cx, values):
    """Tensor operands in one perm (that of the highest-rank one). Lower-rank operands
    broadcast the torch way (trailing axes): under the identity perm, or at rank 0, Keras
    broadcasts them as they are; otherwise they get the leading 1s and the perm."""
    vals = [v for v in values if isinstance(v, Value)]
    top = max(vals, key=lambda v: v.rank)
    perm = top.perm
    out = []
    for v in values:
        if not isinstance(v, Value) or v.rank == 0:
            out.append(v)
        elif v.rank == top.rank:
            out.append(cx.to(v, perm))
        elif perm == identity(top.rank):
            out.append(cx.torch(v))  # broadcast along trailing torch axes: v in torch's order
        else:
            full = (1,) * (top.rank - v.rank) + v.shape
            if v.data is not None:  # a model constant: expanded and permuted now, not in the graph
                out.append(cx.const(np.asarray(v.data).reshape(full), perm))
                continue
            v = cx.torch(v)
            expanded = cx.op("reshape", [tensor(0), list(full)], [v], identity(len(full)), shape=full, dtype=v.dtype)
            out.append(cx.to(expanded, perm))
    return out, perm


def _cast(cx, v, dtype):
    if not isinstance(v, Value):
        if isinstance(v, (bool, int, float)):
            return bool(v) if dtype == torch.bool else float(v) if _is_float(dtype) else int(v)
        return v
    if v.dtype == dtype:
        return v
    return cx.op("cast", [tensor(0), _kdtype(dtype)], [v], v.perm, shape=v.shape, dtype=dtype)


def _apply(cx, fn, args, compute=None, kwargs=None, dtype=None):
    """keras.ops.<fn> (or helper) of `args` (Values and Python scalars) with the tensors
    aligned and cast to `compute` (default: the result dtype)."""
    compute = compute if compute is not None else cx.out_dtype
    vals, perm = _align(cx, [_cast(cx, a, compute) for a in args])
    tmpl, tensors = [], []
    for v in vals:
        if isinstance(v, Value):
            tmpl.append(tensor(len(tensors)))
            tensors.append(v)
        else:
            tmpl.append(v)
    return cx.op(fn, tmpl, tensors, perm, dtype=dtype, kwargs=kwargs)


def _result_type(a, b):
    def meta(v):
        return torch.empty(v.shape, dtype=v.dtype, device="meta") if isinstance(v, Value) else v

    return torch.result_type(meta(a), meta(b))


def _scalar(v):
    """A Python number from a scalar argument (numpy and 0-d torch values too)."""
    return v.item() if hasattr(v, "item") else v


# ---- arithmetic --------------------------------------------------------------------------------
def _with_alpha(cx, other, alpha, dtype):
    if alpha is None or alpha == 1:
        return other
    if not isinstance(other, Value):
        return other * alpha
    return _apply(cx, "multiply", [other, _scalar(alpha)], compute=dtype)


@register_op(*_overloads("add.Tensor", "add.Scalar"))
def add(cx, x, other, alpha=1):
    if cx.out_dtype == torch.bool:  # bool + bool is logical or (alpha is a bool then)
        return _apply(cx, "logical_or", [x, _scalar(other)]) if alpha else _cast(cx, x, torch.bool)
    other = _with_alpha(cx, _cast(cx, _scalar(other), cx.out_dtype), alpha, cx.out_dtype)
    if cx.out_dtype in _UNSIGNED:
        # the "add" helper may compute x - (-y), and TensorFlow negates no unsigned type: add in
        # int32 and wrap back (mod 256), as torch's uint8 add wraps
        wide = _apply(cx, "add", [x, other], compute=torch.int32, dtype=torch.int32)
        return _cast(cx, wide, cx.out_dtype)
    return _apply(cx, "add", [x, other])


@register_op(*_overloads("sub.Tensor", "sub.Scalar"))
def sub(cx, x, other, alpha=1):
    other = _with_alpha(cx, _cast(cx, _scalar(other), cx.out_dtype), alpha, cx.out_dtype)
    return _apply(cx, "subtract", [x, other])


@register_op(*_overloads("rsub.Tensor", "rsub.Scalar"))
def rsub(cx, x, other, alpha=1):
    x = _with_alpha(cx, _cast(cx, x, cx.out_dtype), alpha, cx.out_dtype)
    return _apply(cx, "subtract", [_scalar(other), x])


@register_op(*_overloads("mul.Tensor", "mul.Scalar"))
def mul(cx, x, other):
    if cx.out_dtype == torch.bool:
        return _apply(cx, "logical_and", [x, _scalar(other)])
    return _apply(cx, "multiply", [x, _scalar(other)])


@register_op(*_overloads("div.Tensor", "div.Scalar", "div.Tensor_mode", "div.Scalar_mode"))
def div(cx, x, other, *, rounding_mode=None):
    other = _scalar(other)
    if rounding_mode is None:
        return _apply(cx, "divide", [x, other])
    if rounding_mode not in ("trunc", "floor"):
        raise ConversionError(f"div: unknown rounding_mode {rounding_mode!r}")
    if _is_float(cx.out_dtype):
        if rounding_mode == "floor":
            return _apply(cx, "aten_floor_divide", [x, other])
        q = _apply(cx, "divide", [x, other])
        return cx.op("trunc", [tensor(0)], [q], q.perm)
    if rounding_mode == "floor":
        return _apply(cx, "floor_divide", [x, other])
    return _apply(cx, "aten_trunc_divide_int", [x, other])


@register_op(*_overloads("floor_divide.default", "floor_divide.Scalar"))
def floor_divide(cx, x, other):
    return div(cx, x, other, rounding_mode="floor")


@register_op(*_overloads("remainder.Tensor", "remainder.Scalar", "remainder.Scalar_Tensor"))
def remainder(cx, x, other):
    # keras.ops.mod is a floor modulo (TensorFlow's FloorMod: fmod, then + other where the
    # signs differ), torch's remainder kernel exactly
    return _apply(cx, "mod", [_scalar(x), _scalar(other)])


@register_op(*_overloads("fmod.Tensor", "fmod.Scalar"))
def fmod(cx, x, other):
    if cx.out_dtype in _UNSIGNED:  # both operands non-negative: fmod is the floor modulo
        return _apply(cx, "mod", [x, _scalar(other)])
    return _apply(cx, "aten_fmod", [x, _scalar(other)])


# torch's pow kernel computes these exponents with these ops (not std::pow), which differ from
# a general power at special values: pow(-inf, 0.5) is nan (sqrt), not inf
_POW_SPECIAL = {0.5: "sqrt", -0.5: "rsqrt", -1.0: "reciprocal", 2.0: "square"}


@register_op(*_overloads("pow.Tensor_Scalar", "pow.Tensor_Tensor", "pow.Scalar"))
def pow_(cx, x, exponent):
    x, exponent = _scalar(x), _scalar(exponent)
    if isinstance(x, Value) and not isinstance(exponent, Value):
        if exponent == 0:
            return _apply(cx, "full_like", [x, 1], kwargs={"dtype": _kdtype(cx.out_dtype)})
        if exponent == 1:
            return _cast(cx, x, cx.out_dtype)
        if _is_float(cx.out_dtype) and float(exponent) in _POW_SPECIAL:
            return _apply(cx, _POW_SPECIAL[float(exponent)], [x])
        if _is_float(cx.out_dtype) and float(exponent) in (3.0, -2.0):
            sq = _apply(cx, "square", [x])
            return _apply(cx, "multiply", [sq, x]) if exponent == 3 else _apply(cx, "reciprocal", [sq])
    return _apply(cx, "power", [x, exponent])


@register_op(*_overloads("atan2.default"))
def atan2(cx, x, other):
    return _apply(cx, "arctan2", [x, other])


@register_op(*_overloads("hypot.default"))
def hypot(cx, x, other):
    return _apply(cx, "aten_hypot", [x, other])


@register_op(*_overloads("copysign.Tensor", "copysign.Scalar"))
def copysign(cx, x, other):
    return _apply(cx, "aten_copysign", [x, _scalar(other)])


@register_op(*_overloads("nextafter.default"))
def nextafter(cx, x, other):
    # both operands in the promoted float dtype (torch has no integer kernel, but an integer
    # `other` promotes to x's float dtype); stepped on the bit patterns, see the helper
    if not _is_float(cx.out_dtype):
        raise ConversionError(f"nextafter of {cx.out_dtype} tensors (torch has only floating kernels)")
    return _apply(cx, "aten_nextafter", [x, _scalar(other)], kwargs={"dtype": _kdtype(cx.out_dtype)})


def _max_min(keras_fn, logical):
    def conv(cx, x, other):
        if cx.out_dtype == torch.bool:
            return _apply(cx, logical, [x, other])
        return _apply(cx, keras_fn, [x, other])  # both propagate NaN, as torch's do

    return conv


register_op(*_overloads("maximum.default"))(_max_min("maximum", "logical_or"))
register_op(*_overloads("minimum.default"))(_max_min("minimum", "logical_and"))


@register_op(*_overloads("clamp.default", "clamp.Tensor"))
def clamp(cx, x, min=None, max=None):
    if min is None and max is None:
        raise ConversionError("clamp: at least one of min and max must be given")
    y = _cast(cx, x, cx.out_dtype)
    boolean = cx.out_dtype == torch.bool
    if min is not None:
        y = _apply(cx, "logical_or" if boolean else "maximum", [y, _scalar(min)])
    if max is not None:
        y = _apply(cx, "logical_and" if boolean else "minimum", [y, _scalar(max)])
    return y


@register_op(*_overloads("clamp_min.default", "clamp_min.Tensor"))
def clamp_min(cx, x, min):
    return clamp(cx, x, min=min)


@register_op(*_overloads("clamp_max.default", "clamp_max.Tensor"))
def clamp_max(cx, x, max):
    return clamp(cx, x, max=max)


@register_op(*_overloads("hardtanh.default"))
def hardtanh(cx, x, min_val=-1.0, max_val=1.0):
    return clamp(cx, x, min=min_val, max=max_val)


# ---- comparisons and logic ---------------------------------------------------------------------
_ORDERED = {"less", "less_equal", "greater", "greater_equal"}


def _comparison(keras_fn):
    def conv(cx, x, other):
        other = _scalar(other)
        compute = _result_type(x, other)
        if compute == torch.bool and keras_fn in _ORDERED:
            compute = torch.uint8  # TensorFlow orders no booleans: False < True as 0 < 1
        return _apply(cx, keras_fn, [x, other], compute=compute)

    return conv


for _name, _fn in {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal",
                   "gt": "greater", "ge": "greater_equal"}.items():
    register_op(*_overloads(f"{_name}.Tensor", f"{_name}.Scalar"))(_comparison(_fn))


def _logical(keras_fn):
    def conv(cx, *args):
        return _apply(cx, keras_fn, list(args), compute=torch.bool)  # nonzero (NaN too) is True

    return conv


for _name in ("and", "or", "xor", "not"):
    register_op(*_overloads(f"logical_{_name}.default"))(_logical(f"logical_{_name}"))


def _bitwise(keras_fn, logical):
    def conv(cx, x, other):
        fn = logical if cx.out_dtype == torch.bool else keras_fn
        return _apply(cx, fn, [_scalar(x), _scalar(other)])

    return conv


for _name in ("and", "or", "xor"):
    register_op(*_overloads(f"bitwise_{_name}.Tensor", f"bitwise_{_name}.Scalar",
                            f"bitwise_{_name}.Scalar_Tensor"))(_bitwise(f"bitwise_{_name}", f"logical_{_name}"))


@register_op(*_overloads("bitwise_not.default"))
def bitwise_not(cx, x):
    return _apply(cx, "logical_not" if x.dtype == torch.bool else "bitwise_invert", [x])


@register_op(*_overloads("where.self", "where.ScalarSelf", "where.ScalarOther", "where.Scalar"))
def where(cx, condition, x, other):
    dtype = cx.out_dtype
    tensors, perm = _align(cx, [_cast(cx, condition, torch.bool), _cast(cx, _scalar(x), dtype),
                                _cast(cx, _scalar(other), dtype)])
    tmpl, vals = [], []
    for v in tensors:
        if isinstance(v, Value):
            tmpl.append(tensor(len(vals)))
            vals.append(v)
        else:
            tmpl.append(v)
    return cx.op("where", tmpl, vals, perm)


@register_op(*_overloads("masked_fill.Scalar", "masked_fill.Tensor"))
def masked_fill(cx, x, mask, value):
    return where(cx, mask, value, x)


@register_op(*_overloads("isnan.default"))
def isnan(cx, x):
    if not _is_float(x.dtype):
        return cx.op("not_equal", [tensor(0), tensor(0)], [x], x.perm)  # never NaN
    return cx.op("isnan", [tensor(0)], [x], x.perm)


@register_op(*_overloads("isinf.default"))
def isinf(cx, x):
    if not _is_float(x.dtype):
        return cx.op("not_equal", [tensor(0), tensor(0)], [x], x.perm)
    return cx.op("isinf", [tensor(0)], [x], x.perm)


@register_op(*_overloads("signbit.default"))
def signbit(cx, x):
    if x.dtype == torch.bool or x.dtype in _UNSIGNED:
        return cx.op("not_equal", [tensor(0), tensor(0)], [x], x.perm)  # never negative
    if not _is_float(x.dtype):
        return _apply(cx, "less", [x, 0], compute=x.dtype)
    return cx.op("signbit", [tensor(0)], [x], x.perm)


# ---- unary math --------------------------------------------------------------------------------
# ATen name -> keras.ops function; integer and bool inputs are cast to the (float) result dtype
_UNARY_FLOAT = {
    "acos": "arccos", "acosh": "arccosh", "asin": "arcsin", "asinh": "arcsinh", "atan": "arctan",
    "atanh": "arctanh", "cos": "cos", "cosh": "cosh", "sin": "sin", "sinh": "sinh", "tan": "tan",
    "tanh": "tanh", "erf": "erf", "erfinv": "erfinv", "exp": "exp", "exp2": "exp2", "expm1": "expm1",
    "log": "log", "log10": "log10", "log1p": "log1p", "log2": "log2", "reciprocal": "reciprocal",
    "rsqrt": "rsqrt", "sqrt": "sqrt", "sigmoid": "sigmoid",
}


def _unary(keras_fn):
    def conv(cx, x):
        return _apply(cx, keras_fn, [x])

    return conv


for _name, _fn in _UNARY_FLOAT.items():
    register_op(*_overloads(f"{_name}.default"))(_unary(_fn))


@register_op(*_overloads("erfc.default"))
def erfc(cx, x):
    return _apply(cx, "subtract", [1.0, _apply(cx, "erf", [x])])


@register_op(*_overloads("abs.default"))
def abs_(cx, x):
    if x.dtype == torch.bool or x.dtype in _UNSIGNED:
        return x
    return _apply(cx, "absolute", [x])


@register_op(*_overloads("neg.default"))
def neg(cx, x):
    if x.dtype in _UNSIGNED:  # wraps around, as in torch (TensorFlow's Neg takes no unsigned type)
        return _apply(cx, "subtract", [0, x])
    return _apply(cx, "negative", [x])


@register_op(*_overloads("sign.default"))
def sign(cx, x):
    if x.dtype == torch.bool:
        return x
    return _apply(cx, "aten_sign", [x])


def _rounding(keras_fn):
    def conv(cx, x):
        if not _is_float(x.dtype):
            return x  # integers are already whole: torch returns them unchanged
        return _apply(cx, keras_fn, [x])

    return conv


for _name, _fn in {"ceil": "ceil", "floor": "floor", "trunc": "trunc", "round": "round"}.items():
    register_op(*_overloads(f"{_name}.default"))(_rounding(_fn))


@register_op(*_overloads("round.decimals"))
def round_decimals(cx, x, *, decimals=0):
    if not _is_float(x.dtype):
        return x
    if decimals == 0:
        return _apply(cx, "round", [x])
    return _apply(cx, "aten_round_decimals", [x, int(decimals)])


# ---- activations -------------------------------------------------------------------------------
@register_op(*_overloads("relu.default"))
def relu(cx, x):
    if not _is_float(x.dtype):
        return _apply(cx, "maximum", [x, 0])
    return _apply(cx, "relu", [x])


@register_op(*_overloads("gelu.default"))
def gelu(cx, x, *, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ConversionError(f"gelu: unknown approximate {approximate!r}")
    return _apply(cx, "gelu", [x], kwargs={"approximate": approximate == "tanh"})


@register_op(*_overloads("elu.default"))
def elu(cx, x, alpha=1.0, scale=1.0, input_scale=1.0):
    return _apply(cx, "aten_elu", [x, float(alpha), float(scale), float(input_scale)])


@register_op(*_overloads("leaky_relu.default"))
def leaky_relu(cx, x, negative_slope=0.01):
    return _apply(cx, "leaky_relu", [x], kwargs={"negative_slope": float(negative_slope)})


@register_op(*_overloads("softplus.default"))
def softplus(cx, x, beta=1.0, threshold=20.0):
    return _apply(cx, "aten_softplus", [x, float(beta), float(threshold)])


for _name, _fn in {"silu": "silu", "hardswish": "hard_silu", "hardsigmoid": "hard_sigmoid", "mish": "aten_mish"}.items():
    register_op(*_overloads(f"{_name}.default"))(_unary(_fn))


# ---- casts, copies, fills ----------------------------------------------------------------------
@register_op(*_overloads("_to_copy.default"))
def to_copy(cx, x, **kwargs):
    # device, layout, memory_format and pin_memory have no meaning in Keras: only dtype counts
    out = _cast(cx, x, cx.out_dtype)
    return dataclasses.replace(out) if out is x else out


@register_op(*_overloads("clone.default"))  # alias and lift_fresh_copy: recreate.ops.aten_shape
def clone(cx, x, **kwargs):
    return dataclasses.replace(x)  # functional graph: a copy is the same values


@register_op(*_overloads("copy.default"))
def copy(cx, x, src, non_blocking=False):
    (x, src), perm = _align(cx, [x, _cast(cx, src, x.dtype)])
    if src.shape == x.shape:
        return dataclasses.replace(src)
    return cx.op("aten_broadcast_like", [tensor(0), tensor(1)], [src, x], perm, dtype=x.dtype)


@register_op(*_overloads("fill.Scalar", "fill.Tensor"))
def fill(cx, x, value):
    value = _scalar(value)
    if isinstance(value, Value):
        return copy(cx, x, value)
    return cx.op("full_like", [tensor(0), _cast(cx, value, x.dtype)], [x], x.perm,
                 kwargs={"dtype": _kdtype(x.dtype)}, dtype=x.dtype)


@register_op(*_overloads("full_like.default"))
def full_like(cx, x, fill_value, **kwargs):
    dtype = cx.out_dtype
    return cx.op("full_like", [tensor(0), _cast(cx, _scalar(fill_value), dtype)], [x], x.perm,
                 kwargs={"dtype": _kdtype(dtype)}, dtype=dtype)


@register_op(*_overloads("scalar_tensor.default"))
def scalar_tensor(cx, s, **kwargs):
    dtype = cx.out_dtype
    if not isinstance(s, Value):  # the builder computes Python-only creations itself
        return cx.const(np.asarray(_scalar(s), dtype=_kdtype(dtype)))
    v = _cast(cx, s, dtype)
    if v.rank:
        v = cx.op("reshape", [tensor(0), []], [v], (), shape=(), dtype=dtype)
    return v
