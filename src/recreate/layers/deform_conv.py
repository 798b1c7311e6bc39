"""Deformable convolution (v1, and v2 with a modulation mask), torchvision's semantics.

Layout: everything channels-last. `x` is (N, H, W, C); `offset` is (N, Ho, Wo, 2*G*kh*kw)
and `mask` (N, Ho, Wo, G*kh*kw), with torchvision's channel order unchanged (offset channel
g*2*kh*kw + 2*(i*kw + j) is the row shift of tap (i, j) for offset group g, the next one
its column shift; mask channel g*kh*kw + i*kw + j). That is exactly torch's offset/mask
tensors moved to channels-last, which is what the converter does (a mask given to torch as
the keyword `mask=` reaches the layer in torch's layout: `mask_data_format="channels_first"`).

Sampling is torchvision's `bilinear_interpolate` of its deform_conv2d kernel: a point with
y <= -1, y >= H, x <= -1 or x >= W gives 0, otherwise each of the four neighbours that lies
inside the image contributes with its bilinear weight (neighbours outside count as 0).
The kernel is (kh, kw, C // groups, out_channels), like Conv2D's.
"""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


def _pair(v):
    return (int(v), int(v)) if isinstance(v, (int, float)) else tuple(int(a) for a in v)


@serializable
class DeformConv2D(keras.layers.Layer):
    """torchvision.ops.deform_conv2d as a layer: `layer(x, offset)` or `layer(x, offset, mask)`.

    Example::

        y = DeformConv2D(8, (3, 3), padding=(1, 1))(x, offset)   # x (N,H,W,C), offset (N,H,W,18)
    """

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding=(0, 0), dilation_rate=(1, 1),
                 groups: int = 1, offset_groups: int = 1, use_mask: bool = False, use_bias: bool = True,
                 mask_data_format: str = "channels_last", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size)
        self.strides = _pair(strides)
        self.padding = _pair(padding)
        self.dilation_rate = _pair(dilation_rate)
        self.groups = int(groups)
        self.offset_groups = int(offset_groups)
        self.use_mask = bool(use_mask)
        self.use_bias = bool(use_bias)
        if mask_data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"mask_data_format must be 'channels_last' or 'channels_first', got {mask_data_format!r}")
        self.mask_data_format = mask_data_format
        # `mask` is the modulation tensor (torch's name, which the tracer passes by keyword),
        # not a Keras padding mask: accept it without Keras's "destroys the mask" warning and
        # propagate no mask (compute_mask).
        self.supports_masking = True
        if self.filters % self.groups:
            raise ValueError(f"filters={self.filters} is not divisible by groups={self.groups}")

    def build(self, x_shape, offset_shape=None, mask_shape=None):
        c = x_shape[-1]
        if c is None or c % self.groups or c % self.offset_groups:
            raise ValueError(f"input channels {c} must be divisible by groups={self.groups} and "
                             f"offset_groups={self.offset_groups}")
        kh, kw = self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(kh, kw, c // self.groups, self.filters))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def _out_size(self, size, axis):
        if size is None:
            return None
        k, s, p, d = self.kernel_size[axis], self.strides[axis], self.padding[axis], self.dilation_rate[axis]
        return (size + 2 * p - (d * (k - 1) + 1)) // s + 1

    def compute_mask(self, *args, **kwargs):
        return None

    def compute_output_shape(self, x_shape, offset_shape=None, mask_shape=None):
        return (x_shape[0], self._out_size(x_shape[1], 0), self._out_size(x_shape[2], 1), self.filters)

    def call(self, x, offset, mask=None):
        if self.use_mask != (mask is not None):
            raise ValueError(f"DeformConv2D(use_mask={self.use_mask}) called {'without' if mask is None else 'with'} a mask")
        kh, kw = self.kernel_size
        taps = kh * kw
        g = self.offset_groups
        shape = ops.shape(x)
        n, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
        cg = c // g
        oshape = ops.shape(offset)
        ho, wo = oshape[1], oshape[2]
        dtype = x.dtype
        hf, wf = ops.cast(h, dtype), ops.cast(w, dtype)
        # Gather table: row ((b*H + y)*W + x)*G + group holds that group's channels.
        table = ops.reshape(x, (-1, cg))
        off = ops.reshape(offset, (n, ho, wo, g, taps * 2))  # rank 5: TFLite slices up to 5-D
        if mask is not None and self.mask_data_format == "channels_first":
            mask = ops.transpose(mask, (0, 2, 3, 1))
        msk = ops.reshape(mask, (n, ho, wo, g, taps)) if mask is not None else None
        base_y = ops.cast(ops.arange(ho) * self.strides[0] - self.padding[0], dtype)[None, :, None, None]
        base_x = ops.cast(ops.arange(wo) * self.strides[1] - self.padding[1], dtype)[None, None, :, None]
        bidx = ops.reshape(ops.arange(n), (-1, 1, 1, 1))
        gidx = ops.reshape(ops.arange(g), (1, 1, 1, -1))
        cols = []
        for t in range(taps):
            i, j = divmod(t, kw)
            y = base_y + float(i * self.dilation_rate[0]) + off[..., 2 * t]
            xx = base_x + float(j * self.dilation_rate[1]) + off[..., 2 * t + 1]
            inside = ops.logical_and(ops.logical_and(y > -1.0, y < hf), ops.logical_and(xx > -1.0, xx < wf))
            # Clip before floor so huge offsets cannot overflow int32 (such points give 0 anyway).
            y = ops.clip(y, -2.0, hf + 1.0)
            xx = ops.clip(xx, -2.0, wf + 1.0)
            y0f, x0f = ops.floor(y), ops.floor(xx)
            ly, lx = y - y0f, xx - x0f
            hy, hx = 1.0 - ly, 1.0 - lx
            y0, x0 = ops.cast(y0f, "int32"), ops.cast(x0f, "int32")
            y1, x1 = y0 + 1, x0 + 1
            val = None
            for yy, xc, wgt in ((y0, x0, hy * hx), (y0, x1, hy * lx), (y1, x0, ly * hx), (y1, x1, ly * lx)):
                ok = ops.logical_and(ops.logical_and(yy >= 0, yy <= h - 1), ops.logical_and(xc >= 0, xc <= w - 1))
                ok = ops.logical_and(ok, inside)
                # minimum/maximum, not clip: an int clip becomes TF's Relu6, not a TFLite builtin.
                yc = ops.minimum(ops.maximum(yy, 0), h - 1)
                idx = ((bidx * h + yc) * w + ops.minimum(ops.maximum(xc, 0), w - 1)) * g + gidx
                v = ops.take(table, idx, axis=0)  # (N, Ho, Wo, G, Cg)
                term = ops.where(ok, wgt, 0.0)[..., None] * v
                val = term if val is None else val + term
            if msk is not None:
                val = msk[..., t][..., None] * val
            cols.append(ops.reshape(val, (n, ho, wo, c)))
        col = ops.stack(cols, axis=3)  # (N, Ho, Wo, taps, C)
        gw = self.groups
        cw = c // gw
        og = self.filters // gw
        rows = n * ho * wo
        if gw == 1:
            out = ops.matmul(ops.reshape(col, (rows, taps * c)), ops.reshape(self.kernel, (taps * c, self.filters)))
        else:
            col = ops.transpose(ops.reshape(col, (rows, taps, gw, cw)), (2, 0, 1, 3))
            col = ops.reshape(col, (gw, rows, taps * cw))
            kern = ops.transpose(ops.reshape(self.kernel, (taps, cw, gw, og)), (2, 0, 1, 3))
            kern = ops.reshape(kern, (gw, taps * cw, og))
            out = ops.reshape(ops.transpose(ops.matmul(col, kern), (1, 0, 2)), (rows, self.filters))
        if self.bias is not None:
            out = out + self.bias
        return ops.reshape(out, (n, ho, wo, self.filters))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "groups": self.groups, "offset_groups": self.offset_groups, "use_mask": self.use_mask,
                "use_bias": self.use_bias, "mask_data_format": self.mask_data_format}
