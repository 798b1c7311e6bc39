"""Linear family: Linear (on the last axis, any rank), and the Embedding weight rule."""

from __future__ import annotations

from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..registry import TORCH, Map, WeightRules, register, register_rules
from ..testing.cases import make_case
from ..transforms import TRANSPOSE

DENSE_RULES = WeightRules((Map("kernel", "weight", TRANSPOSE), Map("bias", "bias", fill=0.0)))
EMBEDDING_RULES = WeightRules((Map("embeddings", "weight"),))

register_rules(nn.Embedding, keras.layers.Embedding, EMBEDDING_RULES)


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
