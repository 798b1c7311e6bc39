"""Normalization: BatchNorm1d/2d/3d (affine off, track_running_stats off, momentum None),
plus weight rules for Keras LayerNormalization and GroupNormalization."""

from __future__ import annotations

from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..layers import BatchStatNormalization
from ..registry import Check, Map, WeightRules, register, register_rules
from ..testing.cases import make_case

_EPS = Check("epsilon", lambda m: float(m.eps), "build the Keras layer with epsilon=<torch eps> (Keras defaults to 1e-3, torch to 1e-5)")

BATCH_NORM_RULES = WeightRules(
    (
        Map("gamma", "weight", fill=1.0),
        Map("beta", "bias", fill=0.0),
        Map("moving_mean", "running_mean"),
        Map("moving_variance", "running_var"),
    ),
    ignore=("num_batches_tracked",),
    checks=(_EPS,),
)
BATCH_STAT_NORM_RULES = WeightRules(
    (Map("gamma", "weight", fill=1.0), Map("beta", "bias", fill=0.0)), checks=(_EPS,)
)
AFFINE_NORM_RULES = WeightRules((Map("gamma", "weight", fill=1.0), Map("beta", "bias", fill=0.0)), checks=(_EPS,))

register_rules(nn.LayerNorm, keras.layers.LayerNormalization, AFFINE_NORM_RULES)
register_rules(nn.GroupNorm, keras.layers.GroupNormalization, AFFINE_NORM_RULES)

_BN_RANK = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


def _bn_cases(torch_type):
    @st.composite
    def case(draw):
        c = draw(st.integers(1, 6))
        rank = draw(st.sampled_from(_BN_RANK[torch_type]))
        spatial = [draw(st.integers(1, 5)) for _ in range(rank - 2)]
        track = draw(st.booleans())
        batch = draw(st.integers(1 if track else 2, 3))
        m = torch_type(
            c,
            eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])),
            momentum=draw(st.sampled_from([0.1, 0.01, None])),
            affine=draw(st.booleans()),
            track_running_stats=track,
        )
        return make_case(draw, m, (batch, c, *spatial))

    return case()


@register(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, cases=_bn_cases,
          rules={keras.layers.BatchNormalization: BATCH_NORM_RULES,
                 BatchStatNormalization: BATCH_STAT_NORM_RULES})
def batch_norm(m):
    if not m.track_running_stats:
        return BatchStatNormalization(axis=-1, epsilon=m.eps, center=m.affine, scale=m.affine)
    # Keras's moving = momentum * moving + (1 - momentum) * batch: the complement of torch's.
    # momentum=None (cumulative average) has no Keras equivalent; it does not affect inference.
    momentum = 1.0 - (m.momentum if m.momentum is not None else 0.1)
    return keras.layers.BatchNormalization(axis=-1, epsilon=m.eps, momentum=momentum,
                                           center=m.affine, scale=m.affine)
