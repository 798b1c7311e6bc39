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

    class Op4(nn.Module):
        def forward(self, x, y, z, w):
            return fn(x, y, z, w)

    m = {1: Op1, 2: Op2, 3: Op3, 4: Op4}[n_inputs]()
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


def draw_rng(draw) -> np.random.Generator:
    """A numpy generator seeded from the Hypothesis draw (so failing examples replay)."""
    return np.random.default_rng(draw(_st().integers(0, 2**31 - 1)))


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
    listed = False  # one list index at most, and then no None (refused with tensor indices)
    for s in shape[1:]:
        kind = draw(st.sampled_from(["all", "int", "slice", "none", "list"]))
        if kind == "list" and not listed and None not in key:
            listed = True
            key.append(draw(st.lists(st.integers(-s, s - 1), min_size=1, max_size=3)))
        elif kind == "int":
            key.append(draw(st.integers(-s, s - 1)))
        elif kind == "slice":
            a = draw(st.integers(0, s - 1))
            key.append(slice(a, draw(st.integers(a + 1, s)), draw(st.integers(1, 2))))
        elif kind == "none" and not listed:
            key += [None, slice(None)]
        else:
            key.append(slice(None))
    if draw(st.booleans()) and len(key) > 1 and key[1] == slice(None):
        key = [key[0], Ellipsis, *key[2:]]  # the ellipsis stands for that full slice
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



def einsum_build(draw):
    """torch.einsum over the batch: contractions, transposes, reductions, ellipsis, the
    implicit output form and the sublist form."""
    st = _st()
    b, i, j, k = (draw(st.integers(1, 3)) for _ in range(4))
    import torch

    forms = {
        "bij,bjk->bik": [(b, i, j), (b, j, k)],
        "bhqd,bhkd->bhqk": [(b, 2, i, j), (b, 2, k, j)],
        "b...c,bcd->b...d": [(b, i, j, k), (b, k, 2)],
        "bij->bji": [(b, i, j)],
        "bi,bi->b": [(b, i), (b, i)],
        "bij,bjk": [(b, i, j), (b, j, k)],
        "bi,bj->bij": [(b, i), (b, j)],
        "sublist": [(b, i, j), (b, j, k)],
    }
    eq = draw(st.sampled_from(sorted(forms)))
    xs = _inputs(draw, *forms[eq])
    if eq == "sublist":
        return (lambda u, v: torch.einsum(u, [0, 1, 2], v, [0, 2, 3], [0, 3, 1])), "einsum sublist", xs
    return (lambda *us: torch.einsum(eq, *us)), f"einsum {eq}", xs


def tensor_split_build(draw):
    """torch.tensor_split and the method: n sections (more than the size: empty parts) or
    split points (clipped, decreasing: overlapping parts), keyword forms."""
    import torch

    st = _st()
    shape = _shape(draw, min_rank=2, max_side=5)
    d = draw(st.integers(1, len(shape) - 1))
    (x,) = _inputs(draw, shape)
    if draw(st.booleans()):
        k = draw(st.integers(1, shape[d] + 2))
        if draw(st.booleans()):
            return (lambda u: torch.tensor_split(u, k, dim=d)), f"tensor_split({k}, {d}) of {shape}", [x]
        return (lambda u: u.tensor_split(sections=k, dim=d)), f"tensor_split(sections={k}, {d}) of {shape}", [x]
    idx = tuple(draw(st.lists(st.integers(0, shape[d] + 1), min_size=1, max_size=3)))
    return (lambda u: torch.tensor_split(u, indices=idx, dim=d)), f"tensor_split(indices={idx}, {d}) of {shape}", [x]


# ---- split / unbind / transpose / flatten / unflatten -----------------------------------------
def split_sections_build(draw):
    """Tensor.split and torch.split: an int size (the last part shorter) or a list of sizes
    (zero-size parts allowed), dims negative or positive."""
    import torch

    st = _st()
    shape = _shape(draw, min_rank=2, max_side=5)
    rank = len(shape)
    d = draw(st.sampled_from([*range(1, rank), *range(-rank + 1, 0)]))
    (x,) = _inputs(draw, shape)
    fn = draw(st.sampled_from(["method", "torch"]))
    if draw(st.booleans()):
        k = draw(st.integers(1, shape[d] + 1))
    else:
        n = shape[d]
        cuts = sorted(draw(st.lists(st.integers(0, n), min_size=1, max_size=3)))
        k = [b - a for a, b in zip([0, *cuts], [*cuts, n])]
    if fn == "method":
        return (lambda u: u.split(k, d)), f"split({k}, {d}) of {shape}", [x]
    return (lambda u: torch.split(u, k, dim=d)), f"torch.split({k}, dim={d}) of {shape}", [x]


