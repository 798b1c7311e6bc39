"""Keras-only helpers for complex tensors held as real pairs (recreate.tracer.complex): a
complex tensor of shape S is a real tensor of shape S + (2,), real part then imaginary
part on the last axis. Keras has no complex dtype on every backend; RoPE-style code
(view_as_complex, multiply by a unit phasor, view_as_real) needs only these."""

from __future__ import annotations

from keras import ops


def _parts(z):
    return z[..., 0], z[..., 1]


def _pair(re, im):
    return ops.stack([re, im], axis=-1)


def _complex_mul(a, b):
    ar, ai = _parts(a)
    br, bi = _parts(b)
    return _pair(ops.subtract(ops.multiply(ar, br), ops.multiply(ai, bi)),
                 ops.add(ops.multiply(ar, bi), ops.multiply(ai, br)))


def _complex_div(a, b):
    ar, ai = _parts(a)
    br, bi = _parts(b)
    den = ops.add(ops.multiply(br, br), ops.multiply(bi, bi))
    return _pair(ops.divide(ops.add(ops.multiply(ar, br), ops.multiply(ai, bi)), den),
                 ops.divide(ops.subtract(ops.multiply(ai, br), ops.multiply(ar, bi)), den))


def _complex_scale(z, x):
    """A complex pair times a real tensor (broadcast against the complex shape)."""
    return ops.multiply(z, ops.expand_dims(ops.cast(x, z.dtype), -1))


def _complex_from_real(x):
    return _pair(x, ops.zeros_like(x))


def _polar(r, theta):
    return _pair(ops.multiply(r, ops.cos(theta)), ops.multiply(r, ops.sin(theta)))


def _complex_abs(z):
    re, im = _parts(z)
    return ops.sqrt(ops.add(ops.multiply(re, re), ops.multiply(im, im)))


def _complex_angle(z):
    re, im = _parts(z)
    return ops.arctan2(im, re)


def _complex_conj(z):
    re, im = _parts(z)
    return _pair(re, ops.negative(im))


HELPERS: dict = {
    "complex_mul": _complex_mul,
    "complex_div": _complex_div,
    "complex_scale": _complex_scale,
    "complex_from_real": _complex_from_real,
    "polar": _polar,
    "complex_abs": _complex_abs,
    "complex_angle": _complex_angle,
    "complex_conj": _complex_conj,
}
