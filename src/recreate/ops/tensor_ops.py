"""Op converters for tensor lookups and fused multiply-adds met between registered modules:

- F.embedding (an nn.Embedding subclass calling super().forward, HF OPT/Gemma/Bart): a take
  along axis 0 of the weight, integer indices of any rank; max_norm is refused (torch
  renormalises the weight in place at run time);
- torch.gather / Tensor.gather: take_along_axis, with input first sliced to index's size on
  the other axes (torch allows index.size(d) <= input.size(d) there, take_along_axis does not);
- torch.addmm / addbmm / baddbmm / addmv / addr and their methods:
  beta * input + alpha * (product); multiplications by 1 are skipped and beta == 0 ignores
  input (torch: nan/inf in input are then ignored too);
- torch.masked_fill / Tensor.masked_fill(_): where(mask, value, x), value a Python number or a
  0-d tensor cast to x's dtype (torch truncates 2.7 to 2 for an integer x), mask broadcast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import numpy as np

from ..errors import ConversionError
from ..trace import Value, identity, tensor
from . import cases as C
from . import register_op
from .builtin import _align, _template

_st = C._st
_rng = C.draw_rng


def _arg_node(cx, pos: int, name: str):
    """The fx node (or value) of the call's argument at `pos` / keyword `name`."""
    args = cx.node.args
    return args[pos] if pos < len(args) else cx.node.kwargs.get(name)


def _batch_axes_of(cx, pos: int, name: str):
    return cx.conv.batch_axes_of(_arg_node(cx, pos, name))


def _with_modules(build):
    """Like cases.custom, for `build(draw) -> (fn, desc, inputs, {name: module})`: the
    modules (holding parameters that fn uses) become submodules of the case's module."""

    def cases():
        from hypothesis import strategies as st

        from ..testing import Case

        @st.composite
        def strat(draw):
            fn, desc, inputs, subs = build(draw)
            m = C._module(fn, desc, len(inputs))
            for name, sub in subs.items():
                m.add_module(name, sub)
            return Case(m.eval(), tuple(inputs))

        return strat()

    return cases


# ---- embedding --------------------------------------------------------------------------------
def embedding_build(draw):
    """F.embedding as an nn.Embedding subclass calling super().forward (HF OPT's learned
    positions: offset indices, scaled output), or F.embedding directly with a parameter;
    indices of rank 1-3 (batch first) in range; padding_idx (positive, negative, None),
    norm_type, scale_grad_by_freq and sparse drawn (they do not change the forward)."""
    from torch import nn

    st = _st()
    form = draw(st.sampled_from(["subclass", "functional", "keywords"]))
    offset = draw(st.integers(0, 2)) if form == "subclass" else 0
    num, dim = draw(st.integers(1, 6)) + offset, draw(st.integers(1, 4))
    shape = C.draw_shape(draw, min_rank=1, max_rank=3)
    rng = _rng(draw)
    idx = rng.integers(0, num - offset, shape).astype(np.int64)
    if form == "subclass":
        pad = draw(st.sampled_from([None, 0, -1]))

        class Offset(nn.Embedding):
            def forward(self, i):
                return super().forward(i + offset) * 3.0

        e = Offset(num, dim, padding_idx=pad)
        with torch.no_grad():
            e.weight.copy_(torch.tensor(rng.standard_normal((num, dim)).astype(np.float32)))
        e.eval()
        return (lambda u: e(u)), f"Embedding subclass({num}, {dim}, padding_idx={pad}) offset {offset} of {shape}", \
            [idx], {"emb": e}
    holder = nn.Module()
    holder.w = nn.Parameter(torch.tensor(rng.standard_normal((num, dim)).astype(np.float32)))
    w = holder.w
    if form == "functional":
        return (lambda u: F.embedding(u, w)), f"F.embedding({num}, {dim}) of {shape}", [idx], {"holder": holder}
    pad = draw(st.sampled_from([None, 0, num - 1, -1]))
    norm = draw(st.sampled_from([2.0, 1.0]))
    flags = draw(st.booleans())
    return (lambda u: F.embedding(input=u, weight=w, padding_idx=pad, max_norm=None, norm_type=norm,
                                  scale_grad_by_freq=flags, sparse=flags)), \
        f"F.embedding(keywords, {num}, {dim}, padding_idx={pad}) of {shape}", [idx], {"holder": holder}


