"""ATen op converters: nn (convolution, matmul family, normalization, pooling, resampling,
attention, and the rest of torch.nn.functional that reaches ATen outside registered modules).

Weights here are usually tensors (Keras variables of the converted model, or computed:
timm's weight-standardized convs), so the converters build from keras.ops on operands:
a conv kernel is the weight Value moved to (*k, in, out) by a layout change, not a layer
made from constant weights. Spatial ops run channels-last and return channels-last values.
Multi-output ops (native_layer_norm, max_pool2d_with_indices, ...) compute only the outputs
the graph uses.
"""

from __future__ import annotations

import operator

import torch

import numpy as np

from ..errors import ConversionError
from ..trace import Value, channels_last, identity, tensor
from . import register_op

aten = torch.ops.aten


def _overloads(*names):
    """The OpOverloads among `names` ("max_pool1d.default") this torch has."""
    out = []
    for n in names:
        name, overload = n.split(".")
        packet = getattr(aten, name, None)
        if packet is not None and hasattr(packet, overload):
            out.append(getattr(packet, overload))
    return out


def _used(cx, i: int) -> bool:
    """Whether output `i` of this multi-output node is read."""
    return any(u.target is operator.getitem and u.args[1] == i for u in cx.node.users)


def _multi(cx) -> bool:
    """Whether this node returns several tensors (its meta is a tuple of metas)."""
    m = cx.out_meta
    return isinstance(m, (list, tuple)) and not hasattr(m, "shape")


def _meta(cx, i: int):
    m = cx.out_meta[i]
    return tuple(m.shape), m.dtype


def _ints(v, n: int) -> list[int]:
    if isinstance(v, (list, tuple)):
        v = [int(a) for a in v]
        return v * n if len(v) == 1 else v
    return [int(v)] * n


def _template(values):
    """(template entries, tensors): Values become tensor slots, None stays None."""
    args, tensors = [], []
    for v in values:
        if isinstance(v, Value):
            args.append(tensor(len(tensors)))
            tensors.append(v)
        else:
            args.append(v)
    return args, tensors


def _cl(cx, x):
    return cx.to(x, channels_last(x.rank))


def _float(v):
    return float(v) if not isinstance(v, bool) else float(int(v))


