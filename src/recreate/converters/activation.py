"""Activations: every torch.nn activation module except MultiheadAttention (attention.py).

Elementwise ones are layout-free; those naming a dim (Softmax, Softmin, LogSoftmax,
Softmax2d, GLU) remap it to the channels-last Keras axis, and PReLU shares its slopes over
every axis but the channel one. Stock Keras is used where it computes torch's function to
float32 rounding over the whole float range (see tests/test_activation.py, which sweeps
each such pair); recreate.layers.activations holds the rest, each with torch's formula.
In-place variants compute the same values, so `inplace` needs nothing.
"""

from __future__ import annotations

import inspect

from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..errors import ConversionError
from ..layers._common import torch_axis_to_keras
from ..layers.activations import (
    CELU,
    GELU,
    GLU,
    Hardshrink,
    Hardtanh,
    LeakyReLU,
    Softplus,
    Softshrink,
    Threshold,
)
from ..layers.softmax import LogSoftmax, Softmin
from ..registry import ANY, Map, WeightRules, register
from ..testing.cases import make_case
from ..transforms import BroadcastToTarget

# PReLU: torch weight (1,) or (C,) -> Keras alpha (shared axes reduced to 1).
PRELU_RULES = WeightRules((Map("alpha", "weight", BroadcastToTarget()),))

#: torch activations without arguments (but `inplace`) -> the keras.activations name that
#: computes the same function.
_STOCK = {
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ReLU6: "relu6",
    nn.Hardsigmoid: "hard_sigmoid",  # Keras 3: relu6(x + 3) / 6, torch's formula
    nn.Hardswish: "hard_silu",
    nn.SiLU: "silu",
    nn.Mish: "mish",
    nn.SELU: "selu",
    nn.Softsign: "softsign",
    nn.LogSigmoid: "log_sigmoid",
    nn.Tanhshrink: "tanh_shrink",
}

_ELEMENTWISE = (ANY, ANY)  # no axis: the tracer leaves the layout as it finds it
_FLOAT32_MAX = 3.4028234663852886e38
_SCALES = st.sampled_from([0.5, 1.0, 3.0, 10.0, 100.0])  # 100 saturates every branch, overflows exp


def _f(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _elementwise_cases(torch_type, make=None):
    @st.composite
    def case(draw):
        shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=5))
        if make is not None:
            m = make(draw)
        elif "inplace" in inspect.signature(torch_type).parameters:
            m = torch_type(inplace=draw(st.booleans()))
        else:
            m = torch_type()
        return make_case(draw, m, tuple(shape), scale=draw(_SCALES))

    return case()


def _inplace(draw):
    return draw(st.booleans())


@register(nn.ReLU, *_STOCK, cases=_elementwise_cases, layout=_ELEMENTWISE)
def stock_activation(m):
    if isinstance(m, nn.ReLU):
        return keras.layers.ReLU()
    return keras.layers.Activation(next(_STOCK[t] for t in type(m).__mro__ if t in _STOCK))


# --- parametrised elementwise -------------------------------------------------------------


def _leaky_cases(t):
    return _elementwise_cases(t, lambda d: nn.LeakyReLU(d(st.one_of(st.just(0.01), _f(-3, 3))), inplace=_inplace(d)))


@register(nn.LeakyReLU, cases=_leaky_cases, layout=_ELEMENTWISE)
def leaky_relu(m):
    return _leaky(m.negative_slope)


def _leaky(slope):
    # torch's default slope is 0.01, Keras's 0.3: always pass it. Keras refuses slope < 0.
    return keras.layers.LeakyReLU(negative_slope=slope) if slope >= 0 else LeakyReLU(slope)


def _rrelu_cases(t):
    def make(d):
        if d(st.booleans()):
            return nn.RReLU(inplace=_inplace(d))
        lower, upper = sorted((d(_f(-1, 2)), d(_f(-1, 2))))  # torch requires lower <= upper
        return nn.RReLU(lower, upper, inplace=_inplace(d))

    return _elementwise_cases(t, make)


