"""Attention weight rules: torch MultiheadAttention -> Keras MultiHeadAttention.

torch packs q, k, v projections in in_proj_weight (3E, E) (or q/k/v_proj_weight when kdim or
vdim differ); Keras keeps per-head kernels (E, H, D) and an output kernel (H, D, E).
"""

from __future__ import annotations

from torch import nn

from .._backend import keras
from ..registry import Check, Map, WeightRules, register_rules
from ..transforms import TRANSPOSE, Chain, Chunk, ReshapeToTarget


def _qkv_kernel(i: int):
    return Chain(Chunk(i, 3), TRANSPOSE, ReshapeToTarget(), name=f"in_proj[{i}] -> (E,H,D)")


def _qkv_bias(i: int):
    return Chain(Chunk(i, 3), ReshapeToTarget(), name=f"in_proj_bias[{i}] -> (H,D)")


_SEPARATE_KERNEL = Chain(TRANSPOSE, ReshapeToTarget(), name="(D*H,E)->(E,H,D)")
_OUT_KERNEL = Chain(TRANSPOSE, ReshapeToTarget(), name="(E,H*D)->(H,D,E)")


def _mha_rules(module, layer) -> WeightRules:
    packed = module is None or module._qkv_same_embed_dim
    maps = []
    for i, name in enumerate(("query", "key", "value")):
        if packed:
            maps.append(Map(f"{name}/kernel", "in_proj_weight", _qkv_kernel(i)))
        else:
            maps.append(Map(f"{name}/kernel", f"{name[0]}_proj_weight", _SEPARATE_KERNEL))
        maps.append(Map(f"{name}/bias", "in_proj_bias", _qkv_bias(i), fill=0.0))
    maps.append(Map("attention_output/kernel", "out_proj.weight", _OUT_KERNEL))
    maps.append(Map("attention_output/bias", "out_proj.bias", fill=0.0))
    return WeightRules(tuple(maps), checks=(Check("num_heads", lambda m: m.num_heads),))


register_rules(nn.MultiheadAttention, keras.layers.MultiHeadAttention, _mha_rules)
