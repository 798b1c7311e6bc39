"""torch.nn.functional.interpolate on a channels-last tensor, every mode, exactly.

Each spatial axis is resampled on its own (every torch mode is separable) through a static
table computed once from the static input size: for output position i, K source indices and
K weights, y[i] = sum_k w[i, k] * x[idx[i, k]]. The tables reproduce ATen's CPU kernels
(aten/src/ATen/native/UpSample.h, cpu/UpSampleKernel.cpp) in their float32 arithmetic,
fused multiply-adds included (torch's x86-64 AVX2/AVX512 kernels are compiled with them), so
nearest indices are torch's bit for bit and weights agree to float rounding (the linear ones
bit for bit; tests/test_interpolate.py checks the tables against torch exhaustively):

- scale: with `size`, or with `recompute_scale_factor=True`, in/out; with a `scale_factor`
  and recompute False/None, 1/scale_factor - not in/out, which differs for non-integer scales
  (in 5, scale 1.3 -> out 6: torch maps with 1/1.3 = 0.769, not 5/6 = 0.833).
- nearest: floor(f32(i * scale)); nearest-exact: floor((i + 0.5) * scale); both clipped to
  in - 1 (TF's nearest rounds instead, so it is not used).
- linear/bilinear/trilinear: src = scale * (i + 0.5) - 0.5 clamped at 0 (align_corners=False)
  or scale * i with scale (in-1)/(out-1) (True); an axis whose output size equals its input
  size is copied whatever the scale (torch's shortcut).
- bicubic: Keys' cubic convolution with A = -0.75, 4 taps clamped to the border, src not
  clamped at 0 and no equal-size shortcut (as torch).
- antialias=True (bilinear, bicubic, and torch's lanczos-3): Pillow's separable filter with
  its support widened by the scale when downsampling, taps cut at the borders and each row
  renormalised (torch's antialiased bicubic uses A = -0.5, not -0.75).
- area: adaptive average pooling, bins [floor(i*in/out), ceil((i+1)*in/out)).

Torch quirks, measured with torch 2.14.1 on CPU:
- 2-D nearest/nearest-exact use one of two kernels: the vectorized one when out_h + out_w
  <= 128 (or the input is channels_last in memory with C > 3), else the generic one (always
  for 1-D and 3-D). They disagree when a scale_factor is given with recompute False/None and
  an axis's output is its input size or twice it (the vectorized kernel copies / halves the
  index; the generic one uses floor(i / scale_factor)), and at exact nearest-exact ties. This
  layer follows a contiguous input, the 128 threshold included.
- antialias=True with an output width of 1 and a changing height returns output row 0 in
  every row for a contiguous input (float32 and float64; a channels_last input is right).
  That is a bug, not a semantic: this layer computes the correct (channels_last) result.

Tables are float32 (torch's float32 arithmetic); for a float64 input the linear, cubic, area
and antialias tables are computed in float64, as torch does (nearest indices use a float scale
in ATen whatever the dtype). Padding taps of the antialias/area tables (rows
with fewer taps than the widest) carry weight 0 on an in-range pixel, so an inf/nan input
there can give nan where torch skips the tap.

The graph is gather/multiply/add (and reshape + sum for an axis with more than 4 taps), all
TFLite builtins, and compiles under tf.function and XLA. Bilinear with power-of-two ratios
uses TF's ResizeBilinear instead, where it samples exactly as torch (see
`Interpolate._tf_resize_is_exact`); note that XLA lowers ResizeBilinear slowly on CPU.
"""

from __future__ import annotations

import contextlib
import math

import keras
import numpy as np
from keras import ops

from ._common import serializable

MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area", "lanczos")
#: Modes that only exist for one input rank (torch's rule), by spatial rank.
_RANK_OF = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3, "lanczos": 2}
_F32 = np.float32
#: Above this many taps an axis is resampled with one gather + reshape + sum instead of
#: one gather per tap.
_MAX_UNROLLED_TAPS = 4


