"""Embedding lookup with torch's `max_norm` (rows renormalised at lookup time)."""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable
from .distance import p_norm

#: The constant torch adds to the norm in embedding_renorm_ (ATen/native/Embedding.cpp).
RENORM_EPS = 1e-7


def renorm_rows(rows, max_norm: float, norm_type: float = 2.0):
    """What torch's `embedding_renorm_` makes of looked-up rows (last axis): a row whose
    `norm_type`-norm exceeds `max_norm` is scaled by max_norm / (norm + 1e-7)."""
    norm = p_norm(rows, norm_type, -1, keepdims=True)
    scale = ops.where(norm > max_norm, max_norm / (norm + RENORM_EPS), ops.ones_like(norm))
    return rows * scale


@serializable
class MaxNormEmbedding(keras.layers.Embedding):
    """`torch.nn.Embedding(..., max_norm, norm_type)`: keras.layers.Embedding whose looked-up
    rows are renormalised as torch renormalises them.

    torch renormalises the weight rows IN PLACE at each lookup (every looked-up row with
    norm > max_norm is scaled by max_norm / (norm + 1e-7)) and returns the renormalised rows.
    This layer never changes its weights; it renormalises the rows it returns, which gives
    the same output, whether or not torch had already renormalised its rows (a renormalised
    row's norm is below max_norm and is left alone). The weight is `embeddings`, like
    keras.layers.Embedding, so the same weight rules fill it.
    """

    def __init__(self, input_dim, output_dim, max_norm: float = 1.0, norm_type: float = 2.0, **kwargs):
        super().__init__(input_dim, output_dim, **kwargs)
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)

    def call(self, inputs):
        return renorm_rows(super().call(inputs), self.max_norm, self.norm_type)

    def get_config(self):
        return {**super().get_config(), "max_norm": self.max_norm, "norm_type": self.norm_type}
