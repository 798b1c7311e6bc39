"""torch.nn.TransformerEncoderLayer / DecoderLayer / Encoder / Decoder / Transformer, in eval
mode, including what torch's inference fast paths do differently from its reference code:

- TransformerEncoderLayer's fast path (torch._transformer_encoder_layer_fwd, taken in eval
  under no_grad when batch_first, biases, relu/gelu, equal norm eps and an even head count)
  treats a float mask as boolean: every nonzero entry masks (the reference path adds it);
  it runs GELU as exact erf GELU even for nn.GELU(approximate='tanh'); it ignores is_causal.
  `fast_path=True` reproduces it.
- TransformerEncoder's nested-tensor path (`nested=True`, used with src_key_padding_mask and
  no mask): each sequence is cut to its first `len` positions (`len` = number of unmasked
  positions), runs unmasked, and is padded back with zeros, so padded positions come out as 0
  (then the final norm). With mask_check=True it is taken only when the valid positions form
  a prefix in every row (checked at run time, as torch does).
Unbatched (S, E) inputs take torch's reference path, as in torch. Dropout is inference-time
identity and not represented. The norms are recreate's LayerNorm (torch's order of operations;
see layer_norm.py).
"""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable
from .attention import NEG_INF, MultiheadAttention, additive_mask
from .layer_norm import LayerNorm


def _gelu(x):
    # torch's formula; Python-float constants take x's dtype (tf.nn.gelu builds float32 constants
    # and casts them, which costs float64 inputs 5e-9).
    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + ops.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


ACTIVATIONS = {
    "relu": ops.relu,
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": ops.silu,
    "tanh": ops.tanh,
    "sigmoid": ops.sigmoid,
}


def _eps_list(eps, n: int) -> list[float]:
    eps = list(eps) if isinstance(eps, (list, tuple)) else [eps] * n
    if len(eps) != n:
        raise ValueError(f"layer_norm_eps needs 1 or {n} values, got {eps}")
    return [float(e) for e in eps]


def _deserialize(layers, cls):
    out = []
    for lyr in layers:
        if isinstance(lyr, dict):
            lyr = keras.saving.deserialize_keras_object(lyr)
        if not isinstance(lyr, cls):
            raise TypeError(f"expected {cls.__name__} layers, got {type(lyr).__name__}")
        out.append(lyr)
    return out


def _serialize(layer) -> dict:
    # Without build_config: the parent builds its sublayers, inside its own name scope, so the
    # variable paths (parent/layers.0/self_attn/...) are the same after loading.
    cfg = keras.saving.serialize_keras_object(layer)
    cfg.pop("build_config", None)
    return cfg


def _build(layer, shape) -> None:
    if not layer.built:
        layer.build(shape)


def _seq_first(x):
    return ops.transpose(x, (1, 0, 2))


