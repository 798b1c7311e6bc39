"""Pooling: MaxPool, AvgPool, LPPool, MaxUnpool, FractionalMaxPool (with fixed samples),
AdaptiveAvg/AdaptiveMax Pool, 1d/2d/3d, every constructor argument.

Stock Keras layers where they compute exactly torch's function (MaxPooling after a -inf pad;
AveragePooling where every window's divisor is the full window; AdaptiveAveragePooling);
recreate.layers for the rest: dilation and return_indices (MaxPooling), torch's average
divisors at the borders (AveragePooling), LPPooling, MaxUnpooling, FractionalMaxPooling,
AdaptivePooling (max, with indices)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..errors import ConversionError
from ..layers import AdaptivePooling, Pad
from ..layers.avg_pool import AveragePooling, torch_divisors
from ..layers.fractional_max_pool import FractionalMaxPooling
from ..layers.lp_pool import LPPooling
from ..layers.max_pool import MaxPooling, pool_output_size
from ..layers.max_unpool import MaxUnpooling
from ..registry import Map, WeightRules, register
from ..testing.cases import SEEDS, Case, make_case

_MAXPOOL = {nn.MaxPool1d: keras.layers.MaxPooling1D, nn.MaxPool2d: keras.layers.MaxPooling2D,
            nn.MaxPool3d: keras.layers.MaxPooling3D}
_AVGPOOL = {nn.AvgPool1d: keras.layers.AveragePooling1D, nn.AvgPool2d: keras.layers.AveragePooling2D,
            nn.AvgPool3d: keras.layers.AveragePooling3D}
_ZEROPAD = {1: keras.layers.ZeroPadding1D, 2: keras.layers.ZeroPadding2D, 3: keras.layers.ZeroPadding3D}
_LPPOOL = (nn.LPPool1d, nn.LPPool2d, nn.LPPool3d)
_UNPOOL = (nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d)
_FRACTIONAL = (nn.FractionalMaxPool2d, nn.FractionalMaxPool3d)
_ADAPTIVE = {
    nn.AdaptiveAvgPool1d: keras.layers.AdaptiveAveragePooling1D,
    nn.AdaptiveAvgPool2d: keras.layers.AdaptiveAveragePooling2D,
    nn.AdaptiveAvgPool3d: keras.layers.AdaptiveAveragePooling3D,
    nn.AdaptiveMaxPool1d: None,
    nn.AdaptiveMaxPool2d: None,
    nn.AdaptiveMaxPool3d: None,
}
_NDIM = {t: int(t.__name__[-2]) for t in (*_MAXPOOL, *_AVGPOOL, *_LPPOOL, *_UNPOOL, *_FRACTIONAL, *_ADAPTIVE)}

FRACTIONAL_RULES = WeightRules((Map("random_samples", "_random_samples"),))


def _tuple(v, n):
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _ints(draw, n: int, low: int, high: int) -> tuple[int, ...]:
    """n integers drawn from [low, high] (a kernel, stride or output size per spatial axis)."""
    return tuple(draw(st.integers(low, high)) for _ in range(n))


def _kernel_stride_padding(draw, n: int, max_kernel: int):
    """Per-axis kernel, stride (1-3) and padding (torch: at most half the kernel)."""
    k = _ints(draw, n, 1, max_kernel)
    s = _ints(draw, n, 1, 3)
    return k, s, tuple(draw(st.integers(0, kk // 2)) for kk in k)


def _batch_channels_rng(draw):
    """Batch (1-2), channels (1-3) and a seeded generator, for cases that make their own inputs."""
    batch, channels = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return batch, channels, np.random.default_rng(draw(SEEDS))


def _maybe_tuple(draw, values):
    """An int when every axis agrees and Hypothesis says so (torch accepts both forms)."""
    values = tuple(values)
    return values[0] if len(set(values)) == 1 and draw(st.booleans()) else values


# ---------------------------------------------------------------------------- max pooling

def _window_pool_cases(torch_type):
    """MaxPool and AvgPool: kernel, stride, padding (torch: at most half the kernel), ceil_mode,
    then dilation and return_indices (max) or count_include_pad and divisor_override (avg)."""
    n = _NDIM[torch_type]
    is_max = torch_type in _MAXPOOL

    @st.composite
    def case(draw):
        k, s, p = _kernel_stride_padding(draw, n, 4 if n < 3 else 3)
        d = tuple(draw(st.sampled_from([1, 1, 1, 2, 3])) if is_max else 1 for _ in range(n))
        eff = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
        # avg_pool3d refuses an input smaller than the kernel, even with padding
        lows = [e if (n == 3 and not is_max) else max(1, e - 2 * pp) for e, pp in zip(eff, p)]
        spatial = tuple(draw(st.integers(lo, e + (5 if n == 3 else 9))) for lo, e in zip(lows, eff))
        args = dict(stride=_maybe_tuple(draw, s), padding=_maybe_tuple(draw, p), ceil_mode=draw(st.booleans()))
        if is_max:
            args.update(dilation=_maybe_tuple(draw, d), return_indices=draw(st.booleans()))
        else:
            args["count_include_pad"] = draw(st.booleans())
            if n > 1:  # AvgPool1d has no divisor_override
                args["divisor_override"] = draw(st.sampled_from([None, None, 1, 3, -2, 7]))
        m = torch_type(_maybe_tuple(draw, k), **args)
        return make_case(draw, m, (draw(st.integers(1, 2)), draw(st.integers(1, 4)), *spatial))

    return case()


def _window(m):
    """A MaxPool/AvgPool module's rank and per-axis kernel, stride (torch: None = kernel), padding."""
    n = _NDIM[type(m)]
    stride = m.stride if m.stride is not None else m.kernel_size
    return n, _tuple(m.kernel_size, n), _tuple(stride, n), _tuple(m.padding, n)