def unbind_build(draw):
    import torch

    st = _st()
    shape = _shape(draw, min_rank=2, max_side=3)
    rank = len(shape)
    d = draw(st.sampled_from([*range(1, rank), *range(-rank + 1, 0)]))
    (x,) = _inputs(draw, shape)
    if draw(st.booleans()):
        return (lambda u: u.unbind(d)), f"unbind({d}) of {shape}", [x]
    return (lambda u: torch.unbind(u, dim=d)), f"torch.unbind(dim={d}) of {shape}", [x]


def transpose_build(draw):
    """transpose / swapaxes (method and torch function), dims negative or positive, the batch
    axis included; followed by an elementwise op so the bookkeeping perm is used."""
    import torch

    st = _st()
    shape = _shape(draw, min_rank=2)
    rank = len(shape)
    dims = st.integers(-rank, rank - 1)
    d0, d1 = draw(dims), draw(dims)
    form = draw(st.sampled_from(["transpose", "torch.transpose", "torch.swapaxes", "swapaxes"]))
    (x,) = _inputs(draw, shape)
    f = {"transpose": lambda u: u.transpose(d0, d1), "torch.transpose": lambda u: torch.transpose(u, d0, d1),
         "torch.swapaxes": lambda u: torch.swapaxes(u, d0, d1), "swapaxes": lambda u: u.swapaxes(d0, d1)}[form]
    return (lambda u: f(u) * 2.0 - 1.0), f"{form}({d0}, {d1}) of {shape}", [x]


def flatten_build(draw):
    """torch.flatten / Tensor.flatten over every (start_dim, end_dim) pair, negative dims."""
    import torch

    st = _st()
    shape = _shape(draw, min_rank=1)
    rank = len(shape)
    a = draw(st.integers(0, rank - 1))
    b = draw(st.integers(a, rank - 1))
    s = a - rank if draw(st.booleans()) else a
    e = b - rank if draw(st.booleans()) else b
    (x,) = _inputs(draw, shape)
    if draw(st.booleans()):
        return (lambda u: torch.flatten(u, s, e) + 1.0), f"torch.flatten({s}, {e}) of {shape}", [x]
    return (lambda u: u.flatten(start_dim=s, end_dim=e) + 1.0), f"flatten({s}, {e}) of {shape}", [x]


def unflatten_build(draw):
    """Tensor.unflatten / torch.unflatten of a non-batch axis into 1-3 sizes (one may be -1)."""
    import torch

    st = _st()
    rank = draw(st.integers(2, 4))
    d = draw(st.integers(1, rank - 1))
    parts = [draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 3)))]
    shape = [draw(st.integers(1, 3)) for _ in range(rank)]
    shape[d] = int(np.prod(parts))
    shape = tuple(shape)
    sizes = list(parts)
    if draw(st.booleans()):
        sizes[draw(st.integers(0, len(sizes) - 1))] = -1
    sizes = tuple(sizes)
    dim = d - rank if draw(st.booleans()) else d
    (x,) = _inputs(draw, shape)
    if draw(st.booleans()):
        return (lambda u: u.unflatten(dim, sizes) * 3.0), f"unflatten({dim}, {sizes}) of {shape}", [x]
    return (lambda u: torch.unflatten(u, dim, sizes) * 3.0), f"torch.unflatten({dim}, {sizes}) of {shape}", [x]


