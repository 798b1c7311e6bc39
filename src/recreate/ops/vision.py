"""Op converters for torchvision's functional ops (optional dependency).

stochastic_depth (identity at inference), deform_conv2d, roi_align, roi_pool (through their
module converters, see recreate.converters.vision_ops), nms and batched_nms. Both the Python
functions (torchvision.ops.nms, ...) and the raw torch.ops.torchvision.* operators are
registered: fx records whichever it meets.

nms / batched_nms return a data-dependent number of indices; the converted graph returns a
fixed-size int32 vector instead: the kept indices in torchvision's order followed by -1
padding, as many entries as there are boxes (see recreate.layers.nms). Code after it that
indexes with the result (boxes[keep]) is therefore not traceable: end the converted graph at
the NMS, or recreate the post-processing by hand with `indices[:count]`.
"""

from __future__ import annotations

from .._backend import HAVE_TORCHVISION
from . import cases as C
from . import register_op

#: Functions fx must record as leaf calls (pass as fx.Tracer(autowrap_functions=AUTOWRAP)):
#: their bodies branch on tensor properties (boxes.is_quantized, boxes.numel() > 4000, input
#: shape unpacking), which fx cannot trace. fx autowraps calls through a module-level name
#: (`from torchvision.ops import nms; nms(...)`), not `torchvision.ops.nms(...)`.
AUTOWRAP: tuple = ()

if HAVE_TORCHVISION:
    import torch
    import torchvision
    from torchvision.ops import DeformConv2d, RoIAlign, RoIPool
    from torchvision.ops import stochastic_depth as _stochastic_depth

    from ..errors import ConversionError
    from ..layers.nms import NonMaxSuppression
    from ..trace import Value, identity
    from .builtin import constant_tensor

    @register_op(_stochastic_depth, cases=C.custom(C.stochastic_depth_build))
    def stochastic_depth(cx, x, p, mode, training=True):
        # Identity at inference, which is what is converted.
        return x

    def _pair(v):
        return (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)

    def _deform(cx, x, offset, weight, bias, stride, padding, dilation, mask):
        w = constant_tensor(weight, "weight")
        b = constant_tensor(bias, "bias")
        groups = x.shape[1] // w.shape[1]
        m = DeformConv2d(x.shape[1], w.shape[0], tuple(w.shape[-2:]), stride=_pair(stride), padding=_pair(padding),
                         dilation=_pair(dilation), groups=groups, bias=b is not None)
        with torch.no_grad():
            m.weight.copy_(w)
            if b is not None:
                m.bias.copy_(b)
        return cx.module(m, [x, offset] + ([mask] if mask is not None else []))

    @register_op(torchvision.ops.deform_conv2d, cases=C.custom(C.deform_conv2d_build))
    def deform_conv2d(cx, input, offset, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                      mask=None):
        return _deform(cx, input, offset, weight, bias, stride, padding, dilation, mask)

    @register_op(torch.ops.torchvision.deform_conv2d, torch.ops.torchvision.deform_conv2d.default,
                 cases=C.custom(C.deform_conv2d_aten_build))
    def deform_conv2d_aten(cx, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                           n_weight_grps, n_offset_grps, use_mask):
        return _deform(cx, input, offset, weight, bias, (stride_h, stride_w), (pad_h, pad_w), (dil_h, dil_w),
                       mask if use_mask else None)

    def _roi_input(cx, boxes):
        """Tensor[K, 5] as it is; a list of per-image Tensor[L_i, 4] becomes one Tensor[K, 5]
        with the image index prepended (torchvision's convert_boxes_to_roi_format)."""
        if isinstance(boxes, Value):
            return boxes
        parts = []
        for i, bx in enumerate(boxes):
            bx = cx.torch(bx)
            n = bx.shape[0]
            first = cx.op("getitem", [{"__tensor__": 0}, [[None, None, None], [0, 1, None]]], [bx], identity(2),
                          shape=(n, 1), dtype=bx.dtype)
            col = cx.op("full_like", [{"__tensor__": 0}, float(i)], [first], identity(2), shape=(n, 1), dtype=bx.dtype)
            parts.append(cx.op("concatenate", [[{"__tensor__": 0}, {"__tensor__": 1}], 1], [col, bx], identity(2),
                               shape=(n, 5), dtype=bx.dtype))
        if len(parts) == 1:
            return parts[0]
        total = sum(p.shape[0] for p in parts)
        return cx.op("concatenate", [[{"__tensor__": j} for j in range(len(parts))], 0], parts, identity(2),
                     shape=(total, 5), dtype=parts[0].dtype)

    @register_op(torchvision.ops.roi_align, cases=C.custom(C.roi_align_build))
    def roi_align(cx, input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        return cx.module(RoIAlign(output_size, spatial_scale, sampling_ratio, aligned), [input, _roi_input(cx, boxes)])

    @register_op(torch.ops.torchvision.roi_align, torch.ops.torchvision.roi_align.default,
                 cases=C.custom(C.roi_align_aten_build))
    def roi_align_aten(cx, input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
        return cx.module(RoIAlign((pooled_height, pooled_width), spatial_scale, sampling_ratio, aligned), [input, rois])

    @register_op(torchvision.ops.roi_pool, cases=C.custom(C.roi_pool_build))
    def roi_pool(cx, input, boxes, output_size, spatial_scale=1.0):
        return cx.module(RoIPool(output_size, spatial_scale), [input, _roi_input(cx, boxes)])

    @register_op(torch.ops.torchvision.roi_pool, torch.ops.torchvision.roi_pool.default)
    def roi_pool_aten(cx, input, rois, spatial_scale, pooled_height, pooled_width):
        # The raw op returns (output, argmax); argmax (training only) is not converted.
        raise ConversionError("torch.ops.torchvision.roi_pool (raw op, returns argmax too) is not converted: "
                              "call torchvision.ops.roi_pool or the RoIPool module")

    def _nms(cx, tensors, iou_threshold, batched):
        layer = NonMaxSuppression(float(iou_threshold), batched=batched, name=cx.conv.fresh(cx.node.name))
        k = tensors[0].shape[0]
        idx, _count = layer(*[cx.torch(t).t for t in tensors])
        return Value(idx, (0,), (k,), torch.int32)

    @register_op(torchvision.ops.nms, torch.ops.torchvision.nms, torch.ops.torchvision.nms.default)
    def nms(cx, boxes, scores, iou_threshold):
        return _nms(cx, [boxes, scores], iou_threshold, batched=False)

    @register_op(torchvision.ops.batched_nms)
    def batched_nms(cx, boxes, scores, idxs, iou_threshold):
        return _nms(cx, [boxes, scores, idxs], iou_threshold, batched=True)

    AUTOWRAP = (torchvision.ops.deform_conv2d, torchvision.ops.roi_align, torchvision.ops.roi_pool,
                torchvision.ops.nms, torchvision.ops.batched_nms)
