"""torch.nn.MultiheadAttention, exactly: every constructor option and every forward() mask.

Stock keras.layers.MultiHeadAttention has no bias_k/bias_v, add_zero_attn, sequence-first
layout, additive float masks, (N*H, L, S) masks or per-head weight output; this layer has
them all and computes what torch computes in eval mode (no dropout).

PyTorch's two code paths differ in three places, and so does this layer:
- `is_causal=True` is a hint that `attn_mask` is causal. torch's reference path
  (F.multi_head_attention_forward) replaces the mask by a top-left causal mask over all keys
  when need_weights=False and no key_padding_mask is given; with weights or a padding mask it
  uses attn_mask; without attn_mask it raises. Its native fast path ignores is_causal.
- A row whose keys are all masked: NaN weights, except on the reference path with
  need_weights=False (scaled_dot_product_attention), which gives zero weights.
- The fast path runs when torch's static conditions hold (`fast_path=True`: batch_first,
  biases, packed weights, even head count, no bias_k/zero_attn), query, key and value are the
  same tensor, and no mask is floating point. The same conditions are checked in call().
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ._common import serializable

NEG_INF = float("-inf")


def additive_mask(mask, dtype):
    """A bool mask (True = masked) as 0/-inf; a float mask as it is (torch's _canonical_mask)."""
    if mask is None:
        return None
    if mask.dtype == "bool":
        return ops.where(mask, ops.cast(NEG_INF, dtype), ops.cast(0.0, dtype))
    return ops.cast(mask, dtype)


def is_float_mask(mask) -> bool:
    return mask is not None and mask.dtype != "bool"


@serializable
class MultiheadAttention(keras.layers.Layer):
    """`torch.nn.MultiheadAttention` in eval mode, with its forward() options fixed.

    call(query, key, value, key_padding_mask=None, attn_mask=None) takes PyTorch's layout
    ((N, L, E) with batch_first=True, else (L, N, E); unbatched (L, E) too) and torch's masks
    (bool: True = masked; float: added). It returns attn_output, or (attn_output, attn_weights) with need_weights.

    Example::

        mha = MultiheadAttention(8, 2, batch_first=True)
        out, weights = mha(x, x, x)
    """

    def __init__(self, embed_dim: int, num_heads: int, *, use_bias: bool = True, add_bias_kv: bool = False,
                 add_zero_attn: bool = False, kdim: int | None = None, vdim: int | None = None,
                 batch_first: bool = False, need_weights: bool = True, average_attn_weights: bool = True,
                 is_causal: bool = False, fast_path: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        self.num_heads = int(num_heads)
        if self.num_heads <= 0 or self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.head_dim = self.embed_dim // self.num_heads
        self.use_bias = bool(use_bias)
        self.add_bias_kv = bool(add_bias_kv)
        self.add_zero_attn = bool(add_zero_attn)
        self.kdim = int(kdim) if kdim is not None else self.embed_dim
        self.vdim = int(vdim) if vdim is not None else self.embed_dim
        self.batch_first = bool(batch_first)
        self.need_weights = bool(need_weights)
        self.average_attn_weights = bool(average_attn_weights)
        self.is_causal = bool(is_causal)
        self.fast_path = bool(fast_path)

    def build(self, input_shape):
        e = self.embed_dim
        for name, fan_in in (("query", e), ("key", self.kdim), ("value", self.vdim)):
            setattr(self, f"{name}_kernel", self.add_weight(shape=(fan_in, e), name=f"{name}_kernel"))
            if self.use_bias:
                setattr(self, f"{name}_bias", self.add_weight(shape=(e,), name=f"{name}_bias", initializer="zeros"))
        self.output_kernel = self.add_weight(shape=(e, e), name="output_kernel")
        if self.use_bias:
            self.output_bias = self.add_weight(shape=(e,), name="output_bias", initializer="zeros")
        if self.add_bias_kv:
            self.bias_k = self.add_weight(shape=(e,), name="bias_k")
            self.bias_v = self.add_weight(shape=(e,), name="bias_v")

    def compute_output_shape(self, query_shape, key_shape=None, value_shape=None):
        out = tuple(query_shape[:-1]) + (self.embed_dim,)
        if not self.need_weights:
            return out
        k = tuple(key_shape if key_shape is not None else query_shape)
        if len(query_shape) == 2:  # unbatched
            n, tgt, src = None, query_shape[0], k[0]
        elif self.batch_first:
            n, tgt, src = query_shape[0], query_shape[1], k[1]
        else:
            n, tgt, src = query_shape[1], query_shape[0], k[0]
        if src is not None:
            src += int(self.add_bias_kv) + int(self.add_zero_attn)
        weights = (tgt, src) if self.average_attn_weights else (self.num_heads, tgt, src)
        return out, (weights if len(query_shape) == 2 else (n, *weights))

    def _project(self, x, name):
        h, d = self.num_heads, self.head_dim
        kernel = getattr(self, f"{name}_kernel")
        y = ops.einsum("nle,ehd->nlhd", x, ops.reshape(kernel, (kernel.shape[0], h, d)))
        if self.use_bias:
            y = y + ops.reshape(getattr(self, f"{name}_bias"), (h, d))
        return y

    def call(self, query, key, value, key_padding_mask=None, attn_mask=None):
        # Unbatched (L, E) inputs, as torch allows: a batch of one, sequence first, never fast.
        unbatched = len(query.shape) == 2
        fast = (self.fast_path and not unbatched and query is key and key is value
                and not is_float_mask(attn_mask) and not is_float_mask(key_padding_mask))
        batch_first = self.batch_first and not unbatched
        if unbatched:
            query, key, value = (t[:, None] for t in (query, key, value))
            key_padding_mask = None if key_padding_mask is None else key_padding_mask[None]
        dtype = self.compute_dtype
        kpm = additive_mask(key_padding_mask, dtype)
        am = additive_mask(attn_mask, dtype)
        causal = False
        if self.is_causal and not fast:
            if attn_mask is None:
                raise ValueError(
                    "is_causal=True needs attn_mask (torch raises 'Need attn_mask if specifying the "
                    "is_causal hint'): pass the causal mask as attn_mask"
                )
            if kpm is None and not self.need_weights:
                am, causal = None, True  # torch hands is_causal to scaled_dot_product_attention
        if not batch_first:
            query, key, value = (ops.transpose(t, (1, 0, 2)) for t in (query, key, value))
        h, d = self.num_heads, self.head_dim
        q = self._project(query, "query")
        k = self._project(key, "key")
        v = self._project(value, "value")
        if am is not None:
            if len(am.shape) == 2:
                am = am[None, None]
            else:  # (N*H, L, S): row n*H + h
                am = ops.reshape(am, (-1, h, ops.shape(am)[1], ops.shape(am)[2]))
        if kpm is not None:
            kpm = kpm[:, None, None, :]
        extra = 0
        if self.add_bias_kv:
            k = ops.concatenate([k, ops.zeros_like(k[:, :1]) + ops.reshape(self.bias_k, (h, d))], axis=1)
            v = ops.concatenate([v, ops.zeros_like(v[:, :1]) + ops.reshape(self.bias_v, (h, d))], axis=1)
            extra += 1
        if self.add_zero_attn:
            k = ops.concatenate([k, ops.zeros_like(k[:, :1])], axis=1)
            v = ops.concatenate([v, ops.zeros_like(v[:, :1])], axis=1)
            extra += 1
        if extra:  # the appended keys are never masked
            pad = [(0, 0)] * 3 + [(0, extra)]
            am = None if am is None else ops.pad(am, pad)
            kpm = None if kpm is None else ops.pad(kpm, pad)
        scale = math.sqrt(1.0 / float(d))
        scores = ops.einsum("nlhd,nshd->nhls", q * scale, k)
        if am is not None and kpm is not None:
            scores = scores + (am + kpm)
        elif am is not None or kpm is not None:
            scores = scores + (am if am is not None else kpm)
        if causal:
            rows = ops.arange(ops.shape(scores)[2])[:, None]
            cols = ops.arange(ops.shape(scores)[3])[None, :]
            scores = ops.where(cols <= rows, scores, ops.cast(NEG_INF, scores.dtype))
        weights = ops.softmax(scores, axis=-1)
        if not fast and not self.need_weights:
            # scaled_dot_product_attention gives fully masked rows zero weights, not NaN.
            dead = ops.max(scores, axis=-1, keepdims=True) == NEG_INF
            weights = ops.where(dead, ops.zeros_like(weights), weights)
        ctx = ops.einsum("nhls,nshd->nlhd", weights, v)
        out = ops.einsum("nlhd,hde->nle", ctx, ops.reshape(self.output_kernel, (h, d, self.embed_dim)))
        if self.use_bias:
            out = out + self.output_bias
        if not batch_first:
            out = ops.transpose(out, (1, 0, 2))
        if unbatched:
            out = out[:, 0]
        if not self.need_weights:
            return out
        if self.average_attn_weights:
            weights = ops.mean(weights, axis=1)
        return out, (weights[0] if unbatched else weights)

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "use_bias": self.use_bias,
            "add_bias_kv": self.add_bias_kv,
            "add_zero_attn": self.add_zero_attn,
            "kdim": self.kdim,
            "vdim": self.vdim,
            "batch_first": self.batch_first,
            "need_weights": self.need_weights,
            "average_attn_weights": self.average_attn_weights,
            "is_causal": self.is_causal,
            "fast_path": self.fast_path,
        }
