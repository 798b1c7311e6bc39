"""Attention: torch MultiheadAttention -> recreate's MultiheadAttention (exact, every option),
and weight rules into stock keras.layers.MultiHeadAttention.

torch packs the q, k, v projections in in_proj_weight (3E, E) (or keeps q/k/v_proj_weight
when kdim or vdim differ from E) with one in_proj_bias (3E,); recreate's layer keeps Dense-style
kernels (in, E) and biases per projection; stock Keras keeps per-head kernels (E, H, D) and an
output kernel (H, D, E).
"""

from __future__ import annotations

import torch
from torch import nn

import numpy as np
from hypothesis import strategies as st

from .._backend import keras
from ..errors import ConversionError
from ..layers.attention import MultiheadAttention
from ..registry import TORCH, Check, Map, WeightRules, register, register_rules
from ..testing.cases import SEEDS, make_case
from ..transforms import TRANSPOSE, Chain, Chunk, ReshapeToTarget

_NAMES = ("query", "key", "value")


# ---- stock keras.layers.MultiHeadAttention ------------------------------------------------
def _qkv_kernel(i: int):
    return Chain(Chunk(i, 3), TRANSPOSE, ReshapeToTarget(), name=f"in_proj[{i}] -> (E,H,D)")


def _qkv_bias(i: int):
    return Chain(Chunk(i, 3), ReshapeToTarget(), name=f"in_proj_bias[{i}] -> (H,D)")


_SEPARATE_KERNEL = Chain(TRANSPOSE, ReshapeToTarget(), name="(D*H,E)->(E,H,D)")
_OUT_KERNEL = Chain(TRANSPOSE, ReshapeToTarget(), name="(E,H*D)->(H,D,E)")


def _mha_rules(module, layer) -> WeightRules:
    packed = module is None or module._qkv_same_embed_dim
    maps = []
    for i, name in enumerate(_NAMES):
        if packed:
            maps.append(Map(f"{name}/kernel", "in_proj_weight", _qkv_kernel(i)))
        else:
            maps.append(Map(f"{name}/kernel", f"{name[0]}_proj_weight", _SEPARATE_KERNEL))
        maps.append(Map(f"{name}/bias", "in_proj_bias", _qkv_bias(i), fill=0.0))
    maps.append(Map("attention_output/kernel", "out_proj.weight", _OUT_KERNEL))
    maps.append(Map("attention_output/bias", "out_proj.bias", fill=0.0))
    return WeightRules(tuple(maps), checks=(Check("num_heads", lambda m: m.num_heads),))


register_rules(nn.MultiheadAttention, keras.layers.MultiHeadAttention, _mha_rules)


# ---- recreate.layers.MultiheadAttention -----------------------------------------------------
def _in_proj(i: int):
    return Chain(Chunk(i, 3), TRANSPOSE, name=f"in_proj_weight[{i}] (E,E) -> (E,E)^T")


def _in_bias(i: int):
    return Chunk(i, 3, name=f"in_proj_bias[{i}]")


def mha_maps(packed: bool, keras_prefix: str = "", torch_prefix: str = "") -> tuple[Map, ...]:
    """Maps for one recreate MultiheadAttention whose variables live under `keras_prefix`
    (e.g. "self_attn/") filled from the torch tensors under `torch_prefix` ("self_attn.")."""
    k, t = keras_prefix, torch_prefix
    maps = []
    for i, name in enumerate(_NAMES):
        if packed:
            maps.append(Map(f"{k}{name}_kernel", f"{t}in_proj_weight", _in_proj(i)))
        else:
            maps.append(Map(f"{k}{name}_kernel", f"{t}{name[0]}_proj_weight", TRANSPOSE))
        maps.append(Map(f"{k}{name}_bias", f"{t}in_proj_bias", _in_bias(i)))
    maps.append(Map(f"{k}output_kernel", f"{t}out_proj.weight", TRANSPOSE))
    maps.append(Map(f"{k}output_bias", f"{t}out_proj.bias"))
    maps.append(Map(f"{k}bias_k", f"{t}bias_k", ReshapeToTarget()))
    maps.append(Map(f"{k}bias_v", f"{t}bias_v", ReshapeToTarget()))
    return tuple(maps)


def _recreate_mha_rules(module, layer) -> WeightRules:
    # torch packs the projections exactly when kdim == vdim == embed_dim: the Keras layer says.
    packed = layer.kdim == layer.embed_dim and layer.vdim == layer.embed_dim
    return WeightRules(mha_maps(packed), checks=(
        Check("num_heads", lambda m: m.num_heads),
        Check("add_zero_attn", lambda m: bool(m.add_zero_attn)),
    ))


