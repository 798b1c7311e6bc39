"""Shared helpers for recreate's Keras layers (Keras only: no torch here)."""

from __future__ import annotations

import keras

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
