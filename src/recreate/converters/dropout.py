"""Every Dropout variant: identity at inference (eval mode), which is what is converted."""

from __future__ import annotations

from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..registry import ANY, register
from ..testing.cases import make_case

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _dropout_cases(torch_type):
    rank = {nn.Dropout1d: (2, 3), nn.Dropout2d: (3, 4), nn.Dropout3d: (4, 5)}.get(torch_type, (1, 2, 3, 4))

    @st.composite
    def case(draw):
        shape = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.sampled_from(rank))))
        m = torch_type(p=draw(st.floats(0.0, 0.9)))
        return make_case(draw, m, shape)

    return case()


@register(*_DROPOUTS, cases=_dropout_cases, layout=(ANY, ANY))
def dropout(m):
    return keras.layers.Identity()