@register(*_MAXPOOL, cases=_window_pool_cases)
def max_pool(m, ctx):
    n, k, s, p = _window(m)
    d = _tuple(m.dilation, n)
    if m.return_indices or any(x > 1 for x in d):
        return MaxPooling(k, strides=s, padding=p, dilation=d, ceil_mode=m.ceil_mode, return_indices=m.return_indices)
    spatial = ctx.input_shapes[0][-n:]
    pads = []  # F.pad order: last axis first
    for size, kk, ss, pp in reversed(list(zip(spatial, k, s, p))):
        out = pool_output_size(size, kk, ss, pp, 1, m.ceil_mode)
        need = (out - 1) * ss + kk
        pads += [pp, max(0, need - size - pp)]
    layer = _MAXPOOL[type(m)](pool_size=k, strides=s, padding="valid")
    if any(pads):
        # torch pads max pooling with -inf: padding never wins the max.
        return [Pad(pads, mode="constant", value=float("-inf")), layer]
    return layer


# ---------------------------------------------------------------------------- average pooling

@register(*_AVGPOOL, cases=_window_pool_cases)
def avg_pool(m, ctx):
    n, k, s, p = _window(m)
    override = getattr(m, "divisor_override", None)  # AvgPool1d has none
    spatial = ctx.input_shapes[0][-n:]
    window = int(np.prod(k))
    inside = torch_divisors(spatial, k, s, p, m.ceil_mode, True)
    divisor = torch_divisors(spatial, k, s, p, m.ceil_mode, m.count_include_pad, override)
    if np.all(inside == window) and np.all(divisor == window):
        # Every window lies in the zero-padded input and divides by its full size: Keras's rule.
        layer = _AVGPOOL[type(m)](pool_size=k, strides=s, padding="valid")
        if not any(p):
            return layer
        pad = _ZEROPAD[n](p[0] if n == 1 else tuple((pp, pp) for pp in p))
        return [pad, layer]
    return AveragePooling(k, strides=s, padding=p, ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                          divisor_override=override)


# ---------------------------------------------------------------------------- LP pooling

# torch's exact-power exponents (x*x, x*x*x, sqrt, 1/x, ...) and even powers keep a window's
# sum the same to the last bit or free of cancellation on signed inputs; other exponents get
# positive inputs (negative bases give NaN on both sides; see recreate.layers.lp_pool).
_LP_SIGNED = (1.0, 2.0, 3.0, 4.0, -1.0, -2.0, float("inf"), float("-inf"))
_LP_POSITIVE = (0.5, 1.5, 2.5, 5.0, -0.5, -1.5)