# --------------------------------------------------------------------------------------
# Output sizes and scales (torch.nn.functional.interpolate's Python part + ATen's
# upsample::compute_output_size).
# --------------------------------------------------------------------------------------

def plan_sizes(in_sizes, size=None, scale_factor=None, mode="nearest", recompute_scale_factor=None):
    """Output size and the scale torch's kernel receives (None = use in/out), per axis."""
    n = len(in_sizes)
    if size is not None:
        out = _per_axis(size, n, "size")
        return [int(o) for o in out], [None] * n
    factors = [float(f) for f in _per_axis(scale_factor, n, "scale_factor")]
    out = [int(math.floor(i * f)) for i, f in zip(in_sizes, factors)]  # floor of a double product
    if mode == "area" or recompute_scale_factor:
        return out, [None] * n
    return out, factors


def _per_axis(v, n, what):
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ValueError(f"{what}={list(v)} has {len(v)} entries for {n} spatial axes")
        return list(v)
    return [v] * n


def _scale_value(scale, in_size, out_size):
    """ATen compute_scales_value<float>: 1/scale (in double, then float) or in/out in float."""
    if scale is not None and scale > 0:
        return _F32(1.0 / scale)
    return _F32(in_size) / _F32(out_size)


def _area_pixel_scale(in_size, out_size, align_corners, scale):
    """ATen area_pixel_compute_scale<float>."""
    if align_corners:
        return _F32(in_size - 1) / _F32(out_size - 1) if out_size > 1 else _F32(0)
    return _scale_value(scale, in_size, out_size)


def _fma(a, b, c):
    """float32 a*b + c rounded once, as the fused multiply-add ATen's AVX2/AVX512 kernels are
    compiled with (exact in float64 for float32 operands, then one rounding)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(_F32)


def _source_index(scale, out_size, align_corners, cubic):
    """ATen area_pixel_compute_source_index<float> for every output index. The half-pixel
    form is one fused multiply-add in torch's x86-64 kernels: emulating it makes the linear
    weights bit-identical (unfused rounding differs by up to 1 ulp of the coordinate, which
    is 4e-6 at coordinate 40)."""
    i = np.arange(out_size, dtype=_F32)
    if align_corners:
        return scale * i
    src = _fma(scale, i + _F32(0.5), _F32(-0.5))
    return src if cubic else np.maximum(src, _F32(0))


# --------------------------------------------------------------------------------------
# Per-axis tables: (idx [out, K] int32, weights [out, K] float32 or None for a pure gather).
# `None` as a whole means the axis is left unchanged.
# --------------------------------------------------------------------------------------

def axis_table(mode, in_size, out_size, *, align_corners=False, scale=None, antialias=False,
               vectorized=False):
    """Source indices and weights torch uses to resample one axis (see the module doc).
    `vectorized` selects the index rule of ATen's vectorized nearest kernel (used for 2-D
    inputs whose output height + width <= 128) instead of its generic kernel's."""
    if mode in ("nearest", "nearest-exact"):
        return _nearest(in_size, out_size, scale, exact=mode == "nearest-exact", vectorized=vectorized)
    if mode == "area":
        return _area(in_size, out_size)
    if antialias or mode == "lanczos":
        filt, taps = _AA_FILTERS[mode]
        return _antialias(in_size, out_size, align_corners, scale, filt, taps)
    if mode in ("linear", "bilinear", "trilinear"):
        return _linear(in_size, out_size, align_corners, scale)
    if mode == "bicubic":
        return _cubic(in_size, out_size, align_corners, scale)
    raise ValueError(f"unknown mode {mode!r}")


