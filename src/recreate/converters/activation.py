"""Activations (elementwise: layout-free)."""

from __future__ import annotations

from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..registry import Map, WeightRules, register, register_rules
from ..testing.cases import make_case
from ..transforms import BroadcastToTarget

# PReLU: torch weight (1,) or (C,) -> Keras alpha (shared axes reduced to 1).
PRELU_RULES = WeightRules((Map("alpha", "weight", BroadcastToTarget()),))
register_rules(nn.PReLU, keras.layers.PReLU, PRELU_RULES)


def _elementwise_cases(torch_type, make=None):
    @st.composite
    def case(draw):
        shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=5))
        m = make(draw) if make else torch_type()
        return make_case(draw, m, tuple(shape), scale=3.0)

    return case()


def _relu_cases(t):
    return _elementwise_cases(t, lambda draw: nn.ReLU(inplace=draw(st.booleans())))


@register(nn.ReLU, cases=_relu_cases)
def relu(m):
    return keras.layers.ReLU()