# ---- convolution ------------------------------------------------------------------------------
@register_op(aten.convolution.default)
def convolution(cx, x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    nd = weight.rank - 2
    if nd not in (1, 2, 3) or x.rank != nd + 2:
        raise ConversionError(f"convolution of a rank-{x.rank} input with a rank-{weight.rank} weight: "
                              "only (N, C, *1-3 spatial) inputs are converted")
    if any(s == 0 for s in x.shape[1:]):
        raise ConversionError(f"convolution of an input with an empty axis {x.shape}")
    # torch OIHW (conv) or (in, out/groups, *k) (transposed) -> (*k, I, O) / (*k, out/groups, in)
    k = cx.to(weight, (*range(2, nd + 2), 1, 0))
    x = _cl(cx, x)
    stride, padding, dilation = _ints(stride, nd), _ints(padding, nd), _ints(dilation, nd)
    args, tensors = _template([x, k, bias])
    kwargs = {"strides": stride, "padding": padding, "dilation": dilation, "groups": int(groups)}
    if transposed:
        kwargs["output_padding"] = _ints(output_padding, nd)
        return cx.op("torch_conv_transpose", args, tensors, channels_last(x.rank), kwargs=kwargs)
    return cx.op("torch_conv", args, tensors, channels_last(x.rank), kwargs=kwargs)


# ---- matmul family ----------------------------------------------------------------------------
def _matmul(cx, a, b):
    a, b = cx.torch(a), cx.torch(b)
    return cx.op("torch_matmul", [tensor(0), tensor(1)], [a, b], identity(len(cx.out_shape)))


@register_op(aten.mm.default, aten.bmm.default, aten.matmul.default)
def matmul(cx, a, b):
    return _matmul(cx, a, b)


@register_op(*_overloads("_grouped_mm.default"), "transformers::grouped_mm_fallback")
def grouped_mm(cx, x, w, offs=None, bias=None, out_dtype=None):
    """Mixture-of-experts matmul (torch._grouped_mm, Hugging Face's grouped_mm_fallback): the
    rows of x (M, K) are sorted by expert, offs holds each expert's end row, and rows
    [offs[e-1], offs[e]) are multiplied by w[e] (E, K, N); rows past the last end are 0.
    3-d x 3-d without offs is a batched matmul."""
    if out_dtype is not None and out_dtype != x.dtype:
        raise ConversionError(f"grouped_mm with out_dtype={out_dtype} is not supported")
    x, w = cx.torch(x), cx.torch(w)
    if offs is None:
        if x.rank != 3 or w.rank != 3:
            raise ConversionError(f"grouped_mm without offs needs 3-d operands, got {x.shape} and {w.shape}")
        y = cx.op("torch_matmul", [tensor(0), tensor(1)], [x, w], identity(3))
    else:
        if x.rank != 2 or w.rank != 3:
            raise ConversionError(f"grouped_mm with offs is converted for a 2-d input and 3-d expert weights, "
                                  f"got {x.shape} and {w.shape}")
        y = cx.op("aten_grouped_mm", [tensor(0), tensor(1), tensor(2)], [x, w, cx.torch(offs)], identity(2))
    if bias is not None:
        raise ConversionError("grouped_mm with a bias is not supported")
    return y


@register_op(aten.linear.default)
def linear(cx, x, weight, bias=None):
    # Keep x's axis order when its last torch axis is last on the Keras side too.
    if x.rank < 2 or x.perm[-1] != x.rank - 1:
        x = cx.torch(x)
    wt = cx.to(weight, (1, 0)) if weight.rank == 2 else weight
    perm = x.perm[:-1] + ((x.rank - 1,) if weight.rank == 2 else ())
    if x.rank == 1:
        perm = identity(len(cx.out_shape))
    args, tensors = _template([x, wt])
    y = cx.op("torch_matmul", args, tensors, perm)
    if bias is not None:
        if bias.rank > 1 or (bias.rank == 1 and len(cx.out_shape) > 1 and perm[-1] != len(cx.out_shape) - 1):
            y = cx.torch(y)
            perm = identity(len(cx.out_shape))
        y = cx.op("add", [tensor(0), tensor(1)], [y, bias], perm)
    return y


@register_op(aten.addmm.default, aten.baddbmm.default, *_overloads("addmv.default", "addbmm.default"))
def addmm(cx, inp, a, b, *, beta=1, alpha=1):
    target = cx.node.target
    a, b = cx.torch(a), cx.torch(b)
    out_rank = len(cx.out_shape)
    if target in _overloads("addbmm.default"):
        prod = cx.op("torch_matmul", [tensor(0), tensor(1)], [a, b], identity(3),
                     shape=(a.shape[0], a.shape[1], b.shape[2]))
        prod = cx.op("sum", [tensor(0)], [prod], identity(2), shape=(a.shape[1], b.shape[2]), kwargs={"axis": 0})
        a = prod
        b = None
    if not isinstance(inp, Value):
        inp = cx.const(np.asarray(inp, dtype=np.float32))
    inp = cx.torch(inp)
    if inp.rank < out_rank:
        full = (1,) * (out_rank - inp.rank) + inp.shape
        inp = cx.op("reshape", [tensor(0), list(full)], [inp], identity(out_rank), shape=full, dtype=inp.dtype)
    if b is None:
        return _axpby(cx, inp, a, beta, alpha)
    return cx.op("torch_addmm", [tensor(0), tensor(1), tensor(2)], [inp, a, b], identity(out_rank),
                 kwargs={"beta": _float(beta), "alpha": _float(alpha)})


def _axpby(cx, inp, y, beta, alpha):
    """beta * inp + alpha * y (addbmm after its batch sum)."""
    if alpha != 1:
        y = cx.op("multiply", [tensor(0), _float(alpha)], [y], y.perm)
    if beta == 0:
        return y
    if beta != 1:
        inp = cx.op("multiply", [tensor(0), _float(beta)], [inp], inp.perm)
    return cx.op("add", [tensor(0), tensor(1)], [y, inp], identity(len(cx.out_shape)))


@register_op(aten.einsum.default)
def einsum(cx, equation, tensors, *, path=None):
    return einsum_op(cx, equation, tensors)


def einsum_op(cx, equation: str, operands):
    """torch.einsum as keras.ops.einsum. An explicit output without "..." sums the operands'
    broadcast ("...") axes, which TensorFlow's einsum refuses ("...ik,...j->ij" of (1, 2, 3)
    and (3,)): the einsum keeps them in front, a sum takes them off."""
    equation = equation.replace(" ", "")
    ops = [cx.torch(v) for v in operands]
    lhs, arrow, out = equation.partition("->")
    subs = lhs.split(",")
    n_ell = max((v.rank - len(sub.replace("...", "")) for v, sub in zip(ops, subs) if "..." in sub), default=0)
    out_rank = len(cx.out_shape)
    if not arrow or "..." in out or n_ell <= 0:
        return cx.op("einsum", [equation, *(tensor(i) for i in range(len(ops)))], ops, identity(out_rank))
    full_shape = (*[None] * n_ell, *cx.out_shape)
    y = cx.op("einsum", [f"{lhs}->...{out}", *(tensor(i) for i in range(len(ops)))], ops,
              identity(out_rank + n_ell), shape=full_shape)
    return cx.op("sum", [tensor(0)], [y], identity(out_rank), kwargs={"axis": list(range(n_ell))})


# ---- normalization ----------------------------------------------------------------------------
def _trailing_layout(cx, x, k: int):
    """x as is when its last k torch axes are its last k Keras axes in order, else torch layout."""
    if x.perm[x.rank - k:] == tuple(range(x.rank - k, x.rank)):
        return x
    return cx.torch(x)


def _layer_norm(cx, x, normalized_shape, weight, bias, eps):
    k = len(normalized_shape)
    x = _trailing_layout(cx, x, k)
    axes = list(range(x.rank - k, x.rank))
    args, tensors = _template([x, weight, bias])
    return x, axes, cx.op("torch_layer_norm", args, tensors, x.perm, shape=x.shape, dtype=x.dtype,
                          kwargs={"axes": axes, "eps": float(eps)})


@register_op(aten.layer_norm.default)
def layer_norm(cx, x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    return _layer_norm(cx, x, normalized_shape, weight, bias, eps)[2]


@register_op(aten.native_layer_norm.default)
def native_layer_norm(cx, x, normalized_shape, weight, bias, eps):
    x, axes, y = _layer_norm(cx, x, normalized_shape, weight, bias, eps)
    out = [y, None, None]
    for i, which in ((1, "mean"), (2, "rstd")):
        if _used(cx, i):
            shape, dtype = _meta(cx, i)
            out[i] = cx.op("torch_norm_stats", [tensor(0)], [x], x.perm, shape=shape, dtype=dtype,
                           kwargs={"axes": axes, "eps": float(eps), "which": which})
    return tuple(out)


def _group_norm(cx, x, groups, weight, bias, eps, stat=None, shape=None, dtype=None):
    if x.rank < 2:
        raise ConversionError(f"group_norm of a rank-{x.rank} input: (N, C, *) is needed")
    x = _cl(cx, x)
    args, tensors = _template([x, weight, bias])
    perm = identity(2) if stat else channels_last(x.rank)
    return cx.op("torch_group_norm", args, tensors, perm, shape=shape or x.shape, dtype=dtype or x.dtype,
                 kwargs={"groups": int(groups), "eps": float(eps), "stat": stat})


@register_op(aten.group_norm.default)
def group_norm(cx, x, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    return _group_norm(cx, x, num_groups, weight, bias, eps)


@register_op(aten.native_group_norm.default)
def native_group_norm(cx, x, weight, bias, n, c, hxw, group, eps):
    out = [_group_norm(cx, x, group, weight, bias, eps), None, None]
    for i, which in ((1, "mean"), (2, "rstd")):
        if _used(cx, i):
            shape, dtype = _meta(cx, i)
            out[i] = _group_norm(cx, x, group, None, None, eps, stat=which, shape=shape, dtype=dtype)
    return tuple(out)


def _batch_norm_eval(cx, x, weight, bias, mean, var, eps):
    if mean is None or var is None:
        raise ConversionError("batch_norm without running statistics normalizes with the batch's own statistics "
                              "(training mode); call model.eval() or give running_mean/running_var")
    if x.rank < 2:
        raise ConversionError(f"batch_norm of a rank-{x.rank} input: (N, C, *) is needed")
    args, tensors = _template([x, cx.torch(mean), cx.torch(var), weight, bias])
    return cx.op("torch_batch_norm", args, tensors, x.perm, shape=x.shape, dtype=x.dtype,
                 kwargs={"axis": x.keras_axis(1), "eps": float(eps)})


def _stats_outputs(cx, y):
    """(out, save_mean, save_rstd) of a batch norm in eval mode: torch returns empty tensors."""
    out = [y, None, None]
    for i in (1, 2):
        if _used(cx, i):
            shape, _ = _meta(cx, i)
            out[i] = cx.const(np.zeros(shape, dtype=np.float32))
    return tuple(out)


@register_op(aten._native_batch_norm_legit_no_training.default)
def native_batch_norm_no_training(cx, x, weight, bias, running_mean, running_var, momentum, eps):
    return _stats_outputs(cx, _batch_norm_eval(cx, x, weight, bias, running_mean, running_var, eps))


@register_op(*_overloads("_native_batch_norm_legit_functional.default", "native_batch_norm.default",
                         "_native_batch_norm_legit.default"))
def native_batch_norm(cx, x, weight, bias, running_mean, running_var, training, momentum, eps):
    if training:
        raise ConversionError("batch_norm in training mode (batch statistics) cannot be converted; call model.eval()")
    y = _batch_norm_eval(cx, x, weight, bias, running_mean, running_var, eps)
    if cx.node.target in _overloads("_native_batch_norm_legit_functional.default"):
        # (out, save_mean, save_rstd, new_running_mean, new_running_var): the stats unchanged
        return (*_stats_outputs(cx, y), running_mean, running_var)
    return _stats_outputs(cx, y)


@register_op(*_overloads("_native_batch_norm_legit.no_stats"))
def native_batch_norm_no_stats(cx, *args, **kwargs):
    raise ConversionError("batch_norm without running statistics (batch statistics, training mode) cannot be "
                          "converted; call model.eval() or track running statistics")


@register_op(*_overloads("batch_norm.default"))
def batch_norm(cx, x, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled=True):
    if training:
        raise ConversionError("batch_norm in training mode (batch statistics) cannot be converted; call model.eval()")
    return _batch_norm_eval(cx, x, weight, bias, running_mean, running_var, eps)


@register_op(aten.instance_norm.default)
def instance_norm(cx, x, weight, bias, running_mean, running_var, use_input_stats, momentum, eps,
                  cudnn_enabled=True):
    if not use_input_stats:
        return _batch_norm_eval(cx, x, weight, bias, running_mean, running_var, eps)
    if x.rank < 3:
        raise ConversionError(f"instance_norm of a rank-{x.rank} input: (N, C, *spatial) is needed")
    x = _cl(cx, x)
    args, tensors = _template([x, weight, bias])
    return cx.op("torch_instance_norm", args, tensors, x.perm, kwargs={"eps": float(eps)})


# ---- pooling ----------------------------------------------------------------------------------
def _batched(cx, x, nd: int, name: str):
    """(x with a batch axis, whether one was added): torch's pools take unbatched (C, *spatial)."""
    if x.rank == nd + 2:
        return x, False
    if x.rank != nd + 1:
        raise ConversionError(f"{name} of a rank-{x.rank} input: (N, C, *{nd} spatial) or (C, *{nd} spatial) "
                              "is needed")
    x = cx.torch(x)
    shape = (1, *x.shape)
    return cx.op("expand_dims", [tensor(0), 0], [x], identity(len(shape)), shape=shape, dtype=x.dtype), True


def _unbatch(cx, v, added: bool):
    if not added or v is None:
        return v
    v = cx.torch(v)
    return cx.op("squeeze", [tensor(0), 0], [v], identity(v.rank - 1), shape=v.shape[1:], dtype=v.dtype)


def _apply(cx, layer, x, shapes_dtypes):
    """Call a channels-last pooling layer; Values (channels-last) for its outputs."""
    layer.name = cx.conv.fresh(cx.node.name)
    out = layer(x.t)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [Value(t, channels_last(len(s)), tuple(s), d) for t, (s, d) in zip(outs, shapes_dtypes)]


def _pool_shapes(cx, x, n_out: int, added: bool):
    res = []
    for i in range(n_out):
        shape, dtype = _meta(cx, i) if _multi(cx) else (cx.out_shape, cx.out_dtype)
        res.append(((1, *shape) if added else shape, dtype))
    return res


def _max_pool(nd: int):
    def conv(cx, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
        from ..layers.max_pool import MaxPooling

        name = str(cx.node.target)
        x, added = _batched(cx, x, nd, name)
        if 0 in x.shape:
            raise ConversionError(f"{name} of an input with an empty axis {x.shape}")
        multi = _multi(cx)
        indices = multi and _used(cx, 1)
        k = _ints(kernel_size, nd)
        layer = MaxPooling(k, strides=_ints(stride, nd) if stride else k, padding=_ints(padding, nd),
                           dilation=_ints(dilation, nd), ceil_mode=bool(ceil_mode), return_indices=indices)
        shapes = _pool_shapes(cx, x, 2 if indices else 1, added)
        outs = [_unbatch(cx, v, added) for v in _apply(cx, layer, _cl(cx, x), shapes)]
        if not multi:
            return outs[0]
        return (outs[0], outs[1] if indices else None)

    return conv


register_op(aten.max_pool2d_with_indices.default, *_overloads("max_pool2d.default"))(_max_pool(2))
register_op(aten.max_pool3d_with_indices.default, *_overloads("max_pool3d.default"))(_max_pool(3))
register_op(*_overloads("max_pool1d.default", "max_pool1d_with_indices.default"))(_max_pool(1))


def _avg_pool(nd: int):
    def conv(cx, x, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None):
        from ..layers.avg_pool import AveragePooling

        name = str(cx.node.target)
        x, added = _batched(cx, x, nd, name)
        if 0 in x.shape:
            raise ConversionError(f"{name} of an input with an empty axis {x.shape}")
        k = _ints(kernel_size, nd)
        layer = AveragePooling(k, strides=_ints(stride, nd) if stride else k, padding=_ints(padding, nd),
                               ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
                               divisor_override=divisor_override)
        (y,) = _apply(cx, layer, _cl(cx, x), _pool_shapes(cx, x, 1, added))
        return _unbatch(cx, y, added)

    return conv


register_op(aten.avg_pool2d.default)(_avg_pool(2))
register_op(aten.avg_pool3d.default)(_avg_pool(3))
register_op(*_overloads("avg_pool1d.default"))(_avg_pool(1))


def _adaptive(nd: int, mode: str):
    def conv(cx, x, output_size):
        from ..layers.adaptive_pool import AdaptivePooling

        name = str(cx.node.target)
        x, added = _batched(cx, x, nd, name)
        if 0 in x.shape:
            raise ConversionError(f"{name} of an input with an empty axis {x.shape}")
        multi = _multi(cx)
        indices = multi and _used(cx, 1)
        layer = AdaptivePooling(_ints(output_size, nd), mode=mode, return_indices=indices)
        shapes = _pool_shapes(cx, x, 2 if indices else 1, added)
        outs = [_unbatch(cx, v, added) for v in _apply(cx, layer, _cl(cx, x), shapes)]
        if not multi:
            return outs[0]
        return (outs[0], outs[1] if indices else None)

    return conv


register_op(aten._adaptive_avg_pool2d.default, *_overloads("adaptive_avg_pool2d.default"))(_adaptive(2, "avg"))
register_op(aten._adaptive_avg_pool3d.default, *_overloads("adaptive_avg_pool3d.default"))(_adaptive(3, "avg"))
register_op(*_overloads("adaptive_avg_pool1d.default"))(_adaptive(1, "avg"))
register_op(aten.adaptive_max_pool2d.default)(_adaptive(2, "max"))
register_op(aten.adaptive_max_pool3d.default)(_adaptive(3, "max"))
register_op(*_overloads("adaptive_max_pool1d.default"))(_adaptive(1, "max"))


# ---- resampling -------------------------------------------------------------------------------
def _upsample(mode: str, nd: int, aligned: bool):
    def conv(cx, x, output_size, *rest):
        from ..layers.interpolate import Interpolate

        align = bool(rest[0]) if aligned else None
        scales = rest[1] if aligned else (rest[0] if rest else None)
        if x.rank != nd + 2:
            raise ConversionError(f"{cx.node.target} of a rank-{x.rank} input: (N, C, *{nd} spatial) is needed")
        if output_size is not None:
            layer = Interpolate(size=_ints(output_size, nd), mode=mode, align_corners=align)
        else:
            layer = Interpolate(scale_factor=[float(s) for s in scales], mode=mode, align_corners=align)
        return cx.layer(layer, [_cl(cx, x)], channels_last(x.rank))

    return conv


for _name, _mode, _nd, _aligned in [
        ("upsample_nearest1d", "nearest", 1, False), ("upsample_nearest2d", "nearest", 2, False),
        ("upsample_nearest3d", "nearest", 3, False), ("_upsample_nearest_exact1d", "nearest-exact", 1, False),
        ("_upsample_nearest_exact2d", "nearest-exact", 2, False),
        ("_upsample_nearest_exact3d", "nearest-exact", 3, False), ("upsample_linear1d", "linear", 1, True),
        ("upsample_bilinear2d", "bilinear", 2, True), ("upsample_bicubic2d", "bicubic", 2, True),
        ("upsample_trilinear3d", "trilinear", 3, True)]:
    register_op(*_overloads(f"{_name}.vec"))(_upsample(_mode, _nd, _aligned))


_GRID_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
_GRID_PADDING = {0: "zeros", 1: "border", 2: "reflection"}


@register_op(aten.grid_sampler.default, aten.grid_sampler_2d.default, aten.grid_sampler_3d.default)
def grid_sampler(cx, x, grid, interpolation_mode, padding_mode, align_corners):
    from ..layers.grid_sample import GridSample

    if int(interpolation_mode) not in _GRID_MODES or int(padding_mode) not in _GRID_PADDING:
        raise ConversionError(f"grid_sampler mode {interpolation_mode} / padding {padding_mode} is not a torch mode")
    if x.rank not in (4, 5) or 0 in x.shape or 0 in grid.shape:
        raise ConversionError(f"grid_sampler of input {x.shape}, grid {grid.shape}: (N, C, H, W[, D]) inputs "
                              "without empty axes are converted")
    layer = GridSample(_GRID_MODES[int(interpolation_mode)], _GRID_PADDING[int(padding_mode)], bool(align_corners))
    return cx.layer(layer, [_cl(cx, x), cx.torch(grid)], channels_last(len(cx.out_shape)))


# ---- attention, rearrangement, misc -----------------------------------------------------------
@register_op(aten.scaled_dot_product_attention.default)
def scaled_dot_product_attention(cx, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None,
                                 enable_gqa=False):
    from .builtin import scaled_dot_product_attention as sdpa

    return sdpa(cx, q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)


@register_op(aten.pixel_shuffle.default, aten.pixel_unshuffle.default)
def pixel_shuffle(cx, x, factor):
    from ..layers.pixel_shuffle import PixelShuffle, PixelUnshuffle

    cls = PixelUnshuffle if cx.node.target is aten.pixel_unshuffle.default else PixelShuffle
    if x.rank < 3:
        raise ConversionError(f"{cx.node.target} of a rank-{x.rank} input: (*, C, H, W) is needed")
    if x.rank == 4:
        return cx.layer(cls(int(factor), channels_last=True), [_cl(cx, x)], channels_last(4))
    return cx.layer(cls(int(factor), channels_last=False), [cx.torch(x)], identity(len(cx.out_shape)))


@register_op(aten.native_dropout.default)
def native_dropout(cx, x, p, train):
    if train and p > 0:
        raise ConversionError(f"dropout(p={p}) in training mode zeroes values at random; call model.eval() "
                              "(or pass training=False)")
    mask = None
    if _used(cx, 1):
        shape, _ = _meta(cx, 1)
        mask = cx.const(np.ones(shape, dtype=bool))
    return x, mask


@register_op(aten.cosine_similarity.default)
def cosine_similarity(cx, a, b, dim=1, eps=1e-8):
    rank = len(cx.out_shape) + 1
    vals = []
    for v in (a, b):
        v = cx.torch(v)
        if v.rank < rank:
            full = (1,) * (rank - v.rank) + v.shape
            v = cx.op("reshape", [tensor(0), list(full)], [v], identity(rank), shape=full, dtype=v.dtype)
        vals.append(v)
    if any(not np.issubdtype(np.dtype(str(v.dtype).replace("torch.", "")), np.floating) for v in vals):
        vals = [cx.op("cast", [tensor(0), "float32"], [v], v.perm, shape=v.shape, dtype=torch.float32)
                for v in vals]
    return cx.op("torch_cosine_similarity", [tensor(0), tensor(1)], vals, identity(rank - 1),
                 kwargs={"axis": int(dim) % rank, "eps": float(eps)})


@register_op(*_overloads("col2im.default"))
def col2im(cx, x, output_size, kernel_size, dilation, padding, stride):
    from ..layers.fold import Fold

    if x.rank != 3:
        raise ConversionError(f"col2im (F.fold) of a rank-{x.rank} input: (N, C * prod(kernel), L) is needed")
    layer = Fold(_ints(output_size, 2), _ints(kernel_size, 2), _ints(dilation, 2), _ints(padding, 2),
                 _ints(stride, 2), channels_last=True)
    return cx.layer(layer, [cx.torch(x)], channels_last(4))


_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


@register_op(*_overloads("_embedding_bag_forward_only.default", "_embedding_bag.default"))
def embedding_bag(cx, weight, indices, offsets, scale_grad_by_freq=False, mode=0, sparse=False,
                  per_sample_weights=None, include_last_offset=False, padding_idx=-1):
    if any(_used(cx, i) for i in (1, 2, 3)):
        raise ConversionError("embedding_bag's offset2bag / bag_size / max_indices outputs are not converted "
                              "(only the bags)")
    if indices.rank != 1 or offsets.rank != 1:
        raise ConversionError(f"_embedding_bag with indices {indices.shape}, offsets {offsets.shape}: 1-D expected")
    pad = None if padding_idx is None or int(padding_idx) < 0 else int(padding_idx)
    args, tensors = _template([cx.torch(weight), indices, offsets, per_sample_weights])
    shape, dtype = _meta(cx, 0)
    out = cx.op("torch_embedding_bag", args, tensors, identity(2), shape=shape, dtype=dtype,
                kwargs={"mode": _BAG_MODES[int(mode)], "padding_idx": pad,
                        "include_last_offset": bool(include_last_offset)})
    return (out, None, None, None)
