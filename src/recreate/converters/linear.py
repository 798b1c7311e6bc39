"""Linear family: Identity, Linear (on the last axis, any rank), Bilinear, Embedding and
EmbeddingBag (every mode, offsets, per-sample weights, padding_idx, max_norm).

Embedding is keras.layers.Embedding (a plain lookup, which is torch's forward whatever
padding_idx is: padding_idx only stops the row's gradient). With max_norm, torch renormalises
the looked-up weight rows in place before the lookup; recreate.layers.MaxNormEmbedding
returns the same renormalised rows without touching its weights (see there).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..errors import ConversionError
from ..layers.bilinear import Bilinear
from ..layers.embedding import MaxNormEmbedding
from ..layers.embedding_bag import EmbeddingBag
from ..registry import ANY, TORCH, Map, WeightRules, register
from ..testing.cases import SEEDS, Case, make_case, randomize_
from ..transforms import TRANSPOSE

DENSE_RULES = WeightRules((Map("kernel", "weight", TRANSPOSE), Map("bias", "bias", fill=0.0)))
#: Embedding / EmbeddingBag weight (num_embeddings, dim) is Keras's `embeddings` as is.
EMBEDDING_RULES = WeightRules((Map("embeddings", "weight"),))
#: Bilinear weight (out, in1, in2) is recreate.layers.Bilinear's kernel as is.
BILINEAR_RULES = WeightRules((Map("kernel", "weight"), Map("bias", "bias", fill=0.0)))

_NORM_TYPES = [2.0, 2.0, 1.0, 3.0, 0.5, 1.5, math.inf, -math.inf, 0.0]


def _identity_cases(torch_type):
    @st.composite
    def case(draw):
        args = draw(st.lists(st.integers(-3, 3), max_size=2))
        kwargs = draw(st.dictionaries(st.sampled_from(["unused", "features"]), st.integers(0, 5), max_size=2))
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=5)))
        return make_case(draw, nn.Identity(*args, **kwargs), shape)

    return case()


# Identity works in any layout; channels-last like the other pass-through modules (Dropout).
@register(nn.Identity, cases=_identity_cases, layout=(ANY, ANY))
def identity(m):
    return keras.layers.Identity()


def _linear_cases(torch_type):
    @st.composite
    def case(draw):
        fin, fout = draw(st.integers(1, 16)), draw(st.integers(1, 16))
        lead = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
        m = nn.Linear(fin, fout, bias=draw(st.booleans()))
        return make_case(draw, m, (*lead, fin))

    return case()


# nn.Linear acts on the last axis of the tensor as torch lays it out: layout "torch".
@register(nn.Linear, cases=_linear_cases, layout=(TORCH, TORCH), rules={keras.layers.Dense: DENSE_RULES})
def linear(m):
    return keras.layers.Dense(m.out_features, use_bias=m.bias is not None)


def _bilinear_cases(torch_type):
    @st.composite
    def case(draw):
        in1, in2, out = (draw(st.integers(1, 6)) for _ in range(3))
        lead = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
        m = nn.Bilinear(in1, in2, out, bias=draw(st.booleans()))
        return make_case(draw, m, (*lead, in1), (*lead, in2))

    return case()


@register(nn.Bilinear, cases=_bilinear_cases, layout=(TORCH, TORCH), rules={Bilinear: BILINEAR_RULES})
def bilinear(m, ctx):
    if ctx.input_shapes and min(len(s) for s in ctx.input_shapes) < 2:
        raise ConversionError(f"Bilinear is converted for batched (N, *, features) inputs, got shapes "
                              f"{list(ctx.input_shapes)}: convert with a batch axis (x[None]) and index the output")
    return Bilinear(m.out_features, use_bias=m.bias is not None)


def _indices(rng, num: int, shape, dtype) -> np.ndarray:
    return rng.integers(0, num, size=shape).astype(dtype)


def _embedding_options(draw, num: int) -> dict:
    return dict(
        padding_idx=draw(st.one_of(st.none(), st.integers(-num, num - 1))),
        max_norm=draw(st.one_of(st.none(), st.floats(0.2, 2.0))),
        norm_type=draw(st.sampled_from(_NORM_TYPES)),
        scale_grad_by_freq=draw(st.booleans()),
        sparse=draw(st.booleans()),
    )


def _embedding_cases(torch_type):
    @st.composite
    def case(draw):
        num, dim = draw(st.integers(1, 10)), draw(st.integers(1, 6))
        m = nn.Embedding(num, dim, **_embedding_options(draw, num))
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
        seed = draw(SEEDS)
        randomize_(m, seed)
        idx = _indices(np.random.default_rng(seed + 1), num, shape, draw(st.sampled_from([np.int64, np.int32])))
        return Case(m, (idx,))

    return case()


@register(nn.Embedding, cases=_embedding_cases, layout=(TORCH, TORCH),
          rules={keras.layers.Embedding: EMBEDDING_RULES})
def embedding(m):
    # padding_idx, scale_grad_by_freq and sparse only change training.
    if m.max_norm is None:
        return keras.layers.Embedding(m.num_embeddings, m.embedding_dim)
    return MaxNormEmbedding(m.num_embeddings, m.embedding_dim, max_norm=m.max_norm, norm_type=m.norm_type)


def _embedding_bag_cases(torch_type):
    @st.composite
    def case(draw):
        num, dim = draw(st.integers(1, 10)), draw(st.integers(1, 5))
        opts = _embedding_options(draw, num)
        mode = draw(st.sampled_from(["sum", "mean", "max"]))
        if mode == "max":
            opts["scale_grad_by_freq"] = opts["sparse"] = False  # torch refuses them with max
        m = nn.EmbeddingBag(num, dim, mode=mode, include_last_offset=draw(st.booleans()), **opts)
        seed = draw(SEEDS)
        randomize_(m, seed)
        rng = np.random.default_rng(seed + 1)
        dtype = draw(st.sampled_from([np.int64, np.int32]))
        # Some entries at padding_idx, so that leaving them out is tested.
        pool = st.integers(0, num - 1) if m.padding_idx is None else st.sampled_from([m.padding_idx, *range(num)])
        if draw(st.booleans()):  # 2-D: fixed-length bags
            b, length = draw(st.integers(1, 3)), draw(st.integers(1, 4))
            idx = np.array(draw(st.lists(pool, min_size=b * length, max_size=b * length)), dtype).reshape(b, length)
            inputs = (idx,)
        else:  # 1-D with offsets; bags may be empty; offsets[-1] == len(indices) when included
            n = draw(st.integers(0, 8))
            idx = np.array(draw(st.lists(pool, min_size=n, max_size=n)), dtype)
            cuts = sorted(draw(st.lists(st.integers(0, n), min_size=0, max_size=3)))
            offsets = [0, *cuts] + ([n] if m.include_last_offset else [])
            inputs = (idx, np.array(offsets, dtype))
        kwargs = {}
        if mode == "sum" and draw(st.booleans()):
            kwargs["per_sample_weights"] = rng.standard_normal(idx.shape).astype(np.float32)
        return Case(m, inputs, kwargs)

    return case()


@register(nn.EmbeddingBag, cases=_embedding_bag_cases, layout=(TORCH, TORCH),
          rules={EmbeddingBag: EMBEDDING_RULES})
def embedding_bag(m, ctx):
    rank = len(ctx.input_shapes[0]) if ctx.input_shapes else None
    has_offsets = len(ctx.input_shapes) > 1 or "offsets" in ctx.tensor_kwargs
    if rank == 1 and not has_offsets:
        raise ConversionError("EmbeddingBag with 1-D input needs offsets: give them as the second example input")
    if rank == 2 and has_offsets:
        raise ConversionError("EmbeddingBag with 2-D input takes no offsets (each row is a bag), as in torch")
    psw = len(ctx.input_shapes) > 2 or "per_sample_weights" in ctx.tensor_kwargs
    if psw and m.mode != "sum":
        raise ConversionError(f"EmbeddingBag(mode={m.mode!r}) with per_sample_weights: torch supports them "
                              "for mode='sum' only")
    # scale_grad_by_freq and sparse only change training.
    return EmbeddingBag(m.num_embeddings, m.embedding_dim, mode=m.mode, padding_idx=m.padding_idx,
                        include_last_offset=m.include_last_offset, max_norm=m.max_norm, norm_type=m.norm_type)
