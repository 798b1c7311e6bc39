"""Normalization: BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm1d/2d/3d, their Lazy forms,
LayerNorm, GroupNorm, RMSNorm, LocalResponseNorm and CrossMapLRN2d.

Stock Keras layers are used where they compute torch's function exactly (verified by the
registry-wide parity test): BatchNormalization (running statistics), RMSNormalization (on the
last axes, layout "torch"), GroupNormalization (channels-last; its groups are contiguous channel
blocks, like torch's) and GroupNormalization(groups=-1) for instance norm without running
statistics. All of them compute rsqrt(biased var + eps). nn.LayerNorm becomes recreate's
LayerNorm, a LayerNormalization that rounds as torch does on short rows.
"""

from __future__ import annotations

from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..errors import ConversionError
from ..layers import BatchStatNormalization
from ..layers.layer_norm import LayerNorm
from ..layers.local_response_norm import LocalResponseNormalization
from ..registry import TORCH, Check, Map, WeightRules, register
from ..testing.cases import make_case

_EPS = Check("epsilon", lambda m: float(m.eps), "build the Keras layer with epsilon=<torch eps> (Keras defaults to 1e-3, torch to 1e-5)")
# Keras's deprecated rms_scaling=True divides by the standard deviation without centring:
# neither LayerNorm nor RMSNorm.
_NO_RMS_SCALING = Check("rms_scaling", lambda m: False, "build LayerNormalization with rms_scaling=False "
                        "(for torch RMSNorm use keras.layers.RMSNormalization)")


def rms_norm_eps(m) -> float:
    """torch RMSNorm's epsilon: eps=None means torch.finfo(input dtype).eps, taken here from
    the weight's dtype (float32 without weights, the dtype of the converted model)."""
    if m.eps is not None:
        return float(m.eps)
    import torch

    dtype = m.weight.dtype if m.weight is not None else torch.float32
    return float(torch.finfo(dtype).eps)


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
LAYER_NORM_RULES = WeightRules(AFFINE_NORM_RULES.maps, checks=(_EPS, _NO_RMS_SCALING))
GROUP_NORM_RULES = WeightRules(
    AFFINE_NORM_RULES.maps,
    checks=(_EPS, Check("groups", lambda m: int(m.num_groups), "build GroupNormalization with groups=<torch num_groups>")),
)
# Instance norm is group norm with one channel per group (Keras: groups=-1, set to C at build).
INSTANCE_NORM_RULES = WeightRules(
    AFFINE_NORM_RULES.maps,
    ignore=("num_batches_tracked",),
    checks=(_EPS, Check("groups", lambda m: int(m.num_features), "build GroupNormalization with groups=-1 (one channel per group)")),
)
RMS_NORM_RULES = WeightRules(
    (Map("scale", "weight", fill=1.0),),
    checks=(Check("epsilon", rms_norm_eps, "build RMSNormalization with epsilon=<torch eps> (torch's eps=None "
                  "means torch.finfo(dtype).eps, 1.1920929e-07 for float32; Keras defaults to 1e-6)"),),
)

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_IN = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_LAZY_BN = (nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)
_LAZY_IN = (nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d)
_RANKS = {
    **dict.fromkeys((nn.BatchNorm1d, nn.LazyBatchNorm1d), (2, 3)),
    **dict.fromkeys((nn.BatchNorm2d, nn.LazyBatchNorm2d, nn.InstanceNorm2d, nn.LazyInstanceNorm2d), (4,)),
    **dict.fromkeys((nn.BatchNorm3d, nn.LazyBatchNorm3d, nn.InstanceNorm3d, nn.LazyInstanceNorm3d), (5,)),
    **dict.fromkeys((nn.InstanceNorm1d, nn.LazyInstanceNorm1d), (3,)),
    nn.SyncBatchNorm: (2, 3, 4, 5),
}
_EPSILONS = [1e-5, 1e-3, 0.1]


# LayerNorm draws BERT's 1e-12 too: recreate's LayerNorm follows torch's order of operations.
_LAYER_NORM_EPSILONS = [1e-12, 1e-6, *_EPSILONS]


