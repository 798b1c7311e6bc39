"""Complex tensors in an exported graph, held as real pairs.

Keras has no complex dtype on every backend, yet rotary embeddings are often written with
complex numbers (Llama's reference code, Llama 4, DeepSeek-V2, QwenImage, Z-Image, Lumina):
`view_as_complex(x.reshape(..., -1, 2)) * freqs_cis`, then `view_as_real(...).flatten(3)`.
A complex Value here is the real tensor of shape S + (2,) (real part, imaginary part on its
last Keras axis) tagged with the complex shape S and dtype; its `perm` covers S only.

Arithmetic (mul, div, add, sub, neg, abs, angle, conj, polar, real/imag, casts) runs on the
pairs (recreate.layers.op_helpers.complex_pairs). Shape ops (view, slice, unsqueeze,
permute, cat, ...) run through their real converters on the pair, with the dims and sizes
rewritten for the extra trailing axis. Any other op on a complex tensor is refused by name.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConversionError, UnsupportedOpError
from ..trace import OpContext, Value, _leaves, identity, tensor

_REAL = {"complex64": "float32", "complex128": "float64", "complex32": "float16"}

# Shape ops run on the pair: how their arguments change for the trailing pair axis.
_DIM1 = {"unsqueeze"}  # (x, dim): dim over rank + 1
_DIM = {"select", "slice", "squeeze", "transpose", "cat", "stack", "split", "split_with_sizes", "unbind",
        "narrow", "chunk", "flip", "roll", "index_select", "movedim"}
_SIZE = {"view", "_unsafe_view", "reshape", "expand", "repeat"}
_SAME = {"clone", "alias", "detach", "contiguous", "lift_fresh_copy", "index", "_unsafe_index"}


def involved(val, vals) -> bool:
    import torch

    out = [v for v in _leaves(val) if isinstance(v, torch.Tensor)] if isinstance(val, (list, tuple)) else [val]
    return any(isinstance(v, torch.Tensor) and v.is_complex() for v in out) or any(
        v.dtype.is_complex for v in vals)


def real_dtype(dtype):
    import torch

    return getattr(torch, _REAL[str(dtype).replace("torch.", "")])


def as_pair(v: Value) -> Value:
    data = None if v.data is None else np.stack([np.real(v.data), np.imag(v.data)], -1)
    return Value(v.t, (*v.perm, v.rank), (*v.shape, 2), real_dtype(v.dtype), data=data)


def as_complex(cx: OpContext, p: Value, dtype) -> Value:
    if p.perm[-1] != p.rank - 1:  # the pair axis must be the last Keras axis
        p = cx.conv.to_perm(p, identity(p.rank))
    data = None if p.data is None else (p.data[..., 0] + 1j * p.data[..., 1]).astype(str(dtype).replace("torch.", ""))
    return Value(p.t, tuple(p.perm[:-1]), tuple(p.shape[:-1]), dtype, data=data)


def constant(conv, array: np.ndarray, hint: str, perm=None) -> Value:
    """A complex constant as a pair constant (recreate.trace._Converter.constant)."""
    import torch

    rank = array.ndim
    perm = tuple(perm) if perm is not None else identity(rank)
    real = np.stack([np.real(array), np.imag(array)], -1).astype(np.float64 if array.dtype == np.complex128 else np.float32)
    p = conv.constant(real, hint, (*perm, rank))
    dtype = torch.complex128 if array.dtype == np.complex128 else torch.complex64
    return Value(p.t, perm, tuple(array.shape), dtype, data=array)


def _real_view(val):
    import torch

    return torch.view_as_real(val.resolve_conj().resolve_neg())


def _name(target) -> str:
    return getattr(target, "__name__", str(target)).split(".")[0]


def _pairs(cx, values):
    """Complex operands as pairs in torch order (pair axis last); real tensors in torch order."""
    out = []
    for v in values:
        if isinstance(v, Value):
            if v.dtype.is_complex:
                p = as_pair(v)
                out.append(cx.conv.to_perm(p, identity(p.rank)))
            else:
                out.append(cx.conv.to_perm(v, identity(v.rank)))
        else:
            out.append(v)
    return out


def _result(cx, fn, args, tensors, dtype):
    """An Op over pair / real tensors whose result is a complex pair (torch order)."""
    shape = (*cx.out_shape, 2)
    p = cx.op(fn, args, tensors, identity(len(shape)), shape=shape, dtype=real_dtype(dtype))
    return as_complex(cx, p, dtype)


def _real_result(cx, fn, args, tensors):
    return cx.op(fn, args, tensors, identity(len(cx.out_shape)))


def handle(builder, node, args, kwargs):
    """Convert `node`, which reads or makes a complex tensor."""
    name = _name(node.target)
    cx = OpContext(builder.conv, node)
    out_dtype = cx.out_dtype if hasattr(cx.out_meta, "dtype") else None
    if name == "view_as_complex":
        (x,) = args
        x = x if x.perm[-1] == x.rank - 1 else cx.conv.to_perm(x, identity(x.rank))
        return as_complex(cx, x, out_dtype)
    if name == "view_as_real":
        return as_pair(args[0])
    if name == "polar":
        r, theta = _pairs(cx, args)
        return _result(cx, "polar", [tensor(0), tensor(1)], [r, theta], out_dtype)
    if name in ("mul", "div", "add", "sub", "rsub"):
        return _arith(cx, name, args, kwargs, out_dtype)
    if name == "neg":
        (p,) = _pairs(cx, args)
        return _result(cx, "negative", [tensor(0)], [p], out_dtype)
    if name in ("resolve_conj", "resolve_neg"):
        return args[0]
    if name in ("conj", "_conj", "conj_physical"):
        (p,) = _pairs(cx, args[:1])
        return _result(cx, "complex_conj", [tensor(0)], [p], out_dtype)
    if name in ("abs", "angle"):
        (p,) = _pairs(cx, args[:1])
        return _real_result(cx, f"complex_{name}", [tensor(0)], [p])
    if name in ("real", "imag"):
        (p,) = _pairs(cx, args[:1])
        return cx.op("take", [tensor(0), 0 if name == "real" else 1], [p], identity(len(cx.out_shape)),
                     kwargs={"axis": -1})
    if name in ("_to_copy", "to", "_to_dtype", "type_as", "copy"):
        return _cast(cx, args[0], out_dtype)
    return _shape_op(builder, cx, node, name, args, kwargs)


def _arith(cx, name, args, kwargs, out_dtype):
    a, b = args[0], args[1]
    alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    if alpha != 1:
        raise ConversionError(f"{cx.node.format_node()}: alpha={alpha} on complex tensors is not supported")
    if name == "rsub":
        a, b, name = b, a, "sub"
    if any(isinstance(v, complex) for v in (a, b)):
        raise ConversionError(f"{cx.node.format_node()}: a Python complex number as operand is not supported; "
                              "make it a tensor (torch.tensor(z)) so that it becomes a constant")
    ca = isinstance(a, Value) and a.dtype.is_complex
    cb = isinstance(b, Value) and b.dtype.is_complex
    pa, pb = _pairs(cx, [a, b])
    if name == "mul" or (name == "div" and not cb):
        if ca and cb:
            return _result(cx, "complex_mul", [tensor(0), tensor(1)], [pa, pb], out_dtype)
        z, x = (pa, pb) if ca else (pb, pa)
        if name == "div":
            x = (1.0 / x) if not isinstance(x, Value) else cx.op("reciprocal", [tensor(0)], [x], identity(x.rank),
                                                                  shape=x.shape)
        if isinstance(x, Value):
            return _result(cx, "complex_scale", [tensor(0), tensor(1)], [z, x], out_dtype)
        return _result(cx, "multiply", [tensor(0), float(x)], [z], out_dtype)
    if name == "div":  # b complex
        pa = pa if ca else _lift(cx, pa)
        if not isinstance(pa, Value):
            raise ConversionError(f"{cx.node.format_node()}: a number divided by a complex tensor is not supported")
        return _result(cx, "complex_div", [tensor(0), tensor(1)], [pa, pb], out_dtype)
    # add / sub: a real operand adds to the real part only
    pa = pa if ca or not isinstance(pa, Value) else _lift(cx, pa)
    pb = pb if cb or not isinstance(pb, Value) else _lift(cx, pb)
    fn = "add" if name == "add" else "subtract"
    if not isinstance(pa, Value) or not isinstance(pb, Value):
        z, x = (pa, pb) if isinstance(pa, Value) else (pb, pa)
        shift = [float(x), 0.0]  # added to the pair's last axis: the real part only
        if isinstance(pa, Value):
            return _result(cx, fn, [tensor(0), shift], [z], out_dtype)
        return _result(cx, fn, [shift, tensor(0)], [z], out_dtype)
    return _result(cx, fn, [tensor(0), tensor(1)], [pa, pb], out_dtype)


def _lift(cx, x):
    """A real tensor as a complex pair (imaginary part 0)."""
    if not isinstance(x, Value):
        return x
    return cx.op("complex_from_real", [tensor(0)], [x], identity(x.rank + 1), shape=(*x.shape, 2), dtype=x.dtype)


def _cast(cx, x, out_dtype):
    if out_dtype is None or not out_dtype.is_complex:  # complex -> real: torch keeps the real part
        (p,) = _pairs(cx, [x])
        out = cx.op("take", [tensor(0), 0], [p], identity(p.rank - 1), shape=x.shape, kwargs={"axis": -1})
        return cx.op("cast", [tensor(0), str(out_dtype).replace("torch.", "")], [out], identity(x.rank))
    if not x.dtype.is_complex:
        x = cx.op("cast", [tensor(0), _REAL[str(out_dtype).replace("torch.", "")]], [cx.conv.to_perm(x, identity(x.rank))],
                  identity(x.rank), shape=x.shape, dtype=real_dtype(out_dtype))
        p = _lift(cx, x)
        return as_complex(cx, p, out_dtype)
    if x.dtype == out_dtype:
        return x
    (p,) = _pairs(cx, [x])
    return _result(cx, "cast", [tensor(0), _REAL[str(out_dtype).replace("torch.", "")]], [p], out_dtype)


def _shape_op(builder, cx, node, name, args, kwargs):
    """A shape op on complex tensors: its real converter on the pairs."""
    import torch

    from .. import ops as op_registry
    from .build import _meta

    if name not in _DIM1 | _DIM | _SIZE | _SAME | {"permute"}:
        from ..trace import _source_line

        raise UnsupportedOpError(
            f"no converter for {node.target} on complex tensors (node {node.name}; {_source_line(node)}): complex "
            "tensors (held as real pairs) support view_as_complex, view_as_real, polar, arithmetic, "
            "real/imag/abs/angle/conj and shape ops. Compute it on real and imaginary parts, or register a converter "
            "for the module around it")
    first = args[0][0] if name in ("cat", "stack") else args[0]
    rank = first.rank if isinstance(first, Value) else None

    def rewrite(a):
        a = list(a)
        if name in _SAME or len(a) < 2:
            return a
        if name in _DIM1:
            a[1] = a[1] % (rank + 1)
        elif name in _DIM:
            if isinstance(a[1], (list, tuple)) and name not in ("split", "split_with_sizes", "index_select", "roll"):
                a[1] = [d % rank for d in a[1]]
            elif name in ("split", "split_with_sizes", "roll") and len(a) > 2:
                a[2] = a[2] % rank if isinstance(a[2], int) else [d % rank for d in a[2]]
            elif isinstance(a[1], int) and name not in ("split", "split_with_sizes", "chunk", "roll"):
                a[1] = a[1] % rank
            elif name == "chunk" and len(a) > 2:
                a[2] = a[2] % rank
        elif name in _SIZE:
            a[1] = [*a[1], 2] if name != "repeat" else [*a[1], 1]
        elif name == "permute":
            a[1] = [*[d % rank for d in a[1]], rank]
        return a

    if name == "movedim":
        raise ConversionError(f"{node.format_node()}: movedim on a complex tensor is not supported")
    graph = torch.fx.Graph()
    made: dict = {}

    def pair_node(n):
        val = n.meta.get("val")
        if not (isinstance(val, torch.Tensor) and val.is_complex()):
            return n
        if n not in made:
            p = graph.placeholder(f"{n.name}_pair")
            p.meta["val"] = _real_view(val)
            p.meta["tensor_meta"] = _meta(p.meta["val"])
            made[n] = p
        return made[n]

    fx_args = torch.fx.node.map_arg(tuple(rewrite(node.args)), pair_node)
    scratch = graph.call_function(node.target, fx_args, dict(node.kwargs))
    scratch.name = node.name
    val = node.meta.get("val")

    def real_val(v):
        if isinstance(v, (list, tuple)):
            return type(v)(real_val(e) for e in v)
        return _real_view(v) if isinstance(v, torch.Tensor) and v.is_complex() else v

    scratch.meta["val"] = real_val(val)
    scratch.meta["tensor_meta"] = _meta(scratch.meta["val"])

    def pair_value(a):
        if isinstance(a, Value) and a.dtype.is_complex:
            return as_pair(a)
        if isinstance(a, (list, tuple)):
            return type(a)(pair_value(e) for e in a)
        return a

    loaded = [pair_value(a) for a in rewrite(args)]
    if name in _SAME and name != "index" and name != "_unsafe_index":
        return args[0]
    fn = op_registry.find_op(node.target)
    if fn is None:
        raise ConversionError(f"{node.format_node()}: no converter for {node.target}")
    res = fn(OpContext(builder.conv, scratch), *loaded, **kwargs)
    sub = OpContext(builder.conv, scratch)

    def back(r, v):
        if isinstance(r, (list, tuple)):
            return type(r)(back(e, ve) for e, ve in zip(r, v))
        if isinstance(r, Value) and isinstance(v, torch.Tensor) and v.is_complex():
            return as_complex(sub, r, v.dtype)
        return r

    return back(res, val)