def _nearest(in_size, out_size, scale, exact, vectorized):
    """ATen's nearest / nearest-exact source index. Its two CPU kernels differ: the vectorized
    one (`nearest_idx`, `nearest_exact_idx`) copies an equal-size axis, halves the index of a
    doubled one and computes floor(f32((i + 0.5) * scale)) for nearest-exact; the generic
    one computes floor(i * scale) and floor(max(fma(scale, i + 0.5, -0.5), 0) + 0.5f), which
    disagree where (i + 0.5) * scale is an exact integer in real arithmetic (in 2 -> out 41,
    i = 20)."""
    s = _scale_value(scale, in_size, out_size)
    i = np.arange(out_size, dtype=_F32)
    if not exact and vectorized and out_size == in_size:
        return None
    if not exact and vectorized and out_size == 2 * in_size:
        return np.arange(out_size, dtype=np.int32)[:, None] >> 1, None
    if not exact:
        src = i * s
    elif vectorized:
        src = (i + _F32(0.5)) * s
    else:
        src = np.maximum(_fma(s, i + _F32(0.5), _F32(-0.5)), _F32(0)) + _F32(0.5)
    idx = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    if out_size == in_size and np.array_equal(idx, np.arange(in_size)):
        return None
    return idx.astype(np.int32)[:, None], None


def _linear(in_size, out_size, align_corners, scale):
    if out_size == in_size:  # ATen copies, whatever the scale
        return None
    s = _area_pixel_scale(in_size, out_size, align_corners, scale)
    src = _source_index(s, out_size, align_corners, cubic=False)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    l1 = np.clip(src - i0.astype(_F32), _F32(0), _F32(1)).astype(_F32)
    i1 = i0 + (i0 < in_size - 1)
    idx = np.stack([i0, i1], axis=1).astype(np.int32)
    w = np.stack([_F32(1) - l1, l1], axis=1).astype(_F32)
    return idx, w


def _cubic_conv1(x, a):  # |x| <= 1: ((a + 2) x - (a + 3)) x x + 1
    return ((a + _F32(2)) * x - (a + _F32(3))) * x * x + _F32(1)


def _cubic_conv2(x, a):  # 1 < |x| < 2: ((a x - 5a) x + 8a) x - 4a, contracted as ATen's build
    return (_fma(_fma(a, x, -_F32(5) * a), x, _F32(8) * a) * x - _F32(4) * a).astype(_F32)


def _cubic_coefficients(t, a):
    """ATen get_cubic_upsample_coefficients (float32), for fractional offsets t."""
    a = _F32(a)
    x2 = _F32(1) - t
    return np.stack([_cubic_conv2(t + _F32(1), a), _cubic_conv1(t, a), _cubic_conv1(x2, a),
                     _cubic_conv2(x2 + _F32(1), a)], axis=1).astype(_F32)


def _cubic(in_size, out_size, align_corners, scale):
    s = _area_pixel_scale(in_size, out_size, align_corners, scale)
    src = _source_index(s, out_size, align_corners, cubic=True)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    t = np.clip(src - i0.astype(_F32), _F32(0), _F32(1)).astype(_F32)
    idx = np.clip(i0[:, None] - 1 + np.arange(4)[None, :], 0, in_size - 1).astype(np.int32)
    return idx, _cubic_coefficients(t, -0.75)


def _area(in_size, out_size):
    if out_size == in_size:
        return None
    i = np.arange(out_size, dtype=np.int64)
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)
    taps = int((end - start).max())
    k = np.arange(taps)[None, :]
    inside = k < (end - start)[:, None]
    idx = np.where(inside, start[:, None] + k, start[:, None]).astype(np.int32)
    w = np.where(inside, 1.0 / (end - start)[:, None], 0.0).astype(_F32)
    return idx, w


def _linear_filter(x):
    x = np.abs(x)
    return np.where(x < 1, _F32(1) - x, _F32(0)).astype(_F32)


def _cubic_filter(x):  # Pillow's bicubic, a = -0.5 (torch's antialias filter)
    a = _F32(-0.5)
    x = np.abs(x)
    return np.where(x < 1, _cubic_conv1(x, a), np.where(x < 2, _cubic_conv2(x, a), _F32(0))).astype(_F32)