def _lppool_cases(torch_type):
    n = _NDIM[torch_type]

    @st.composite
    def case(draw):
        p = draw(st.sampled_from(_LP_SIGNED + _LP_POSITIVE))
        k, s = _ints(draw, n, 1, 4 if n < 3 else 3), _ints(draw, n, 1, 3)
        spatial = tuple(draw(st.integers(kk, kk + (5 if n == 3 else 9))) for kk in k)
        kernel = k[0] if n == 1 else _maybe_tuple(draw, k)  # torch's lp_pool1d takes an int kernel only
        stride = draw(st.sampled_from([None, s[0] if n == 1 else _maybe_tuple(draw, s)]))
        m = torch_type(p, kernel, stride=stride, ceil_mode=draw(st.booleans()))
        case = make_case(draw, m, (draw(st.integers(1, 2)), draw(st.integers(1, 4)), *spatial))
        if p not in _LP_SIGNED:
            case.inputs = tuple(np.abs(x) + np.float32(0.05) for x in case.inputs)
        return case

    return case()


@register(*_LPPOOL, cases=_lppool_cases)
def lp_pool(m, ctx):
    n = _NDIM[type(m)]
    k = _tuple(m.kernel_size, n)
    s = k if m.stride is None else _tuple(m.stride, n)
    return LPPooling(float(m.norm_type), k, strides=s, ceil_mode=m.ceil_mode)


# ---------------------------------------------------------------------------- max unpooling

def unpool_output_size(m, input_shape, output_size) -> tuple[int, ...]:
    """torch's _unpool_output_size: the default size, or `output_size` (n or n + 2 entries)
    checked to lie strictly within one stride of it."""
    n = _NDIM[type(m)]
    k, s, p = (_tuple(a, n) for a in (m.kernel_size, m.stride, m.padding))
    default = [(size - 1) * ss + kk - 2 * pp for size, kk, ss, pp in zip(input_shape[-n:], k, s, p)]
    if output_size is None:
        return tuple(default)
    out = [int(o) for o in output_size]
    if len(out) == n + 2:
        out = out[2:]
    if len(out) != n or any(not (dd - ss < o < dd + ss) for o, dd, ss in zip(out, default, s)):
        raise ConversionError(
            f"{type(m).__name__}: output_size={list(output_size)} is invalid for input shape {tuple(input_shape)}: "
            f"torch needs {n} (or {n + 2}) sizes, each strictly within one stride {s} of {default}")
    return tuple(out)


def _unpool_cases(torch_type):
    n = _NDIM[torch_type]

    @st.composite
    def case(draw):
        import torch

        k, s, p = _kernel_stride_padding(draw, n, 3)
        spatial = tuple(draw(st.integers(max(1, kk - 2 * pp), kk + (4 if n == 3 else 8))) for kk, pp in zip(k, p))
        batch, channels, rng = _batch_channels_rng(draw)
        x = torch.from_numpy(rng.standard_normal((batch, channels, *spatial)).astype(np.float32))
        pool = getattr(nn, f"MaxPool{n}d")(k, stride=s, padding=p, return_indices=True)
        with torch.no_grad():
            pooled, indices = pool(x)
        overlapping = any(ss < kk for kk, ss in zip(k, s))
        # Overlapping windows can name one position twice; the pooled values agree there, so
        # the result does not depend on the write order (a test in test_pool.py covers that).
        values = pooled.numpy() if overlapping else rng.standard_normal(tuple(pooled.shape)).astype(np.float32)
        m = torch_type(_maybe_tuple(draw, k), stride=_maybe_tuple(draw, s), padding=_maybe_tuple(draw, p)).eval()
        form = draw(st.sampled_from(["none", "spatial", "full"]))
        kwargs = {}
        default = unpool_output_size(m, tuple(pooled.shape), None)
        if form != "none" or default != spatial:
            kwargs["output_size"] = list(spatial) if form != "full" else [batch, channels, *spatial]
        return Case(m, (values, indices.numpy()), kwargs)

    return case()


@register(*_UNPOOL, cases=_unpool_cases)
def max_unpool(m, ctx):
    return MaxUnpooling(unpool_output_size(m, ctx.input_shapes[0], ctx.kwargs.get("output_size")))


# ---------------------------------------------------------------------------- fractional max pooling