@register_op(F.embedding, cases=_with_modules(embedding_build))
def embedding(cx, input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of `weight` (a parameter, or any rank-2 tensor) picked by integer `input`.
    padding_idx, scale_grad_by_freq and sparse only change gradients."""
    if max_norm is not None:
        raise ConversionError(f"F.embedding(max_norm={max_norm}) renormalises the weight's rows in place while "
                              "running, which a converted model cannot do: use an nn.Embedding module (converted "
                              "with MaxNormEmbedding) or renormalise the weight once and pass max_norm=None")
    if not isinstance(input, Value) or not isinstance(weight, Value):
        raise ConversionError("F.embedding needs tensor indices and a tensor weight")
    if "int" not in str(input.dtype):
        raise ConversionError(f"F.embedding indices must be integers, got {input.dtype}")
    if weight.rank != 2:
        raise ConversionError(f"F.embedding weight must be 2-D, got shape {weight.shape}")
    idx, w = cx.torch(input), cx.torch(weight)
    shape = (*idx.shape, w.shape[1])
    return cx.op("take", [tensor(0), tensor(1)], [w, idx], identity(len(shape)), shape=shape, dtype=w.dtype,
                 kwargs={"axis": 0})


# ---- gather -----------------------------------------------------------------------------------
def gather_build(draw):
    """torch.gather / Tensor.gather along any dim (negative too), index smaller than input on
    the other axes, index a model input or computed, input a constant expanded to the batch
    (RoBERTa's token_type_ids), keyword forms, sparse_grad."""
    st = _st()
    shape = C.draw_shape(draw, min_rank=2, max_rank=4)
    rank = len(shape)
    # not along the batch axis: its indices would depend on the batch size
    dim = draw(st.sampled_from([*range(1, rank), *range(-rank + 1, 0)]))
    d = dim % rank
    ishape = tuple(draw(st.integers(1, 4)) if a == d else
                   (s if a == 0 else draw(st.integers(1, s))) for a, s in enumerate(shape))
    rng = _rng(draw)
    idx = rng.integers(0, shape[d], ishape).astype(np.int64)
    (x,) = C.draw_inputs(draw, shape)
    form = draw(st.sampled_from(["torch", "method", "keywords", "computed", "expanded"]))
    if form == "torch":
        return (lambda u, i: torch.gather(u, dim, i)), f"torch.gather({shape}, {dim}, {ishape})", [x, idx]
    if form == "method":
        return (lambda u, i: u.gather(dim, i) * 2.0), f"x.gather({dim}, {ishape}) of {shape}", [x, idx]
    if form == "keywords":
        sg = draw(st.booleans())
        return (lambda u, i: torch.gather(input=u, dim=dim, index=i, sparse_grad=sg)), \
            f"torch.gather(keywords, {shape}, {dim}, {ishape})", [x, idx]
    if form == "computed":
        # an index computed from a float input: the argsort-like position of each element
        n = shape[d]
        return (lambda u: u.gather(dim, (u * 1000).long().remainder(n))), \
            f"x.gather({dim}, computed) of {shape}", [x]
    # a constant (buffer) row expanded to the batch, gathered with positions (RoBERTa)
    L = shape[-1]
    table = torch.tensor(rng.integers(0, 5, (1, L)).astype(np.int64))
    pos = rng.integers(0, L, (shape[0], draw(st.integers(1, L)))).astype(np.int64)
    return (lambda i: torch.gather(table.expand(i.shape[0], -1), 1, i)), f"gather(expanded const (1, {L}))", [pos]


@register_op(torch.gather, "gather", cases=C.custom(gather_build))
def gather(cx, input, dim, index, *, sparse_grad=False, out=None):
    if not isinstance(input, Value) or not isinstance(index, Value):
        raise ConversionError("torch.gather needs tensor input and index")
    if "int" not in str(index.dtype):
        raise ConversionError(f"torch.gather index must be an integer tensor, got {index.dtype}")
    if input.rank != index.rank:
        raise ConversionError(f"torch.gather: index rank {index.rank} differs from input rank {input.rank}")
    if input.rank == 0:
        return input
    dim = dim % input.rank
    x = input
    idx = cx.to(index, x.perm)
    if any(i < n for a, (i, n) in enumerate(zip(idx.shape, x.shape)) if a != dim):
        # torch allows index.size(d) <= input.size(d) off dim: it reads input[..., :size, ...]
        ib = _batch_axes_of(cx, 2, "index") or set()
        xb = _batch_axes_of(cx, 0, "input") or set()
        for a in range(x.rank):
            if a != dim and idx.shape[a] < x.shape[a] and a in ib - xb:
                raise ConversionError(f"torch.gather: index axis {a} follows the batch size while input's does not "
                                      "and is larger: slice input to the index's size first")
        key = []
        for p in x.perm:  # keras axis order
            key.append([None, None, None] if p == dim or idx.shape[p] == x.shape[p] else [0, idx.shape[p], None])
        shape = tuple(n if a == dim else idx.shape[a] for a, n in enumerate(x.shape))
        x = cx.op("getitem", [tensor(0), key], [x], x.perm, shape=shape, dtype=x.dtype)
    return cx.op("take_along_axis", [tensor(0), tensor(1)], [x, idx], x.perm, shape=idx.shape, dtype=x.dtype,
                 kwargs={"axis": x.keras_axis(dim)})


# ---- addmm family -----------------------------------------------------------------------------
def _scale(cx, v, k):
    if k == 1:
        return v
    return cx.op("multiply", [tensor(0), k], [v], v.perm, shape=v.shape, dtype=v.dtype)


def _number(k, what):
    if isinstance(k, Value):
        if k.data is None:
            raise ConversionError(f"{what} computed from inputs is not supported: pass a Python number")
        k = np.asarray(k.data).item()
    if isinstance(k, (np.generic,)):
        k = k.item()
    if isinstance(k, bool):
        return int(k)
    return k


def _affine(cx, input, product: Value, beta, alpha):
    """beta * input + alpha * product (input broadcast to the product's shape)."""
    beta, alpha = _number(beta, "beta"), _number(alpha, "alpha")
    y = _scale(cx, product, alpha)
    if beta == 0:
        return Value(y.t, y.perm, tuple(cx.out_shape), y.dtype)
    if isinstance(input, Value):
        if input.dtype != y.dtype and "float" in str(y.dtype) and "float" not in str(input.dtype):
            input = cx.op("cast", [tensor(0), str(y.dtype).replace("torch.", "")], [input], input.perm,
                          shape=input.shape, dtype=y.dtype)
        inp = _scale(cx, cx.torch(input), beta)
    else:
        inp = input * beta
    vals, perm = _align(cx, [y, inp])
    tmpl, tensors = _template(vals)
    return cx.op("add", tmpl, tensors, perm, shape=cx.out_shape, dtype=y.dtype)


def _mm(cx, a, b):
    a, b = cx.torch(a), cx.torch(b)
    shape = tuple(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])) + (a.shape[-2], b.shape[-1])
    return cx.op("matmul", [tensor(0), tensor(1)], [a, b], identity(len(shape)), shape=shape, dtype=a.dtype)


