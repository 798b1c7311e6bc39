"""Upsampling modules: nn.Upsample (every mode: nearest, nearest-exact, linear, bilinear,
bicubic, trilinear, area; size or scale_factor; align_corners; recompute_scale_factor),
nn.UpsamplingNearest2d and nn.UpsamplingBilinear2d (align_corners=True), all through
recreate.layers.Interpolate, which reproduces F.interpolate's index and weight rules (see
there for torch's quirks: the scale_factor used as given, the 128-pixel nearest rule)."""

from __future__ import annotations

import math

from hypothesis import assume
from hypothesis import strategies as st
from torch import nn

from ..errors import ConversionError
from ..layers.interpolate import Interpolate
from ..registry import register
from ..testing.cases import make_case

_MODES_BY_RANK = {
    1: ("nearest", "nearest-exact", "area", "linear"),
    2: ("nearest", "nearest-exact", "area", "bilinear", "bicubic"),
    3: ("nearest", "nearest-exact", "area", "trilinear"),
}
_FIXED = {nn.UpsamplingNearest2d: "nearest", nn.UpsamplingBilinear2d: "bilinear"}


def _has_exact_tie(in_size: int, out_size: int, factor: float | None) -> bool:
    """Whether nearest-exact's (i + 0.5) * scale lands exactly on an integer for some output
    index (scale = in/out, or 1/factor as given). torch's generic kernel rounds that point
    with a fused multiply-add, so its choice there depends on the CPU build; the registry
    cases avoid it (tests/test_interpolate.py checks every tie on this build)."""
    from fractions import Fraction

    scale = Fraction(in_size, out_size) if factor is None else 1 / Fraction(factor)
    return any(((2 * i + 1) * scale / 2).denominator == 1 for i in range(out_size))


def _upsample_cases(torch_type):
    @st.composite
    def case(draw):
        if torch_type in _FIXED:
            n, mode = 2, _FIXED[torch_type]
        else:
            n = draw(st.sampled_from((1, 2, 3)))
            mode = draw(st.sampled_from(_MODES_BY_RANK[n]))
        top = 5 if n == 3 else 9
        spatial = [draw(st.integers(1, top)) for _ in range(n)]
        per_axis = draw(st.booleans())
        kw = {}
        if draw(st.booleans()):
            sizes = [draw(st.integers(1, 2 * top)) for _ in range(n)]
            kw["size"] = tuple(sizes) if per_axis else sizes[0]
            factors = [None] * n
            sizes = sizes if per_axis else [sizes[0]] * n
        else:
            factors = [round(draw(st.floats(0.5, 3.0)), draw(st.integers(1, 2))) for _ in range(n)]
            if not per_axis:
                factors = [factors[0]] * n
            # Keep every output axis >= 1 (torch rejects empty outputs).
            factors = [f if math.floor(s * f) >= 1 else 1.0 for s, f in zip(spatial, factors)]
            kw["scale_factor"] = tuple(factors) if per_axis else factors[0]
            if not per_axis and len(set(factors)) > 1:
                kw["scale_factor"] = tuple(factors)
            sizes = [math.floor(s * f) for s, f in zip(spatial, factors)]
            if torch_type not in _FIXED:
                kw["recompute_scale_factor"] = draw(st.sampled_from((None, False, True)))
                if kw["recompute_scale_factor"] or mode == "area":
                    factors = [None] * n
        if torch_type not in _FIXED:
            kw["mode"] = mode
            if mode not in ("nearest", "nearest-exact", "area"):
                kw["align_corners"] = draw(st.sampled_from((None, False, True)))
        if mode == "nearest-exact":
            assume(not any(_has_exact_tie(i, o, f) for i, o, f in zip(spatial, sizes, factors)))
        m = torch_type(**kw)
        return make_case(draw, m, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial))

    return case()


@register(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, cases=_upsample_cases)
def upsample(m, ctx):
    """Upsample -> Interpolate with the module's arguments (antialias is always False here:
    nn.Upsample does not pass it)."""
    args = dict(size=m.size, scale_factor=m.scale_factor, mode=m.mode, align_corners=m.align_corners,
                recompute_scale_factor=m.recompute_scale_factor)
    desc = ", ".join(f"{k}={v!r}" for k, v in args.items())
    shape = ctx.input_shapes[0] if ctx.input_shapes else None
    try:
        layer = Interpolate(**args)
        if shape is not None:  # validate rank/mode and sizes now, with the module named
            layer.compute_output_shape((shape[0], *shape[2:], shape[1]))
    except ValueError as e:
        raise ConversionError(f"{type(m).__name__}({desc}) on input {tuple(shape) if shape else '?'} "
                              f"cannot be converted: {e}. torch rejects it too; fix the module's arguments.") from e
    return layer
