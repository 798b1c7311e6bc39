"""Padding modules: Zero/Constant/Reflection/Replication/Circular Pad1d/2d/3d, with torch's
negative padding (a crop). Stock ZeroPadding1D/2D/3D where it is exactly the module (zero
value, no negative pad, input of rank n + 2), recreate.layers.Pad otherwise.

torch's semantics with negative pads differ by mode, and are reproduced here:
- constant, circular: crop, then pad what is left (circular wraps around the cropped axis);
- reflect, replicate: pad as if uncropped, then crop (so a reflection may read elements the
  crop removes: ReflectionPad1d((-3, 4)) on 5 elements gives x[3, 4, 3, 2, 1, 0]).
"""

from __future__ import annotations

import math

from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..errors import ConversionError
from ..layers.pad import Pad
from ..registry import Layers, register
from ..testing.cases import make_case

_FAMILIES = {
    "constant": (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d),
    "reflect": (nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d),
    "replicate": (nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d),
    "circular": (nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d),
}
_MODE = {t: mode for mode, types in _FAMILIES.items() for t in types}
_NDIM = {t: int(t.__name__[-2]) for t in _MODE}
_ZERO_PADDING = {1: keras.layers.ZeroPadding1D, 2: keras.layers.ZeroPadding2D, 3: keras.layers.ZeroPadding3D}


def _mode_and_ndim(m):
    t = next(c for c in type(m).__mro__ if c in _MODE)
    return _MODE[t], _NDIM[t]


def check_padding(mode: str, size: int, lo: int, hi: int) -> str | None:
    """Why torch refuses (or leaves undefined) padding one axis of `size` by (lo, hi), or None.
    An empty result is refused in every mode (torch returns one for constant/circular)."""
    out = size + lo + hi
    if out < 1:
        return f"the padded size {size} + ({lo}) + ({hi}) = {out} leaves the axis empty"
    kept = size - max(-lo, 0) - max(-hi, 0)
    if mode == "constant" and kept < 0:
        return f"the negative padding ({lo}, {hi}) crops more than the {size} element(s) there are"
    if mode == "reflect" and (lo >= size or hi >= size):
        return f"reflection padding ({lo}, {hi}) must be smaller than the size {size}"
    if mode == "circular" and max(lo, hi) > kept:
        # torch raises, or copies uninitialised memory, here
        return f"circular padding ({lo}, {hi}) wraps more than once around the {kept} element(s) left"
    return None


def _pad_range(mode: str, size: int):
    """Strategy of the (lo, hi) pads torch accepts on an axis of `size`, over that whole space."""

    @st.composite
    def pads(draw):
        if mode in ("constant", "circular"):  # crop first, then grow
            crop_lo = draw(st.integers(0, size))
            crop_hi = draw(st.integers(0, size - crop_lo))
            grow = 4 if mode == "constant" else size - crop_lo - crop_hi
            lo = -crop_lo if crop_lo else draw(st.integers(0, grow))
            hi = -crop_hi if crop_hi else draw(st.integers(0, grow))
        elif mode == "reflect":  # each pad < size, the result non-empty
            lo = draw(st.integers(2 - 2 * size, size - 1))
            hi = draw(st.integers(1 - size - lo, size - 1))
        else:
            lo = draw(st.integers(-(size + 2), 4))
            hi = draw(st.integers(max(1 - size - lo, -(size + 2)), 4))
        return lo, hi

    return pads().filter(lambda p: check_padding(mode, size, *p) is None)


def _padding_cases(torch_type):
    n = _NDIM[torch_type]
    mode = _MODE[torch_type]

    @st.composite
    def case(draw):
        spatial = [draw(st.integers(1, 4 if n == 3 else 6)) for _ in range(n)]
        if draw(st.booleans()):  # one int for every side
            smallest = min(spatial)
            hi = {"reflect": smallest - 1, "circular": smallest}.get(mode, 4)
            p = draw(st.integers(-((smallest - 1) // 2), hi))
            padding = p if not draw(st.booleans()) else (p,) * (2 * n)
        else:
            padding = tuple(v for size in reversed(spatial) for v in draw(_pad_range(mode, size)))
        if mode == "constant" and "Constant" in torch_type.__name__:
            value = draw(st.one_of(st.just(0.0), st.floats(-10, 10, width=32)))
            m = torch_type(padding, value)
        else:
            m = torch_type(padding)
        return make_case(draw, m, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial))

    return case()


@register(*_MODE, cases=_padding_cases)
def padding(m, ctx):
    mode, n = _mode_and_ndim(m)
    pad = tuple(int(p) for p in m.padding)
    value = float(getattr(m, "value", 0.0))
    shape = ctx.input_shapes[0]
    if len(pad) != 2 * n:
        raise ConversionError(f"{type(m).__name__} padding={m.padding} needs {2 * n} entries")
    if len(shape) < n + 1:
        raise ConversionError(f"{type(m).__name__} needs an input of rank >= {n + 1}, got shape {tuple(shape)}")
    for i in range(n):
        why = check_padding(mode, shape[-1 - i], pad[2 * i], pad[2 * i + 1])
        if why:
            raise ConversionError(f"{type(m).__name__} padding={m.padding} on input {tuple(shape)}: {why}")

    if mode == "constant" and value == 0 and math.copysign(1.0, value) > 0 and min(pad) >= 0 and len(shape) == n + 2:
        pairs = tuple(reversed([(pad[2 * i], pad[2 * i + 1]) for i in range(n)]))  # torch: last axis first
        return _ZERO_PADDING[n](padding=pairs[0] if n == 1 else pairs, data_format="channels_last")
    if mode in ("reflect", "replicate") and min(pad) < 0 < max(pad):
        # torch reflects/replicates about the uncropped edges: grow first, then crop (Pad
        # alone crops first, which is torch's order for constant and circular only).
        grow = tuple(max(p, 0) for p in pad)
        crop = tuple(min(p, 0) for p in pad)
        return Layers([Pad(grow, mode=mode, channels_last=True), Pad(crop, mode="constant", channels_last=True)])
    return Pad(pad, mode=mode, value=value, channels_last=True)
