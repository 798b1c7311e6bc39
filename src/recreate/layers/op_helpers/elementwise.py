"""Keras-only helper functions for recreate.layers.Op (elementwise ATen ops); no torch here.

Each reproduces one PyTorch kernel's formula exactly where keras.ops rounds, orders or treats
special values differently (Python's float floor division, torch.sign(nan) == 0, softplus's
threshold, round with decimals)."""

from __future__ import annotations

from keras import backend, ops


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


# float dtype -> (integer type of its bits, their number, the bit pattern of +inf)
_FLOAT_BITS = {"float16": ("int16", 16, 0x7C00), "bfloat16": ("int16", 16, 0x7F80),
               "float32": ("int32", 32, 0x7F800000), "float64": ("int64", 64, 0x7FF0000000000000)}


def _bits_view(x, dtype):
    """x's bits read as `dtype` (same size). A trailing axis of 1: keras.ops.view reads the size
    of the last axis, which must be static (a rank-1 batch-sized tensor has none)."""
    return ops.squeeze(ops.view(ops.expand_dims(x, -1), dtype), -1)


def _nextafter(a, b, dtype=None):
    """torch.nextafter (C's): the representable value next to `a` toward `b`; `b` where they
    are equal (so nextafter(0, -0) is -0), the smallest subnormal with b's sign after a zero,
    NaN where either is NaN. Computed on the bit patterns: keras.ops.nextafter rounds through
    float64 (a float32 step is lost), and TensorFlow's CPU kernels treat subnormal operands as
    zero, so no float comparison of them can be trusted.

    `dtype`: the torch tensors' dtype. A layer computes in its float policy's dtype (float32),
    so a float16/bfloat16 step is taken in that dtype and widened back (exactly); a float64
    step in a float32 model is taken in float32 (in float64 it would round away)."""
    keras_dtype = backend.standardize_dtype(a.dtype)
    if isinstance(b, (int, float)):
        b = ops.convert_to_tensor(b, keras_dtype)
    if dtype in _FLOAT_BITS and _FLOAT_BITS[dtype][1] < _FLOAT_BITS[keras_dtype][1]:
        return ops.cast(_nextafter(ops.cast(a, dtype), ops.cast(b, dtype)), keras_dtype)
    itype, nbits, inf_bits = _FLOAT_BITS[keras_dtype]
    ia, ib = _bits_view(a, itype), _bits_view(b, itype)

    def const(v):
        return ops.convert_to_tensor(v, itype)

    magnitude_mask = const((1 << (nbits - 1)) - 1)
    mag_a, mag_b = ops.bitwise_and(ia, magnitude_mask), ops.bitwise_and(ib, magnitude_mask)
    # the values' order as integers (sign and magnitude to two's complement; -0 and +0 equal)
    key_a = ops.where(ops.less(ia, 0), ops.negative(mag_a), mag_a)
    key_b = ops.where(ops.less(ib, 0), ops.negative(mag_b), mag_b)
    # away from zero is one more in the magnitude bits, whatever the sign (subtract: keras.ops.add
    # may take TensorFlow's bias_add path, which does not broadcast both ways)
    away = ops.equal(ops.less(key_a, key_b), ops.greater(key_a, 0))
    stepped = ops.subtract(ia, ops.where(away, const(-1), const(1)))
    smallest = ops.where(ops.greater(key_b, 0), const(1), const(-((1 << (nbits - 1)) - 1)))  # sign bit | 1
    out = ops.where(ops.equal(key_a, 0), smallest, stepped)
    out = ops.where(ops.equal(key_a, key_b), ib, out)
    out = ops.where(ops.greater(mag_b, const(inf_bits)), ib, out)  # NaN
    out = ops.where(ops.greater(mag_a, const(inf_bits)), ia, out)
    return _bits_view(out, keras_dtype)


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
    "aten_nextafter": _nextafter,
}