def _draw_eps(draw, group_numel: int) -> float:
    """eps for a GroupNorm / InstanceNorm case whose statistics are taken over `group_numel`
    values per group.

    With 1-3 values per group and a small eps the problem is ill-conditioned (two nearly equal
    values have |mean| >> std), so float32 results depend on the order of operations, and
    torch's group and instance norm kernels scale x and shift by -mean * rstd * gamma + beta
    (a fused order; their float32 output is itself up to 5e-5 from the exact result at
    eps=1e-5). Keras's GroupNormalization uses the same fused order with other rounding: up to
    6e-5 from torch (1 value per group), 4.7e-5 (2 values); subtracting the mean first, as
    recreate's LayerNorm does, gets no closer (3e-5). eps = 0.1 bounds rsqrt(var + eps) by 3.2
    and so that noise by about 2e-6 (20k random rows per setting).
    From 4 values per group on, 500k random rows stayed within 8.8e-6 of torch at eps=1e-5.
    nn.LayerNorm needs no such bound (see recreate.layers.layer_norm)."""
    return 0.1 if group_numel <= 3 else draw(st.sampled_from(_EPSILONS))


# ---- batch norm family ---------------------------------------------------------------------
def _norm_base_args(draw) -> dict:
    """Constructor arguments shared by _NormBase modules, across their whole space."""
    return dict(
        eps=draw(st.sampled_from(_EPSILONS)),
        momentum=draw(st.sampled_from([0.1, 0.01, None])),
        affine=draw(st.booleans()),
        track_running_stats=draw(st.booleans()),
        bias=draw(st.booleans()),
    )


def _spatial(draw, rank: int, *, min_numel: int = 1) -> list[int]:
    sizes = [draw(st.integers(1, 4)) for _ in range(rank - 2)]
    if sizes and min_numel > 1 and _prod(sizes) < min_numel:
        sizes[-1] = min_numel  # torch refuses a single spatial element with batch statistics
    return sizes


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _bn_cases(torch_type):
    @st.composite
    def case(draw):
        c = draw(st.integers(1, 6))
        rank = draw(st.sampled_from(_RANKS[torch_type]))
        spatial = _spatial(draw, rank)
        args = _norm_base_args(draw)
        batch = draw(st.integers(1, 3))
        if not args["track_running_stats"] and batch * _prod(spatial) == 1:
            batch = 2  # batch statistics need more than one value per channel
        m = torch_type(c, **args)
        return make_case(draw, m, (batch, c, *spatial))

    return case()


@register(*_BN, cases=_bn_cases,
          rules={keras.layers.BatchNormalization: BATCH_NORM_RULES,
                 BatchStatNormalization: BATCH_STAT_NORM_RULES})
def batch_norm(m):
    center, scale = m.bias is not None, m.weight is not None
    if not m.track_running_stats:
        return BatchStatNormalization(axis=-1, epsilon=m.eps, center=center, scale=scale)
    return _running_stats_norm(m, center, scale)


def _running_stats_norm(m, center: bool, scale: bool):
    # Keras's moving = momentum * moving + (1 - momentum) * batch: the complement of torch's.
    # momentum=None (cumulative average) has no Keras equivalent; it does not affect inference.
    momentum = 1.0 - (m.momentum if m.momentum is not None else 0.1)
    return keras.layers.BatchNormalization(axis=-1, epsilon=m.eps, momentum=momentum,
                                           center=center, scale=scale)


# SyncBatchNorm in eval mode never synchronises: it is BatchNorm on inputs of any rank >= 2.
@register(nn.SyncBatchNorm, cases=_bn_cases,
          rules={keras.layers.BatchNormalization: BATCH_NORM_RULES,
                 BatchStatNormalization: BATCH_STAT_NORM_RULES})
def sync_batch_norm(m):
    return batch_norm(m)


