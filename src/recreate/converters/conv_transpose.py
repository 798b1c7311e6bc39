"""Transposed convolutions: ConvTranspose1d/2d/3d (stride, integer padding, output_padding,
groups, dilation, bias or not, forward's output_size) and the Lazy conv variants.

torch's transposed conv computes the full adjoint of Conv{n}d, of length
`(n - 1) * stride + dilation * (k - 1) + 1 + output_padding` per axis (the output_padding tail
holds only the bias), then crops `padding` from both ends. Keras's Conv*DTranspose with
padding="valid" and the same output_padding computes that full length, and a Cropping layer
takes `padding` off: used when Keras can express the case (groups=1, no stride together with
dilation, output_padding < stride). Everything else runs in recreate.layers.ConvTranspose.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..errors import ConversionError
from ..layers.conv_transpose import ConvTranspose
from ..registry import Layers, find_entry, register
from ..testing.cases import Case, make_case
from .conv import CONV_TRANSPOSE_RULES

_KERAS_CONV_TRANSPOSE = {1: keras.layers.Conv1DTranspose, 2: keras.layers.Conv2DTranspose,
                         3: keras.layers.Conv3DTranspose}
_KERAS_CROP = {1: keras.layers.Cropping1D, 2: keras.layers.Cropping2D, 3: keras.layers.Cropping3D}
_TORCH_CONV_TRANSPOSE = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}
_LAZY = (nn.LazyConv1d, nn.LazyConv2d, nn.LazyConv3d,
         nn.LazyConvTranspose1d, nn.LazyConvTranspose2d, nn.LazyConvTranspose3d)


def _min_sizes(m, spatial) -> list[int]:
    """Output lengths with output_padding 0 (torch's `min_sizes`)."""
    return [(size - 1) * s - 2 * p + d * (k - 1) + 1
            for size, s, p, d, k in zip(spatial, m.stride, m.padding, m.dilation, m.kernel_size)]


def _output_padding(m, ctx, n: int) -> tuple[int, ...]:
    """The module's output_padding, or the one forward(output_size=...) implies (as in torch's
    `_ConvTransposeNd._output_padding`, which then ignores the module's own)."""
    kind = type(m).__name__
    extra = sorted(set(ctx.kwargs) - {"output_size"})
    if extra:
        raise ConversionError(f"{kind}.forward() has no keyword argument(s) {extra}")
    if "output_size" in ctx.tensor_kwargs:
        raise ConversionError(
            f"{kind} was called with a tensor output_size: pass it as a list of ints (it is fixed in "
            "the converted layer)"
        )
    if len(ctx.input_shapes) != 1:
        raise ConversionError(
            f"{kind} got {len(ctx.input_shapes)} positional inputs {list(ctx.input_shapes)}: pass output_size "
            "as a keyword argument (output_size=[...]), a list of ints"
        )
    size = ctx.kwargs.get("output_size")
    if size is None:
        return tuple(int(o) for o in m.output_padding)
    shape = ctx.input_shapes[0]
    size = [int(v) for v in size]
    if len(size) in (n + 1, n + 2):  # torch also takes (N, C, *spatial), or (C, *spatial) unbatched
        size = size[-n:]
    if len(size) != n:
        raise ConversionError(f"{kind}: output_size={size} must have {n} (spatial) or {n + 2} elements")
    lo = _min_sizes(m, shape[-n:])
    hi = [a + s - 1 for a, s in zip(lo, m.stride)]
    if any(not a <= v <= b for v, a, b in zip(size, lo, hi)):
        raise ConversionError(
            f"{kind}: output_size={size} is outside the valid sizes {lo} to {hi} for an input of "
            f"spatial size {list(shape[-n:])} (torch raises the same)"
        )
    return tuple(v - a for v, a in zip(size, lo))


def _ints(draw, n: int, values, as_int: bool):
    """n per-axis values, given as one int when `as_int` and they agree (both forms reach torch)."""
    t = tuple(draw(values) for _ in range(n))
    return (t[0] if as_int and len(set(t)) == 1 else t), t


def _conv_transpose_cases(torch_type):
    n = _TORCH_CONV_TRANSPOSE[torch_type]

    @st.composite
    def case(draw):
        groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
        cin = groups * draw(st.integers(1, 3))
        cout = groups * draw(st.integers(1, 3))
        as_int = draw(st.booleans())
        k_arg, k = _ints(draw, n, st.integers(1, 4), as_int)
        s_arg, s = _ints(draw, n, st.integers(1, 3), as_int)
        dilated = draw(st.booleans())
        d_arg, d = _ints(draw, n, st.sampled_from([1, 2, 3]) if dilated else st.just(1), as_int)
        spatial = tuple(draw(st.integers(1, 4 if n == 3 else 6)) for _ in range(n))
        op_arg, op = _ints(draw, n, st.just(0), as_int)
        if draw(st.booleans()):
            op = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
            op_arg = op
        # torch crops `padding` from both ends of the full output: keep at least one element.
        room = [((size - 1) * si + di * (ki - 1) + oi) // 2 for size, si, di, ki, oi in zip(spatial, s, d, k, op)]
        p = tuple(draw(st.integers(0, min(r, 3))) for r in room)
        p_arg = p[0] if draw(st.booleans()) and len(set(p)) == 1 else p
        m = torch_type(cin, cout, k_arg, stride=s_arg, padding=p_arg, output_padding=op_arg, groups=groups,
                       bias=draw(st.booleans()), dilation=d_arg)
        shape = (draw(st.integers(1, 2)), cin, *spatial)
        kwargs = {}
        if draw(st.integers(0, 3)) == 0:  # forward(x, output_size=...) overrides output_padding
            lo = [(size - 1) * si - 2 * pi + di * (ki - 1) + 1 for size, si, pi, di, ki in zip(spatial, s, p, d, k)]
            size = [a + draw(st.integers(0, si - 1)) for a, si in zip(lo, s)]
            if min(size) >= 1:  # the (N, C, *spatial) form is tested in tests/test_conv_transpose.py
                kwargs["output_size"] = size
        return make_case(draw, m, shape, kwargs=kwargs)

    return case()


def _lazy_cases(torch_type):
    """Materialized lazy modules, drawn from the regular class's strategy: half run one forward
    pass (torch turns them into the regular class), half load the weights from a state dict
    (they keep the Lazy class until their first forward pass, exercising `lazy_conv`)."""
    regular = torch_type.cls_to_become
    transposed = regular in _TORCH_CONV_TRANSPOSE

    @st.composite
    def case(draw):
        base = draw(find_entry(regular).cases(regular))
        m = base.module
        args = dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                    bias=m.bias is not None, padding_mode=m.padding_mode)
        if transposed:
            args["output_padding"] = m.output_padding
        lazy = torch_type(m.out_channels, m.kernel_size, **args)
        if draw(st.booleans()):
            with torch.no_grad():
                lazy(torch.as_tensor(base.inputs[0]), **base.kwargs)
            assert type(lazy) is regular, type(lazy)
        lazy.load_state_dict(m.state_dict())
        return Case(lazy.eval(), base.inputs, base.kwargs)

    return case()


@register(*_TORCH_CONV_TRANSPOSE, cases=_conv_transpose_cases,
          rules={ConvTranspose: CONV_TRANSPOSE_RULES, **{k: CONV_TRANSPOSE_RULES for k in _KERAS_CONV_TRANSPOSE.values()}})
def conv_transpose(m, ctx):
    n = len(m.kernel_size)
    kind = type(m).__name__
    if m.padding_mode != "zeros":
        raise ConversionError(
            f"{kind} has padding_mode={m.padding_mode!r}: torch only runs transposed convolutions with "
            "padding_mode='zeros'"
        )
    if not all(isinstance(p, int) for p in m.padding):
        raise ConversionError(
            f"{kind} has padding={m.padding!r}: torch's transposed convolutions take integer padding "
            "only (a string such as 'same' fails in torch's forward)"
        )
    k, s, p, d = (tuple(int(v) for v in a) for a in (m.kernel_size, m.stride, m.padding, m.dilation))
    op = _output_padding(m, ctx, n)
    if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
        raise ConversionError(
            f"{kind}: output_padding={op} must be smaller than max(stride, dilation) per axis (stride={s}, "
            f"dilation={d}); torch refuses it too"
        )
    spatial = ctx.input_shapes[0][-n:]
    if any(a + o < 1 for a, o in zip(_min_sizes(m, spatial), op)):
        raise ConversionError(
            f"{kind}: padding={p} leaves no output for an input of spatial size {list(spatial)}"
        )
    use_bias = m.bias is not None
    # TensorFlow's CPU kernel for a stock transposed convolution (Conv2DBackpropInput) refuses
    # dilation > 1 at run time: recreate's ConvTranspose takes those.
    stock = m.groups == 1 and max(d) == 1 and all(o < si for o, si in zip(op, s))
    if not stock:
        return ConvTranspose(m.out_channels, k, strides=s, padding=p, output_padding=op, dilation_rate=d,
                             groups=m.groups, use_bias=use_bias)
    layer = _KERAS_CONV_TRANSPOSE[n](filters=m.out_channels, kernel_size=k, strides=s, padding="valid",
                                     output_padding=op, dilation_rate=d, use_bias=use_bias)
    if not any(p):
        return layer
    crop = _KERAS_CROP[n]((p[0], p[0]) if n == 1 else tuple((v, v) for v in p))
    return Layers([layer, crop], main=0)


@register(*_LAZY, cases=_lazy_cases)
def lazy_conv(m, ctx):
    """A lazy module becomes its regular class (`cls_to_become`) on its first forward pass;
    one whose weights were loaded from a state dict keeps its class (and in_channels=0) until
    then, and converts as the regular class."""
    regular = m.cls_to_become
    if m.has_uninitialized_params():
        raise ConversionError(
            f"{type(m).__name__} is not materialized: its in_channels and weight are inferred from the "
            f"first input. Run one forward pass first (module(example_input)); torch then turns it into "
            f"{regular.__name__}, which converts"
        )
    entry = find_entry(regular)
    return entry.build(m, ctx) if entry._wants_ctx else entry.build(m)
