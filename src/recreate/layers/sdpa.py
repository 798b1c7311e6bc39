"""torch.nn.functional.scaled_dot_product_attention as a Keras layer.

Inputs in torch's layout: query (..., Hq, L, E), key (..., Hk, S, E), value (..., Hk, S, Ev),
and an optional mask broadcastable to (..., Hq, L, S): boolean (True = take part) or
additive float. Semantics kept exactly:

- scale defaults to 1 / sqrt(E);
- is_causal masks the upper triangle aligned top-left (torch's tril of an L x S matrix of
  ones), also when L != S;
- enable_gqa: Hk divides Hq and each key/value head serves Hq / Hk consecutive query heads
  (torch's repeat_interleave on the head axis);
- a row whose keys are all masked out gives zeros, as torch does, not NaN (Hugging Face's
  left-padded batches make such rows).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ._common import serializable

NEG_INF = float("-inf")


@serializable
class ScaledDotProductAttention(keras.layers.Layer):
    """call(query, key, value, mask=None); see the module docstring.

    Example::

        y = ScaledDotProductAttention(is_causal=True)(q, k, v)  # q: (N, H, L, E)
    """

    def __init__(self, scale: float | None = None, is_causal: bool = False, enable_gqa: bool = False, **kw):
        super().__init__(**kw)
        self.scale = None if scale is None else float(scale)
        self.is_causal = bool(is_causal)
        self.enable_gqa = bool(enable_gqa)

    def call(self, query, key, value, mask=None):
        e = query.shape[-1]
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(e)
        hq, hk = query.shape[-3] if len(query.shape) >= 3 else None, key.shape[-3] if len(key.shape) >= 3 else None
        if self.enable_gqa and hq is not None and hk is not None and hq != hk:
            key = ops.repeat(key, hq // hk, axis=-3)
            value = ops.repeat(value, hq // hk, axis=-3)
        scores = ops.matmul(query, ops.swapaxes(key, -1, -2)) * ops.cast(scale, query.dtype)
        neg = ops.cast(NEG_INF, scores.dtype)
        if self.is_causal:
            rows = ops.arange(ops.shape(scores)[-2])[:, None]
            cols = ops.arange(ops.shape(scores)[-1])[None, :]
            scores = ops.where(cols <= rows, scores, neg)
        if mask is not None:
            if mask.dtype == "bool":
                scores = ops.where(mask, scores, neg)
            else:
                scores = scores + ops.cast(mask, scores.dtype)
        weights = ops.softmax(scores, axis=-1)
        dead = ops.max(scores, axis=-1, keepdims=True) == neg
        weights = ops.where(dead, ops.zeros_like(weights), weights)
        return ops.matmul(weights, value)

    def compute_output_shape(self, query_shape, key_shape=None, value_shape=None, mask_shape=None):
        """(*batch, L, Ev): the leading axes of query, key and value broadcast (a rank-3 query
        against rank-4 keys gives a rank-4 result, as torch's matmul does)."""
        lead = [tuple(query_shape[:-2])]
        for s in (key_shape, value_shape):
            if s is not None:
                s = tuple(s[:-2])
                if self.enable_gqa and len(s) >= 1 and len(query_shape) >= 3:
                    s = (*s[:-1], query_shape[-3])  # key/value heads repeated to the query's
                lead.append(s)
        rank = max(len(t) for t in lead)
        batch = []
        for i in range(rank):
            sizes = [t[len(t) - rank + i] for t in lead if len(t) - rank + i >= 0]
            known = [d for d in sizes if d is not None and d != 1]
            batch.append(known[0] if known else (None if None in sizes else 1))
        return (*batch, query_shape[-2], value_shape[-1] if value_shape is not None else query_shape[-1])

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "is_causal": self.is_causal,
                "enable_gqa": self.enable_gqa}