@register_op(torch.addmm, "addmm", "addmm_", cases=C.custom(lambda draw: _addmm_family_build(draw, "addmm")))
def addmm(cx, input, mat1, mat2, *, beta=1, alpha=1, out=None):
    if mat1.rank != 2 or mat2.rank != 2:
        raise ConversionError(f"addmm needs 2-D matrices, got {mat1.shape} and {mat2.shape}")
    return _affine(cx, input, _mm(cx, mat1, mat2), beta, alpha)


@register_op(torch.baddbmm, "baddbmm", "baddbmm_", cases=C.custom(lambda draw: _addmm_family_build(draw, "baddbmm")))
def baddbmm(cx, input, batch1, batch2, *, beta=1, alpha=1, out=None):
    if batch1.rank != 3 or batch2.rank != 3:
        raise ConversionError(f"baddbmm needs 3-D batches, got {batch1.shape} and {batch2.shape}")
    return _affine(cx, input, _mm(cx, batch1, batch2), beta, alpha)


@register_op(torch.addbmm, "addbmm", "addbmm_", cases=C.custom(lambda draw: _addmm_family_build(draw, "addbmm")))
def addbmm(cx, input, batch1, batch2, *, beta=1, alpha=1, out=None):
    if batch1.rank != 3 or batch2.rank != 3:
        raise ConversionError(f"addbmm needs 3-D batches, got {batch1.shape} and {batch2.shape}")
    p = _mm(cx, batch1, batch2)
    s = cx.op("sum", [tensor(0)], [p], identity(2), shape=p.shape[1:], dtype=p.dtype, kwargs={"axis": 0})
    return _affine(cx, input, s, beta, alpha)