@register(nn.RReLU, cases=_rrelu_cases, layout=_ELEMENTWISE)
def rrelu(m):
    # Eval mode (what is converted): a leaky ReLU with the mean slope, no randomness.
    if m.lower > m.upper:
        raise ConversionError(f"RReLU lower={m.lower} > upper={m.upper}: torch refuses it too; fix the bounds")
    return _leaky((m.lower + m.upper) / 2)


def _elu_cases(t):
    return _elementwise_cases(t, lambda d: nn.ELU(d(st.one_of(st.just(1.0), _f(-3, 3))), inplace=_inplace(d)))


@register(nn.ELU, cases=_elu_cases, layout=_ELEMENTWISE)
def elu(m):
    return keras.layers.ELU(alpha=float(m.alpha))  # Keras's default alpha is 1.0 too; pass it


def _celu_cases(t):
    alpha = st.one_of(st.just(1.0), _f(-3, -0.05), _f(0.05, 3))
    return _elementwise_cases(t, lambda d: nn.CELU(d(alpha), inplace=_inplace(d)))


@register(nn.CELU, cases=_celu_cases, layout=_ELEMENTWISE)
def celu(m):
    if m.alpha == 0 or abs(1.0 / m.alpha) > _FLOAT32_MAX:
        raise ConversionError(f"CELU alpha={m.alpha}: 1/alpha is not a finite float32 (torch refuses it too)")
    return CELU(m.alpha)


def _gelu_cases(t):
    return _elementwise_cases(t, lambda d: nn.GELU(approximate=d(st.sampled_from(["none", "tanh"]))))


@register(nn.GELU, cases=_gelu_cases, layout=_ELEMENTWISE)
def gelu(m):
    if m.approximate == "none":
        return keras.layers.Activation("gelu")  # keras.activations.gelu defaults to the exact erf form
    if m.approximate == "tanh":
        return GELU("tanh")
    raise ConversionError(f"GELU approximate={m.approximate!r}: torch knows only 'none' and 'tanh'")


def _hardtanh_cases(t):
    def make(d):
        if d(st.booleans()):
            return nn.Hardtanh(inplace=_inplace(d))
        lo = d(_f(-5, 5))
        return nn.Hardtanh(lo, lo + d(_f(0.01, 8)), inplace=_inplace(d))

    return _elementwise_cases(t, make)


@register(nn.Hardtanh, cases=_hardtanh_cases, layout=_ELEMENTWISE)
def hardtanh(m):
    if m.min_val > m.max_val:
        raise ConversionError(f"Hardtanh min_val={m.min_val} > max_val={m.max_val}: torch refuses it too")
    return Hardtanh(m.min_val, m.max_val)


def _threshold_cases(t):
    return _elementwise_cases(t, lambda d: nn.Threshold(d(_f(-5, 5)), d(_f(-20, 20)), inplace=_inplace(d)))


@register(nn.Threshold, cases=_threshold_cases, layout=_ELEMENTWISE)
def threshold(m):
    return Threshold(m.threshold, m.value)


def _softplus_cases(t):
    def make(d):
        if d(st.booleans()):
            return nn.Softplus()
        # A threshold above 88.7 / beta leaves a band where exp overflows: torch gives inf.
        return nn.Softplus(d(st.one_of(_f(-3, -0.1), _f(0.1, 3))), d(st.one_of(_f(-10, 30), _f(88, 200))))

    return _elementwise_cases(t, make)


@register(nn.Softplus, cases=_softplus_cases, layout=_ELEMENTWISE)
def softplus(m):
    if m.beta == 1 and m.threshold == 20:
        # Beyond 20, log1p(exp(x)) rounds to x in float32: Keras's softplus is torch's.
        return keras.layers.Activation("softplus")
    return Softplus(m.beta, m.threshold)


def _shrink_cases(t):
    lambd = _f(-1, 5) if t is nn.Hardshrink else _f(0, 5)
    return _elementwise_cases(t, lambda d: t(d(st.one_of(st.just(0.5), lambd))))


@register(nn.Hardshrink, nn.Softshrink, cases=_shrink_cases, layout=_ELEMENTWISE)
def shrink(m):
    if isinstance(m, nn.Softshrink):
        if m.lambd < 0:
            raise ConversionError(f"Softshrink lambd={m.lambd} < 0: torch refuses it too; use lambd >= 0")
        return Softshrink(m.lambd)
    return Hardshrink(m.lambd)


