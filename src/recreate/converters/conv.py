"""Convolutions: Conv1d/2d/3d (every padding form and padding_mode, stride, dilation, groups,
depthwise with channel multiplier, bias or not)."""

from __future__ import annotations

from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..layers import Pad, Subsample
from ..registry import Layers, Map, WeightRules, register, register_rules
from ..testing.cases import make_case
from ..transforms import CONV_KERNEL, CONV_TRANSPOSE_KERNEL, DEPTHWISE_KERNEL

CONV_RULES = WeightRules((Map("kernel", "weight", CONV_KERNEL), Map("bias", "bias", fill=0.0)))
DEPTHWISE_RULES = WeightRules((Map("kernel", "weight", DEPTHWISE_KERNEL), Map("bias", "bias", fill=0.0)))
CONV_TRANSPOSE_RULES = WeightRules(
    (Map("kernel", "weight", CONV_TRANSPOSE_KERNEL), Map("bias", "bias", fill=0.0))
)

_KERAS_CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
_KERAS_DEPTHWISE = {1: keras.layers.DepthwiseConv1D, 2: keras.layers.DepthwiseConv2D}
_KERAS_ZEROPAD = {1: keras.layers.ZeroPadding1D, 2: keras.layers.ZeroPadding2D, 3: keras.layers.ZeroPadding3D}
_TORCH_CONV = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}

for _n, _k in _KERAS_CONV.items():
    register_rules(None, _k, CONV_RULES)
for _n, _k in _KERAS_DEPTHWISE.items():
    register_rules(None, _k, DEPTHWISE_RULES)


def _pad_layers(m, n: int) -> list:
    """Explicit padding before a 'valid' conv; [] when there is none."""
    pads = tuple(m._reversed_padding_repeated_twice)  # F.pad order: last axis first
    if not any(pads):
        return []
    if m.padding_mode == "zeros":
        per_axis = [(pads[2 * (n - 1 - i)], pads[2 * (n - 1 - i) + 1]) for i in range(n)]
        return [_KERAS_ZEROPAD[n](per_axis[0] if n == 1 else tuple(per_axis))]
    return [Pad(pads, mode=m.padding_mode)]


def _conv_cases(torch_type):
    n = _TORCH_CONV[torch_type]

    @st.composite
    def case(draw):
        groups = draw(st.sampled_from([1, 1, 2, 3]))
        depthwise = draw(st.booleans())
        cin_per = 1 if depthwise else draw(st.integers(1, 3))
        cin = cin_per * groups
        cout = groups * draw(st.integers(1, 3))
        k = tuple(draw(st.integers(1, 4)) for _ in range(n))
        dil = tuple(draw(st.sampled_from([1, 1, 2])) for _ in range(n))
        form = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
        stride = 1 if form == "same" else tuple(draw(st.integers(1, 3)) for _ in range(n))
        if form == "int":
            padding = draw(st.integers(0, 2))
            pads = (padding,) * n
        elif form == "tuple":
            pads = tuple(draw(st.integers(0, 2)) for _ in range(n))
            padding = pads
        else:
            padding = form
            pads = tuple(d * (kk - 1) for d, kk in zip(dil, k)) if form == "same" else (0,) * n
        mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
        size_max = 7 if n == 3 else 12
        spatial = []
        for kk, d, p in zip(k, dil, pads):
            lo = max(d * (kk - 1) + 1, p + 1)
            spatial.append(draw(st.integers(lo, max(lo, size_max))))
        m = torch_type(cin, cout, k, stride=stride, padding=padding, dilation=dil, groups=groups,
                       bias=draw(st.booleans()), padding_mode=mode)
        return make_case(draw, m, (draw(st.integers(1, 2)), cin, *spatial))

    return case()


@register(nn.Conv1d, nn.Conv2d, nn.Conv3d, cases=_conv_cases,
          rules={**{k: CONV_RULES for k in _KERAS_CONV.values()},
                 **{k: DEPTHWISE_RULES for k in _KERAS_DEPTHWISE.values()}})
def conv(m, ctx):
    n = len(m.kernel_size)
    stride, dil = tuple(m.stride), tuple(m.dilation)
    pads = tuple(m._reversed_padding_repeated_twice)
    spatial = ctx.input_shapes[0][-n:]
    out_sizes = [
        (size + pads[2 * (n - 1 - i)] + pads[2 * (n - 1 - i) + 1] - dil[i] * (m.kernel_size[i] - 1) - 1) // stride[i] + 1
        for i, size in enumerate(spatial)
    ]
    # torch 'same' (stride 1) pads total d*(k-1) with the smaller half first: TF's rule too.
    # So is an explicit padding of d*(k-1)/2 on every side at stride 1 with odd kernels (the
    # 3x3 convs of ResNet and MobileNet): "same" saves a Pad op, a copy of the activation
    # (measured: MobileNetV2 batch 8, 96.5 ms -> 88.3 ms).
    symmetric_same = (not isinstance(m.padding, str) and all(s == 1 for s in stride)
                      and all(k % 2 == 1 for k in m.kernel_size)
                      and tuple(m.padding) == tuple(d * (k - 1) // 2 for d, k in zip(dil, m.kernel_size)))
    if (m.padding == "same" or symmetric_same) and m.padding_mode == "zeros":
        layers, padding = [], "same"
    else:
        layers, padding = _pad_layers(m, n), "valid"
    # Convolve at stride 1, then subsample (exact) where TensorFlow cannot be trusted:
    # - it refuses strides > 1 together with dilation > 1;
    # - oneDNN's CPU conv (TF 2.21) returns zeros for some strided convs whose output is one
    #   element wide along a strided axis (measured: 1 input channel, stride (1, 2), output
    #   width 1). A stride on an axis with one output position changes nothing after
    #   subsampling, so those axes take this path too.
    # - its CPU depthwise conv refuses unequal strides (stride (2, 1)).
    post = []
    depthwise = m.groups > 1 and m.groups == m.in_channels and n in _KERAS_DEPTHWISE
    strided_dilated = any(s > 1 for s in stride) and any(d > 1 for d in dil)
    single_output = any(s > 1 and o == 1 for s, o in zip(stride, out_sizes))
    unequal_depthwise = depthwise and len(set(stride)) > 1
    if strided_dilated or single_output or unequal_depthwise:
        post, stride = [Subsample(stride)], (1,) * n
    common = dict(kernel_size=tuple(m.kernel_size), strides=stride, padding=padding,
                  dilation_rate=dil, use_bias=m.bias is not None)
    if depthwise:
        layer = _KERAS_DEPTHWISE[n](depth_multiplier=m.out_channels // m.in_channels, **common)
    else:
        layer = _KERAS_CONV[n](filters=m.out_channels, groups=m.groups, **common)
    return Layers([*layers, layer, *post], main=len(layers))
