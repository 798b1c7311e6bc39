"""Keras-only helper functions for recreate.layers.Op (nn ATen ops); no torch here.

Weights arrive as tensors (Keras variables of the converted model), so these take the kernel,
scale and shift as operands rather than owning them. Inputs are channels-last where noted.
"""

from __future__ import annotations

from keras import ops

from ..conv_transpose import _pad_or_crop, _upsample_zeros


def _subsample(x, strides):
    """x[:, ::s0, ::s1, ..., :] over the spatial axes of a channels-last tensor."""
    if all(s == 1 for s in strides):
        return x
    return x[(slice(None), *(slice(None, None, s) for s in strides), slice(None))]


def _torch_conv(x, kernel, bias=None, strides=(1,), padding=(0,), dilation=(1,), groups=1):
    """torch's convolution on a channels-last x (N, *spatial, C_in) with a (*k, C_in / groups,
    C_out) kernel and symmetric integer padding; channels-last result.

    Strides run as a stride-1 convolution followed by subsampling where TensorFlow cannot be
    trusted with them (strides with dilation are refused; oneDNN returns zeros for some strided
    convolutions whose output is one element wide; see recreate.converters.conv)."""
    nd = len(x.shape) - 2
    ksize = [int(k) for k in kernel.shape[:nd]]
    strides, padding, dilation = list(strides), list(padding), list(dilation)
    spatial = [int(s) for s in x.shape[1:-1]]
    out = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(spatial, padding, dilation, ksize, strides)]
    same = (all(s == 1 for s in strides) and all(k % 2 == 1 for k in ksize)
            and all(p == d * (k - 1) // 2 for p, d, k in zip(padding, dilation, ksize)))
    if not same and any(padding):
        x = ops.pad(x, [(0, 0), *((p, p) for p in padding), (0, 0)])
    post = [1] * nd
    if any(s > 1 for s in strides) and (any(d > 1 for d in dilation) or any(o == 1 for s, o in zip(strides, out) if s > 1)):
        post, strides = strides, [1] * nd
    cin = x.shape[-1]
    cout = kernel.shape[-1]
    depthwise = groups > 1 and groups == cin and nd in (1, 2) and cout % cin == 0
    if depthwise and len(set(strides)) > 1:  # TensorFlow's depthwise conv needs equal strides
        post, strides = [p * s for p, s in zip(post, strides)], [1] * nd
    if depthwise:
        # depthwise: output channel j reads input channel j // m (torch), Keras: c * m + m_i
        k = ops.reshape(kernel, (*ksize, cin, cout // cin))
        y = ops.depthwise_conv(x, k, strides=tuple(strides), padding="same" if same else "valid",
                               dilation_rate=tuple(dilation))
    else:
        y = ops.conv(x, kernel, strides=tuple(strides), padding="same" if same else "valid",
                     dilation_rate=tuple(dilation))
    y = _subsample(y, post)
    if bias is not None:
        y = y + bias
    return y


def _torch_conv_transpose(x, kernel, bias=None, strides=(1,), padding=(0,), output_padding=(0,), dilation=(1,),
                          groups=1):
    """torch's transposed convolution on a channels-last x with a (*k, C_out / groups, C_in)
    kernel (torch's (C_in, C_out / groups, *k) weight with its axes moved like OIHW -> HWIO),
    as recreate.layers.ConvTranspose computes it: zero-upsample, pad or crop, stride-1
    convolution with the flipped kernel."""
    nd = len(x.shape) - 2
    ksize = [int(k) for k in kernel.shape[:nd]]
    for i in range(nd):
        s, k_eff = strides[i], dilation[i] * (ksize[i] - 1)
        x = _upsample_zeros(x, 1 + i, s)
        lo = k_eff - padding[i]
        hi = k_eff - padding[i] + output_padding[i] - (s - 1)
        x = _pad_or_crop(x, 1 + i, lo, hi)
    k = ops.flip(kernel, axis=tuple(range(nd)))
    out_g, cin = kernel.shape[-2], kernel.shape[-1]
    k = ops.reshape(k, (*ksize, out_g, groups, cin // groups))
    k = ops.transpose(k, (*range(nd), nd + 2, nd + 1, nd))
    k = ops.reshape(k, (*ksize, cin // groups, out_g * groups))
    y = ops.conv(x, k, strides=1, padding="valid", dilation_rate=tuple(dilation))
    if bias is not None:
        y = y + bias
    return y


def _torch_matmul(a, b):
    """torch.matmul: 1-D operands are promoted (and the added axis removed), batch axes
    broadcast."""
    if len(a.shape) == 1 and len(b.shape) == 1:
        return ops.sum(a * b)
    va, vb = len(a.shape) == 1, len(b.shape) == 1
    if va:
        a = ops.expand_dims(a, 0)
    if vb:
        b = ops.expand_dims(b, -1)
    y = ops.matmul(a, b)
    if va:
        y = ops.squeeze(y, -2)
    if vb:
        y = ops.squeeze(y, -1)
    return y


def _moments(x, axes):
    mean = ops.mean(x, axis=axes, keepdims=True)
    var = ops.mean(ops.square(x - mean), axis=axes, keepdims=True)
    return mean, var


def _torch_layer_norm(x, weight=None, bias=None, axes=(-1,), eps=1e-5):
    """Normalize over `axes` (biased variance); weight/bias broadcast over those trailing axes."""
    mean, var = _moments(x, list(axes))
    y = (x - mean) * ops.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _norm_stats(x, axes, eps, which):
    """mean or rstd over `axes` (keepdims), as native_layer_norm returns them."""
    mean, var = _moments(x, list(axes))
    return mean if which == "mean" else ops.rsqrt(var + eps)


def _torch_group_norm(x, weight=None, bias=None, groups=1, eps=1e-5, stat=None):
    """GroupNorm on a channels-last x (N, *spatial, C); `stat` "mean"/"rstd" returns that
    statistic, shape (N, groups), instead."""
    c = x.shape[-1]
    spatial = list(x.shape[1:-1])
    g = ops.reshape(x, (-1, *spatial, groups, c // groups))
    axes = [*range(1, len(spatial) + 1), len(spatial) + 2]
    mean, var = _moments(g, axes)
    if stat == "mean":
        return ops.reshape(mean, (-1, groups))
    if stat == "rstd":
        return ops.reshape(ops.rsqrt(var + eps), (-1, groups))
    y = ops.reshape((g - mean) * ops.rsqrt(var + eps), (-1, *spatial, c))
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _channel_shape(rank, axis, c):
    shape = [1] * rank
    shape[axis] = c
    return shape


def _torch_batch_norm(x, mean, var, weight=None, bias=None, axis=1, eps=1e-5):
    """Eval batch norm with the running statistics, channels on `axis`."""
    rank = len(x.shape)
    shape = _channel_shape(rank, axis, x.shape[axis])
    scale = ops.rsqrt(ops.reshape(var, shape) + eps)
    y = (x - ops.reshape(mean, shape)) * scale
    if weight is not None:
        y = y * ops.reshape(weight, shape)
    if bias is not None:
        y = y + ops.reshape(bias, shape)
    return y


def _torch_instance_norm(x, weight=None, bias=None, eps=1e-5):
    """InstanceNorm with the input's statistics on a channels-last x (N, *spatial, C)."""
    mean, var = _moments(x, list(range(1, len(x.shape) - 1)))
    y = (x - mean) * ops.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _torch_addmm(inp, a, b, beta=1.0, alpha=1.0):
    """beta * inp + alpha * (a @ b); beta == 0 ignores inp (NaN in it too), as torch does."""
    y = _torch_matmul(a, b)
    if alpha != 1:
        y = y * ops.cast(alpha, y.dtype)
    if beta == 0:
        return y
    if beta != 1:
        inp = inp * ops.cast(beta, inp.dtype)
    return y + inp


def _broadcast_pair(a, b):
    """a and b (same rank) broadcast to their common shape (axes may be dynamic)."""
    if tuple(a.shape) == tuple(b.shape):
        return a, b
    sa, sb = ops.shape(a), ops.shape(b)
    target = [sb[i] if a.shape[i] == 1 else sa[i] for i in range(len(a.shape))]
    return ops.broadcast_to(a, target), ops.broadcast_to(b, target)


def _torch_cosine_similarity(a, b, axis=1, eps=1e-8):
    """torch's cosine_similarity: the operands broadcast, each divided by its norm clamped at
    eps, multiplied and summed."""
    a, b = _broadcast_pair(a, b)
    na = ops.maximum(ops.sqrt(ops.sum(ops.square(a), axis=axis, keepdims=True)), eps)
    nb = ops.maximum(ops.sqrt(ops.sum(ops.square(b), axis=axis, keepdims=True)), eps)
    return ops.sum((a / na) * (b / nb), axis=axis)


def _torch_embedding_bag(weight, indices, offsets, per_sample_weights=None, mode="sum", padding_idx=None,
                         include_last_offset=False):
    """torch's _embedding_bag (1-D indices, 1-D offsets) with the weight as an operand: the
    bag arithmetic of recreate.layers.EmbeddingBag, applied to `weight`."""
    from types import MethodType, SimpleNamespace

    from ..embedding_bag import EmbeddingBag

    bag = SimpleNamespace(embeddings=weight, mode=mode, padding_idx=padding_idx,
                          include_last_offset=include_last_offset, max_norm=None)
    bag._fixed_bags = MethodType(EmbeddingBag._fixed_bags, bag)
    bag._offset_bags = MethodType(EmbeddingBag._offset_bags, bag)
    return EmbeddingBag.call(bag, indices, offsets, per_sample_weights)


def _grouped_mm(x, w, offs):
    """Rows of x (M, K) by expert: row r uses w[e] (E, K, N) where e is the number of
    experts whose end offset is <= r; rows past the last offset are 0. Every expert's
    product is computed and the right one kept (E x M x N; static shapes for TFLite/XLA)."""
    experts = w.shape[0]
    rows = ops.arange(ops.shape(x)[0], dtype="int32")
    ends = ops.cast(offs, "int32")
    which = ops.sum(ops.cast(ops.less_equal(ends[None, :], rows[:, None]), "int32"), axis=1)
    pick = ops.cast(ops.equal(which[:, None], ops.arange(experts, dtype="int32")[None, :]), x.dtype)
    every = ops.einsum("mk,ekn->emn", x, ops.cast(w, x.dtype))
    return ops.einsum("me,emn->mn", pick, every)


HELPERS: dict = {
    "aten_grouped_mm": _grouped_mm,
    "torch_embedding_bag": _torch_embedding_bag,
    "torch_conv": _torch_conv,
    "torch_conv_transpose": _torch_conv_transpose,
    "torch_matmul": _torch_matmul,
    "torch_addmm": _torch_addmm,
    "torch_layer_norm": _torch_layer_norm,
    "torch_norm_stats": _norm_stats,
    "torch_group_norm": _torch_group_norm,
    "torch_batch_norm": _torch_batch_norm,
    "torch_instance_norm": _torch_instance_norm,
    "torch_cosine_similarity": _torch_cosine_similarity,
}
