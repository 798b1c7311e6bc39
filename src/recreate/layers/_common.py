"""Shared helpers for recreate's Keras layers (Keras only: no torch here)."""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "recreate"


def serializable(cls):
    """Register a layer class for .keras loading under the 'recreate' package name."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


def torch_axis_to_keras(axis: int, rank: int, channels_last: bool) -> int:
    """Where torch's axis `axis` of a rank-`rank` tensor lives in the Keras tensor."""
    axis = axis % rank
    if not channels_last or rank < 3 or axis == 0:
        return axis
    return rank - 1 if axis == 1 else axis - 1


def add(x, y):
    """x + y with numpy broadcasting, for every dtype.

    keras.ops.add (Keras 3.15, TensorFlow backend) turns an add whose second operand has one
    non-1 axis of the size of x's axis 1 or last axis into tf.nn.bias_add along that axis,
    whatever axis the operand's values lie on: (2, 2) + (2, 1) adds y along the last axis
    (error 0.9 in recreate's op property test), and (1, 2, 1, 1) + (1, 2) comes out (1, 2, 1, 1)
    instead of (1, 2, 1, 2) (F.unfold's block index, found by its property test). x - (-y) is
    the same IEEE sum and takes no such shortcut; it is used only where the shortcut could fire
    (y has exactly one axis that is not statically 1, and its size is known), so residual adds
    in graph mode stay one AddV2. Unsigned and boolean operands, which have no negative, add
    in int64 (wrapping back as torch's uint8 does) and bool as a logical or."""
    dtype = keras.backend.standardize_dtype(getattr(x, "dtype", None) or "float32")
    if dtype == "bool" and keras.backend.standardize_dtype(getattr(y, "dtype", None) or "bool") == "bool":
        return ops.logical_or(x, y)
    shape = getattr(y, "shape", None)
    wide = [d for d in (shape or ()) if d is None or d > 1]
    if shape is None or len(wide) != 1 or wide[0] is None:
        return ops.add(x, y)
    out = keras.backend.result_type(dtype, keras.backend.standardize_dtype(y.dtype))
    if out.startswith("uint") or out == "bool":
        wide_sum = ops.subtract(ops.cast(x, "int64"), ops.negative(ops.cast(y, "int64")))
        return ops.cast(wide_sum, out)
    return ops.subtract(ops.cast(x, out), ops.negative(ops.cast(y, out)))
