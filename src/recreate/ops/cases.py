"""Hypothesis strategies for op converters: each returns a zero-argument function (called
by tests/test_ops_parity.py) producing a strategy of `Case`s whose module calls the op
between its inputs. Shapes, axes, flags and broadcasting are drawn across their space;
inputs are small."""

from __future__ import annotations

import numpy as np


def _module(fn, desc: str, n_inputs: int):
    from torch import nn

    class Op1(nn.Module):
        def forward(self, x):
            return fn(x)

    class Op2(nn.Module):
        def forward(self, x, y):
            return fn(x, y)

    class Op3(nn.Module):
        def forward(self, x, y, z):
            return fn(x, y, z)

    m = {1: Op1, 2: Op2, 3: Op3}[n_inputs]()
    m.__class__.__repr__ = lambda self: f"Op({desc})"
    return m.eval()


def _shape(draw, min_rank=1, max_rank=4, max_side=4):
    from hypothesis import strategies as st

    rank = draw(st.integers(min_rank, max_rank))
    return tuple(draw(st.integers(1, max_side)) for _ in range(rank))


def _inputs(draw, *shapes, positive=False, dtype=np.float32):
    from hypothesis import strategies as st

    from ..testing import Case  # noqa: F401

    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        x = rng.standard_normal(s).astype(dtype)
        if positive:
            x = np.abs(x) + np.float32(0.5)
        out.append(x.astype(dtype))
    return tuple(out)


def _broadcast_shape(draw, shape):
    """A shape that broadcasts against `shape` the torch way (trailing axes, size-1 axes)."""
    from hypothesis import strategies as st

    n = draw(st.integers(0, len(shape)))
    tail = list(shape[len(shape) - n:])
    return tuple(1 if draw(st.booleans()) else d for d in tail)


def binary(torch_fn_name: str, positive_rhs=False, positive_lhs=False, scalar=True, alpha=False):
    """x OP y with y broadcast, a Python scalar or x itself (same perm)."""

    def cases():
        import torch

        from hypothesis import strategies as st

        from ..testing import Case

        @st.composite
        def strat(draw):
            fn = eval(torch_fn_name, {"torch": torch, "operator": __import__("operator")})  # noqa: S307
            shape = _shape(draw, max_rank=4)
            form = draw(st.sampled_from(["tensor", "scalar", "rscalar"] if scalar else ["tensor"]))
            if form == "tensor":
                kind = draw(st.sampled_from(["same", "batched", "constant"]))
                # Model inputs carry the batch axis; lower-rank operands are model constants.
                other = shape if kind == "same" else _broadcast_shape(draw, shape[1:])
                if kind == "batched":
                    other = (shape[0], *(1,) * (len(shape) - 1 - len(other)), *other)
                swap = draw(st.booleans()) and kind != "constant" and not (positive_lhs or positive_rhs)
                a = draw(st.sampled_from([1.0, 2.0, -0.5])) if alpha else None
                x, y = _inputs(draw, shape, other)
                if positive_lhs:
                    x = np.abs(x) + np.float32(0.5)
                if positive_rhs:
                    y = np.abs(y) + np.float32(0.5)
                if swap:
                    x, y = y, x
                f = (lambda u, v: fn(u, v, alpha=a)) if a not in (None, 1.0) else fn
                if kind == "constant":
                    c = torch.tensor(y)
                    return Case(_module(lambda u: f(u, c), f"{torch_fn_name}(x, const{tuple(other)}), alpha={a}", 1),
                                (x,))
                return Case(_module(f, f"{torch_fn_name}, alpha={a}, {kind}", 2), (x, y))
            c = draw(st.sampled_from([2.0, 0.5, 3.0]))
            (x,) = _inputs(draw, shape, positive=positive_lhs or positive_rhs)
            if form == "scalar":
                return Case(_module(lambda u: fn(u, c), f"{torch_fn_name}(x, {c})", 1), (x,))
            if positive_lhs or positive_rhs or torch_fn_name.startswith("torch."):
                return Case(_module(lambda u: fn(u, c), f"{torch_fn_name}(x, {c})", 1), (x,))
            return Case(_module(lambda u: fn(c, u), f"{torch_fn_name}({c}, x)", 1), (x,))

        return strat()

    return cases


