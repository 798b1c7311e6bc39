"""Op converters for torch.nn.functional calls (and a few torch reductions) that have a module
counterpart or a short keras.ops form:

- F.conv1d/2d/3d, F.conv_transpose1d/2d/3d: through nn.ConvNd / nn.ConvTransposeNd with the
  call's weight and bias copied (they must be model parameters or buffers);
- F.group_norm, F.instance_norm, F.pixel_shuffle/unshuffle, F.unfold, F.fold, the
  adaptive max pools (with indices), F.avg_pool1d/3d, F.lp_pool1d/2d/3d and the activations
  F.elu/selu/celu/softplus/hardtanh/mish/logsigmoid/softsign: through their modules' converters;
- F.normalize, F.glu, F.softmin, torch.clamp/clip, torch.max/min (global, with dim, elementwise),
  argmax/argmin, cumsum/cumprod, sort, topk: keras.ops directly, in whatever axis order the
  value already has (no transposes).

Ties: max/min/argmax/argmin with dim return the index of the FIRST extreme value, like torch;
sort/topk use keras.ops.top_k, which orders equal values by index (lower first), as torch's
stable sort does (torch.sort(stable=False) and topk promise no order among ties). topk with
sorted=False is converted as sorted=True (torch documents no order there).
torch.nonzero / argwhere / masked_select have a data-dependent shape and raise ConversionError
(torch.where(cond) with one argument is refused by builtin's where converter).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import numpy as np

from ..errors import ConversionError
from ..trace import Value, identity, tensor
from . import cases as C
from . import register_op
from .builtin import _align, _copy_constants, _elementwise, _scaled, _slices, _template
from .builtin import constant_tensor as _const

_st = C._st
_rng = C.draw_rng


def _tup(v):
    return tuple(None if a is None else int(a) for a in v) if isinstance(v, (list, tuple)) else v


def _need_batched(x, nd: int, name: str):
    if x.rank != nd + 2:
        raise ConversionError(f"{name} of a rank-{x.rank} input: only batched (N, C, *{nd} spatial) inputs are "
                              "converted; unsqueeze(0) an unbatched input")


# ---- convolutions -----------------------------------------------------------------------------
def _conv_cases(nd: int, transpose: bool):
    def build(draw):
        st = _st()
        fn = getattr(F, f"conv_transpose{nd}d" if transpose else f"conv{nd}d")
        g = draw(st.integers(1, 2))
        cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
        k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        d = tuple(draw(st.integers(1, 2)) for _ in range(nd))
        s = tuple(draw(st.integers(1, 3 if transpose else 2)) for _ in range(nd))
        rng = _rng(draw)
        wshape = (cin, cout // g, *k) if transpose else (cout, cin // g, *k)
        w = torch.tensor((rng.standard_normal(wshape) * 0.5).astype(np.float32))
        b = torch.tensor(rng.standard_normal(cout).astype(np.float32)) if draw(st.booleans()) else None
        n = draw(st.integers(1, 2))
        form = lambda t: t[0] if nd == 1 or (len(set(t)) == 1 and draw(st.booleans())) else t  # noqa: E731
        if transpose:
            p = tuple(draw(st.integers(0, 2)) for _ in range(nd))
            op = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
            spatial = []
            for i in range(nd):
                lo = 1
                while (lo - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 < 1:
                    lo += 1
                spatial.append(draw(st.integers(lo, lo + 3)))
            (x,) = C.draw_inputs(draw, (n, cin, *spatial))
            args = dict(stride=form(s), padding=form(p), output_padding=form(op), groups=g, dilation=form(d))
            desc = f"conv_transpose{nd}d(w={wshape}, bias={b is not None}, {args}) of {x.shape}"
            return (lambda u: fn(u, w, b, **args)), desc, [x]
        pkind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
        if pkind == "same":
            s = (1,) * nd
            p = "same"
        elif pkind == "valid":
            p = "valid"
        else:
            p = tuple(draw(st.integers(0, 2)) for _ in range(nd))
        pp = p if isinstance(p, tuple) else (0,) * nd
        spatial = tuple(draw(st.integers(max(1, d[i] * (k[i] - 1) + 1 - 2 * pp[i]), d[i] * (k[i] - 1) + 4))
                        for i in range(nd))
        (x,) = C.draw_inputs(draw, (n, cin, *spatial))
        args = dict(stride=form(s), padding=p if isinstance(p, str) else form(p), dilation=form(d), groups=g)
        desc = f"conv{nd}d(w={wshape}, bias={b is not None}, {args}) of {x.shape}"
        if draw(st.booleans()):  # positional form
            return (lambda u: fn(u, w, b, args["stride"], args["padding"], args["dilation"], g)), desc, [x]
        return (lambda u: fn(u, w, b, **args)), desc, [x]

    return C.custom(build)


def _make_conv(nd: int):
    def conv(cx, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        _need_batched(x, nd, f"conv{nd}d")
        w, b = _const(weight, "weight"), _const(bias, "bias")
        padding = padding if isinstance(padding, str) else _tup(padding)
        m = getattr(nn, f"Conv{nd}d")(x.shape[1], w.shape[0], tuple(w.shape[2:]), stride=_tup(stride),
                                      padding=padding, dilation=_tup(dilation), groups=int(groups),
                                      bias=b is not None)
        _copy_constants(m, {"weight": weight, "bias": bias})
        return cx.module(m, [x])

    return conv


def _make_conv_transpose(nd: int):
    def conv_transpose(cx, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        _need_batched(x, nd, f"conv_transpose{nd}d")
        w, b = _const(weight, "weight"), _const(bias, "bias")
        m = getattr(nn, f"ConvTranspose{nd}d")(w.shape[0], w.shape[1] * int(groups), tuple(w.shape[2:]),
                                               stride=_tup(stride), padding=_tup(padding),
                                               output_padding=_tup(output_padding), groups=int(groups),
                                               bias=b is not None, dilation=_tup(dilation))
        _copy_constants(m, {"weight": weight, "bias": bias})
        return cx.module(m, [x])

    return conv_transpose


for _nd in (1, 2, 3):
    register_op(getattr(F, f"conv{_nd}d"), cases=_conv_cases(_nd, False))(_make_conv(_nd))
    register_op(getattr(F, f"conv_transpose{_nd}d"), cases=_conv_cases(_nd, True))(_make_conv_transpose(_nd))


# ---- normalization ----------------------------------------------------------------------------
def _group_norm_build(draw):
    st = _st()
    g = draw(st.integers(1, 3))
    c = g * draw(st.integers(1, 2))
    rank = draw(st.integers(2, 5))
    shape = (draw(st.integers(1, 2)), c, *(draw(st.integers(1, 3)) for _ in range(rank - 2)))
    if c // g * int(np.prod(shape[2:])) == 1:  # torch needs more than one value per group
        shape = (*shape, 2)
    rng = _rng(draw)
    w = torch.tensor(rng.standard_normal(c).astype(np.float32)) if draw(st.booleans()) else None
    b = torch.tensor(rng.standard_normal(c).astype(np.float32)) if draw(st.booleans()) else None
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.5]))
    (x,) = C.draw_inputs(draw, shape)
    return (lambda u: F.group_norm(u, g, w, b, eps)), \
        f"group_norm({g}, weight={w is not None}, bias={b is not None}, eps={eps}) of {shape}", [x]


@register_op(F.group_norm, cases=C.custom(_group_norm_build))
def group_norm(cx, x, num_groups, weight=None, bias=None, eps=1e-5):
    m = nn.GroupNorm(int(num_groups), x.shape[1], eps=float(eps), affine=weight is not None or bias is not None)
    _copy_constants(m, {"weight": weight, "bias": bias})
    return cx.module(m, [x])


def _instance_norm_build(draw):
    st = _st()
    nd = draw(st.integers(1, 3))
    c = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), c, *(draw(st.integers(2, 4)) for _ in range(nd)))
    rng = _rng(draw)
    vec = lambda: torch.tensor(rng.standard_normal(c).astype(np.float32))  # noqa: E731
    w = vec() if draw(st.booleans()) else None
    b = vec() if draw(st.booleans()) else None
    stats = draw(st.booleans())
    rm = vec() if stats else None
    rv = torch.tensor((rng.random(c) + 0.5).astype(np.float32)) if stats else None
    use_input = True if not stats else draw(st.booleans())
    eps = draw(st.sampled_from([1e-5, 0.1]))
    (x,) = C.draw_inputs(draw, shape)
    return (lambda u: F.instance_norm(u, rm, rv, w, b, use_input, 0.1, eps)), \
        (f"instance_norm(running={stats}, use_input_stats={use_input}, weight={w is not None}, "
         f"bias={b is not None}, eps={eps}) of {shape}"), [x]


@register_op(F.instance_norm, cases=C.custom(_instance_norm_build))
def instance_norm(cx, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    if x.rank not in (3, 4, 5):
        raise ConversionError(f"F.instance_norm of a rank-{x.rank} input: only (N, C, *1-3 spatial) is converted")
    if not use_input_stats and (running_mean is None or running_var is None):
        raise ConversionError("F.instance_norm(use_input_stats=False) needs running_mean and running_var")
    cls = {3: nn.InstanceNorm1d, 4: nn.InstanceNorm2d, 5: nn.InstanceNorm3d}[x.rank]
    m = cls(x.shape[1], eps=float(eps), affine=weight is not None or bias is not None,
            track_running_stats=not use_input_stats)
    values = {"weight": weight, "bias": bias}
    if not use_input_stats:
        values.update(running_mean=running_mean, running_var=running_var)
    _copy_constants(m, values)
    return cx.module(m, [x])


def _normalize_build(draw):
    st = _st()
    shape = C.draw_shape(draw, min_rank=1)
    rank = len(shape)
    d = draw(st.integers(-rank, rank - 1))
    p = draw(st.sampled_from([2.0, 1.0, 3.0, 0.5, 1.5, float("inf"), float("-inf")]))
    eps = draw(st.sampled_from([1e-12, 0.5]))
    (x,) = C.draw_inputs(draw, shape)
    if draw(st.booleans()):
        return (lambda u: F.normalize(u, p, d, eps)), f"normalize(p={p}, dim={d}, eps={eps}) of {shape}", [x]
    return (lambda u: F.normalize(u, dim=d)), f"normalize(dim={d}) of {shape}", [x]


def _p_norm(cx, x, p, axes, keepdims: bool, what: str):
    """The p-norm of x over `axes` (Keras axes): 2, 1, inf, -inf, 0 (count of non-zeros)
    and any other p; shared by F.normalize and torch.norm/linalg.vector_norm."""
    kw = {"axis": tuple(axes), "keepdims": keepdims}
    p = float(p)
    if p == 2.0:
        norm = cx.op("square", [tensor(0)], [x], x.perm, shape=x.shape)
        norm = cx.op("sum", [tensor(0)], [norm], x.perm, kwargs=kw)
        return cx.op("sqrt", [tensor(0)], [norm], x.perm)
    if p == 0.0:
        if what == "normalize":
            raise ConversionError("F.normalize(p=0) divides by a count of non-zeros: not converted")
        nz = cx.op("not_equal", [tensor(0), 0.0], [x], x.perm, shape=x.shape)
        nz = cx.op("cast", [tensor(0), str(cx.out_dtype).replace("torch.", "")], [nz], x.perm, shape=x.shape)
        return cx.op("sum", [tensor(0)], [nz], x.perm, kwargs=kw)
    norm = cx.op("abs", [tensor(0)], [x], x.perm, shape=x.shape)
    if math.isinf(p):
        return cx.op("max" if p > 0 else "min", [tensor(0)], [norm], x.perm, kwargs=kw)
    if p != 1.0:
        norm = cx.op("power", [tensor(0), p], [norm], x.perm, shape=x.shape)
    norm = cx.op("sum", [tensor(0)], [norm], x.perm, kwargs=kw)
    if p != 1.0:
        norm = cx.op("power", [tensor(0), 1.0 / p], [norm], x.perm)
    return norm


@register_op(F.normalize, cases=C.custom(_normalize_build))
def normalize(cx, x, p=2.0, dim=1, eps=1e-12, out=None):
    norm = _p_norm(cx, x, p, [x.keras_axis(dim)], True, "normalize")
    norm = cx.op("maximum", [tensor(0), float(eps)], [norm], x.perm)
    return cx.op("divide", [tensor(0), tensor(1)], [x, norm], x.perm, shape=x.shape)


def _norm_build(draw):
    """torch.norm / Tensor.norm / torch.linalg.vector_norm / torch.linalg.norm (vector form):
    p 2, 1, 3, inf, -inf, 0, 'fro'; one dim, several, or all; keepdim."""
    st = _st()
    shape = C.draw_shape(draw, min_rank=2)
    rank = len(shape)
    dims = sorted(set(draw(st.lists(st.integers(1, rank - 1), min_size=1, max_size=2))))
    dim = dims[0] if len(dims) == 1 and draw(st.booleans()) else tuple(dims)
    keep = draw(st.booleans())
    (x,) = C.draw_inputs(draw, shape)
    form = draw(st.sampled_from(["method", "torch.norm", "vector_norm", "linalg.norm", "fro"]))
    p = draw(st.sampled_from([2, 1, 3, float("inf"), float("-inf"), 0]))
    if form == "method":
        return (lambda u: u.norm(p=p, dim=dim, keepdim=keep)), f"x.norm({p}, {dim}, {keep}) of {shape}", [x]
    if form == "torch.norm":
        return (lambda u: torch.norm(u, p, dim, keep)), f"torch.norm({p}, {dim}, {keep}) of {shape}", [x]
    if form == "linalg.norm":
        d = dims[0]
        return (lambda u: torch.linalg.norm(u, p, d, keep)), f"linalg.norm({p}, {d}, {keep}) of {shape}", [x]
    if form == "fro":
        return (lambda u: torch.norm(u, "fro", dim, keep)), f"norm('fro', {dim}, {keep}) of {shape}", [x]
    return (lambda u: torch.linalg.vector_norm(u, p, dim, keep)), f"vector_norm({p}, {dim}, {keep}) of {shape}", [x]


@register_op(torch.norm, "norm", torch.linalg.vector_norm, torch.linalg.norm, cases=C.custom(_norm_build))
def norm(cx, x, p="fro", dim=None, keepdim=False, out=None, dtype=None, *, ord=None):
    """Vector p-norms (torch.linalg.norm with an int dim or a 1-D input is one too). Matrix
    norms (two dims with an ord other than 'fro', 'nuc') are refused."""
    target = cx.node.target
    if target is torch.linalg.vector_norm:
        p = 2 if ord is None and p == "fro" else (ord if ord is not None else p)
    elif target is torch.linalg.norm:
        p = ord if ord is not None else (None if p == "fro" else p)
        if p is not None and (isinstance(dim, (tuple, list)) and len(dim) == 2 or (dim is None and x.rank == 2)):
            raise ConversionError(f"torch.linalg.norm(ord={p!r}) over two dims is a matrix norm: not converted")
        p = 2 if p is None else p
    if p == "fro" or p is None:
        p = 2
    if isinstance(p, str):
        raise ConversionError(f"norm p={p!r} is not supported (vector p-norms and 'fro' are)")
    if dtype is not None:
        raise ConversionError("norm(dtype=...) is not supported: cast the input instead")
    dims = range(x.rank) if dim is None else ([dim] if isinstance(dim, int) else list(dim))
    axes = sorted(x.keras_axis(d) for d in dims)
    y = _p_norm(cx, x, p, axes, bool(keepdim), "norm")
    if keepdim:
        return y
    kept = [d for d in range(x.rank) if d % x.rank not in {d2 % x.rank for d2 in dims}]
    renum = {d: i for i, d in enumerate(kept)}
    y.perm = tuple(renum[q] for q in x.perm if q in renum)
    y.shape = tuple(cx.out_shape)
    return y


def _addcmul_build(draw):
    """torch.addcmul / addcdiv (function and method) with value, operands broadcasting
    (timm's Affine: addcmul(beta, alpha, x) with (1, 1, dim) parameters)."""
    st = _st()
    shape = C.draw_shape(draw, min_rank=2)
    small = (1,) * (len(shape) - 1) + (shape[-1],)
    x, a, b = C.draw_inputs(draw, shape, small, small)
    value = draw(st.sampled_from([1, 0.5, -2.0]))
    fn = draw(st.sampled_from(["addcmul", "addcdiv", "method"]))
    b = np.abs(b) + np.float32(0.5)
    if fn == "addcmul":
        return (lambda u, v, w: torch.addcmul(v, w, u, value=value)), f"addcmul(value={value}) {shape}", [x, a, b]
    if fn == "addcdiv":
        return (lambda u, v, w: torch.addcdiv(u, v, w, value=value)), f"addcdiv(value={value}) {shape}", [x, a, b]
    return (lambda u, v, w: u.addcmul(v, w, value=value)), f"x.addcmul(value={value}) {shape}", [x, a, b]


@register_op(torch.addcmul, "addcmul", torch.addcdiv, "addcdiv", cases=C.custom(_addcmul_build))
def addcmul(cx, x, tensor1, tensor2, *, value=1):
    """input + value * tensor1 (* or /) tensor2, in torch's order of operations; operands
    broadcast and keep their layout as in the elementwise ops (_align)."""
    divide = str(cx.node.target).endswith("addcdiv") or cx.node.target is torch.addcdiv

    def binary(fn, a, b):
        vals, perm = _align(cx, [a, b])
        tmpl, tensors = _template(vals)
        shape = tuple(np.broadcast_shapes(*(v.shape if isinstance(v, Value) else () for v in (a, b))))
        return cx.op(fn, tmpl, tensors, perm, shape=shape, dtype=cx.out_dtype)

    t = binary("divide" if divide else "multiply", tensor1, tensor2)
    if value != 1:
        t = _scaled(cx, t, value)
    return binary("add", x, t)


# ---- reshuffles -------------------------------------------------------------------------------
def _pixel_shuffle_build(draw):
    st = _st()
    r = draw(st.integers(1, 3))
    down = draw(st.booleans())
    n = draw(st.integers(1, 2))
    if down:
        shape = (n, draw(st.integers(1, 3)), r * draw(st.integers(1, 2)), r * draw(st.integers(1, 2)))
        (x,) = C.draw_inputs(draw, shape)
        return (lambda u: F.pixel_unshuffle(u, r) * 2.0), f"pixel_unshuffle({r}) of {shape}", [x]
    shape = (n, r * r * draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    (x,) = C.draw_inputs(draw, shape)
    return (lambda u: F.pixel_shuffle(u, r) * 2.0), f"pixel_shuffle({r}) of {shape}", [x]


@register_op(F.pixel_shuffle, F.pixel_unshuffle,
             cases=C.custom(_pixel_shuffle_build))
def pixel_shuffle(cx, x, factor):
    name = getattr(cx.node.target, "__name__", str(cx.node.target))
    if x.rank != 4:
        raise ConversionError(f"{name} of a rank-{x.rank} input: only (N, C, H, W) is converted")
    m = nn.PixelUnshuffle(int(factor)) if "unshuffle" in name else nn.PixelShuffle(int(factor))
    return cx.module(m, [x])


def _unfold_fold_build(which: str):
    return C.custom(lambda draw: _unfold_fold(draw, which))


def _unfold_fold(draw, which: str):
    st = _st()
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    size = tuple(draw(st.integers(max(1, d[i] * (k[i] - 1) + 1 - 2 * p[i]), d[i] * (k[i] - 1) + 4)) for i in range(2))
    blocks = int(np.prod([(size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2)]))
    form = lambda t: t[0] if len(set(t)) == 1 and draw(st.booleans()) else t  # noqa: E731
    kw = dict(kernel_size=form(k), dilation=form(d), padding=form(p), stride=form(s))
    if which == "unfold":
        (x,) = C.draw_inputs(draw, (n, c, *size))
        return (lambda u: F.unfold(u, **kw)), f"unfold({kw}) of {(n, c, *size)}", [x]
    (x,) = C.draw_inputs(draw, (n, c * k[0] * k[1], blocks))
    return (lambda u: F.fold(u, size, **kw)), f"fold({size}, {kw}) of {x.shape}", [x]


@register_op(F.unfold, cases=_unfold_fold_build("unfold"))
def unfold(cx, x, kernel_size, dilation=1, padding=0, stride=1):
    if x.rank != 4:
        raise ConversionError(f"F.unfold of a rank-{x.rank} input: only (N, C, H, W) is converted")
    return cx.module(nn.Unfold(_tup(kernel_size), _tup(dilation), _tup(padding), _tup(stride)), [x])


@register_op(F.fold, cases=_unfold_fold_build("fold"))
def fold(cx, x, output_size, kernel_size, dilation=1, padding=0, stride=1):
    if x.rank != 3:
        raise ConversionError(f"F.fold of a rank-{x.rank} input: only (N, C * prod(kernel), L) is converted")
    return cx.module(nn.Fold(_tup(output_size), _tup(kernel_size), _tup(dilation), _tup(padding), _tup(stride)),
                     [x])


# ---- activations through their modules (layout "any": no transposes) --------------------------
def _act_build(make_fn):
    def build(draw):
        fn, desc = make_fn(draw, _st())
        shape = C.draw_shape(draw, min_rank=1)
        (x,) = C.draw_inputs(draw, shape)
        return fn, f"{desc} of {shape}", [x * np.float32(3.0)]

    return C.custom(build)


def _via(make):
    def conv(cx, x, *args, **kwargs):
        kwargs.pop("inplace", None)
        return cx.module(make(*args, **kwargs), [x])

    return conv


def _draw_elu(d, st):
    a = d(st.sampled_from([1.0, 0.5, 2.0]))
    return d(st.sampled_from([(lambda u: F.elu(u, a), f"F.elu({a})"), (lambda u: F.elu_(u * 1.0, a), f"F.elu_({a})")]))


def _draw_celu(d, st):
    a = d(st.sampled_from([1.0, 0.5, 2.0]))
    return d(st.sampled_from([(lambda u: F.celu(u, a), f"F.celu({a})"),
                              (lambda u: torch.celu(u, a), f"torch.celu({a})"),
                              (lambda u: F.celu_(u * 1.0, a), f"F.celu_({a})")]))


def _draw_selu(d, st):
    return d(st.sampled_from([(F.selu, "F.selu"), (lambda u: torch.selu_(u * 1.0), "torch.selu_")]))


def _draw_softplus(d, st):
    b, t = d(st.sampled_from([1.0, 0.5, 2.0, 3.0])), d(st.sampled_from([20.0, 1.0, 0.5, 4.0]))
    return (lambda u: F.softplus(u, b, t)), f"F.softplus(beta={b}, threshold={t})"


def _draw_hardtanh(d, st):
    lo, hi = d(st.sampled_from([-1.0, -2.0, 0.0, 0.5])), d(st.sampled_from([1.0, 2.5, 0.75]))
    return d(st.sampled_from([(lambda u: F.hardtanh(u, lo, hi), f"F.hardtanh({lo}, {hi})"),
                              (lambda u: F.hardtanh_(u * 1.0, lo, hi), f"F.hardtanh_({lo}, {hi})")]))


_ACTS = [
    ((F.elu, F.elu_), lambda alpha=1.0: nn.ELU(float(alpha)), _draw_elu),
    ((F.selu, F.selu_), lambda: nn.SELU(), _draw_selu),
    ((F.celu, torch.celu, F.celu_), lambda alpha=1.0: nn.CELU(float(alpha)), _draw_celu),
    ((F.softplus,), lambda beta=1.0, threshold=20.0: nn.Softplus(float(beta), float(threshold)),
     _draw_softplus),
    ((F.hardtanh, F.hardtanh_), lambda min_val=-1.0, max_val=1.0: nn.Hardtanh(float(min_val), float(max_val)),
     _draw_hardtanh),
    ((F.mish,), lambda: nn.Mish(), lambda d, st: (F.mish, "F.mish")),
    ((F.logsigmoid,), lambda: nn.LogSigmoid(), lambda d, st: (F.logsigmoid, "F.logsigmoid")),
    ((F.softsign,), lambda: nn.Softsign(), lambda d, st: (F.softsign, "F.softsign")),
]
for _targets, _make, _draw in _ACTS:
    register_op(*_targets, cases=_act_build(_draw))(_via(_make))


def _glu_build(draw):
    st = _st()
    shape = list(C.draw_shape(draw, min_rank=2))
    rank = len(shape)
    d = draw(st.sampled_from([*range(1, rank), *range(-rank + 1, 0)]))
    shape[d] = 2 * draw(st.integers(1, 2))
    (x,) = C.draw_inputs(draw, tuple(shape))
    return (lambda u: F.glu(u, d)), f"F.glu(dim={d}) of {tuple(shape)}", [x]


@register_op(F.glu, cases=C.custom(_glu_build))
def glu(cx, x, dim=-1):
    n = x.shape[dim]
    if n % 2:
        raise ConversionError(f"F.glu: dim {dim} has odd size {n}")
    a, b = _slices(cx, x, dim, [n // 2, n // 2])
    gate = cx.op("sigmoid", [tensor(0)], [b], b.perm, shape=b.shape)
    return cx.op("multiply", [tensor(0), tensor(1)], [a, gate], a.perm, shape=a.shape)


def _softmin_build(draw):
    st = _st()
    shape = C.draw_shape(draw, min_rank=1)
    rank = len(shape)
    d = draw(st.sampled_from([None, *range(-rank, rank)]))
    (x,) = C.draw_inputs(draw, shape)
    if d is None:
        return (lambda u: F.softmin(u)), f"F.softmin() of {shape}", [x]
    return (lambda u: F.softmin(u, d)), f"F.softmin(dim={d}) of {shape}", [x]


@register_op(F.softmin, cases=C.custom(_softmin_build))
def softmin(cx, x, dim=None, _stacklevel=3, dtype=None):
    if dim is None:  # torch's legacy implicit dim (it warns)
        dim = 0 if x.rank in (0, 1, 3) else 1
    if dtype is not None:
        x = cx.op("cast", [tensor(0), str(dtype).replace("torch.", "")], [x], x.perm, shape=x.shape, dtype=dtype)
    neg = cx.op("negative", [tensor(0)], [x], x.perm, shape=x.shape, dtype=x.dtype)
    return cx.op("softmax", [tensor(0)], [neg], x.perm, kwargs={"axis": x.keras_axis(dim)})


# ---- pooling through modules ------------------------------------------------------------------
def _adaptive_max_build(nd: int):
    return C.custom(C.adaptive_avg_pool(nd, "max"))


def _make_adaptive_max(nd: int):
    def conv(cx, x, output_size, return_indices=False):
        _need_batched(x, nd, f"adaptive_max_pool{nd}d")
        name = getattr(cx.node.target, "__name__", "")
        ri = bool(return_indices) or name.endswith("_with_indices")
        return cx.module(getattr(nn, f"AdaptiveMaxPool{nd}d")(_tup(output_size), return_indices=ri), [x])

    return conv


for _nd in (1, 2, 3):
    register_op(getattr(F, f"adaptive_max_pool{_nd}d"), getattr(F, f"adaptive_max_pool{_nd}d_with_indices"),
                getattr(F, f"_adaptive_max_pool{_nd}d"), cases=_adaptive_max_build(_nd))(_make_adaptive_max(_nd))


def _avg_pool_build(nd: int):
    def build(draw):
        st = _st()
        k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        p = tuple(draw(st.integers(0, kk // 2)) for kk in k)
        s = draw(st.sampled_from([None, 1, 2, tuple(draw(st.integers(1, 3)) for _ in range(nd))]))
        ceil, cip = draw(st.booleans()), draw(st.booleans())
        n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
        spatial = tuple(draw(st.integers(kk, kk + 4)) for kk in k)
        (x,) = C.draw_inputs(draw, (n, c, *spatial))
        kk = k[0] if len(set(k)) == 1 and draw(st.booleans()) else k
        pp = p[0] if len(set(p)) == 1 and draw(st.booleans()) else p
        if nd == 1:
            desc = f"avg_pool1d(k={kk}, s={s}, p={pp}, ceil={ceil}, count_include_pad={cip}) of {x.shape}"
            return (lambda u: F.avg_pool1d(u, kk, s, pp, ceil, cip)), desc, [x]
        div = draw(st.sampled_from([None, None, 2, 5]))
        desc = f"avg_pool3d(k={kk}, s={s}, p={pp}, ceil={ceil}, count_include_pad={cip}, divisor={div}) of {x.shape}"
        return (lambda u: F.avg_pool3d(u, kk, s, pp, ceil, cip, div)), desc, [x]

    return C.custom(build)


@register_op(F.avg_pool1d, cases=_avg_pool_build(1))
def avg_pool1d(cx, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    _need_batched(x, 1, "avg_pool1d")
    stride = None if stride is None or (isinstance(stride, (list, tuple)) and not stride) else _tup(stride)
    return cx.module(nn.AvgPool1d(_tup(kernel_size), stride, _tup(padding), bool(ceil_mode), bool(count_include_pad)),
                     [x])


@register_op(F.avg_pool3d, cases=_avg_pool_build(3))
def avg_pool3d(cx, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    _need_batched(x, 3, "avg_pool3d")
    stride = None if stride is None or (isinstance(stride, (list, tuple)) and not stride) else _tup(stride)
    return cx.module(nn.AvgPool3d(_tup(kernel_size), stride, _tup(padding), bool(ceil_mode), bool(count_include_pad),
                                  divisor_override), [x])


def _lp_pool_build(draw):
    from ..converters.pool import _LP_POSITIVE, _LP_SIGNED

    st = _st()
    nd = draw(st.integers(1, 3))
    p = draw(st.sampled_from(_LP_SIGNED + _LP_POSITIVE))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    ceil = draw(st.booleans())
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(kk, kk + 4)) for kk in k)
    (x,) = C.draw_inputs(draw, (n, c, *spatial))
    if p not in _LP_SIGNED:
        x = np.abs(x) + np.float32(0.05)
    kernel = k[0] if nd == 1 else (k[0] if len(set(k)) == 1 and draw(st.booleans()) else k)
    stride = draw(st.sampled_from([None, s[0] if nd == 1 else s]))
    fn = getattr(F, f"lp_pool{nd}d")
    return (lambda u: fn(u, p, kernel, stride, ceil)), \
        f"lp_pool{nd}d(p={p}, k={kernel}, s={stride}, ceil={ceil}) of {x.shape}", [x]


@register_op(F.lp_pool1d, F.lp_pool2d, F.lp_pool3d, cases=C.custom(_lp_pool_build))
def lp_pool(cx, x, norm_type, kernel_size, stride=None, ceil_mode=False):
    nd = x.rank - 2
    name = getattr(cx.node.target, "__name__", "")
    want = int(name[-2]) if name[-2:-1].isdigit() else nd
    _need_batched(x, want, name or "lp_pool")
    cls = {1: nn.LPPool1d, 2: nn.LPPool2d, 3: nn.LPPool3d}[want]
    return cx.module(cls(float(norm_type), _tup(kernel_size), None if stride is None else _tup(stride),
                         bool(ceil_mode)), [x])


# ---- clamp ------------------------------------------------------------------------------------
def _clamp_build(draw):
    st = _st()
    shape = C.draw_shape(draw, min_rank=1)
    (x,) = C.draw_inputs(draw, shape)
    kind = draw(st.sampled_from(["numbers", "constants", "inputs"]))  # torch takes no number-tensor mix
    which = draw(st.sampled_from(["both", "min", "max"]))
    rng = _rng(draw)
    if kind == "numbers":
        lo, hi = draw(st.sampled_from([-0.5, 0.0, 0.3])), draw(st.sampled_from([0.5, 1.0, -1.0]))
    elif kind == "constants":
        tail = shape[len(shape) - draw(st.integers(0, len(shape) - 1)):] if len(shape) > 1 else ()
        lo = torch.tensor(rng.standard_normal(tail).astype(np.float32) - 0.5)
        hi = torch.tensor(rng.standard_normal(tail).astype(np.float32) + 0.5)
    else:  # bounds that are model inputs (batched, broadcast along some axes)
        bshape = (shape[0], *(1 if draw(st.booleans()) else n for n in shape[1:]))
        lo, hi = C.draw_inputs(draw, bshape, bshape)
        lo = lo - np.float32(0.5)
        if which == "both":
            return (lambda u, a, b: torch.clamp(u, a, b)), f"torch.clamp(x, lo{bshape}, hi) of {shape}", [x, lo, hi]
        if which == "min":
            return (lambda u, a: u.clamp(min=a)), f"x.clamp(min=lo{bshape}) of {shape}", [x, lo]
        return (lambda u, b: torch.clip(u, max=b)), f"torch.clip(x, max=hi{bshape}) of {shape}", [x, hi]
    lo = None if which == "max" else lo
    hi = None if which == "min" else hi
    form = draw(st.sampled_from(["torch.clamp", "torch.clip", "clamp", "clip", "clamp_", "clip_"]))
    if form in ("torch.clamp", "torch.clip"):
        f = getattr(torch, form.split(".")[1])
        fn = lambda u: f(u, min=lo, max=hi)  # noqa: E731
    elif form.endswith("_"):
        fn = lambda u: getattr(u * 1.0, form)(lo, hi)  # noqa: E731
    else:
        fn = lambda u: getattr(u, form)(min=lo, max=hi)  # noqa: E731
    return fn, f"{form}(min={lo}, max={hi}) of {shape}", [x]


_maximum, _minimum = _elementwise("maximum"), _elementwise("minimum")


@register_op(torch.clamp, torch.clip, "clamp", "clip", "clamp_", "clip_", cases=C.custom(_clamp_build))
def clamp(cx, x, min=None, max=None):  # noqa: A002
    if min is None and max is None:
        raise ConversionError("torch.clamp needs min or max")
    y = x
    if min is not None:
        y = _maximum(cx, y, min)
    if max is not None:
        y = _minimum(cx, y, max)
    return y


def _clamp_side_build(draw):
    st = _st()
    shape = C.draw_shape(draw, min_rank=1)
    (x,) = C.draw_inputs(draw, shape)
    v = draw(st.sampled_from([-0.5, 0.0, 0.7]))
    form = draw(st.sampled_from(["torch.clamp_min", "torch.clamp_max", "clamp_min", "clamp_max"]))
    if form.startswith("torch."):
        f = getattr(torch, form[6:])
        return (lambda u: f(u, v)), f"{form}({v}) of {shape}", [x]
    return (lambda u: getattr(u, form)(v)), f"{form}({v}) of {shape}", [x]


@register_op(torch.clamp_min, torch.clamp_max, "clamp_min", "clamp_max", "clamp_min_", "clamp_max_",
             cases=C.custom(_clamp_side_build))
def clamp_side(cx, x, value):
    name = cx.node.target if isinstance(cx.node.target, str) else cx.node.target.__name__
    return (_maximum if "min" in name else _minimum)(cx, x, value)


# ---- max / min / argmax / argmin ------------------------------------------------------------
def _distinct(draw, shape):
    """A permutation of distinct values (no ties), scaled into about [-2, 2]."""
    n = int(np.prod(shape))
    rng = _rng(draw)
    return ((rng.permutation(n).astype(np.float32) - n / 2) / max(n / 4, 1)).reshape(shape).astype(np.float32)


def _reduce_axes(x, dim, keepdim):
    d = dim % x.rank
    if keepdim:
        return x.keras_axis(d), x.perm
    kept = [a for a in range(x.rank) if a != d]
    renum = {a: i for i, a in enumerate(kept)}
    return x.keras_axis(d), tuple(renum[p] for p in x.perm if p in renum)


def _arg(cx, x, fn, dim, keepdim):
    """argmax/argmin as int64 (torch's dtype): along `dim`, or over the flattened tensor."""
    if dim is None:
        flat = cx.torch(x)
        n = int(np.prod(x.shape))
        flat = cx.op("reshape", [tensor(0), [n]], [flat], (0,), shape=(n,), dtype=x.dtype)
        idx = cx.op(fn, [tensor(0)], [flat], (), shape=(), dtype=torch.int32, kwargs={"axis": 0})
        if keepdim:
            shape = (1,) * x.rank
            idx = cx.op("reshape", [tensor(0), list(shape)], [idx], identity(x.rank), shape=shape, dtype=torch.int32)
    else:
        axis, perm = _reduce_axes(x, dim, keepdim)
        shape = tuple(1 if (i == dim % x.rank) else s for i, s in enumerate(x.shape)) if keepdim else \
            tuple(s for i, s in enumerate(x.shape) if i != dim % x.rank)
        idx = cx.op(fn, [tensor(0)], [x], perm, shape=shape, dtype=torch.int32,
                    kwargs={"axis": axis, "keepdims": bool(keepdim)})
    return cx.op("cast", [tensor(0), "int64"], [idx], idx.perm, shape=idx.shape, dtype=torch.int64)


def _max_min(kind: str):
    red, arg = ("max", "argmax") if kind == "max" else ("min", "argmin")
    rtype = getattr(torch.return_types, kind)

    def conv(cx, x, *args, **kwargs):
        dim = kwargs.pop("dim", None)
        keepdim = kwargs.pop("keepdim", False)
        other = kwargs.pop("other", None)
        kwargs.pop("out", None)
        if args:
            if isinstance(args[0], Value) or isinstance(args[0], torch.Tensor):
                other = args[0]
            else:
                dim = args[0]
                if len(args) > 1:
                    keepdim = args[1]
        if other is not None:
            return _elementwise("maximum" if kind == "max" else "minimum")(cx, x, other)
        if dim is None:
            return cx.op(red, [tensor(0)], [x], (), shape=())
        axis, perm = _reduce_axes(x, dim, keepdim)
        shape = tuple(cx.out_meta[0].shape) if isinstance(cx.out_meta, (tuple, list)) else None
        vals = cx.op(red, [tensor(0)], [x], perm, shape=shape, dtype=x.dtype,
                     kwargs={"axis": axis, "keepdims": bool(keepdim)})
        return rtype((vals, _arg(cx, x, arg, dim, keepdim)))

    return conv


def _max_min_build(kind: str):
    def build(draw):
        st = _st()
        shape = C.draw_shape(draw, min_rank=1)
        rank = len(shape)
        x = _distinct(draw, shape)
        form = draw(st.sampled_from(["global", "dim", "elementwise", "method_dim", "values"]))
        f = getattr(torch, kind)
        if form == "global":
            return (lambda u: f(u) * 1.0), f"torch.{kind}(x) of {shape}", [x]
        if form == "elementwise":
            (y,) = C.draw_inputs(draw, shape)
            return (lambda u, v: f(u, v)), f"torch.{kind}(x, y) of {shape}", [x, y]
        d = draw(st.integers(-rank, rank - 1))
        kd = draw(st.booleans())
        if form == "dim":
            return (lambda u: f(u, d, kd)), f"torch.{kind}(x, {d}, keepdim={kd}) of {shape}", [x]
        if form == "values":
            return (lambda u: (getattr(u, kind)(dim=d, keepdim=kd).values * 2.0,
                               getattr(u, kind)(dim=d, keepdim=kd).indices + 1)), \
                f"x.{kind}(dim={d}, keepdim={kd}).values/.indices of {shape}", [x]
        return (lambda u: getattr(u, kind)(d)), f"x.{kind}({d}) of {shape}", [x]

    return C.custom(build)


register_op(torch.max, "max", cases=_max_min_build("max"))(_max_min("max"))
register_op(torch.min, "min", cases=_max_min_build("min"))(_max_min("min"))


def _argmax_build(kind: str):
    def build(draw):
        st = _st()
        shape = C.draw_shape(draw, min_rank=1)
        rank = len(shape)
        x = _distinct(draw, shape)
        d = draw(st.sampled_from([None, *range(-rank, rank)]))
        kd = draw(st.booleans())
        if draw(st.booleans()):
            f = getattr(torch, kind)
            return (lambda u: f(u, dim=d, keepdim=kd)), f"torch.{kind}(dim={d}, keepdim={kd}) of {shape}", [x]
        if d is None:
            return (lambda u: getattr(u, kind)()), f"x.{kind}() of {shape}", [x]
        return (lambda u: getattr(u, kind)(d, kd)), f"x.{kind}({d}, {kd}) of {shape}", [x]

    return C.custom(build)


def _make_arg(fn: str):
    def conv(cx, x, dim=None, keepdim=False):
        return _arg(cx, x, fn, dim, keepdim)

    return conv


register_op(torch.argmax, "argmax", cases=_argmax_build("argmax"))(_make_arg("argmax"))
register_op(torch.argmin, "argmin", cases=_argmax_build("argmin"))(_make_arg("argmin"))


# ---- cumulative --------------------------------------------------------------------------------
def _cum_build(kind: str):
    def build(draw):
        st = _st()
        shape = C.draw_shape(draw, min_rank=1)
        rank = len(shape)
        d = draw(st.integers(-rank, rank - 1))
        dtype = draw(st.sampled_from(["float", "int", "int_to_float"]))
        if dtype == "float":
            (x,) = C.draw_inputs(draw, shape)
        else:
            x = _rng(draw).integers(-3, 4, shape).astype(np.int32)
        f = getattr(torch, kind)
        if dtype == "int_to_float":
            return (lambda u: f(u, d, dtype=torch.float32)), f"torch.{kind}({d}, dtype=float32) of int {shape}", [x]
        if draw(st.booleans()):
            return (lambda u: getattr(u, kind)(d)), f"x.{kind}({d}) of {dtype} {shape}", [x]
        return (lambda u: f(u, dim=d)), f"torch.{kind}(dim={d}) of {dtype} {shape}", [x]

    return C.custom(build)


def _make_cum(fn: str):
    def conv(cx, x, dim, dtype=None, out=None):
        want = cx.out_dtype
        if x.dtype != want:
            x = cx.op("cast", [tensor(0), str(want).replace("torch.", "")], [x], x.perm, shape=x.shape, dtype=want)
        return cx.op(fn, [tensor(0)], [x], x.perm, kwargs={"axis": x.keras_axis(dim)})

    return conv


register_op(torch.cumsum, "cumsum", "cumsum_", cases=_cum_build("cumsum"))(_make_cum("cumsum"))
register_op(torch.cumprod, "cumprod", "cumprod_", cases=_cum_build("cumprod"))(_make_cum("cumprod"))


# ---- sort / topk --------------------------------------------------------------------------------
def _top_k(cx, x, k, dim, largest, rtype):
    """Values and int64 indices of the k largest (or smallest) along torch `dim`, sorted:
    keras.ops.top_k works on the last Keras axis, so `dim` is moved there (a perm change)."""
    from ..layers.op import Op

    d = dim % x.rank
    perm = tuple(p for p in x.perm if p != d) + (d,)
    x = cx.to(x, perm)
    src = x if largest else cx.op("negative", [tensor(0)], [x], x.perm, shape=x.shape, dtype=x.dtype)
    layer = Op("top_k", args=[tensor(0), int(k)], kwargs={"sorted": True}, name=cx.conv.fresh(cx.node.name))
    vals, idx = layer(src.t)
    shape = tuple(int(k) if i == d else s for i, s in enumerate(x.shape))
    v = Value(vals, perm, shape, x.dtype)
    if not largest:
        v = cx.op("negative", [tensor(0)], [v], perm, shape=shape, dtype=x.dtype)
    i = cx.op("cast", [tensor(0), "int64"], [Value(idx, perm, shape, torch.int32)], perm, shape=shape,
              dtype=torch.int64)
    return rtype((v, i))


def _sort_topk_build(which: str):
    def build(draw):
        st = _st()
        shape = C.draw_shape(draw, min_rank=1)
        rank = len(shape)
        x = _distinct(draw, shape)
        d = draw(st.integers(-rank, rank - 1))
        if which == "sort":
            desc = draw(st.booleans())
            if draw(st.booleans()):
                return (lambda u: torch.sort(u, dim=d, descending=desc)), \
                    f"torch.sort({d}, descending={desc}) of {shape}", [x]
            return (lambda u: u.sort(d, desc).values * 2.0), f"x.sort({d}, {desc}).values of {shape}", [x]
        k = draw(st.integers(1, shape[d]))
        largest = draw(st.booleans())
        if draw(st.booleans()):
            return (lambda u: torch.topk(u, k, d, largest)), f"torch.topk({k}, {d}, largest={largest}) of {shape}", [x]
        return (lambda u: u.topk(k, dim=d, largest=largest).indices + 0), \
            f"x.topk({k}, dim={d}, largest={largest}).indices of {shape}", [x]

    return C.custom(build)


@register_op(torch.topk, "topk", cases=_sort_topk_build("topk"))
def topk(cx, x, k, dim=-1, largest=True, sorted=True, out=None):  # noqa: A002
    return _top_k(cx, x, k, dim, largest, torch.return_types.topk)


@register_op(torch.sort, "sort", cases=_sort_topk_build("sort"))
def sort(cx, x, dim=-1, descending=False, stable=False, out=None):
    if isinstance(dim, bool):  # torch.sort(x, stable, dim=..., descending=...) overload
        raise ConversionError("torch.sort(x, stable, ...) positional overload: pass dim= and stable= by keyword")
    return _top_k(cx, x, x.shape[dim], dim, bool(descending), torch.return_types.sort)


# ---- data-dependent shapes ----------------------------------------------------------------------
@register_op(torch.nonzero, "nonzero", torch.argwhere, "argwhere", torch.masked_select, "masked_select")
def data_dependent(cx, *args, **kwargs):
    name = cx.node.target if isinstance(cx.node.target, str) else cx.node.target.__name__
    raise ConversionError(f"{name} returns a data-dependent number of elements, which a Keras graph cannot "
                          "represent: use a fixed-size form (torch.where(cond, x, y), a multiplied mask, topk)")