def mha_fast_path(m: nn.MultiheadAttention) -> bool:
    """torch's static conditions for MultiheadAttention's native fast path (eval, no grad);
    the call-time ones (self-attention, no float mask) are checked by the Keras layer."""
    return bool(
        torch.backends.mha.get_fastpath_enabled()
        and m.batch_first
        and m.in_proj_bias is not None
        and m._qkv_same_embed_dim
        and m.num_heads % 2 == 0
        and m.bias_k is None
        and m.bias_v is None
        and not m.add_zero_attn
    )


def build_mha(m: nn.MultiheadAttention, *, need_weights: bool, average_attn_weights: bool, is_causal: bool):
    """The recreate MultiheadAttention computing what `m` computes with these forward() options."""
    if (m.bias_k is None) != (m.bias_v is None):
        raise ConversionError(
            f"MultiheadAttention has bias_k {'set' if m.bias_k is not None else 'None'} but bias_v "
            f"{'set' if m.bias_v is not None else 'None'}: torch raises for this; set both or neither"
        )
    return MultiheadAttention(
        m.embed_dim, m.num_heads, use_bias=m.in_proj_bias is not None,
        add_bias_kv=m.bias_k is not None, add_zero_attn=bool(m.add_zero_attn), kdim=m.kdim, vdim=m.vdim,
        batch_first=m.batch_first, need_weights=need_weights, average_attn_weights=average_attn_weights,
        is_causal=is_causal, fast_path=mha_fast_path(m),
    )


def _mha_cases(torch_type):
    @st.composite
    def case(draw):
        heads = draw(st.integers(1, 4))
        embed = heads * draw(st.integers(1, 3))
        kdim = draw(st.one_of(st.none(), st.integers(1, 6)))
        vdim = draw(st.one_of(st.none(), st.integers(1, 6), st.just(kdim)))
        batch_first = draw(st.booleans())
        m = nn.MultiheadAttention(
            embed, heads, dropout=draw(st.sampled_from([0.0, 0.3])), bias=draw(st.booleans()),
            add_bias_kv=draw(st.booleans()), add_zero_attn=draw(st.booleans()), kdim=kdim, vdim=vdim,
            batch_first=batch_first,
        )
        n, tgt, src = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
        kw = {"need_weights": draw(st.booleans()), "average_attn_weights": draw(st.booleans())}
        rng = np.random.default_rng(draw(SEEDS))
        # At least one key that no mask hides, so no row is fully masked (torch: NaN).
        keep = int(rng.integers(src))
        kpm_kind = draw(st.sampled_from([None, "bool", "float"]))
        am_kind = draw(st.sampled_from([None, "bool", "float"]))
        if kpm_kind:
            kw["key_padding_mask"] = random_mask(rng, (n, src), keep, kpm_kind)
        if am_kind:
            shape = draw(st.sampled_from([(tgt, src), (n * heads, tgt, src)]))
            kw["attn_mask"] = random_mask(rng, shape, keep, am_kind)
            kw["is_causal"] = draw(st.booleans())
        layout = (lambda length, d: (n, length, d)) if batch_first else (lambda length, d: (length, n, d))
        return make_case(draw, m, layout(tgt, embed), layout(src, kdim or embed), layout(src, vdim or embed),
                         kwargs=kw)

    return case()


def random_mask(rng, shape, keep: int, kind: str) -> np.ndarray:
    """A random mask over keys (last axis) that never hides key `keep`: bool (True = masked)
    or float (zeros, finite values and -inf; 0 at `keep`, since torch's fused encoder kernel
    counts every nonzero float as masked)."""
    hidden = rng.random(shape) < 0.4
    hidden[..., keep] = False
    if kind == "bool":
        return hidden
    values = np.where(rng.random(shape) < 0.3, 0.0, rng.standard_normal(shape))
    values[..., keep] = 0.0
    return np.where(hidden, -np.inf, values).astype(np.float32)


@register(nn.MultiheadAttention, cases=_mha_cases, layout=(TORCH, TORCH),
          rules={MultiheadAttention: _recreate_mha_rules})
def multihead_attention(m, ctx):
    kw = ctx.kwargs
    is_causal = bool(kw.get("is_causal", False))
    batched = len(ctx.input_shapes[0]) == 3
    if is_causal and "attn_mask" not in ctx.tensor_kwargs and not (batched and mha_fast_path(m)):
        raise ConversionError(
            "MultiheadAttention forward(is_causal=True) without attn_mask: torch raises 'Need "
            "attn_mask if specifying the is_causal hint'. Pass the causal mask as attn_mask "
            "(nn.Transformer.generate_square_subsequent_mask)"
        )
    return build_mha(m, need_weights=bool(kw.get("need_weights", True)),
                     average_attn_weights=bool(kw.get("average_attn_weights", True)), is_causal=is_causal)