@register_op(torch.addmv, "addmv", "addmv_", cases=C.custom(lambda draw: _addmm_family_build(draw, "addmv")))
def addmv(cx, input, mat, vec, *, beta=1, alpha=1, out=None):
    if mat.rank != 2 or vec.rank != 1:
        raise ConversionError(f"addmv needs a 2-D matrix and a 1-D vector, got {mat.shape} and {vec.shape}")
    m, v = cx.torch(mat), cx.torch(vec)
    p = cx.op("matmul", [tensor(0), tensor(1)], [m, v], identity(1), shape=(m.shape[0],), dtype=m.dtype)
    return _affine(cx, input, p, beta, alpha)


@register_op(torch.addr, "addr", "addr_", cases=C.custom(lambda draw: _addmm_family_build(draw, "addr")))
def addr(cx, input, vec1, vec2, *, beta=1, alpha=1, out=None):
    if vec1.rank != 1 or vec2.rank != 1:
        raise ConversionError(f"addr needs 1-D vectors, got {vec1.shape} and {vec2.shape}")
    a, b = cx.torch(vec1), cx.torch(vec2)
    a = cx.op("reshape", [tensor(0), [-1, 1]], [a], identity(2), shape=(a.shape[0], 1), dtype=a.dtype)
    p = cx.op("multiply", [tensor(0), tensor(1)], [a, b], identity(2), shape=(a.shape[0], b.shape[0]),
              dtype=a.dtype)
    return _affine(cx, input, p, beta, alpha)


def _addmm_family_build(draw, op: str):
    """torch.<op>(input, m1, m2, beta=, alpha=) and the method (keyword forms included): beta
    and alpha 1, 0 (input holding nan: ignored by torch), negative or fractional; input of the
    full shape or broadcasting; batch-first operands where the op has a batch (addmm's rows
    come from x.view(-1, d), GPT-2's Conv1D)."""
    st = _st()
    rng = _rng(draw)
    n, k, p = (draw(st.integers(1, 4)) for _ in range(3))
    beta = draw(st.sampled_from([1, 0, 0.5, -2.0, 1.0]))
    alpha = draw(st.sampled_from([1, 0.5, -1.5, 2]))
    form = draw(st.sampled_from(["torch", "method", "keywords", "positional_default"]))
    if op == "addmm":
        t = draw(st.integers(1, 3))
        full = (n * t, p)
        a_shape, b_shape = (n, t, k), (k, p)  # a model input viewed to 2-D, then a constant weight
    elif op == "baddbmm":
        full = (n, k + 1, p)
        a_shape, b_shape = (n, k + 1, k), (n, k, p)
    elif op == "addbmm":
        full = (k, p)
        a_shape, b_shape = (n, k, 3), (n, 3, p)
    elif op == "addmv":
        full = (n,)
        a_shape, b_shape = (n, k), (k,)
    else:  # addr
        full = (n, p)
        a_shape, b_shape = (n,), (p,)
    in_shape = draw(st.sampled_from([full, full[1:], (1,) * len(full), ()] if len(full) > 1 else [full, ()]))
    a, b = C.draw_inputs(draw, a_shape, b_shape)
    c = rng.standard_normal(in_shape).astype(np.float32)
    if beta == 0:
        c = np.full(in_shape, np.nan, np.float32)
    const_c = in_shape != full or op in ("addbmm",)
    if op == "addmm" and not const_c:
        c = c.reshape(n, -1, p)  # a batch-first model input viewed to the rows like mat1
    const_b = op in ("addmm", "addmv")
    fn = getattr(torch, op)
    names = {"addmm": ("mat1", "mat2"), "baddbmm": ("batch1", "batch2"), "addbmm": ("batch1", "batch2"),
             "addmv": ("mat", "vec"), "addr": ("vec1", "vec2")}[op]
    bt = torch.tensor(b)
    ct = torch.tensor(c)

    def call(inp, m1, m2):
        if op == "addmm":
            m1 = m1.reshape(-1, m1.shape[-1])
            if inp.dim() == 3:
                inp = inp.reshape(-1, inp.shape[-1])
        if form == "torch":
            return fn(inp, m1, m2, beta=beta, alpha=alpha)
        if form == "method":
            return getattr(inp, op)(m1, m2, beta=beta, alpha=alpha)
        if form == "keywords":
            return getattr(inp, op)(**{names[0]: m1, names[1]: m2}, beta=beta, alpha=alpha)
        return fn(inp, m1, m2) if beta == 1 and alpha == 1 else fn(input=inp, **{names[0]: m1, names[1]: m2},
                                                                        beta=beta, alpha=alpha)

    desc = f"{op} {form} input{in_shape} {a_shape} {b_shape} beta={beta} alpha={alpha}"
    if op == "addr":
        # vectors have no batch axis: they come from a model input's first row
        return (lambda u, v: call(ct, u[0], v[0])), desc, [a[None], b[None]]
    if const_c and const_b:
        return (lambda u: call(ct, u, bt)), desc, [a]
    if const_c:
        return (lambda u, v: call(ct, u, v)), desc, [a, b]
    if const_b:
        return (lambda w, u: call(w, u, bt)), desc, [c, a]
    return (lambda w, u, v: call(w, u, v)), desc, [c, a, b]