# ---- group norm ----------------------------------------------------------------------------
def _group_norm_cases(torch_type):
    @st.composite
    def case(draw):
        groups, per_group = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        rank = draw(st.integers(2, 5))
        spatial = _spatial(draw, rank)
        batch = draw(st.integers(1, 3))
        eps = _draw_eps(draw, per_group * _prod(spatial))
        if per_group * _prod(spatial) == 1:
            batch = max(batch, 2)  # torch refuses a group of one value per sample when N == 1
        m = nn.GroupNorm(groups, groups * per_group, eps=eps, affine=draw(st.booleans()), bias=draw(st.booleans()))
        return make_case(draw, m, (batch, groups * per_group, *spatial))

    return case()


@register(nn.GroupNorm, cases=_group_norm_cases, rules={keras.layers.GroupNormalization: GROUP_NORM_RULES})
def group_norm(m):
    return keras.layers.GroupNormalization(groups=m.num_groups, axis=-1, epsilon=m.eps,
                                           center=m.bias is not None, scale=m.weight is not None)


# ---- instance norm -------------------------------------------------------------------------
def _in_cases(torch_type):
    @st.composite
    def case(draw):
        c = draw(st.integers(1, 5))
        rank = _RANKS[torch_type][0]
        args = _norm_base_args(draw)
        if args["momentum"] is None:
            args["momentum"] = 0.3  # InstanceNorm's momentum is a float
        track = args["track_running_stats"]
        spatial = _spatial(draw, rank, min_numel=1 if track else 2)
        if not track:  # instance statistics over the spatial values
            args["eps"] = _draw_eps(draw, _prod(spatial))
        num_features = c
        if not args["affine"] and not track and draw(st.integers(0, 7)) == 0:
            num_features = c + 1  # torch warns and normalises the actual channels
        m = torch_type(num_features, **args)
        return make_case(draw, m, (draw(st.integers(1, 3)), c, *spatial))

    return case()


@register(*_IN, cases=_in_cases,
          rules={keras.layers.GroupNormalization: INSTANCE_NORM_RULES,
                 keras.layers.BatchNormalization: BATCH_NORM_RULES})
def instance_norm(m):
    center, scale = m.bias is not None, m.weight is not None
    if m.track_running_stats:
        # In eval mode F.instance_norm uses the running statistics: batch norm exactly.
        return _running_stats_norm(m, center, scale)
    return keras.layers.GroupNormalization(groups=-1, axis=-1, epsilon=m.eps, center=center, scale=scale)


# ---- lazy forms ----------------------------------------------------------------------------
def _lazy_cases(torch_type):
    import torch

    @st.composite
    def case(draw):
        instance = torch_type in _LAZY_IN
        c = draw(st.integers(1, 5))
        rank = draw(st.sampled_from(_RANKS[torch_type]))
        args = _norm_base_args(draw)
        if instance and args["momentum"] is None:
            args["momentum"] = 0.3
        track = args["track_running_stats"]
        spatial = _spatial(draw, rank, min_numel=2 if instance and not track else 1)
        if instance and not track:
            args["eps"] = _draw_eps(draw, _prod(spatial))
        batch = draw(st.integers(1, 3))
        if not track and not instance and batch * _prod(spatial) == 1:
            batch = 2
        m = torch_type(**args)
        # Materialise with one forward pass (as a user must before converting); a lazy module
        # without parameters or buffers may also be converted as it is.
        if m.has_uninitialized_params() or draw(st.booleans()):
            with torch.no_grad():
                m.eval()(torch.randn(batch, c, *spatial))
        return make_case(draw, m, (batch, c, *spatial))

    return case()


@register(*_LAZY_BN, *_LAZY_IN, cases=_lazy_cases)
def lazy_norm(m):
    if m.has_uninitialized_params():
        raise ConversionError(
            f"{type(m).__name__} is not materialized yet (its parameters/buffers have no shape): "
            "run one forward pass first, then convert"
        )
    # Without parameters or buffers (affine=False, track_running_stats=False) nothing depends
    # on num_features: convert it as the module it will become.
    return instance_norm(m) if isinstance(m, nn.modules.instancenorm._InstanceNorm) else batch_norm(m)


