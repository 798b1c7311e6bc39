"""torch.nn.functional.grid_sample on a channels-last input.

Gather-based: per output location, the 2^d (bilinear/trilinear), 1 (nearest) or 16 (bicubic)
source taps are found from the grid with PyTorch's exact coordinate rules, gathered from the
flattened input with one `take` each, weighted and summed. No loops over pixels; the ops
(floor, where, take, mul, add) are TFLite builtins and compile under XLA.

Coordinate rules (ATen GridSampler.h and the CPU kernels):
- unnormalize: align_corners=True maps -1/+1 to the centers of the corner pixels, False to
  the image edges. The 2-D CPU kernel computes (x + 1) * ((size - 1) / 2) and
  (x + 1) * (size / 2) - 0.5; the 3-D kernel ((x + 1) / 2) * (size - 1) and
  ((x + 1) * size - 1) / 2. The same float32 op order is used here, per rank.
- padding_mode "border" clips the coordinate to [0, size - 1]; "reflection" reflects it
  about [0, size - 1] (align_corners) or [-0.5, size - 0.5] (not), then clips; "zeros" leaves
  it and every tap outside the image contributes 0.
- nearest rounds half to even (std::nearbyint): a coordinate exactly between two pixels
  takes the even one. Bicubic (2-D only) uses A = -0.75 and applies the padding mode to each
  of the 16 integer tap coordinates.
"""

from __future__ import annotations

import itertools

import keras
from keras import ops

from ._common import serializable

MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")
CUBIC_A = -0.75


def _unnormalize(coord, size: int, align_corners: bool, rank2d: bool):
    if rank2d:
        if align_corners:
            return (coord + 1.0) * ((size - 1) / 2.0)
        return (coord + 1.0) * (size / 2.0) - 0.5
    if align_corners:
        return ((coord + 1.0) / 2.0) * (size - 1)
    return ((coord + 1.0) * size - 1.0) / 2.0


def _clip(coord, size: int):
    return ops.minimum(ops.maximum(coord, 0.0), float(size - 1))


def _reflect(coord, twice_low: int, twice_high: int):
    if twice_low == twice_high:
        return ops.zeros_like(coord)
    lo = twice_low / 2.0
    span = (twice_high - twice_low) / 2.0
    c = ops.abs(coord - lo)
    extra = ops.mod(c, span)
    flips = ops.floor(c / span)
    even = ops.equal(ops.mod(flips, 2.0), 0.0)
    return ops.where(even, extra + lo, span - extra + lo)


def _pad_coord(coord, size: int, padding_mode: str, align_corners: bool):
    if padding_mode == "border":
        return _clip(coord, size)
    if padding_mode == "reflection":
        if align_corners:
            coord = _reflect(coord, 0, 2 * (size - 1))
        else:
            coord = _reflect(coord, -1, 2 * size - 1)
        return _clip(coord, size)
    return coord


def _cubic_weights(t):
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a

    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


