"""Pooling: MaxPool1d/2d/3d (padding, stride, ceil_mode), AdaptiveAvg/AdaptiveMax Pool1d/2d/3d
with PyTorch's bin rule: Keras's AdaptiveAveragePooling (same rule, proven by the property
test), recreate.layers.AdaptivePooling for max (Keras's crashes on some sizes, see there)."""

from __future__ import annotations

import math

from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..errors import ConversionError
from ..layers import AdaptivePooling, Pad
from ..registry import register
from ..testing.cases import make_case

_MAXPOOL = {nn.MaxPool1d: keras.layers.MaxPooling1D, nn.MaxPool2d: keras.layers.MaxPooling2D,
            nn.MaxPool3d: keras.layers.MaxPooling3D}
_ADAPTIVE = {
    nn.AdaptiveAvgPool1d: keras.layers.AdaptiveAveragePooling1D,
    nn.AdaptiveAvgPool2d: keras.layers.AdaptiveAveragePooling2D,
    nn.AdaptiveAvgPool3d: keras.layers.AdaptiveAveragePooling3D,
    nn.AdaptiveMaxPool1d: None,
    nn.AdaptiveMaxPool2d: None,
    nn.AdaptiveMaxPool3d: None,
}
_NDIM = {t: int(t.__name__[-2]) for t in (*_MAXPOOL, *_ADAPTIVE)}


def _tuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def pool_output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length (a window may not start in the right padding)."""
    eff = d * (k - 1) + 1
    num = size + 2 * p - eff
    out = (math.ceil(num / s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _maxpool_cases(torch_type):
    n = _NDIM[torch_type]

    @st.composite
    def case(draw):
        k = tuple(draw(st.integers(1, 4)) for _ in range(n))
        s = tuple(draw(st.integers(1, 3)) for _ in range(n))
        p = tuple(draw(st.integers(0, kk // 2)) for kk in k)
        spatial = tuple(draw(st.integers(kk, 7 if n == 3 else 11)) for kk in k)
        m = torch_type(k, stride=s, padding=p, ceil_mode=draw(st.booleans()))
        return make_case(draw, m, (draw(st.integers(1, 2)), draw(st.integers(1, 4)), *spatial))

    return case()


@register(*_MAXPOOL, cases=_maxpool_cases)
def max_pool(m, ctx):
    n = _NDIM[type(m)]
    if m.return_indices:
        raise ConversionError("MaxPool with return_indices=True is not supported yet: convert the module that consumes the indices by hand")
    k = _tuple(m.kernel_size, n)
    s = _tuple(m.stride if m.stride is not None else m.kernel_size, n)
    p = _tuple(m.padding, n)
    d = _tuple(m.dilation, n)
    if any(x > 1 for x in d):
        raise ConversionError(f"{type(m).__name__} with dilation={m.dilation} is not supported yet")
    spatial = ctx.input_shapes[0][-n:]
    pads = []  # F.pad order: last axis first
    for size, kk, ss, pp, dd in reversed(list(zip(spatial, k, s, p, d))):
        out = pool_output_size(size, kk, ss, pp, dd, m.ceil_mode)
        need = (out - 1) * ss + dd * (kk - 1) + 1
        pads += [pp, max(0, need - size - pp)]
    layer = _MAXPOOL[type(m)](pool_size=k, strides=s, padding="valid")
    if any(pads):
        # torch pads max pooling with -inf: padding never wins the max.
        return [Pad(pads, mode="constant", value=float("-inf")), layer]
    return layer


def _adaptive_cases(torch_type):
    n = _NDIM[torch_type]

    @st.composite
    def case(draw):
        spatial = tuple(draw(st.integers(1, 6 if n == 3 else 12)) for _ in range(n))
        if n == 1:  # torch's 1-d adaptive pools take an int only
            size = draw(st.integers(1, 7))
        else:
            out = tuple(draw(st.one_of(st.none(), st.integers(1, 7))) for _ in range(n))
            size = out[0] if (draw(st.booleans()) and len(set(out)) == 1 and out[0]) else out
        m = torch_type(size)
        return make_case(draw, m, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial))

    return case()


@register(*_ADAPTIVE, cases=_adaptive_cases)
def adaptive_pool(m, ctx):
    n = _NDIM[type(m)]
    if getattr(m, "return_indices", False):
        raise ConversionError("AdaptiveMaxPool with return_indices=True is not supported yet")
    spatial = ctx.input_shapes[0][-n:]
    size = _tuple(m.output_size, n)
    size = tuple(sp if o is None else int(o) for o, sp in zip(size, spatial))
    # Keras's AdaptiveAveragePooling (3.15) pools with a window of ceil(L/n)+1, longer than
    # the input when the output is 1 (global pooling) or as large as the input: eager mode
    # survives it, tf.function / SavedModel fail ("Negative dimension size"). recreate's
    # layer uses torch's bins directly.
    return AdaptivePooling(size, mode="max" if _ADAPTIVE[type(m)] is None else "avg")
