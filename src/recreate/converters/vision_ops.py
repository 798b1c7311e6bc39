"""torchvision's detection and deformable ops: DeformConv2d, RoIAlign, RoIPool, FrozenBatchNorm2d.

Registered only when torchvision imports. Every layer reads and writes channels-last: the
feature map, DeformConv2d's offset and mask (torch's channel order, moved to channels-last:
see recreate.layers.deform_conv), and the pooled RoI features (K, oh, ow, C); RoI boxes
(K, 5) are rank 2 and pass unchanged. torchvision's containers (Conv2dNormActivation,
Conv3dNormActivation, SqueezeExcitation, MLP) and StochasticDepth are not registered: the
tracer converts their children (StochasticDepth through its functional op, identity at
inference). nms / batched_nms have no module: see recreate.ops.vision and
recreate.layers.nms.
"""

from __future__ import annotations

import math

import numpy as np

from .._backend import HAVE_TORCHVISION, keras

if HAVE_TORCHVISION:
    from torchvision.ops import DeformConv2d, RoIAlign, RoIPool
    from torchvision.ops.misc import FrozenBatchNorm2d

    from hypothesis import strategies as st

    from ..errors import ConversionError
    from ..layers.deform_conv import DeformConv2D
    from ..layers.roi_align import RoIAlign as KerasRoIAlign
    from ..layers.roi_pool import RoIPool as KerasRoIPool
    from ..registry import Map, WeightRules, register
    from ..testing.cases import SEEDS, Case, randomize_
    from ..transforms import CONV_KERNEL
    from .norm import BATCH_NORM_RULES

    DEFORM_CONV_RULES = WeightRules((Map("kernel", "weight", CONV_KERNEL), Map("bias", "bias", fill=0.0)))

    # ---- DeformConv2d -------------------------------------------------------------------
    def _divisors(n: int) -> list[int]:
        return [d for d in range(1, n + 1) if n % d == 0]

    def deform_out_size(size: int, k: int, s: int, p: int, d: int) -> int:
        return (size + 2 * p - (d * (k - 1) + 1)) // s + 1

    def _deform_cases(torch_type):
        @st.composite
        def case(draw):
            groups = draw(st.integers(1, 3))
            cin = groups * draw(st.integers(1, 3))
            cout = groups * draw(st.integers(1, 3))
            og = draw(st.sampled_from(_divisors(cin)))
            k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
            s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
            p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
            d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
            eff = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
            hw = [draw(st.integers(max(1, e - 2 * pp), max(1, e - 2 * pp) + 5)) for e, pp in zip(eff, p)]
            ho, wo = (deform_out_size(hw[i], k[i], s[i], p[i], d[i]) for i in range(2))
            square = k[0] == k[1] and draw(st.booleans())
            m = torch_type(cin, cout, k[0] if square else k, stride=s, padding=p, dilation=d, groups=groups,
                           bias=draw(st.booleans()))
            seed = draw(SEEDS)
            randomize_(m, seed)
            rng = np.random.default_rng(seed + 1)
            n = draw(st.integers(1, 2))
            scale = draw(st.sampled_from([0.5, 2.0, 4.0]))  # 4: many points fall outside the image
            x = rng.standard_normal((n, cin, *hw)).astype(np.float32)
            off = (rng.standard_normal((n, 2 * og * k[0] * k[1], ho, wo)) * scale).astype(np.float32)
            inputs = (x, off)
            if draw(st.booleans()):
                inputs += (rng.uniform(-1, 1.5, (n, og * k[0] * k[1], ho, wo)).astype(np.float32),)
            return Case(m, inputs)

        return case()

    @register(DeformConv2d, cases=_deform_cases, rules={DeformConv2D: DEFORM_CONV_RULES})
    def deform_conv(m, ctx):
        shapes = ctx.input_shapes
        kh, kw = m.kernel_size
        use_mask = len(shapes) >= 3 or "mask" in ctx.tensor_kwargs
        if len(shapes) >= 2:
            per = 2 * kh * kw
            if shapes[1][1] % per:
                raise ConversionError(f"DeformConv2d offset has {shapes[1][1]} channels, not a multiple of "
                                      f"2 * kernel_h * kernel_w = {per}")
            og = shapes[1][1] // per
        else:
            raise ConversionError("DeformConv2d needs its offset tensor as the second positional input")
        if "offset" in ctx.tensor_kwargs:
            raise ConversionError("DeformConv2d: pass offset positionally")
        return DeformConv2D(m.out_channels, m.kernel_size, strides=m.stride, padding=m.padding,
                            dilation_rate=m.dilation, groups=m.groups, offset_groups=og, use_mask=use_mask,
                            use_bias=m.bias is not None,
                            mask_data_format="channels_first" if "mask" in ctx.tensor_kwargs else "channels_last")

    # ---- RoIAlign / RoIPool ---------------------------------------------------------------
    def _rois(draw, rng, n: int, h: int, w: int, scale: float, inside: bool) -> np.ndarray:
        """(K, 5) RoIs in image coordinates: partly outside, tiny, degenerate and inverted
        boxes unless `inside` (then within the feature map once scaled)."""
        k = draw(st.integers(1, 6))
        hi_w, hi_h = w / scale, h / scale
        if inside:
            a = rng.uniform(0, 1, (k, 2)) * [hi_w, hi_h]
            b = rng.uniform(0, 1, (k, 2)) * [hi_w, hi_h]
            x1y1, x2y2 = np.minimum(a, b), np.maximum(a, b)
        else:
            x1y1 = rng.uniform(-0.5, 1.2, (k, 2)) * [hi_w, hi_h]
            x2y2 = x1y1 + rng.uniform(-0.2, 1.0, (k, 2)) * [hi_w, hi_h]
        kind = rng.integers(0, 4, k)
        x2y2 = np.where((kind == 0)[:, None], x1y1, x2y2)  # degenerate (zero size)
        x2y2 = np.where((kind == 1)[:, None], x1y1 + 0.05, x2y2)  # tiny
        if inside:
            x2y2 = np.minimum(x2y2, [hi_w, hi_h])
        idx = rng.integers(0, n, (k, 1))
        return np.concatenate([idx, x1y1, x2y2], axis=1).astype(np.float32)

    def _roi_cases(torch_type):
        @st.composite
        def case(draw):
            out = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
            scale = draw(st.sampled_from([1.0, 0.5, 0.25, 2.0]))
            n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
            h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
            osize = out if draw(st.booleans()) or out[0] != out[1] else out[0]
            if torch_type is RoIAlign:
                ratio = draw(st.sampled_from([-1, 0, 1, 2, 3]))
                m = torch_type(osize, scale, ratio, aligned=draw(st.booleans()))
                inside = ratio <= 0
            else:
                m = torch_type(osize, scale)
                inside = False
            seed = draw(SEEDS)
            rng = np.random.default_rng(seed)
            x = rng.standard_normal((n, c, h, w)).astype(np.float32)
            return Case(m.eval(), (x, _rois(draw, rng, n, h, w, scale, inside)))

        return case()

    def _rois_tensor(ctx, what: str):
        if len(ctx.input_shapes) != 2 or len(ctx.input_shapes[1]) != 2 or ctx.input_shapes[1][1] != 5:
            raise ConversionError(f"{what} converts with boxes as one Tensor[K, 5] (batch index, x1, y1, x2, y2); "
                                  f"got input shapes {ctx.input_shapes}. Concatenate a list of per-image boxes "
                                  "with torchvision.ops._utils.convert_boxes_to_roi_format first")

    def _pair(v):
        return (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)

    def adaptive_sampling_bound(feature_shape, output_size) -> int:
        """A static bound on torchvision's adaptive grid, ceil(roi_size / output_size), exact
        for every RoI inside the (scaled) feature map."""
        h, w = feature_shape[-2], feature_shape[-1]
        oh, ow = output_size
        return max(1, math.ceil(h / oh), math.ceil(w / ow))

    @register(RoIAlign, cases=_roi_cases)
    def roi_align(m, ctx):
        _rois_tensor(ctx, "RoIAlign")
        out = _pair(m.output_size)
        bound = None if m.sampling_ratio > 0 else adaptive_sampling_bound(ctx.input_shapes[0], out)
        return KerasRoIAlign(out, m.spatial_scale, m.sampling_ratio, m.aligned, max_sampling_ratio=bound)

    @register(RoIPool, cases=_roi_cases)
    def roi_pool(m, ctx):
        _rois_tensor(ctx, "RoIPool")
        h, w = ctx.input_shapes[0][-2:]
        return KerasRoIPool(_pair(m.output_size), m.spatial_scale, max_bin_size=(h, w))

    # ---- FrozenBatchNorm2d ----------------------------------------------------------------
    def _frozen_bn_cases(torch_type):
        @st.composite
        def case(draw):
            c = draw(st.integers(1, 5))
            m = torch_type(c, eps=draw(st.sampled_from([1e-5, 1e-3, 0.1, 0.0])))
            seed = draw(SEEDS)
            randomize_(m, seed)
            shape = (draw(st.integers(1, 2)), c, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
            x = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
            return Case(m, (x,))

        return case()

    @register(FrozenBatchNorm2d, cases=_frozen_bn_cases,
              rules={keras.layers.BatchNormalization: BATCH_NORM_RULES})
    def frozen_batch_norm(m):
        # x * (w * rsqrt(var + eps)) + (b - mean * w * rsqrt(var + eps)): Keras's inference formula.
        return keras.layers.BatchNormalization(axis=-1, epsilon=float(m.eps))
