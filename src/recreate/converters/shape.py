"""Shape modules: Flatten (PyTorch's element order, read from a channels-last tensor)."""

from __future__ import annotations

from hypothesis import strategies as st
from torch import nn

from .. import layers as rl
from ..registry import CHANNELS_LAST, TORCH, register
from ..testing.cases import make_case


def _flatten_cases(torch_type):
    @st.composite
    def case(draw):
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=5)))
        r = len(shape)
        start = draw(st.integers(-r, r - 1))
        end = draw(st.integers((start % r) - r, -1))
        return make_case(draw, nn.Flatten(start, end), shape)

    return case()


@register(nn.Flatten, cases=_flatten_cases, layout=(CHANNELS_LAST, TORCH))
def flatten(m):
    return rl.Flatten(m.start_dim, m.end_dim, channels_last=True)
