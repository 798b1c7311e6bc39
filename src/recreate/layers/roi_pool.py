"""RoIPool (Fast R-CNN max pooling over RoI bins) with torchvision's semantics.

Inputs: features (N, H, W, C) channels-last and rois (K, 5) = [batch_index, x1, y1, x2, y2].
Output (K, oh, ow, C). torchvision rounds the scaled corners half away from zero, makes the
RoI (end - start + 1) cells wide (at least 1), splits it into bins
[floor(i * bin), ceil((i + 1) * bin)) shifted by the RoI start and clipped to the image, and
returns the maximum of each bin, or 0 for an empty bin.

A bin covers at most H rows and W columns of the image; the layer reduces a static window of
`max_bin_size` = (H, W) rows/columns (its default is the input's static size, always exact)
with masking, rows first, then columns.
"""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


def _pair(v):
    return (int(v), int(v)) if isinstance(v, (int, float)) else tuple(int(a) for a in v)


def round_half_away(v):
    """C's round(): half away from zero, exact for every float (floor(v + 0.5) is not)."""
    a = ops.abs(v)
    r = ops.floor(a)
    r = r + ops.cast(a - r >= 0.5, v.dtype)
    return ops.where(v < 0, -r, r)


@serializable
class RoIPool(keras.layers.Layer):
    """torchvision.ops.roi_pool as a layer: `RoIPool((7, 7), 1 / 16)(features, rois)`."""

    def __init__(self, output_size, spatial_scale: float = 1.0, max_bin_size=None, **kwargs):
        super().__init__(**kwargs)
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.max_bin_size = None if max_bin_size is None else _pair(max_bin_size)

    def compute_output_shape(self, x_shape, rois_shape):
        return (rois_shape[0], *self.output_size, x_shape[-1])

    def _bins(self, start, end, pooled, length, zero):
        """Bin bounds of one axis: (K, pooled) clipped start and end indices."""
        size = ops.maximum(end - start + 1.0, 1.0)
        bin_size = size / (float(pooled) + zero)
        p = ops.cast(ops.arange(pooled), start.dtype)[None, :]
        lo = ops.floor(p * bin_size[:, None]) + start[:, None]
        hi = ops.ceil((p + 1.0) * bin_size[:, None]) + start[:, None]
        lf = ops.cast(length, start.dtype)
        return ops.cast(ops.clip(lo, 0.0, lf), "int32"), ops.cast(ops.clip(hi, 0.0, lf), "int32")

    def call(self, x, rois):
        oh, ow = self.output_size
        shape = ops.shape(x)
        h, w = shape[1], shape[2]
        c = x.shape[-1]
        bh, bw = self.max_bin_size or (x.shape[1], x.shape[2])
        if bh is None or bw is None:
            raise ValueError("RoIPool needs a static input size or max_bin_size")
        rois = ops.cast(rois, x.dtype)
        k = ops.shape(rois)[0]
        b = ops.cast(rois[:, 0], "int32")
        # A runtime zero (batch indices are >= 0): TFLite's converter turns division by a
        # constant into multiplication by its reciprocal, which moves floor/ceil bin edges.
        zero = ops.cast(ops.minimum(b, 0), x.dtype)
        x1, y1, x2, y2 = (round_half_away(rois[:, i] * self.spatial_scale) for i in range(1, 5))
        hs, he = self._bins(y1, y2, oh, h, zero)  # (K, oh)
        ws, we = self._bins(x1, x2, ow, w, zero)  # (K, ow)
        neg = ops.cast(float("-inf"), x.dtype)
        # Rows: the maximum over each row window, for every column: (K, oh, W, C).
        dh = ops.arange(bh, dtype="int32")[None, None, :]
        rows = hs[:, :, None] + dh  # (K, oh, bh)
        rok = rows < he[:, :, None]
        ridx = b[:, None, None] * h + ops.minimum(rows, h - 1)
        v = ops.take(ops.reshape(x, (-1, w, c)), ridx, axis=0)  # (K, oh, bh, W, C)
        rmax = ops.max(ops.where(rok[:, :, :, None, None], v, neg), axis=2)  # (K, oh, W, C)
        # Columns.
        dw = ops.arange(bw, dtype="int32")[None, None, :]
        cols = ws[:, :, None] + dw  # (K, ow, bw)
        cok = cols < we[:, :, None]
        cidx = ops.arange(k, dtype="int32")[:, None, None] * w + ops.minimum(cols, w - 1)
        table = ops.reshape(ops.transpose(rmax, (0, 2, 1, 3)), (-1, oh, c))  # (K*W, oh, C)
        v = ops.take(table, cidx, axis=0)  # (K, ow, bw, oh, C)
        cmax = ops.max(ops.where(cok[:, :, :, None, None], v, neg), axis=2)  # (K, ow, oh, C)
        out = ops.transpose(cmax, (0, 2, 1, 3))
        empty = ops.logical_or((he <= hs)[:, :, None], (we <= ws)[:, None, :])  # (K, oh, ow)
        return ops.where(empty[..., None], ops.zeros_like(out), out)

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size, "spatial_scale": self.spatial_scale,
                "max_bin_size": self.max_bin_size}
