"""RoIAlign with torchvision's semantics (its CPU kernel, aligned=True/False).

Inputs: features (N, H, W, C) channels-last and rois (K, 5) = [batch_index, x1, y1, x2, y2]
in input-image coordinates (scaled by `spatial_scale`). Output (K, oh, ow, C).

Each output bin averages a grid of sampling points; a point with y < -1, y > H, x < -1 or
x > W gives 0, coordinates <= 0 are clamped to 0 and those past the last row/column to it
(torchvision's roi_align bilinear rule, which differs from deform_conv2d's).

`sampling_ratio > 0` uses that many points per bin side. `sampling_ratio <= 0` is torchvision's
adaptive grid, ceil(roi_size / output_size) per RoI, which depends on the data: the layer
samples a static grid of `max_sampling_ratio` points per side and masks the unused ones, which
is exact for every RoI whose adaptive grid fits. A RoI that needs more points per side is
sampled with `max_sampling_ratio` evenly spaced points (not torch's result). For RoIs inside the
feature map, ceil(max(H, W) / min(output_size)) always fits; the converter uses that bound.
"""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


def _pair(v):
    return (int(v), int(v)) if isinstance(v, (int, float)) else tuple(int(a) for a in v)


@serializable
class RoIAlign(keras.layers.Layer):
    """torchvision.ops.roi_align as a layer: `RoIAlign((7, 7), 0.25, 2)(features, rois)`."""

    def __init__(self, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False,
                 max_sampling_ratio: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.max_sampling_ratio = None if max_sampling_ratio is None else int(max_sampling_ratio)
        if self.sampling_ratio <= 0 and (self.max_sampling_ratio is None or self.max_sampling_ratio < 1):
            raise ValueError("adaptive sampling (sampling_ratio <= 0) depends on each RoI's size: give "
                             "max_sampling_ratio, a static bound on ceil(roi_size / output_size)")

    def compute_output_shape(self, x_shape, rois_shape):
        return (rois_shape[0], *self.output_size, x_shape[-1])

    def _axis(self, start, size, pooled, grid, s, length, zero):
        """Sample coordinates of one axis: (K, pooled, s) positions, low/high indices, weights."""
        bin_size = size / (float(pooled) + zero)
        p = ops.cast(ops.arange(pooled), start.dtype)[None, :, None]
        i = ops.cast(ops.arange(s), start.dtype)[None, None, :]
        pos = start[:, None, None] + p * bin_size[:, None, None] + ((i + 0.5) * bin_size[:, None, None]) / ops.maximum(grid, 1.0)[:, None, None]
        used = i < grid[:, None, None]
        lf = ops.cast(length, start.dtype)
        empty = ops.logical_or(pos < -1.0, pos > lf)
        pos = ops.clip(pos, 0.0, lf)  # <= 0 -> 0; values past the end are clamped just below
        # minimum/maximum, not clip: an int clip becomes TF's Relu6, not a TFLite builtin.
        low = ops.minimum(ops.maximum(ops.cast(ops.floor(pos), "int32"), 0), length - 1)
        last = low >= length - 1
        low = ops.where(last, length - 1, low)
        high = ops.where(last, length - 1, low + 1)
        pos = ops.where(last, ops.cast(low, start.dtype), pos)
        frac = pos - ops.cast(low, start.dtype)
        ok = ops.logical_and(used, ops.logical_not(empty))
        return low, high, 1.0 - frac, frac, ok

    def call(self, x, rois):
        oh, ow = self.output_size
        shape = ops.shape(x)
        h, w = shape[1], shape[2]
        c = x.shape[-1]
        dtype = x.dtype
        rois = ops.cast(rois, dtype)
        b = ops.cast(rois[:, 0], "int32")
        # A runtime zero (batch indices are >= 0): TFLite's converter turns division by a
        # constant into multiplication by its reciprocal, which moves sampling points that
        # torch puts exactly on the image border (y == H) past it. Dividing by constant +
        # zero keeps torch's division.
        zero = ops.cast(ops.minimum(b, 0), dtype)
        off = 0.5 if self.aligned else 0.0
        sw = rois[:, 1] * self.spatial_scale - off
        sh = rois[:, 2] * self.spatial_scale - off
        ew = rois[:, 3] * self.spatial_scale - off
        eh = rois[:, 4] * self.spatial_scale - off
        rw, rh = ew - sw, eh - sh
        if not self.aligned:
            rw, rh = ops.maximum(rw, 1.0), ops.maximum(rh, 1.0)
        if self.sampling_ratio > 0:
            s = self.sampling_ratio
            gh = gw = zero + float(s)
        else:
            s = self.max_sampling_ratio
            gh = ops.minimum(ops.ceil(rh / (float(oh) + zero)), float(s))
            gw = ops.minimum(ops.ceil(rw / (float(ow) + zero)), float(s))
        count = ops.maximum(gh * gw, 1.0)
        yl, yh, wy0, wy1, oky = self._axis(sh, rh, oh, gh, s, h, zero)  # (K, oh, s)
        xl, xh, wx0, wx1, okx = self._axis(sw, rw, ow, gw, s, w, zero)  # (K, ow, s)
        table = ops.reshape(x, (-1, c))
        # Sample axes flattened, (K, oh*s) and (K, ow*s), so no tensor exceeds rank 4 (TFLite).
        yl, yh, wy0, wy1, oky = (ops.reshape(a, (-1, oh * s)) for a in (yl, yh, wy0, wy1, oky))
        xl, xh, wx0, wx1, okx = (ops.reshape(a, (-1, ow * s)) for a in (xl, xh, wx0, wx1, okx))
        base = b[:, None, None] * h
        ok = ops.logical_and(oky[:, :, None], okx[:, None, :])  # (K, oh*s, ow*s)
        val = None
        corners = ((yl, xl, wy0, wx0), (yl, xh, wy0, wx1), (yh, xl, wy1, wx0), (yh, xh, wy1, wx1))
        for yi, xi, wyv, wxv in corners:
            idx = (base + yi[:, :, None]) * w + xi[:, None, :]
            wgt = wyv[:, :, None] * wxv[:, None, :]
            term = wgt[..., None] * ops.take(table, idx, axis=0)
            val = term if val is None else val + term
        val = ops.where(ok[..., None], val, 0.0)  # (K, oh*s, ow*s, C)
        val = ops.sum(ops.reshape(val, (-1, s, ow * s, c)), axis=1)  # (K*oh, ow*s, C)
        val = ops.sum(ops.reshape(val, (-1, s, c)), axis=1)  # (K*oh*ow, C)
        out = ops.reshape(val, (-1, oh, ow, c))
        return out / count[:, None, None, None]

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size, "spatial_scale": self.spatial_scale,
                "sampling_ratio": self.sampling_ratio, "aligned": self.aligned,
                "max_sampling_ratio": self.max_sampling_ratio}
