"""Distances: CosineSimilarity and PairwiseDistance, with torch's exact formulas (per-norm
eps clamp for the cosine; eps added to the difference, every p for the distance).

Both act on a named axis of two broadcast inputs and drop it, so they work in PyTorch's axis
order (layout "torch"): the output's axes then keep torch's meaning whatever dim is.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from torch import nn

from ..layers.distance import CosineSimilarity, PairwiseDistance
from ..registry import TORCH, register
from ..testing.cases import SEEDS, Case

_SCALES = [1.0, 1.0, 1e-3, 1e-6]  # small inputs reach the eps clamp


@st.composite
def _broadcast_pair(draw, min_rank=1, max_rank=4):
    """Two shapes of equal rank that broadcast (size-1 axes on either side), and inputs."""
    shape = draw(st.lists(st.integers(1, 4), min_size=min_rank, max_size=max_rank))
    s1, s2 = list(shape), list(shape)
    for i in range(len(shape)):
        side = draw(st.sampled_from([0, 0, 1, 2]))
        if side == 1:
            s1[i] = 1
        elif side == 2:
            s2[i] = 1
    seed = draw(SEEDS)
    rng = np.random.default_rng(seed)
    scales = draw(st.sampled_from(_SCALES)), draw(st.sampled_from(_SCALES))
    return tuple(
        (rng.standard_normal(s) * sc).astype(np.float32) for s, sc in zip((s1, s2), scales)
    )


def _cosine_cases(torch_type):
    @st.composite
    def case(draw):
        x1, x2 = draw(_broadcast_pair())
        r = x1.ndim
        m = nn.CosineSimilarity(dim=draw(st.integers(-r, r - 1)), eps=draw(st.sampled_from([1e-8, 1e-6, 1e-3, 0.5])))
        return Case(m, (x1, x2))

    return case()


@register(nn.CosineSimilarity, cases=_cosine_cases, layout=(TORCH, TORCH))
def cosine_similarity(m):
    return CosineSimilarity(m.dim, m.eps)


def _pairwise_cases(torch_type):
    @st.composite
    def case(draw):
        x1, x2 = draw(_broadcast_pair())
        p = draw(st.sampled_from([2.0, 1.0, 3.0, 0.5, 1.5, math.inf, -math.inf, 0.0, -1.0, -0.5]))
        eps = draw(st.sampled_from([1e-6, 0.0, 1e-3, 0.25]))
        return Case(nn.PairwiseDistance(p=p, eps=eps, keepdim=draw(st.booleans())), (x1, x2))

    return case()


@register(nn.PairwiseDistance, cases=_pairwise_cases, layout=(TORCH, TORCH))
def pairwise_distance(m):
    return PairwiseDistance(m.norm, m.eps, m.keepdim)