# ---- masked_fill ------------------------------------------------------------------------------
def masked_fill_build(draw):
    """x.masked_fill(mask, value), torch.masked_fill, the in-place method; mask computed from x
    (DeBERTa's x < 0), a boolean model input, or a constant broadcasting (causal masks);
    value a Python float/int, finfo.min, or a 0-d tensor (constant or computed); integer x."""
    st = _st()
    shape = C.draw_shape(draw, min_rank=1, max_rank=4)
    rng = _rng(draw)
    (x,) = C.draw_inputs(draw, shape)
    mkind = draw(st.sampled_from(["computed", "input", "constant", "wider"]))
    vkind = draw(st.sampled_from(["float", "int", "min", "tensor0d", "computed0d"]))
    form = draw(st.sampled_from(["method", "torch", "inplace", "keywords"]))
    integer = draw(st.booleans()) and vkind != "min"
    if integer:
        x = (x * 5).astype(np.int64)
    v = {"float": 2.5, "int": -3, "min": float(torch.finfo(torch.float32).min)}.get(vkind)
    bshape = C._broadcast_shape(draw, shape[1:])
    mshape = (shape[0], *(1,) * (len(shape) - 1 - len(bshape)), *bshape)
    mask_in = rng.random(mshape) > 0.5
    cmask = torch.tensor(rng.random(bshape) > 0.5)

    def mask_of(u, m):
        if mkind == "computed":
            return u < 0
        if mkind == "input":
            return m
        if mkind == "wider":  # a mask of higher rank than x: the result broadcasts (out of place)
            return cmask.reshape(1, *cmask.shape) if form not in ("inplace",) else u < 0
        return cmask

    def val_of(u):
        if vkind == "tensor0d":
            return torch.tensor(1.5)
        if vkind == "computed0d":
            return u.float().mean()
        return v

    def f(u, m):
        mask, val = mask_of(u, m), val_of(u)
        if form == "method":
            return u.masked_fill(mask, val) * 2
        if form == "torch":
            return torch.masked_fill(u, mask, val) * 2
        if form == "keywords":
            return u.masked_fill(mask=mask, value=val) * 2
        y = u * 2
        y.masked_fill_(mask, val)
        return y + 1

    return f, f"masked_fill {form} mask={mkind}{mshape} value={vkind} int={integer} of {shape}", [x, mask_in]


@register_op(torch.masked_fill, "masked_fill", "masked_fill_", cases=C.custom(masked_fill_build))
def masked_fill(cx, input, mask, value):
    if not isinstance(mask, Value):
        raise ConversionError("masked_fill needs a tensor mask")
    if "bool" not in str(mask.dtype):
        raise ConversionError(f"masked_fill only supports boolean masks (as torch), got {mask.dtype}")
    dt = input.dtype
    name = str(dt).replace("torch.", "")
    if isinstance(value, Value):
        if value.rank != 0:
            raise ConversionError(f"masked_fill value must be a number or a 0-d tensor, got shape {value.shape}")
        if value.dtype != dt:
            value = cx.op("cast", [tensor(0), name], [value], value.perm, shape=(), dtype=dt)
    else:
        value = _number(value, "value")
        if dt == torch.bool:
            value = bool(value)
        elif not dt.is_floating_point and not dt.is_complex:
            value = int(value)  # torch casts: 2.7 -> 2
        else:
            value = float(value)
    vals, perm = _align(cx, [mask, value, input])
    tmpl, tensors = _template(vals)
    if not isinstance(vals[1], Value):
        tmpl[1] = value  # keep the Python number's type (_template unwraps .item())
    return cx.op("where", tmpl, tensors, perm, shape=cx.out_shape, dtype=dt)