# --- PReLU ----------------------------------------------------------------------------------


def _prelu_cases(t):
    @st.composite
    def case(draw):
        # A rank-1 input gives Keras a 0-d alpha (transfer keeps 0-d values 0-d).
        shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=5))
        per_channel = draw(st.booleans()) and len(shape) > 1
        m = nn.PReLU(shape[1] if per_channel else 1)
        return make_case(draw, m, tuple(shape), scale=draw(_SCALES))

    return case()


@register(nn.PReLU, cases=_prelu_cases, rules={keras.layers.PReLU: PRELU_RULES})
def prelu(m, ctx):
    rank = len(ctx.input_shapes[0])
    n = m.num_parameters
    if n != 1 and (rank < 2 or ctx.input_shapes[0][1] != n):
        channels = ctx.input_shapes[0][1] if rank >= 2 else "none (rank-1 input)"
        raise ConversionError(
            f"PReLU num_parameters={n} needs {n} channels on axis 1 of the input, found {channels}: "
            "use num_parameters=1 or the matching channel count"
        )
    # Keras alpha has the input's shape minus the batch, with shared axes reduced to 1.
    # Channels-last: the channel axis is the last one; every other axis shares the slope.
    shared = list(range(1, rank)) if n == 1 else list(range(1, rank - 1))
    return keras.layers.PReLU(shared_axes=shared or None)


# --- axis-taking ----------------------------------------------------------------------------


def _keras_axis(m, dim: int, rank: int) -> int:
    if not -rank <= dim < rank:
        raise ConversionError(f"{type(m).__name__} dim={dim} is out of range for a rank-{rank} input")
    return torch_axis_to_keras(dim, rank, channels_last=True)


def _softmax_dim(m, rank: int) -> int:
    # torch's legacy dim=None rule (F._get_softmax_dim): 0 for rank 0, 1, 3, else 1.
    if m.dim is not None:
        return m.dim
    return 0 if rank in (0, 1, 3) else 1


def _softmax_cases(t):
    @st.composite
    def case(draw):
        if t is nn.Softmax2d:
            shape = [draw(st.integers(1, 5)) for _ in range(draw(st.sampled_from([3, 4])))]
            m = t()
        else:
            shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=5))
            m = t(dim=draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1))))
        return make_case(draw, m, tuple(shape), scale=draw(_SCALES))

    return case()


@register(nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d, cases=_softmax_cases)
def softmax(m, ctx):
    rank = len(ctx.input_shapes[0])
    if isinstance(m, nn.Softmax2d):
        if rank not in (3, 4):
            raise ConversionError(f"Softmax2d takes 3-D or 4-D input, got rank {rank}")
        dim = -3
    else:
        dim = _softmax_dim(m, rank)
    axis = _keras_axis(m, dim, rank)
    if isinstance(m, nn.Softmin):
        return Softmin(axis)
    if isinstance(m, nn.LogSoftmax):
        return keras.layers.Activation("log_softmax") if axis == rank - 1 else LogSoftmax(axis)
    return keras.layers.Softmax(axis=axis)


def _glu_cases(t):
    @st.composite
    def case(draw):
        rank = draw(st.integers(1, 5))
        dim = draw(st.integers(-rank, rank - 1))
        shape = [draw(st.integers(1, 5)) for _ in range(rank)]
        shape[dim] = 2 * draw(st.integers(1, 3))
        return make_case(draw, nn.GLU(dim), tuple(shape), scale=draw(_SCALES))

    return case()


@register(nn.GLU, cases=_glu_cases)
def glu(m, ctx):
    shape = ctx.input_shapes[0]
    axis = _keras_axis(m, m.dim, len(shape))
    if shape[m.dim] % 2:
        raise ConversionError(f"GLU dim={m.dim} halves an axis of odd size {shape[m.dim]} (input {tuple(shape)})")
    # Not keras.layers.Activation("glu"): Activation reports its input's shape as its output
    # shape, so the model's symbolic shapes would be wrong after the halving.
    return GLU(axis)