# ---- dtype casts, passthrough, shape queries --------------------------------------------------
def cast_build(draw):
    """float/double/half/int/long/bool/to/type/type_as from float or integer inputs."""
    import torch

    st = _st()
    shape = _shape(draw, min_rank=1, max_rank=4)
    src = draw(st.sampled_from(["float32", "int64", "int32"]))
    if src == "float32":
        (x,) = _inputs(draw, shape)
        x = (x * np.float32(3.0)).astype(np.float32)
        if draw(st.booleans()):
            x[..., 0] = 0.0  # zeros: .bool() is False there
    else:
        rng = draw_rng(draw)
        x = rng.integers(-5, 6, shape).astype(src)
    form = draw(st.sampled_from(["float", "double", "half", "int", "long", "bool", "to_dtype", "to_kw", "to_cpu",
                                 "type", "type_as", "to_same"]))
    target = draw(st.sampled_from([torch.float32, torch.float64, torch.int32, torch.int64, torch.bool]))
    f = {"float": lambda u: u.float(), "double": lambda u: u.double(), "half": lambda u: u.half(),
         "int": lambda u: u.int(), "long": lambda u: u.long(), "bool": lambda u: u.bool(),
         "to_dtype": lambda u: u.to(target), "to_kw": lambda u: u.to(dtype=target),
         "to_cpu": lambda u: u.to("cpu"), "type": lambda u: u.type(target),
         "type_as": lambda u: u.type_as(torch.zeros((), dtype=target)),
         "to_same": lambda u: u.to(u.dtype)}[form]
    desc = f"{src} -> {form}" + (f"({target})" if form in ("to_dtype", "to_kw", "type", "type_as") else "")
    return f, f"{desc} of {shape}", [x]


def setitem_build(draw):
    """`y[index] = value` into a traced tensor: slices (negative, open), ints, Ellipsis, a
    tensor value of the region's shape or broadcasting to it, a scalar, `+=` on a slice (MViT's
    relative position bias), a boolean mask; y used afterwards by its old name."""
    st = _st()
    shape = _shape(draw, min_rank=2, max_rank=4, max_side=4)
    rank = len(shape)
    d = draw(st.integers(1, rank - 1))
    n = shape[d]
    a = draw(st.integers(-n, n - 1))
    b = draw(st.sampled_from([None, *range(-n, n + 1)]))
    form = draw(st.sampled_from(["slice", "int", "scalar", "broadcast", "iadd", "mask", "ellipsis"]))
    lead = (slice(None),) * d
    if form == "int":
        idx = (*lead, a)
    elif form == "ellipsis":
        idx = (Ellipsis, slice(a, b)) if d == rank - 1 else (*lead, slice(a, b), Ellipsis)
    else:
        idx = (*lead, slice(a, b))
    import torch

    region = torch.zeros(shape)[idx].shape
    if form == "broadcast":
        vshape = (shape[0], *[1] * (len(region) - 1))
    else:
        vshape = tuple(region)
    x, v = _inputs(draw, shape, vshape)

    def f(u, w):
        y = u * 2
        if form == "scalar":
            y[idx] = 0.5
        elif form == "iadd":
            y[idx] += w
        elif form == "mask":
            y[y > 0.3] = -1.0
        else:
            y[idx] = w
        return y + 1

    return f, f"{form}: y[{idx}] = value {vshape} into {shape}", [x, v]