def unary(torch_fn_name: str, positive=False, scale=1.0):
    def cases():
        import torch
        import torch.nn.functional as F  # noqa: N812

        from hypothesis import strategies as st

        from ..testing import Case

        @st.composite
        def strat(draw):
            fn = eval(torch_fn_name, {"torch": torch, "F": F, "operator": __import__("operator")})  # noqa: S307
            shape = _shape(draw)
            (x,) = _inputs(draw, shape, positive=positive)
            return Case(_module(fn, torch_fn_name, 1), (x * np.float32(scale),))

        return strat()

    return cases


def with_dim(torch_fn_name: str, keepdim=True, multi=True, none=True, positive=False):
    """Reductions and softmax: dim (int, negative, tuple or None) and keepdim drawn."""

    def cases():
        import torch
        import torch.nn.functional as F  # noqa: N812

        from hypothesis import strategies as st

        from ..testing import Case

        @st.composite
        def strat(draw):
            fn = eval(torch_fn_name, {"torch": torch, "F": F})  # noqa: S307
            shape = _shape(draw, min_rank=2)
            rank = len(shape)
            (x,) = _inputs(draw, shape, positive=positive)
            kind = draw(st.sampled_from(["int", "tuple", "none"] if multi and none else
                                        ["int", "tuple"] if multi else ["int"]))
            if kind == "none":
                return Case(_module(fn, f"{torch_fn_name}(x)", 1), (x,))
            if kind == "int":
                d = draw(st.integers(-rank, rank - 1))
            else:
                d = tuple(draw(st.sets(st.integers(1, rank - 1), min_size=1)))
            kd = draw(st.booleans()) if keepdim else None
            if kd is None:
                return Case(_module(lambda u: fn(u, dim=d), f"{torch_fn_name}(x, dim={d})", 1), (x,))
            return Case(_module(lambda u: fn(u, dim=d, keepdim=kd), f"{torch_fn_name}(x, dim={d}, keepdim={kd})", 1),
                        (x,))

        return strat()

    return cases


def custom(build):
    """`build(draw) -> (fn, desc, inputs)`: a strategy from a drawing function."""

    def cases():
        from hypothesis import strategies as st

        from ..testing import Case

        @st.composite
        def strat(draw):
            fn, desc, inputs = build(draw)
            return Case(_module(fn, desc, len(inputs)), tuple(inputs))

        return strat()

    return cases


draw_shape = _shape
draw_inputs = _inputs


# ---- shape and indexing families ---------------------------------------------------------------
def _st():
    from hypothesis import strategies as st

    return st