class _Block(keras.layers.Layer):
    """Shared by the encoder and decoder layers: feed-forward part, norms, config."""

    n_norms = 2

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, *, activation: str = "relu",
                 layer_norm_eps=1e-5, batch_first: bool = False, norm_first: bool = False, use_bias: bool = True,
                 attention_fast_path: bool = False, **kwargs):
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.d_model = int(d_model)
        self.nhead = int(nhead)
        self.dim_feedforward = int(dim_feedforward)
        self.activation = activation
        self.layer_norm_eps = _eps_list(layer_norm_eps, self.n_norms)
        self.batch_first = bool(batch_first)
        self.norm_first = bool(norm_first)
        self.use_bias = bool(use_bias)
        self.attention_fast_path = bool(attention_fast_path)
        self.linear1 = keras.layers.Dense(self.dim_feedforward, use_bias=self.use_bias, name="linear1")
        self.linear2 = keras.layers.Dense(self.d_model, use_bias=self.use_bias, name="linear2")
        self.norms = [
            LayerNorm(epsilon=e, center=self.use_bias, name=f"norm{i + 1}")
            for i, e in enumerate(self.layer_norm_eps)
        ]

    def _mha(self, name, is_causal):
        return MultiheadAttention(self.d_model, self.nhead, use_bias=self.use_bias, batch_first=True,
                                  need_weights=False, is_causal=is_causal, fast_path=self.attention_fast_path,
                                  name=name)

    def _build_common(self):
        feat = (None, None, self.d_model)
        _build(self.linear1, feat)
        _build(self.linear2, (None, None, self.dim_feedforward))
        for norm in self.norms:
            _build(norm, feat)

    def _ff(self, x, activation=None):
        return self.linear2(ACTIVATIONS[activation or self.activation](self.linear1(x)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        eps = self.layer_norm_eps
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "nhead": self.nhead,
            "dim_feedforward": self.dim_feedforward,
            "activation": self.activation,
            "layer_norm_eps": eps[0] if len(set(eps)) == 1 else list(eps),
            "batch_first": self.batch_first,
            "norm_first": self.norm_first,
            "use_bias": self.use_bias,
            "attention_fast_path": self.attention_fast_path,
        }


@serializable
class TransformerEncoderLayer(_Block):
    """`torch.nn.TransformerEncoderLayer` in eval mode.

    call(src, src_mask=None, src_key_padding_mask=None), PyTorch layout and masks.
    `layer_norm_eps` is one value or (norm1, norm2); `fast_path` reproduces torch's fused
    inference kernel (see the module docstring); `attention_fast_path` is the self-attention's
    `fast_path`.

    Example::

        layer = TransformerEncoderLayer(8, 2, 16, batch_first=True)
        y = layer(x)
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, *, is_causal: bool = False,
                 fast_path: bool = False, **kwargs):
        super().__init__(d_model, nhead, dim_feedforward, **kwargs)
        self.is_causal = bool(is_causal)
        self.fast_path = bool(fast_path)
        # On the fused path the attention gets boolean masks and one tensor three times: its own
        # fast path, which ignores is_causal, as torch's kernel does.
        self.self_attn = self._mha("self_attn", self.is_causal)

    def build(self, input_shape):
        _build(self.self_attn, (None, None, self.d_model))
        self._build_common()

    def call(self, src, src_mask=None, src_key_padding_mask=None):
        dtype = self.compute_dtype
        batched = len(src.shape) == 3  # torch takes unbatched (S, E) input on its reference path
        fast = self.fast_path and batched
        if fast:  # a float mask counts as boolean: nonzero entries mask
            src_mask = None if src_mask is None else (src_mask if src_mask.dtype == "bool" else src_mask != 0)
            kpm = src_key_padding_mask
            kpm = None if kpm is None else (kpm if kpm.dtype == "bool" else kpm != 0)
        else:  # torch canonicalises both masks to float before the attention sees them
            src_mask = additive_mask(src_mask, dtype)
            kpm = additive_mask(src_key_padding_mask, dtype)
        # The fused kernel runs relu or exact (erf) gelu, whichever GELU the module holds.
        activation = ("gelu" if self.activation.startswith("gelu") else self.activation) if fast else self.activation
        x = src if self.batch_first or not batched else _seq_first(src)
        norm1, norm2 = self.norms
        if self.norm_first:
            x = x + self._sa(norm1(x), src_mask, kpm)
            x = x + self._ff(norm2(x), activation)
        else:
            x = norm1(x + self._sa(x, src_mask, kpm))
            x = norm2(x + self._ff(x, activation))
        return x if self.batch_first or not batched else _seq_first(x)

    def _sa(self, x, attn_mask, kpm):
        return self.self_attn(x, x, x, key_padding_mask=kpm, attn_mask=attn_mask)

    def get_config(self):
        return {**super().get_config(), "is_causal": self.is_causal, "fast_path": self.fast_path}


@serializable
class TransformerDecoderLayer(_Block):
    """`torch.nn.TransformerDecoderLayer` in eval mode.

    call(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None), PyTorch layout and masks; `layer_norm_eps` is one value or
    (norm1, norm2, norm3).

    Example::

        layer = TransformerDecoderLayer(8, 2, 16, batch_first=True)
        y = layer(tgt, memory)
    """

    n_norms = 3

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, *, tgt_is_causal: bool = False,
                 memory_is_causal: bool = False, **kwargs):
        super().__init__(d_model, nhead, dim_feedforward, **kwargs)
        self.tgt_is_causal = bool(tgt_is_causal)
        self.memory_is_causal = bool(memory_is_causal)
        self.self_attn = self._mha("self_attn", self.tgt_is_causal)
        self.multihead_attn = self._mha("multihead_attn", self.memory_is_causal)

    def build(self, input_shape):
        _build(self.self_attn, (None, None, self.d_model))
        _build(self.multihead_attn, (None, None, self.d_model))
        self._build_common()

    def call(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
             memory_key_padding_mask=None):
        seq_first = not self.batch_first and len(tgt.shape) == 3  # unbatched (T, E) stays as it is
        x = _seq_first(tgt) if seq_first else tgt
        mem = _seq_first(memory) if seq_first else memory
        norm1, norm2, norm3 = self.norms

        def sa(y):
            return self.self_attn(y, y, y, key_padding_mask=tgt_key_padding_mask, attn_mask=tgt_mask)

        def ca(y):
            return self.multihead_attn(y, mem, mem, key_padding_mask=memory_key_padding_mask, attn_mask=memory_mask)

        if self.norm_first:
            x = x + sa(norm1(x))
            x = x + ca(norm2(x))
            x = x + self._ff(norm3(x))
        else:
            x = norm1(x + sa(x))
            x = norm2(x + ca(x))
            x = norm3(x + self._ff(x))
        return _seq_first(x) if seq_first else x

    def compute_output_shape(self, tgt_shape, memory_shape=None):
        return tuple(tgt_shape)

    def get_config(self):
        return {**super().get_config(), "tgt_is_causal": self.tgt_is_causal,
                "memory_is_causal": self.memory_is_causal}


class _Stack(keras.layers.Layer):
    """A list of layers named layers.0, layers.1, ... and an optional final LayerNorm."""

    layer_class: type = keras.layers.Layer

    def __init__(self, layers, *, norm_eps: float | None = None, norm_center: bool = True,
                 norm_scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.stack = _deserialize(layers, self.layer_class)
        if not self.stack:
            raise ValueError(f"{type(self).__name__} needs at least one layer")
        self.d_model = self.stack[0].d_model
        self.batch_first = self.stack[0].batch_first
        self.norm_eps = None if norm_eps is None else float(norm_eps)
        self.norm_center = bool(norm_center)
        self.norm_scale = bool(norm_scale)
        self.norm = None
        if self.norm_eps is not None:
            self.norm = LayerNorm(epsilon=self.norm_eps, center=self.norm_center, scale=self.norm_scale,
                                  name="norm")

    def build(self, input_shape):
        for lyr in self.stack:
            _build(lyr, input_shape)
        if self.norm is not None:
            _build(self.norm, (None, None, self.d_model))

    def compute_mask(self, inputs, previous_mask=None):
        return None  # a `mask` argument here is torch's attention mask, not a Keras timestep mask

    def get_config(self):
        return {
            **super().get_config(),
            "layers": [_serialize(lyr) for lyr in self.stack],
            "norm_eps": self.norm_eps,
            "norm_center": self.norm_center,
            "norm_scale": self.norm_scale,
        }


@serializable
class TransformerEncoder(_Stack):
    """`torch.nn.TransformerEncoder` in eval mode: a stack of TransformerEncoderLayer, an
    optional final LayerNorm (`norm_eps`), and torch's nested-tensor path (`nested`).

    call(src, mask=None, src_key_padding_mask=None), PyTorch layout and masks.

    Example::

        enc = TransformerEncoder([TransformerEncoderLayer(8, 2, 16, batch_first=True, name=f"layers.{i}")
                                  for i in range(2)], norm_eps=1e-5)
    """

    layer_class = TransformerEncoderLayer

    def __init__(self, layers, *, nested: bool = False, mask_check: bool = True, **kwargs):
        super().__init__(layers, **kwargs)
        self.nested = bool(nested)
        self.mask_check = bool(mask_check)

    def call(self, src, mask=None, src_key_padding_mask=None):
        dtype = self.compute_dtype
        # torch canonicalises both masks to float (bool True -> -inf) before anything else.
        mask = additive_mask(mask, dtype)
        kpm = additive_mask(src_key_padding_mask, dtype)
        padded = None
        if self.nested and kpm is not None and mask is None and len(src.shape) == 3:
            valid = kpm == 0
            n = ops.sum(ops.cast(valid, "int32"), axis=1, keepdims=True)
            prefix = ops.arange(ops.shape(kpm)[1])[None, :] < n
            if self.mask_check:
                nested = ops.all(ops.equal(valid, prefix))
            else:
                nested = ops.convert_to_tensor(True)
            # Nested: each sequence is its first n positions, unmasked; others come out as 0.
            kpm = ops.where(nested, ops.where(prefix, ops.cast(0.0, dtype), ops.cast(NEG_INF, dtype)), kpm)
            padded = ops.logical_and(nested, ops.logical_not(prefix))
        x = src
        for lyr in self.stack:
            x = lyr(x, src_mask=mask, src_key_padding_mask=kpm)
        if padded is not None:  # nested requires batch_first: x is (N, S, E)
            x = ops.where(padded[:, :, None], ops.zeros_like(x), x)
        if self.norm is not None:
            x = self.norm(x)
        return x

    def compute_output_shape(self, src_shape, mask_shape=None, src_key_padding_mask_shape=None):
        return tuple(src_shape)

    def get_config(self):
        return {**super().get_config(), "nested": self.nested, "mask_check": self.mask_check}


@serializable
class TransformerDecoder(_Stack):
    """`torch.nn.TransformerDecoder` in eval mode: a stack of TransformerDecoderLayer and an
    optional final LayerNorm.

    call(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None), PyTorch layout and masks.
    """

    layer_class = TransformerDecoderLayer

    def call(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
             memory_key_padding_mask=None):
        x = tgt
        for lyr in self.stack:
            x = lyr(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask, tgt_key_padding_mask=tgt_key_padding_mask,
                    memory_key_padding_mask=memory_key_padding_mask)
        if self.norm is not None:
            x = self.norm(x)
        return x

    def compute_output_shape(self, tgt_shape, memory_shape=None):
        return tuple(tgt_shape)


@serializable
class Transformer(keras.layers.Layer):
    """`torch.nn.Transformer` in eval mode: a TransformerEncoder and a TransformerDecoder.

    call(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None), PyTorch layout and masks.
    """

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = _deserialize([encoder], TransformerEncoder)[0]
        self.decoder = _deserialize([decoder], TransformerDecoder)[0]

    def build(self, input_shape):
        _build(self.encoder, input_shape)
        _build(self.decoder, input_shape)

    def call(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
             tgt_key_padding_mask=None, memory_key_padding_mask=None):
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask)

    def compute_output_shape(self, src_shape, tgt_shape=None):
        return tuple(tgt_shape if tgt_shape is not None else src_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": _serialize(self.encoder),
            "decoder": _serialize(self.decoder),
        }