def inplace_build(draw):
    """In-place methods and functions on a traced tensor, with the tensor used afterwards by
    its old name (fx records the write but later nodes name the original), aliases (detach:
    same tensor) and a clone that must stay apart."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    st = _st()
    shape = _shape(draw, min_rank=1, max_rank=4, max_side=3)
    x, v = _inputs(draw, shape, shape)
    form = draw(st.sampled_from(["methods", "relu_", "inplace_kw", "clone", "alias", "iadd_alias"]))

    def f(u, w):
        y = u * 2
        if form == "methods":
            y.add_(w)
            y.mul_(3)
            y.clamp_(-2.0, 2.0)
            return y
        if form == "relu_":
            torch.relu_(y)
            return y - w
        if form == "inplace_kw":
            F.relu(y, inplace=True)
            return y * w
        if form == "clone":
            z = y.clone()
            z.add_(w)
            return y + 10 * z
        if form == "alias":
            z = y.detach()
            z.sub_(w)
            return y
        z = y
        z += w
        return y * 2

    return f, f"in-place {form} on {shape}", [x, v]

def passthrough_build(draw):
    """Dropout in eval (training=False) and contiguous/clone/detach: the identity."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    st = _st()
    form = draw(st.sampled_from(["dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "contiguous",
                                 "clone", "torch.clone", "detach", "detach_", "requires_grad_"]))
    min_rank, max_rank = {"dropout1d": (3, 3), "dropout2d": (4, 4), "dropout3d": (5, 5)}.get(form, (1, 4))
    shape = _shape(draw, min_rank=min_rank, max_rank=max_rank, max_side=3)
    p = draw(st.sampled_from([0.0, 0.3, 0.9]))
    (x,) = _inputs(draw, shape)
    f = {"dropout": lambda u: F.dropout(u, p, training=False),
         "dropout1d": lambda u: F.dropout1d(u, p, training=False),
         "dropout2d": lambda u: F.dropout2d(u, p, training=False),
         "dropout3d": lambda u: F.dropout3d(u, p, training=False),
         "alpha_dropout": lambda u: F.alpha_dropout(u, p, training=False),
         "contiguous": lambda u: u.transpose(0, -1).contiguous().transpose(0, -1),
         "clone": lambda u: u.clone(), "torch.clone": lambda u: torch.clone(u), "detach": lambda u: u.detach(),
         "detach_": lambda u: (u * 1.0).detach_(), "requires_grad_": lambda u: u.requires_grad_(False)}[form]
    return (lambda u: f(u) + 0.5), f"{form}(p={p}) of {shape}", [x]


def shape_query(*forms):
    """x.shape / x.size() / x.size(d) / x.dim() / x.ndim / x.numel() / x.dtype / x.device feeding
    reshapes and arithmetic (`forms`: which of them)."""
    return lambda draw: _shape_query_build(draw, forms)


def _shape_query_build(draw, forms):
    st = _st()
    shape = _shape(draw, min_rank=2)
    rank = len(shape)
    d = draw(st.integers(-rank + 1, rank - 1))
    form = draw(st.sampled_from(forms))
    (x,) = _inputs(draw, shape)
    f = {"shape": lambda u: u.reshape(u.shape[0], -1),
         "size": lambda u: u.view(u.size()[0], *u.size()[1:]) * 2.0,
         "size_d": lambda u: u * float(u.size(d)),
         "dim": lambda u: u.sum(dim=u.dim() - 1),
         "ndim": lambda u: u * u.ndim,
         "numel": lambda u: u / u[0].numel(),
         "dtype": lambda u: u.to(u.dtype) + 1.0,
         "device": lambda u: u.to(u.device) - 1.0}[form]
    return f, f"{form} (d={d}) of {shape}", [x]


