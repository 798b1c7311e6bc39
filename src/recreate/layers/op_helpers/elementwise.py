"""Keras-only helper functions for recreate.layers.Op (elementwise ATen ops); no torch here.

Each reproduces one PyTorch kernel's formula exactly where keras.ops rounds, orders or treats
special values differently (Python's float floor division, torch.sign(nan) == 0, softplus's
threshold, round with decimals)."""

from __future__ import annotations

from keras import ops


def _sign(x):
    """torch.sign: (0 < x) - (x < 0), so sign(nan) == 0 (keras.ops.sign gives nan)."""
    return ops.cast(ops.greater(x, 0), x.dtype) - ops.cast(ops.less(x, 0), x.dtype)


def _fmod(a, b):
    """C's fmod (the remainder takes the dividend's sign). A floor modulo of magnitudes is
    exact and equals fmod of them; the sign is then the dividend's."""
    r = ops.mod(ops.abs(a), ops.abs(b))
    return ops.where(ops.less(a, 0), ops.negative(r), r)


def _floor_divide(a, b):
    """torch's float floor division (CPython's algorithm): floor(a / b) is wrong where a / b
    rounds up to an integer (1 // 0.1 is 9, floor(1 / 0.1) is 10)."""
    mod = _fmod(a, b)
    div = ops.divide(ops.subtract(a, mod), b)
    adjust = ops.logical_and(ops.not_equal(mod, 0), ops.not_equal(ops.less(b, 0), ops.less(mod, 0)))
    div = ops.where(adjust, div - 1, div)
    floor = ops.floor(div)
    floor = ops.where(ops.greater(div - floor, 0.5), floor + 1, floor)
    quotient = ops.divide(a, b)
    zero = ops.where(ops.less(quotient, 0), ops.negative(ops.zeros_like(quotient)), ops.zeros_like(quotient))
    out = ops.where(ops.not_equal(div, 0), floor, zero)
    return ops.where(ops.equal(b, 0), quotient, out)


def _trunc_divide_int(a, b):
    """Integer division rounding toward zero (C's a / b) from floor division."""
    q = ops.floor_divide(a, b)
    r = ops.subtract(a, ops.multiply(q, b))
    inexact_negative = ops.logical_and(ops.not_equal(r, 0), ops.not_equal(ops.less(a, 0), ops.less(b, 0)))
    return ops.where(inexact_negative, q + 1, q)


def _round_decimals(x, decimals):
    """torch.round(x, decimals=d): rint(x * 10**d) / 10**d, or rint(x / 10**-d) * 10**-d for d < 0
    (keras.ops.round multiplies by 10**d in both cases, which rounds differently for d < 0)."""
    scale = float(10 ** abs(int(decimals)))
    if decimals < 0:
        return ops.round(ops.divide(x, scale)) * scale
    return ops.divide(ops.round(ops.multiply(x, scale)), scale)


def _softplus(x, beta=1.0, threshold=20.0):
    """torch's softplus: x where x * beta > threshold, else log1p(exp(x * beta)) / beta."""
    scaled = ops.multiply(x, beta)
    soft = ops.divide(ops.log1p(ops.exp(scaled)), beta)
    return ops.where(ops.greater(scaled, threshold), x, soft)


def _mish(x):
    return ops.multiply(x, ops.tanh(ops.softplus(x)))


def _elu(x, alpha=1.0, scale=1.0, input_scale=1.0):
    """aten.elu (also selu and celu): x * scale for x > 0, else expm1(x * input_scale) * alpha * scale."""
    neg = ops.multiply(ops.expm1(ops.multiply(x, input_scale)), alpha * scale)
    return ops.where(ops.greater(x, 0), ops.multiply(x, scale), neg)


def _broadcast_like(value, ref):
    """`value` broadcast to `ref`'s run-time shape (a dynamic batch stays dynamic)."""
    return ops.broadcast_to(value, ops.shape(ref))


def _copysign(a, b):
    magnitude = ops.abs(a)
    return ops.where(ops.signbit(b), ops.negative(magnitude), magnitude)


def _hypot(a, b):
    """torch.hypot (C's): +inf where either side is infinite, even against a NaN (IEEE 754),
    which keras.ops.hypot's NaN propagation does not give."""
    either_inf = ops.logical_or(ops.isinf(a), ops.isinf(b))
    return ops.where(either_inf, ops.cast(float("inf"), a.dtype), ops.hypot(a, b))


HELPERS: dict = {
    "aten_hypot": _hypot,
    "aten_sign": _sign,
    "aten_fmod": _fmod,
    "aten_floor_divide": _floor_divide,
    "aten_trunc_divide_int": _trunc_divide_int,
    "aten_round_decimals": _round_decimals,
    "aten_softplus": _softplus,
    "aten_mish": _mish,
    "aten_elu": _elu,
    "aten_broadcast_like": _broadcast_like,
    "aten_copysign": _copysign,
}