def _fractional_cases(torch_type):
    n = _NDIM[torch_type]

    @st.composite
    def case(draw):
        import torch

        k, out = _ints(draw, n, 1, 3), _ints(draw, n, 1, 4)
        # torch: out + k - 1 <= L (2-d); out + k - 1 < L (3-d)
        spatial = tuple(draw(st.integers(o + kk - (1 if n == 2 else 0), o + kk + 5)) for o, kk in zip(out, k))
        batch, channels, rng = _batch_channels_rng(draw)
        samples = torch.from_numpy(rng.random((batch + draw(st.integers(0, 1)), channels, n)).astype(np.float32))
        ratio = tuple((o + 0.5) / size for o, size in zip(out, spatial))
        if draw(st.booleans()) and all(r < 1 for r in ratio):
            size_args = dict(output_ratio=_maybe_tuple(draw, ratio))
        else:
            size_args = dict(output_size=_maybe_tuple(draw, out))
        m = torch_type(_maybe_tuple(draw, k), return_indices=draw(st.booleans()), _random_samples=samples,
                       **size_args).eval()
        x = rng.standard_normal((batch, channels, *spatial)).astype(np.float32)
        return Case(m, (x,))

    return case()


@register(*_FRACTIONAL, cases=_fractional_cases, rules={FractionalMaxPooling: FRACTIONAL_RULES})
def fractional_max_pool(m, ctx):
    name = type(m).__name__
    n = _NDIM[type(m)]
    samples = m._random_samples
    if samples is None:
        raise ConversionError(
            f"{name} without _random_samples draws new random window positions on every forward call, in eval "
            "mode too, so no fixed Keras function equals it. Fix the randomness to convert it: build the module "
            f"with _random_samples=torch.rand(max_batch, channels, {n}) (the rows used for a batch are its first "
            "rows), or replace it by a MaxPool/AdaptiveMaxPool before converting.")
    batch, channels = ctx.input_shapes[0][0], ctx.input_shapes[0][1]
    if tuple(samples.shape[1:]) != (channels, n) or samples.shape[0] < batch:
        raise ConversionError(
            f"{name}: _random_samples has shape {tuple(samples.shape)}; torch needs (>= batch {batch}, "
            f"channels {channels}, {n}) for input shape {tuple(ctx.input_shapes[0])}")
    return FractionalMaxPooling(_tuple(m.kernel_size, n), output_size=m.output_size, output_ratio=m.output_ratio,
                                samples_batch=int(samples.shape[0]), return_indices=m.return_indices)


# ---------------------------------------------------------------------------- adaptive pooling

def _adaptive_cases(torch_type):
    n = _NDIM[torch_type]

    @st.composite
    def case(draw):
        spatial = _ints(draw, n, 1, 6 if n == 3 else 12)
        if n == 1:  # torch's 1-d adaptive pools take an int only
            size = draw(st.integers(1, 7))
        else:
            out = tuple(draw(st.one_of(st.none(), st.integers(1, 7))) for _ in range(n))
            size = out[0] if (draw(st.booleans()) and len(set(out)) == 1 and out[0]) else out
        if _ADAPTIVE[torch_type] is None:
            m = torch_type(size, return_indices=draw(st.booleans()))
        else:
            m = torch_type(size)
        return make_case(draw, m, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial))

    return case()


@register(*_ADAPTIVE, cases=_adaptive_cases)
def adaptive_pool(m, ctx):
    n = _NDIM[type(m)]
    spatial = ctx.input_shapes[0][-n:]
    size = _tuple(m.output_size, n) if not isinstance(m.output_size, (tuple, list)) else tuple(m.output_size)
    size = tuple(sp if o is None else int(o) for o, sp in zip(size, spatial))
    keras_layer = _ADAPTIVE[type(m)]
    if keras_layer is None:
        return AdaptivePooling(size, mode="max", return_indices=bool(m.return_indices))
    # Keras's AdaptiveAveragePooling (3.15) pools with a window of ceil(L/n)+1, longer than
    # the input when the output is 1 (global pooling) or as large as the input: eager mode
    # survives it, tf.function / SavedModel fail ("Negative dimension size"). recreate's
    # layer uses torch's bins directly.
    del keras_layer
    return AdaptivePooling(size, mode="avg")