# ---- functional forms of modules ----------------------------------------------------------------
def linear_build(draw):
    """F.linear with a constant weight, with and without bias, on inputs of rank 2-4."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    st = _st()
    shape = _shape(draw, min_rank=2, max_rank=4)
    out = draw(st.integers(1, 4))
    (x,) = _inputs(draw, shape)
    rng = draw_rng(draw)
    w = torch.tensor(rng.standard_normal((out, shape[-1])).astype(np.float32))
    b = torch.tensor(rng.standard_normal(out).astype(np.float32)) if draw(st.booleans()) else None
    if b is None and draw(st.booleans()):
        return (lambda u: F.linear(u, w)), f"linear(out={out}) of {shape}", [x]
    return (lambda u: F.linear(u, w, b)), f"linear(out={out}, bias={b is not None}) of {shape}", [x]


def _constant(rng, shape, positive=False):
    import torch

    a = rng.standard_normal(shape).astype(np.float32)
    return torch.tensor(np.abs(a) + np.float32(0.5) if positive else a)


def layer_norm_build(draw):
    """F.layer_norm over the last 1-3 axes, weight/bias each present or not, eps drawn."""
    import torch.nn.functional as F  # noqa: N812

    st = _st()
    shape = _shape(draw, min_rank=2, max_rank=4)
    k = draw(st.integers(1, len(shape) - 1))
    norm = shape[-k:]
    rng = draw_rng(draw)
    w = _constant(rng, norm) if draw(st.booleans()) else None
    b = _constant(rng, norm) if draw(st.booleans()) else None
    # 1-3 values per group are ill-conditioned at small eps (recreate.converters.norm._draw_eps):
    # Keras's LayerNormalization then misses torch by ~2**-24 |x| / sqrt(eps) (2.6e-5 seen
    # with one value, eps=1e-5, where torch returns bias exactly).
    eps = 0.1 if int(np.prod(norm)) <= 3 else draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    (x,) = _inputs(draw, shape)
    return (lambda u: F.layer_norm(u, norm, w, b, eps)), \
        f"layer_norm({norm}, weight={w is not None}, bias={b is not None}, eps={eps}) of {shape}", [x]


def batch_norm_build(draw):
    """F.batch_norm in inference (training=False) on (N, C) to (N, C, D, H, W), weight/bias
    each present or not, momentum and eps drawn."""
    import torch.nn.functional as F  # noqa: N812

    st = _st()
    shape = _shape(draw, min_rank=2, max_rank=5, max_side=3)
    c = shape[1]
    rng = draw_rng(draw)
    rm, rv = _constant(rng, (c,)), _constant(rng, (c,), positive=True)
    w = _constant(rng, (c,)) if draw(st.booleans()) else None
    b = _constant(rng, (c,)) if draw(st.booleans()) else None
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    mom = draw(st.sampled_from([0.1, 0.5]))
    (x,) = _inputs(draw, shape)
    return (lambda u: F.batch_norm(u, rm, rv, w, b, False, mom, eps)), \
        f"batch_norm(weight={w is not None}, bias={b is not None}, eps={eps}) of {shape}", [x]


def _pool_input(draw, nd, k, d=1, p=0):
    st = _st()
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    lo = max(1, d * (k - 1) + 1 - 2 * p)
    return (n, c, *(draw(st.integers(lo, lo + 4)) for _ in range(nd)))


def max_pool(nd: int):
    """F.max_pool{nd}d: kernel, stride (None = kernel), padding <= k/2, dilation, ceil_mode,
    return_indices, as ints or tuples."""

    def build(draw):
        import torch.nn.functional as F  # noqa: N812

        st = _st()
        fn = getattr(F, f"max_pool{nd}d")
        k = draw(st.integers(1, 3))
        p = draw(st.integers(0, k // 2))
        d = draw(st.integers(1, 2))
        stride = draw(st.sampled_from([None, 1, 2, 3]))
        ceil = draw(st.booleans())
        ri = draw(st.booleans())
        tup = draw(st.booleans())
        shape = _pool_input(draw, nd, k, d, p)
        ks = (k,) * nd if tup else k
        (x,) = _inputs(draw, shape)
        desc = f"max_pool{nd}d(k={ks}, s={stride}, p={p}, d={d}, ceil={ceil}, indices={ri}) of {shape}"
        return (lambda u: fn(u, ks, stride, p, d, ceil_mode=ceil, return_indices=ri)), desc, [x]

    return build


def avg_pool2d_build(draw):
    """F.avg_pool2d: kernel, stride, padding <= k/2, ceil_mode, count_include_pad, divisor_override."""
    import torch.nn.functional as F  # noqa: N812

    st = _st()
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    stride = draw(st.sampled_from([None, 1, 2, (1, 2), (3, 1)]))
    ceil, cip = draw(st.booleans()), draw(st.booleans())
    div = draw(st.sampled_from([None, None, 2, 5]))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    shape = (n, c, draw(st.integers(k[0], k[0] + 4)), draw(st.integers(k[1], k[1] + 4)))
    (x,) = _inputs(draw, shape)
    desc = f"avg_pool2d(k={k}, s={stride}, p={p}, ceil={ceil}, count_include_pad={cip}, divisor={div}) of {shape}"
    return (lambda u: F.avg_pool2d(u, k, stride, p, ceil, cip, div)), desc, [x]


def adaptive_avg_pool(nd: int, kind: str = "avg"):
    """F.adaptive_{kind}_pool{nd}d: int or tuple output sizes (None keeps an axis), smaller,
    equal or larger than the input (overlapping and uneven bins); max pools also draw
    return_indices."""

    def build(draw):
        import torch.nn.functional as F  # noqa: N812

        st = _st()
        fn = getattr(F, f"adaptive_{kind}_pool{nd}d")
        n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
        spatial = tuple(draw(st.integers(1, 7)) for _ in range(nd))
        if nd > 1 and draw(st.booleans()):
            out = tuple(None if draw(st.booleans()) else draw(st.integers(1, 7)) for _ in range(nd))
        else:
            out = draw(st.integers(1, 7))
        (x,) = _inputs(draw, (n, c, *spatial))
        if kind == "max":
            ri = draw(st.booleans())
            return (lambda u: fn(u, out, return_indices=ri)), \
                f"adaptive_max_pool{nd}d({out}, return_indices={ri}) of {(n, c, *spatial)}", [x]
        return (lambda u: fn(u, out)), f"adaptive_avg_pool{nd}d({out}) of {(n, c, *spatial)}", [x]

    return build


_INTERP_MODES = {3: ["nearest", "nearest-exact", "linear", "area"],
                 4: ["nearest", "nearest-exact", "bilinear", "bicubic", "area"],
                 5: ["nearest", "nearest-exact", "trilinear", "area"]}


def interpolate_build(draw):
    """F.interpolate: every mode for its rank, size or scale_factor (a float or one per axis,
    up or down), align_corners for the linear modes, recompute_scale_factor."""
    import torch.nn.functional as F  # noqa: N812

    st = _st()
    rank = draw(st.sampled_from([3, 4, 5]))
    nd = rank - 2
    mode = draw(st.sampled_from(_INTERP_MODES[rank]))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    spatial = tuple(draw(st.integers(1, 5)) for _ in range(nd))
    kw = {"mode": mode}
    if draw(st.booleans()):
        size = tuple(draw(st.integers(1, 7)) for _ in range(nd))
        kw["size"] = size[0] if nd == 1 or (len(set(size)) == 1 and draw(st.booleans())) else size
    else:
        scales = [draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 0.75])) for _ in range(nd)]
        kw["scale_factor"] = scales[0] if draw(st.booleans()) else tuple(scales)
        if mode != "area":
            kw["recompute_scale_factor"] = draw(st.sampled_from([None, False, True]))
        # every output size must be >= 1
        factors = [kw["scale_factor"]] * nd if isinstance(kw["scale_factor"], float) else kw["scale_factor"]
        spatial = tuple(max(s, int(np.ceil(1 / f))) for s, f in zip(spatial, factors))
    if mode in ("linear", "bilinear", "bicubic", "trilinear"):
        kw["align_corners"] = draw(st.booleans())
    (x,) = _inputs(draw, (n, c, *spatial))
    return (lambda u: F.interpolate(u, **kw)), f"interpolate({kw}) of {(n, c, *spatial)}", [x]


def pad_build(draw):
    """F.pad in every mode: constant (any number of non-batch axes, negative pads crop, value
    drawn), reflect (pad < size), replicate, circular (pad <= size) on 1-3 spatial axes."""
    import torch.nn.functional as F  # noqa: N812

    st = _st()
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    if mode == "constant":
        shape = _shape(draw, min_rank=1, max_rank=4, max_side=4)
        k = draw(st.integers(0, len(shape) - 1))
        pads = []
        for i in range(k):
            s = shape[len(shape) - 1 - i]
            lo = draw(st.integers(-(s - 1), 2))
            hi = draw(st.integers(-(s - 1 - max(0, -lo)), 2))  # at least one element stays
            pads += [lo, hi]
        value = draw(st.sampled_from([None, 0.0, 1.5, -2.0]))
        (x,) = _inputs(draw, shape)
        pads = tuple(pads)
        if value is None:
            return (lambda u: F.pad(u, pads)), f"pad({pads}) of {shape}", [x]
        return (lambda u: F.pad(u, pads, "constant", value)), f"pad({pads}, value={value}) of {shape}", [x]
    nd = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *(draw(st.integers(1, 4)) for _ in range(nd)))
    pads = []
    for i in range(nd):
        s = shape[-1 - i]
        top = s - 1 if mode == "reflect" else s if mode == "circular" else 3
        pads += [draw(st.integers(0, top)), draw(st.integers(0, top))]
    pads = tuple(pads)
    (x,) = _inputs(draw, shape)
    return (lambda u: F.pad(u, pads, mode=mode)), f"pad({pads}, {mode}) of {shape}", [x]


# ---- sampling -----------------------------------------------------------------------------------
def grid_sample_build(draw):
    """F.grid_sample: every mode (bicubic 2-d only) and padding_mode, align_corners, 4-d and 5-d,
    grid points inside and outside [-1, 1]."""
    import torch.nn.functional as F  # noqa: N812

    st = _st()
    nd = draw(st.sampled_from([2, 3]))
    mode = draw(st.sampled_from(["bilinear", "nearest", "bicubic"] if nd == 2 else ["bilinear", "nearest"]))
    pm = draw(st.sampled_from(["zeros", "border", "reflection"]))
    ac = draw(st.booleans())
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    out = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    (x,) = _inputs(draw, (n, c, *spatial))
    rng = draw_rng(draw)
    grid = rng.uniform(-1.3, 1.3, (n, *out, nd)).astype(np.float32)
    desc = f"grid_sample({mode}, {pm}, align_corners={ac}) of {(n, c, *spatial)}, grid {grid.shape}"
    return (lambda u, g: F.grid_sample(u, g, mode, pm, ac)), desc, [x, grid]


def affine_grid_build(draw):
    """F.affine_grid: 2-d and 3-d, align_corners; theta is an input."""
    import torch.nn.functional as F  # noqa: N812

    st = _st()
    nd = draw(st.sampled_from([2, 3]))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    size = (n, c, *(draw(st.integers(1, 4)) for _ in range(nd)))
    ac = draw(st.booleans())
    (theta,) = _inputs(draw, (n, nd, nd + 1))
    return (lambda t: F.affine_grid(t, size, ac)), f"affine_grid({size}, align_corners={ac})", [theta]


# ---- torchvision ops ----------------------------------------------------------------------------
def _tv(name: str):
    """torchvision.ops.<name>, also bound to the module-level name `tv_<name>` of this module:
    fx keeps an autowrapped function whole (recreate.ops.vision.AUTOWRAP) only when the traced
    code calls it through a global name, as `from torchvision.ops import roi_align` does."""
    import torchvision.ops

    fn = getattr(torchvision.ops, name)
    globals()[f"tv_{name}"] = fn
    return fn


def _rois(rng, n, k, h, w, scale):
    """(k, 5) boxes [batch index, x1, y1, x2, y2] in input coordinates / scale, some outside."""
    xy = rng.uniform(-1, max(w, h) / scale, (k, 2))
    wh = rng.uniform(0.2, max(w, h) / scale, (k, 2))
    idx = rng.integers(0, n, (k, 1))
    return np.concatenate([idx, xy, xy + wh], 1).astype(np.float32)


def roi_align_build(draw, aten=False):
    """torchvision.ops.roi_align (boxes as a (K, 5) tensor or a per-image list) and the raw
    torch.ops.torchvision.roi_align: output size, spatial_scale, sampling_ratio (-1 adaptive),
    aligned."""
    import torch

    st = _st()
    n, c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    out = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25]))
    ratio = draw(st.sampled_from([-1, 1, 2]))
    aligned = draw(st.booleans())
    k = draw(st.integers(1, 4))
    (x,) = _inputs(draw, (n, c, h, w))
    rng = draw_rng(draw)
    rois = _rois(rng, n, k, h, w, scale)
    if ratio == -1:
        # adaptive sampling: ceil(roi size / output size) points, which the converter bounds by
        # ceil(map size / output size): exact for a RoI no larger than the (scaled) map
        rois[:, 3] = np.minimum(rois[:, 3], rois[:, 1] + w / scale)
        rois[:, 4] = np.minimum(rois[:, 4], rois[:, 2] + h / scale)
    desc = f"roi_align(out={out}, scale={scale}, ratio={ratio}, aligned={aligned}) of {(n, c, h, w)}, {k} boxes"
    if aten:
        return (lambda u, r: torch.ops.torchvision.roi_align(u, r, scale, out[0], out[1], ratio, aligned)), \
            "raw " + desc, [x, rois]
    _tv("roi_align")
    if draw(st.booleans()):
        return (lambda u, r: tv_roi_align(u, r, out, scale, ratio, aligned)), desc, [x, rois]  # noqa: F821
    # a per-image list: torchvision orders the boxes image by image
    rois = rois[np.argsort(rois[:, 0], kind="stable")]
    boxes = [torch.tensor(rois[rois[:, 0] == i][:, 1:]) for i in range(n)]
    return (lambda u: tv_roi_align(u, boxes, out, scale, ratio, aligned)), \
        f"{desc} (list of {[len(b) for b in boxes]})", [x]  # noqa: F821


def roi_pool_build(draw):
    """torchvision.ops.roi_pool with a (K, 5) tensor or a per-image list of boxes."""
    import torch

    st = _st()
    n, c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    out = draw(st.sampled_from([1, 2, (2, 3), (3, 1)]))
    scale = draw(st.sampled_from([1.0, 0.5]))
    k = draw(st.integers(1, 4))
    (x,) = _inputs(draw, (n, c, h, w))
    rois = _rois(draw_rng(draw), n, k, h, w, scale)
    desc = f"roi_pool(out={out}, scale={scale}) of {(n, c, h, w)}, {k} boxes"
    _tv("roi_pool")
    if draw(st.booleans()):
        return (lambda u, r: tv_roi_pool(u, r, out, scale)), desc, [x, rois]  # noqa: F821
    boxes = [torch.tensor(rois[rois[:, 0] == i][:, 1:]) for i in range(n)]
    return (lambda u: tv_roi_pool(u, boxes, out, scale)), f"{desc} (list)", [x]  # noqa: F821


def deform_conv2d_build(draw, aten=False):
    """torchvision.ops.deform_conv2d (and the raw op): constant weight (groups), bias or not,
    stride, padding, dilation, offset groups, with or without a mask; offset and mask are
    inputs."""
    import torch

    st = _st()
    groups, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    cin = groups * og * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    n = draw(st.integers(1, 2))
    h = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - 2 * pad[0]), 5))
    w = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - 2 * pad[1]), 5))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    rng = draw_rng(draw)
    weight = torch.tensor((rng.standard_normal((cout, cin // groups, kh, kw)) * 0.5).astype(np.float32))
    bias = torch.tensor(rng.standard_normal(cout).astype(np.float32)) if draw(st.booleans()) else None
    use_mask = draw(st.booleans())
    (x,) = _inputs(draw, (n, cin, h, w))
    off = (rng.standard_normal((n, 2 * og * kh * kw, oh, ow)) * 1.5).astype(np.float32)
    mask = rng.random((n, og * kh * kw, oh, ow)).astype(np.float32)
    desc = (f"deform_conv2d(groups={groups}, offset_groups={og}, k={(kh, kw)}, s={stride}, p={pad}, d={dil}, "
            f"bias={bias is not None}, mask={use_mask}) of {(n, cin, h, w)}")
    if aten:
        b = bias if bias is not None else torch.zeros(cout)
        if use_mask:
            return (lambda u, o, m: torch.ops.torchvision.deform_conv2d(
                u, weight, o, m, b, stride[0], stride[1], pad[0], pad[1], dil[0], dil[1], groups, og, True)), \
                "raw " + desc, [x, off, mask]
        no_mask = torch.zeros((n, 1))  # what torchvision.ops.deform_conv2d passes without a mask
        return (lambda u, o: torch.ops.torchvision.deform_conv2d(
            u, weight, o, no_mask, b, stride[0], stride[1], pad[0], pad[1], dil[0], dil[1], groups, og,
            False)), "raw " + desc, [x, off]
    _tv("deform_conv2d")
    if use_mask:
        return (lambda u, o, m: tv_deform_conv2d(u, o, weight, bias, stride, pad, dil, m)), desc, \
            [x, off, mask]  # noqa: F821
    return (lambda u, o: tv_deform_conv2d(u, o, weight, bias, stride, pad, dil)), desc, [x, off]  # noqa: F821


def stochastic_depth_build(draw):
    """torchvision.ops.stochastic_depth at inference (training=False): the identity."""
    import torchvision

    st = _st()
    shape = _shape(draw, min_rank=2)
    p = draw(st.sampled_from([0.0, 0.2, 0.9]))
    mode = draw(st.sampled_from(["row", "batch"]))
    (x,) = _inputs(draw, shape)
    return (lambda u: torchvision.ops.stochastic_depth(u, p, mode, training=False) * 2.0), \
        f"stochastic_depth({p}, {mode}) of {shape}", [x]


def roi_align_aten_build(draw):
    return roi_align_build(draw, aten=True)


def deform_conv2d_aten_build(draw):
    return deform_conv2d_build(draw, aten=True)