# ---- layer norm, RMS norm ------------------------------------------------------------------
def _last_axes(m, ctx) -> int | list[int]:
    shape = tuple(m.normalized_shape)
    rank = len(ctx.input_shapes[0])
    if len(shape) >= rank:
        raise ConversionError(
            f"{type(m).__name__}(normalized_shape={shape}) normalizes over the batch axis too "
            f"(input rank {rank}): the Keras model has a free batch size; normalize fewer dims "
            "or recreate the reduction by hand"
        )
    return -1 if len(shape) == 1 else list(range(-len(shape), 0))


def _last_dims_cases(make):
    @st.composite
    def case(draw):
        rank = draw(st.integers(2, 5))
        shape = [draw(st.integers(1, 3 if rank == 5 else 5)) for _ in range(rank)]
        d = draw(st.integers(1, rank - 1))
        norm = tuple(shape[-d:])
        if d == 1 and draw(st.booleans()):
            norm = norm[0]  # the int form
        return make_case(draw, make(draw, norm), tuple(shape))

    return case()


def _layer_norm_cases(torch_type):
    def make(draw, norm):
        return nn.LayerNorm(norm, eps=draw(st.sampled_from(_LAYER_NORM_EPSILONS)),
                            elementwise_affine=draw(st.booleans()), bias=draw(st.booleans()))

    return _last_dims_cases(make)


# LayerNorm normalizes the LAST dims of the tensor as torch lays it out: layout "torch".
# recreate's LayerNorm subclasses keras.layers.LayerNormalization (same variables and config),
# so the rules registered for the stock layer fill it; it computes in torch's order, which
# keras.layers.LayerNormalization does not (up to 2.3e-5 off torch with 3 values per row at
# eps=1e-5, 1e-3 at mean 100; see recreate.layers.layer_norm).
@register(nn.LayerNorm, cases=_layer_norm_cases, layout=(TORCH, TORCH),
          rules={keras.layers.LayerNormalization: LAYER_NORM_RULES})
def layer_norm(m, ctx):
    return LayerNorm(axis=_last_axes(m, ctx), epsilon=m.eps, center=m.bias is not None, scale=m.weight is not None)


def _rms_norm_cases(torch_type):
    return _last_dims_cases(lambda draw, norm: nn.RMSNorm(
        norm, eps=draw(st.sampled_from([None, *_EPSILONS])), elementwise_affine=draw(st.booleans())))


# keras.layers.RMSNormalization is x * rsqrt(mean(x^2) + eps) * scale, torch's formula; its
# scale always exists (filled with ones when torch has no weight).
@register(nn.RMSNorm, cases=_rms_norm_cases, layout=(TORCH, TORCH),
          rules={keras.layers.RMSNormalization: RMS_NORM_RULES})
def rms_norm(m, ctx):
    return keras.layers.RMSNormalization(axis=_last_axes(m, ctx), epsilon=rms_norm_eps(m))


# ---- local response norm -------------------------------------------------------------------
def _lrn_cases(torch_type):
    @st.composite
    def case(draw):
        ranks = (4,) if torch_type is nn.CrossMapLRN2d else (3, 4, 5)
        rank = draw(st.sampled_from(ranks))
        m = torch_type(draw(st.integers(1, 9)), alpha=draw(st.sampled_from([1e-4, 1e-2, 0.5, 1.0])),
                       beta=draw(st.sampled_from([0.75, 0.5, 1.0, 2.0])), k=draw(st.sampled_from([1.0, 2.0, 0.5])))
        c = draw(st.integers(1, 8))
        return make_case(draw, m, (draw(st.integers(1, 2)), c, *_spatial(draw, rank)))

    return case()


@register(nn.LocalResponseNorm, nn.CrossMapLRN2d, cases=_lrn_cases)
def local_response_norm(m):
    variant = "cross_map_lrn2d" if isinstance(m, nn.CrossMapLRN2d) else "local_response_norm"
    return LocalResponseNormalization(m.size, alpha=m.alpha, beta=m.beta, k=m.k, variant=variant)
