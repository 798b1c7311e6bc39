"""Channels-first (PyTorch) <-> channels-last (Keras) helpers.

A tensor of rank >= 3 in PyTorch layout (N, C, *spatial) is (N, *spatial, C) inside Keras.
Rank 1-2 tensors are the same in both.
"""

from __future__ import annotations

import numpy as np


def to_channels_last_perm(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1) if rank >= 3 else tuple(range(rank))


def to_channels_first_perm(rank: int) -> tuple[int, ...]:
    return (0, rank - 1, *range(1, rank - 1)) if rank >= 3 else tuple(range(rank))


def to_channels_last(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, to_channels_last_perm(x.ndim))


def to_channels_first(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, to_channels_first_perm(x.ndim))


def channels_last_shape(shape: tuple) -> tuple:
    return tuple(shape[i] for i in to_channels_last_perm(len(shape)))


def keras_permute_dims(rank: int, to_last: bool) -> tuple[int, ...]:
    """`dims` for keras.layers.Permute (1-based, batch excluded) moving the channel axis."""
    perm = to_channels_last_perm(rank) if to_last else to_channels_first_perm(rank)
    return tuple(perm[1:])
