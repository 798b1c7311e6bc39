"""Distances with PyTorch's exact formulas: p-norms, cosine similarity, pairwise distance.

Both layers read tensors in PyTorch's axis order and broadcast their two inputs like torch.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ._common import serializable


def p_norm(x, p: float, axis=-1, keepdims: bool = False):
    """torch.linalg.vector_norm(x, p, axis): inf -> max |x|, -inf -> min |x|, 0 -> number of
    non-zero entries, otherwise (sum |x|^p)^(1/p) (negative p included, as in torch)."""
    p = float(p)
    # `initial` only stops keras's eager check that refuses an empty tensor (no rows to
    # look up in an EmbeddingBag); |x| >= 0 <= inf, so it never changes a result.
    if p == math.inf:
        return ops.max(ops.abs(x), axis=axis, keepdims=keepdims, initial=0.0)
    if p == -math.inf:
        return ops.min(ops.abs(x), axis=axis, keepdims=keepdims, initial=math.inf)
    if p == 0.0:
        return ops.sum(ops.cast(ops.not_equal(x, 0), x.dtype), axis=axis, keepdims=keepdims)
    if p == 1.0:
        return ops.sum(ops.abs(x), axis=axis, keepdims=keepdims)
    if p == 2.0:
        return ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=keepdims))
    return ops.power(ops.sum(ops.power(ops.abs(x), p), axis=axis, keepdims=keepdims), 1.0 / p)


def _broadcast_shape(a, b):
    a, b = list(a), list(b)
    n = max(len(a), len(b))
    a, b = [1] * (n - len(a)) + a, [1] * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        else:
            raise ValueError(f"shapes {tuple(a)} and {tuple(b)} do not broadcast")
    return out


@serializable
class CosineSimilarity(keras.layers.Layer):
    """`torch.nn.CosineSimilarity(dim, eps)` on two tensors in PyTorch's axis order.

    torch (ATen cosine_similarity) broadcasts the inputs first, then clamps each norm
    separately: sum((x1 / max(|x1|, eps)) * (x2 / max(|x2|, eps)), dim). (Older torch and
    the docs' formula clamp the product of the norms instead; the two differ for near-zero
    vectors.) `axis` is torch's `dim` in the broadcast shape.
    """

    def __init__(self, axis: int = 1, eps: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.eps = float(eps)

    def compute_output_shape(self, x1_shape, x2_shape):
        shape = _broadcast_shape(x1_shape, x2_shape)
        del shape[self.axis % len(shape)]
        return tuple(shape)

    def call(self, x1, x2):
        # Expanding first matters when one input has size 1 along `axis`.
        a = x1 + ops.zeros_like(x2)
        b = x2 + ops.zeros_like(x1)
        axis = self.axis % len(a.shape)
        na = ops.maximum(p_norm(a, 2.0, axis, keepdims=True), self.eps)
        nb = ops.maximum(p_norm(b, 2.0, axis, keepdims=True), self.eps)
        return ops.sum((a / na) * (b / nb), axis=axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "eps": self.eps}


@serializable
class PairwiseDistance(keras.layers.Layer):
    """`torch.nn.PairwiseDistance(p, eps, keepdim)`: the p-norm of `x1 - x2 + eps` over the
    last axis of the broadcast shape (eps is added to the difference, not to the norm).
    Every p torch accepts: fractional, negative, 0 (count of non-zero entries), +-inf."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.p = float(p)
        self.eps = float(eps)
        self.keepdim = bool(keepdim)

    def compute_output_shape(self, x1_shape, x2_shape):
        shape = _broadcast_shape(x1_shape, x2_shape)
        return tuple(shape[:-1] + [1] if self.keepdim else shape[:-1])

    def call(self, x1, x2):
        return p_norm(x1 - x2 + self.eps, self.p, -1, keepdims=self.keepdim)

    def get_config(self):
        return {**super().get_config(), "p": self.p, "eps": self.eps, "keepdim": self.keepdim}