@serializable
class GridSample(keras.layers.Layer):
    """`F.grid_sample(input, grid, mode, padding_mode, align_corners)`.

    call(x, grid): `x` is channels-last (N, *spatial, C) with 2 or 3 static spatial dims;
    `grid` is in PyTorch's layout (N, *out_spatial, d) with (x, y[, z]) in the last axis.
    Returns (N, *out_spatial, C), channels-last.
    """

    def __init__(self, mode: str = "bilinear", padding_mode: str = "zeros", align_corners: bool = False, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.mode = mode
        self.padding_mode = padding_mode
        self.align_corners = bool(align_corners)

    def compute_output_shape(self, x_shape, grid_shape):
        return (x_shape[0], *grid_shape[1:-1], x_shape[-1])

    def call(self, x, grid):
        spatial = tuple(int(s) for s in x.shape[1:-1])
        d = len(spatial)
        if d not in (2, 3):
            raise ValueError(f"grid_sample needs 4-D or 5-D input, got spatial dims {spatial}")
        if self.mode == "bicubic" and d != 2:
            raise ValueError("bicubic grid_sample exists for 4-D input only (as in torch)")
        if grid.shape[-1] != d:
            raise ValueError(f"grid's last axis must be {d}, got {grid.shape[-1]}")
        c = x.shape[-1]
        grid = ops.cast(grid, x.dtype)
        batch = ops.shape(x)[0]
        out_spatial = tuple(grid.shape[1:-1])
        if any(s is None for s in out_spatial):
            raise ValueError(f"grid's spatial shape must be static, got {tuple(grid.shape)}")
        # Flatten: every gather takes rows of (N*prod(spatial), C).
        flat = ops.reshape(x, (-1, c))
        offset = ops.reshape(ops.arange(batch, dtype="int32") * int(_prod(spatial)), (-1, 1))
        grid = ops.reshape(grid, (batch, -1, d))
        # grid's last axis is (x, y, z) = (W, H, D): spatial axis a reads component d-1-a.
        coords = [
            _unnormalize(grid[..., d - 1 - a], spatial[a], self.align_corners, d == 2) for a in range(d)
        ]
        if self.mode == "bicubic":
            out = self._bicubic(flat, offset, coords, spatial)
        else:
            coords = [_pad_coord(cz, s, self.padding_mode, self.align_corners) for cz, s in zip(coords, spatial)]
            if self.mode == "nearest":
                out = self._gather(flat, offset, [ops.round(cz) for cz in coords], spatial, None)
            else:
                out = self._linear(flat, offset, coords, spatial)
        return ops.reshape(out, (-1, *out_spatial, c))

    def _gather(self, flat, offset, taps, spatial, weight):
        """Sum over one tap: value at integer coordinates `taps` (float), zero outside."""
        valid = None
        index = None
        stride = 1
        for a in reversed(range(len(spatial))):
            t = taps[a]
            ok = ops.logical_and(ops.greater_equal(t, 0.0), ops.less_equal(t, float(spatial[a] - 1)))
            valid = ok if valid is None else ops.logical_and(valid, ok)
            ti = ops.cast(ops.clip(t, 0.0, float(spatial[a] - 1)), "int32")
            index = ti * stride if index is None else index + ti * stride
            stride *= spatial[a]
        w = ops.cast(valid, flat.dtype)
        if weight is not None:
            w = w * weight
        values = ops.take(flat, ops.reshape(index + offset, (-1,)), axis=0)
        values = ops.reshape(values, (ops.shape(w)[0], ops.shape(w)[1], flat.shape[-1]))
        return values * ops.expand_dims(w, -1)

    def _linear(self, flat, offset, coords, spatial):
        lows = [ops.floor(cz) for cz in coords]
        fracs = [cz - lo for cz, lo in zip(coords, lows)]
        out = None
        for corner in itertools.product((0, 1), repeat=len(spatial)):
            taps, weight = [], None
            for a, bit in enumerate(corner):
                taps.append(lows[a] + bit)
                w = fracs[a] if bit else 1.0 - fracs[a]
                weight = w if weight is None else weight * w
            term = self._gather(flat, offset, taps, spatial, weight)
            out = term if out is None else out + term
        return out

    def _bicubic(self, flat, offset, coords, spatial):
        (cy, cx), (h, w) = coords, spatial
        y0, x0 = ops.floor(cy), ops.floor(cx)
        wy, wx = _cubic_weights(cy - y0), _cubic_weights(cx - x0)
        out = None
        for i in range(4):
            ty = _pad_coord(y0 + (i - 1), h, self.padding_mode, self.align_corners)
            for j in range(4):
                tx = _pad_coord(x0 + (j - 1), w, self.padding_mode, self.align_corners)
                # torch casts the (padded) tap coordinate to an integer: truncation.
                term = self._gather(flat, offset, [_trunc(ty), _trunc(tx)], spatial, wy[i] * wx[j])
                out = term if out is None else out + term
        return out

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "padding_mode": self.padding_mode,
                "align_corners": self.align_corners}


def _trunc(x):
    return ops.sign(x) * ops.floor(ops.abs(x))


def _prod(xs) -> int:
    p = 1
    for v in xs:
        p *= int(v)
    return p