def view_build(draw):
    st = _st()
    shape = _shape(draw, min_rank=2)
    n, rest = shape[0], int(np.prod(shape[1:]))
    divs = [d for d in range(1, rest + 1) if rest % d == 0]
    a = draw(st.sampled_from(divs))
    target = draw(st.sampled_from([(n, rest), (n, a, rest // a), (n, -1, a), (n, a, 1, rest // a), (-1, a, rest // a)]))
    method = draw(st.sampled_from(["view", "reshape", "flatten"]))
    (x,) = _inputs(draw, shape)
    if method == "flatten":
        s = draw(st.integers(1, len(shape) - 1))
        return (lambda u: u.flatten(s)), f"flatten({s}) of {shape}", [x]
    # a permute first: memory order matters for view
    p = (0, *draw(st.permutations(range(1, len(shape)))))
    return (lambda u: u.permute(*p).reshape(*target)), f"permute{p}.reshape{target} of {shape}", [x]


def permute_build(draw):
    st = _st()
    shape = _shape(draw, min_rank=2)
    p = (0, *draw(st.permutations(range(1, len(shape)))))
    d1 = draw(st.integers(1, len(shape) - 1))
    (x,) = _inputs(draw, shape)
    return (lambda u: u.permute(*p).transpose(d1, -1) * 2.0), f"permute{p}.transpose({d1},-1) of {shape}", [x]


def squeeze_build(draw):
    st = _st()
    shape = _shape(draw, min_rank=2, max_side=3)
    d = draw(st.integers(1, len(shape)))
    (x,) = _inputs(draw, shape)
    return (lambda u: u.unsqueeze(d).squeeze(d) + u.unsqueeze(-1).squeeze(-1)), f"unsqueeze({d}) of {shape}", [x]


def getitem_build(draw):
    st = _st()
    shape = _shape(draw, min_rank=2)
    key = [slice(None)]
    for s in shape[1:]:
        kind = draw(st.sampled_from(["all", "int", "slice", "none"]))
        if kind == "int":
            key.append(draw(st.integers(-s, s - 1)))
        elif kind == "slice":
            a = draw(st.integers(0, s - 1))
            key.append(slice(a, draw(st.integers(a + 1, s)), draw(st.integers(1, 2))))
        elif kind == "none":
            key += [None, slice(None)]
        else:
            key.append(slice(None))
    if draw(st.booleans()) and key[-1] == slice(None):
        key = [key[0], Ellipsis, *key[1:-1]]
    key = tuple(key)
    (x,) = _inputs(draw, shape)
    return (lambda u: u[key]), f"x[{key}] of {shape}", [x]


def cat_build(draw):
    st = _st()
    shape = _shape(draw, min_rank=2)
    d = draw(st.integers(1, len(shape) - 1))
    other = list(shape)
    other[d] = draw(st.integers(1, 3))
    x, y = _inputs(draw, shape, tuple(other))
    return (lambda u, v: torch_cat([u, v * 2.0, u], d)), f"cat dim {d} of {shape}, {tuple(other)}", [x, y]


def torch_cat(ts, d):
    import torch

    return torch.cat(ts, dim=d)


def stack_build(draw):
    st = _st()
    shape = _shape(draw, min_rank=1, max_rank=3)
    d = draw(st.integers(1, len(shape)))
    x, y = _inputs(draw, shape, shape)
    import torch

    return (lambda u, v: torch.stack([u, v], dim=d)), f"stack dim {d} of {shape}", [x, y]


def split_build(draw):
    st = _st()
    shape = _shape(draw, min_rank=2, max_side=5)
    d = draw(st.integers(1, len(shape) - 1))
    how = draw(st.sampled_from(["chunk", "split", "sections", "unbind"]))
    k = draw(st.integers(1, 3))
    (x,) = _inputs(draw, shape)
    if how == "chunk":
        return (lambda u: u.chunk(k, d)), f"chunk({k}, {d}) of {shape}", [x]
    if how == "split":
        return (lambda u: u.split(k, d)), f"split({k}, {d}) of {shape}", [x]
    if how == "unbind":
        return (lambda u: u.unbind(d)), f"unbind({d}) of {shape}", [x]
    a = draw(st.integers(0, shape[d]))
    return (lambda u: u.split([a, shape[d] - a], d)), f"split([{a}, rest], {d}) of {shape}", [x]


def roll_build(draw):
    st = _st()
    shape = _shape(draw, min_rank=2)
    n = draw(st.integers(1, len(shape) - 1))
    dims = tuple(draw(st.permutations(range(1, len(shape))))[:n])
    shifts = tuple(draw(st.integers(-5, 5)) for _ in dims)
    (x,) = _inputs(draw, shape)
    import torch

    return (lambda u: torch.roll(u, shifts, dims)), f"roll({shifts}, {dims}) of {shape}", [x]


def expand_build(draw):
    st = _st()
    shape = _shape(draw, min_rank=2, max_side=3)
    ones = tuple(1 if draw(st.booleans()) else s for s in shape[1:])
    (x,) = _inputs(draw, (shape[0], *ones))
    how = draw(st.sampled_from(["expand", "repeat"]))
    if how == "expand":
        return (lambda u: u.expand(-1, *shape[1:])), f"expand to {shape} from {ones}", [x]
    reps = tuple(draw(st.integers(1, 2)) for _ in shape[1:])
    return (lambda u: u.repeat(1, *reps)), f"repeat{reps} of {ones}", [x]


def matmul_build(draw):
    st = _st()
    b, m, k, n = (draw(st.integers(1, 4)) for _ in range(4))
    extra = draw(st.sampled_from([(), (2,)]))
    x, y = _inputs(draw, (b, *extra, m, k), (b, *extra, k, n))
    return (lambda u, v: u @ v), f"matmul {(b, *extra, m, k)} @ {(b, *extra, k, n)}", [x, y]