def _lanczos_filter(x):  # lanczos-3: sinc(x) sinc(x/3), |x| < 3
    x = np.abs(x.astype(np.float64))
    y = np.sinc(x) * np.sinc(x / 3.0)
    return np.where(x < 3, y, 0.0).astype(_F32)


_AA_FILTERS = {
    "linear": (_linear_filter, 2), "bilinear": (_linear_filter, 2), "trilinear": (_linear_filter, 2),
    "bicubic": (_cubic_filter, 4), "lanczos": (_lanczos_filter, 6),
}


def _antialias(in_size, out_size, align_corners, scale, filt, interp_size):
    """ATen HelperInterpBase::_compute_index_ranges_weights with antialias=True (float)."""
    if out_size == in_size:  # the separable kernel skips axes whose size does not change
        return None
    s = _area_pixel_scale(in_size, out_size, align_corners, scale)
    support = _F32(interp_size * 0.5) * s if s >= 1 else _F32(interp_size * 0.5)
    max_taps = int(math.ceil(support)) * 2 + 1
    invscale = _F32(1.0 / float(s)) if s >= 1 else _F32(1)
    i = np.arange(out_size, dtype=np.float64)
    center = (float(s) * (i + 0.5)).astype(_F32)  # double product, stored as float
    # static_cast<int64_t>(float + 0.5): truncation toward zero.
    xmin = np.maximum(np.trunc((center - support).astype(np.float64) + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc((center + support).astype(np.float64) + 0.5).astype(np.int64), in_size)
    xsize = np.clip(xmax - xmin, 0, max_taps)
    taps = max(int(xsize.max()), 1)
    k = np.arange(taps)[None, :]
    # (j + xmin - center) in float, + 0.5 and * invscale in double, then float.
    arg = ((k + xmin[:, None]).astype(_F32) - center[:, None]).astype(np.float64)
    arg = ((arg + 0.5) * float(invscale)).astype(_F32)
    w = _filter_rows(filt(arg), k < xsize[:, None])
    idx = np.where(k < xsize[:, None], xmin[:, None] + k, np.minimum(xmin, in_size - 1)[:, None])
    return idx.astype(np.int32), w


def _filter_rows(w, inside):
    """Zero the taps outside the support and normalise each row by its float32 running sum."""
    w = np.where(inside, w, _F32(0)).astype(_F32)
    total = np.zeros(w.shape[0], dtype=_F32)
    for j in range(w.shape[1]):  # sequential float32 accumulation, as ATen's loop
        total = (total + w[:, j]).astype(_F32)
    safe = np.where(total != 0, total, _F32(1)).astype(_F32)
    return np.where(total[:, None] != 0, w / safe[:, None], w).astype(_F32)


# --------------------------------------------------------------------------------------
# The layer.
# --------------------------------------------------------------------------------------

@serializable
class Interpolate(keras.layers.Layer):
    """`F.interpolate(x, size, scale_factor, mode, align_corners, recompute_scale_factor,
    antialias)` on a channels-last tensor (N, *spatial, C) with 1 to 3 spatial axes.

    Arguments mean exactly what they mean in torch (and are validated the same way). The
    spatial input size must be static (it is in converted models); the batch and channel
    axes may be dynamic.

    Example::

        y = Interpolate(scale_factor=1.5, mode="bilinear", align_corners=False)(x)  # x: (N, H, W, C)
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                 recompute_scale_factor=None, antialias: bool = False, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError("exactly one of size and scale_factor must be given (as in torch)")
        if mode in ("nearest", "nearest-exact", "area") and align_corners is not None:
            raise ValueError("align_corners can only be set with the interpolating modes: "
                             "linear | bilinear | bicubic | trilinear (as in torch)")
        if recompute_scale_factor and size is not None:
            raise ValueError("recompute_scale_factor is not meaningful with an explicit size (as in torch)")
        if antialias and mode not in ("bilinear", "bicubic", "lanczos"):
            raise ValueError("antialias=True is restricted to bilinear, bicubic and lanczos modes (as in torch)")
        if mode == "lanczos" and (align_corners or not antialias):
            raise ValueError("lanczos mode needs antialias=True and align_corners False/None (as in torch)")
        self.size = _normalise(size, int)
        self.scale_factor = _normalise(scale_factor, float)
        self.mode = mode
        self.align_corners = None if align_corners is None else bool(align_corners)
        self.recompute_scale_factor = None if recompute_scale_factor is None else bool(recompute_scale_factor)
        self.antialias = bool(antialias)

    # -- planning ------------------------------------------------------------------
    def _spatial(self, shape):
        n = len(shape) - 2
        if n not in (1, 2, 3):
            raise ValueError(f"Interpolate takes (N, *spatial, C) with 1-3 spatial axes, got shape {tuple(shape)}")
        want = _RANK_OF.get(self.mode)
        if want is not None and want != n:
            raise ValueError(f"mode {self.mode!r} needs {want} spatial axes ({want + 2}-D input), got shape {tuple(shape)}")
        if self.antialias and n != 2:
            raise ValueError(f"antialias=True needs a 4-D input, got shape {tuple(shape)}")
        return list(shape[1:-1])

    def _plan(self, shape, dtype="float32"):
        """(input sizes, output sizes, torch's scale per axis, per-axis tables)."""
        in_sizes = self._spatial(shape)
        if any(s is None for s in in_sizes):
            raise ValueError(f"Interpolate needs a static spatial input size, got shape {tuple(shape)}")
        out_sizes, scales = plan_sizes(in_sizes, self.size, self.scale_factor, self.mode, self.recompute_scale_factor)
        if any(o <= 0 for o in out_sizes):
            raise ValueError(f"output size {out_sizes} (input {in_sizes}) must be greater than 0 (as in torch)")
        # See the module doc: torch's 2-D nearest kernel choice depends on the output size.
        vectorized = len(in_sizes) == 2 and sum(out_sizes) <= 128
        double = dtype == "float64" and self.mode not in ("nearest", "nearest-exact")
        with _table_precision(np.float64 if double else np.float32):
            tables = [
                axis_table(self.mode, i, o, align_corners=bool(self.align_corners), scale=s,
                           antialias=self.antialias, vectorized=vectorized)
                for i, o, s in zip(in_sizes, out_sizes, scales)
            ]
        return in_sizes, out_sizes, scales, tables

    def compute_output_shape(self, input_shape):
        spatial = self._spatial(input_shape)
        if all(s is not None for s in spatial):
            out = plan_sizes(spatial, self.size, self.scale_factor, self.mode, self.recompute_scale_factor)[0]
            if any(o <= 0 for o in out):
                raise ValueError(f"output size {out} (input {spatial}) must be greater than 0 (as in torch)")
        elif self.size is not None:
            out = _per_axis(self.size, len(spatial), "size")
        else:
            out = [None if s is None else int(math.floor(s * f))
                   for s, f in zip(spatial, _per_axis(self.scale_factor, len(spatial), "scale_factor"))]
        return (input_shape[0], *out, input_shape[-1])

    # -- compute -------------------------------------------------------------------
    def call(self, x):
        in_sizes, out_sizes, scales, tables = self._plan(x.shape, keras.backend.standardize_dtype(x.dtype))
        if self._tf_resize_is_exact(x, in_sizes, out_sizes, scales):
            return ops.image.resize(x, out_sizes, interpolation="bilinear", antialias=False,
                                    data_format="channels_last")
        dtype = keras.backend.standardize_dtype(x.dtype)
        if "float" not in dtype and any(t is not None and t[1] is not None for t in tables):
            raise ValueError(f"mode {self.mode!r} needs a floating-point input, got {dtype} "
                             "(torch's uint8 kernels round differently; cast to float first)")
        # Last axis first: the order of ATen's separable passes (and of its nested sums).
        for axis in reversed(range(len(tables))):
            if tables[axis] is not None:
                x = _resample_axis(x, axis + 1, *tables[axis])
        return x

    def _tf_resize_is_exact(self, x, in_sizes, out_sizes, scales):
        """TF's ResizeBilinear (half-pixel centers) is a fused kernel, 2-4x faster than the
        gathers here (scripts/bench_interpolate.py); it is used only where it samples exactly
        where torch does: bilinear, align_corners=False, no antialias, float32, and on every
        axis an equal size or a power-of-two ratio that is also torch's scale. Then
        (i + 0.5) * s - 0.5, its floor and its fraction are exact in float32 whether or not
        either side fuses the multiply-add, TF's clamping (lower = max(floor, 0), upper =
        min(ceil, in - 1)) reads the same pixels with the same weights as torch's (src
        clamped at 0, index1 = index0 + (index0 < in - 1)), and the results differ only by
        the rounding of the final lerp (a + (b - a) t vs (1 - t) a + t b). Verified: tests/
        test_interpolate.py::test_tf_resize_path_only_where_exact (ratios 2^-3..2^3, sizes
        1-9, size and scale_factor; error <= 1e-6 x max(1, |ref|)). With any other ratio TF's
        unfused coordinate rounding differs from torch's fused one by up to 1 ulp of the
        coordinate, times the pixel difference, so the exact gathers are used."""
        if (self.mode != "bilinear" or self.antialias or self.align_corners
                or keras.backend.backend() != "tensorflow"
                or keras.backend.standardize_dtype(x.dtype) != "float32"):
            return False
        for i, o, s in zip(in_sizes, out_sizes, scales):
            if i == o:
                continue
            ratio = _F32(i) / _F32(o)
            if _scale_value(s, i, o) != ratio or math.frexp(float(ratio))[0] != 0.5:
                return False
        return True

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "scale_factor": self.scale_factor,
            "mode": self.mode,
            "align_corners": self.align_corners,
            "recompute_scale_factor": self.recompute_scale_factor,
            "antialias": self.antialias,
        }


@contextlib.contextmanager
def _table_precision(dtype):
    """The table builders' arithmetic type (module-level _F32): float64 for a float64 input."""
    global _F32
    saved, _F32 = _F32, dtype
    try:
        yield
    finally:
        _F32 = saved


def _normalise(v, cast):
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return [cast(e) for e in v]
    return cast(v)


def _resample_axis(x, axis, idx, w):
    """y[.., i, ..] = sum_k w[i, k] * x[.., idx[i, k], ..] along `axis` (static tables)."""
    rank = len(x.shape)
    out, taps = idx.shape
    dtype = keras.backend.standardize_dtype(x.dtype)
    if w is None:
        return ops.take(x, ops.convert_to_tensor(idx[:, 0], dtype="int32"), axis=axis)
    bshape = [1] * rank
    if taps <= _MAX_UNROLLED_TAPS:
        bshape[axis] = out
        y = None
        for k in range(taps):
            term = ops.take(x, ops.convert_to_tensor(idx[:, k], dtype="int32"), axis=axis)
            term = term * ops.convert_to_tensor(w[:, k].reshape(bshape), dtype=dtype)
            y = term if y is None else y + term
        return y
    g = ops.take(x, ops.convert_to_tensor(idx.reshape(-1), dtype="int32"), axis=axis)
    shape = ops.shape(x)
    g = ops.reshape(g, (*shape[:axis], out, taps, *shape[axis + 1:]))
    wshape = [1] * (rank + 1)
    wshape[axis], wshape[axis + 1] = out, taps
    return ops.sum(g * ops.convert_to_tensor(w.reshape(wshape), dtype=dtype), axis=axis + 1)
