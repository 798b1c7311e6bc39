"""Reduction, scan, sort and softmax ATen op converters (recreate.ops.aten_reduce) against
PyTorch's OpInfo samples in float32 and in the integer and bool dtypes each op supports,
through both capture paths (core ATen, and the export IR as the model called it), plus
torch's dtype rules, ties, NaN, layouts and a dynamic batch.

The default run checks up to LIMIT samples of an op (spread over its sample list) in one
captured module per group of ops; the `slow` sweep checks every sample.

Ties: max.dim / argmax / argmin follow torch's first-occurrence rule and are compared exactly;
sort (stable=True) indices are compared exactly. For sort without stable=True and for topk,
torch leaves the order of equal values to the kernel: their values are compared exactly and
their indices through the values they point at (x.gather(dim, indices)), which equals the
index comparison wherever the values are distinct. topk with sorted=False is compared after
sorting along the dim (torch leaves that order to the kernel too).
"""

import recreate  # noqa: F401,I001 - first: torch before tensorflow
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recreate.testing.aten import _flat, compare, module_for, opinfo_samples

LIMIT = 5

# OpInfo name (variant after "/") -> ATen op packets one of which the core-ATen graph must hold
OPS = {
    "sum": {"sum"}, "mean": {"mean"}, "amax": {"amax"}, "amin": {"amin"}, "any": {"any"},
    "all": {"any"}, "argmax": {"argmax"}, "argmin": {"argmin"},
    "max/reduction_with_dim": {"max"}, "max/reduction_no_dim": {"max"}, "max/binary": {"maximum"},
    "min/reduction_with_dim": {"min"}, "min/reduction_no_dim": {"min"}, "min/binary": {"minimum"},
    "prod": {"prod"}, "var": {"var"}, "std": {"var"}, "var_mean": {"var_mean"}, "std_mean": {"var_mean"},
    "var/unbiased": {"var"}, "std/unbiased": {"var"}, "var_mean/unbiased": {"var_mean"},
    "std_mean/unbiased": {"var_mean"}, "cumsum": {"cumsum"}, "cumprod": {"cumprod"},
    "logsumexp": {"amax"}, "sort": {"sort"}, "topk": {"topk"}, "softmax": {"_softmax"},
    "softmax/with_dtype": {"_softmax"}, "log_softmax": {"_log_softmax"}, "log_softmax/with_dtype": {"_log_softmax"},
    "nn.functional.softmin": {"_softmax"}, "nn.functional.softmin/with_dtype": {"_softmax"},
    "cdist": {"_cdist_forward"}, "nn.functional.pdist": {"_pdist_forward"},
    "linalg.vector_norm": {"sum", "amax", "amin"}, "norm": {"sum", "amax", "amin"},
    "norm/fro": {"sum"}, "norm/inf": {"amax", "amin"}, "count_nonzero": {"sum"},
    "aminmax": {"amin"}, "nansum": {"sum"}, "histc": {"histc"},
}

# Exclusions, as data: (OpInfo name, dtype or "*", sample-description regex) -> reason.
# Every sample of every op in OPS currently passes (the slow sweep runs them all).
EXCLUDED: dict = {}
# Not run at all: norm/nuc, the nuclear norm (an SVD: the linalg family, not a reduction).

# Relaxed comparisons, as data: OpInfo name -> (position of `dim` among the args after the
# input, why). Values are compared exactly; indices through the values they point at
# (x.gather(dim, indices)), i.e. exactly wherever the values are distinct; sort with
# stable=True compares indices exactly; topk with sorted=False is compared after sorting.
RELAXED = {
    "sort": (0, "sort without stable=True: torch leaves the order of equal values to the kernel"),
    "topk": (1, "topk: torch leaves the order of equal values (and with sorted=False all order) to the kernel"),
}

INT_DTYPES = (torch.int64, torch.int32, torch.uint8, torch.bool)

GROUP_SIZE = 8
GROUPS = {f"ops{i // GROUP_SIZE}:{key}..": list(OPS)[i:i + GROUP_SIZE] for i, key in enumerate(list(OPS))
          if i % GROUP_SIZE == 0}


def _excluded(key, dtype, desc):
    for (k, d, pattern), reason in EXCLUDED.items():
        if k == key and d in ("*", str(dtype).replace("torch.", "")) and re.search(pattern, desc):
            return reason
    return None


def _describe(s):
    def d(x):
        if isinstance(x, torch.Tensor):
            return f"T{tuple(x.shape)}:{str(x.dtype).replace('torch.', '')}"
        if isinstance(x, (list, tuple)):
            return "[" + ",".join(d(e) for e in x) + "]"
        return repr(x)

    return f"{d(s.input)} {d(list(s.args))} {{{', '.join(f'{k}={d(v)}' for k, v in s.kwargs.items())}}}"


def _spread(items, limit):
    """Up to `limit` items spread over the list (OpInfo lists vary one argument at a time)."""
    if not limit or len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _samples(key, dtype, limit):
    """(OpInfo, [(label, sample)]) of `key` in `dtype`, exclusions left out."""
    name, _, variant = key.partition("/")
    info, _ = opinfo_samples(name, variant=variant, limit=1)
    if dtype not in info.supported_dtypes("cpu"):
        return info, []
    kept = []
    for s in info.sample_inputs("cpu", dtype, requires_grad=False):
        desc = _describe(s)
        if not _excluded(key, dtype, desc):
            kept.append((f"{key} {desc}", s))
    return info, _spread(kept, limit)


def _order_free(op, dim_pos):
    """sort/topk compared the way the module docstring says: values, and the values the
    indices point at (exact indices for a stable sort)."""
    def fn(x, *args, **kwargs):
        values, idx = op(x, *args, **kwargs)
        if kwargs.get("stable") or x.ndim == 0:
            return values, idx
        dim = args[dim_pos] if len(args) > dim_pos else kwargs.get("dim", -1)
        pointed = x.gather(dim, idx)
        if kwargs.get("sorted", True) is False or (len(args) > 3 and args[3] is False):
            return values.sort(dim, stable=True)[0], pointed.sort(dim, stable=True)[0]
        return values, pointed

    return fn


def _fn(key, info):
    if key in RELAXED:
        return _order_free(info.op, RELAXED[key][0])
    return info.op


def _opinfo_entries(keys, dtypes_limits):
    entries = []
    for key in keys:
        found = 0
        for dtype, limit in dtypes_limits:
            info, samples = _samples(key, dtype, limit)
            found += len(samples)
            entries += [(label, _fn(key, info), (s.input, *s.args), s.kwargs) for label, s in samples]
        assert found, f"{key}: no samples"
    return entries


def _together(entries):
    """(fn of all entries' tensors returning every output in order, packed args, labels).
    An output torch computes as NaN everywhere (var of an empty tensor) is compared as its
    NaN mask: a float comparison refuses all-NaN outputs as proving nothing."""
    nan_outputs = set()
    labels = []
    with torch.no_grad():
        for label, fn, args, kwargs in entries:
            for o in _flat(fn(*args, **kwargs)):
                if o.is_floating_point() and o.numel() and bool(o.isnan().all()):
                    nan_outputs.add(len(labels))
                labels.append(label)

    def together(*packed):
        out = []
        for (_, fn, _, _), (args, kwargs) in zip(entries, packed):
            out.extend(_flat(fn(*args, **kwargs)))
        return tuple(o.isnan() if i in nan_outputs else o for i, o in enumerate(out))

    return together, [(tuple(args), dict(kwargs)) for _, _, args, kwargs in entries], labels


def _convert(module, tensors, *, dynamic_batch, decompose):
    """(Keras model, ATen ops of the graph) from one capture (recreate.testing.aten.check_op
    captures twice: once to convert, once for the op list)."""
    from recreate.ops import load_all
    from recreate.tracer import capture
    from recreate.tracer.build import Builder

    load_all()
    ep, args, kw = capture.export(module, tuple(t.clone() for t in tensors), {}, dynamic_batch=dynamic_batch,
                                  decompose=decompose)
    builder = Builder(module, ep, args, kw, "torch", dynamic_batch)
    km = builder.finish(builder.run(), None)
    return km, {n.target for n in ep.graph.nodes if n.op == "call_function"}


def check_together(entries, *, dynamic_batch=False, decompose=True):
    """Check [(label, fn, args, kwargs)] in one captured module; a failure names its entry.
    decompose=False converts the export IR as captured (the ops a model's code calls:
    var.dim, logsumexp, softmax.int, linalg_vector_norm ...), the path whole models take
    when every op has a converter. Returns (OpCheck, labels)."""
    from recreate.testing.aten import OpCheck, _tensor_leaves

    together, packed, labels = _together(entries)
    tensors = _tensor_leaves(packed, [])
    module = module_for(together, packed, {})
    with torch.no_grad():
        ref = [t.numpy() for t in _flat(module(*[t.clone() for t in tensors]))]
    km, ops = _convert(module, tensors, dynamic_batch=dynamic_batch, decompose=decompose)
    out = km([t.numpy() for t in tensors] if len(tensors) > 1 else tensors[0].numpy())
    out = out if isinstance(out, (list, tuple)) else [out]
    assert len(out) == len(ref), f"{len(out)} Keras outputs vs {len(ref)} torch outputs"
    path = "core ATen" if decompose else "export IR"
    for i, (g, r) in enumerate(zip(out, ref)):
        compare(np.asarray(g), r, 1e-5, f"{labels[i]} ({path}), output {i}")
    return OpCheck(km, ops, 0.0), labels


def _assert_ops(check, keys):
    names = {o.overloadpacket.__name__ for o in check.aten_ops if hasattr(o, "overloadpacket")}
    for key in keys:
        assert names & OPS[key], f"{key}: none of {OPS[key]} in the captured graph ({sorted(names)})"


# default run: LIMIT float32 samples, one int64 and one bool sample (the full sweep: every dtype)
def test_exclusions_match_samples():
    """Every exclusion still matches a sample (a stale entry would hide nothing, or a future bug)."""
    for (key, dtype, pattern), reason in EXCLUDED.items():
        name, _, variant = key.partition("/")
        info, _ = opinfo_samples(name, variant=variant, limit=1)
        dtypes = [getattr(torch, dtype)] if dtype != "*" else [torch.float32, *INT_DTYPES]
        descs = [_describe(s) for d in dtypes if d in info.supported_dtypes("cpu")
                 for s in info.sample_inputs("cpu", d, requires_grad=False)]
        assert any(re.search(pattern, d) for d in descs), f"stale exclusion {key} {pattern}: {reason}"


DTYPES = [(torch.float32, LIMIT), (torch.int64, 1), (torch.bool, 1)]


@pytest.mark.parametrize("group", list(GROUPS))
def test_opinfo(group):
    """Up to LIMIT float32 samples and an int64 and a bool one where the op supports them."""
    keys = GROUPS[group]
    check, _ = check_together(_opinfo_entries(keys, DTYPES))
    _assert_ops(check, keys)


@pytest.mark.parametrize("group", list(GROUPS))
def test_opinfo_export_ir(group):
    """The same samples converted from the export IR without decomposing (the path whole
    models take when every op has a converter): 2 float32 samples and an int64 one."""
    check, _ = check_together(_opinfo_entries(GROUPS[group], [(torch.float32, 2), (torch.int64, 1)]), decompose=False)
    undecomposed = {o for o in check.aten_ops if hasattr(o, "overloadpacket") and o.overloadpacket.__name__ in
                    {"var", "std", "var_mean", "std_mean", "logsumexp", "softmax", "log_softmax", "linalg_vector_norm",
                     "count_nonzero", "aminmax", "nansum", "all", "cdist", "pdist", "sum", "max"}}
    assert undecomposed, f"{group}: the graph was decomposed ({check.aten_ops})"


@pytest.mark.slow
@pytest.mark.parametrize("key", list(OPS))
def test_opinfo_every_sample(key):
    check, _ = check_together(_opinfo_entries([key], [(d, None) for d in (torch.float32, *INT_DTYPES)]))
    _assert_ops(check, [key])


@pytest.mark.slow
@pytest.mark.parametrize("key", list(OPS))
def test_opinfo_every_sample_export_ir(key):
    check_together(_opinfo_entries([key], [(d, None) for d in (torch.float32, *INT_DTYPES)]), decompose=False)


# ---- dtypes, ties, special values, schema corners ---------------------------------------------
def _i(*v, dtype=torch.int64):
    return torch.tensor(v, dtype=dtype)


def _f(*v):
    return torch.tensor(v, dtype=torch.float32)


NAN, INF = float("nan"), float("inf")
TIES = torch.tensor([[3, 1, 3, 2], [0, 0, -1, 0], [5, 5, 5, 5]], dtype=torch.float32)
WITH_NAN = torch.tensor([[1, NAN, 3, NAN], [INF, -INF, 2, INF], [-0.0, 0.0, -0.0, 0.0]], dtype=torch.float32)
BOOLS = torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.bool)

# the edges of 7 bins over [-0.3, 0.9] and their float32 neighbours: here the kernel's division
# differs from a multiplication by bins / (max - min) and from a search of linspace's edges
_EDGES = torch.linspace(-0.3, 0.9, 8)
_EDGES = torch.cat([_EDGES, _EDGES.nextafter(torch.tensor(INF)), _EDGES.nextafter(torch.tensor(-INF)),
                    _EDGES.nextafter(torch.tensor(-INF)).nextafter(torch.tensor(-INF))])

CASES = {
    "sum bool -> int64": (lambda a: (a.sum(), a.sum(1), a.sum((0, 1), keepdim=True)), BOOLS),
    "sum uint8 -> int64, dtype=": (lambda a: (a.sum(0), a.sum(0, dtype=torch.uint8), a.sum(dtype=torch.float32)),
                                   _i(200, 100, 7, dtype=torch.uint8).reshape(3, 1)),
    "sum int32 dtype float": (lambda a: torch.sum(a, -1, dtype=torch.float32), _i(1, 2, 3, dtype=torch.int32)),
    "sum dim=[] reduces all": (lambda a: (torch.sum(a, []), torch.mean(a, []), torch.amax(a, []), a.var([])),
                               torch.randn(2, 3)),
    "mean int with dtype": (lambda a: torch.mean(a, 0, dtype=torch.float32), _i(1, 2, 4)),
    "prod int/bool": (lambda a, b: (a.prod(), a.prod(0, keepdim=True), b.prod(1), b.prod()),
                      _i(2, -3, 4, 5).reshape(2, 2), BOOLS),
    "prod dtype": (lambda a: a.prod(1, dtype=torch.float32), _i(2, 3, 4, 5, 6, 7).reshape(2, 3)),
    "negative dims": (lambda a: (a.sum(-1), a.mean((-1, -3)), a.amax(-2, keepdim=True), a.argmax(-1), a.cumsum(-2),
                                 a.softmax(-3)), torch.randn(2, 3, 4)),
    "amax/amin bool and nan": (lambda a, b: (a.amax(1), a.amin(0), b.amax(1), b.amin(1), b.max(), b.min()),
                               BOOLS, WITH_NAN),
    "any/all of floats, nan is true": (lambda a: (a.any(1), a.all(1), a.all(), torch.any(a, (0,))), WITH_NAN),
    "any/all uint8 -> uint8": (lambda a: (a.any(0), a.all(1), a.any()), _i(0, 3, 0, 0, 1, 2, dtype=torch.uint8).reshape(2, 3)),
    "any.dims []: no reduction": (lambda a: (torch.ops.aten.any.dims(a, []), torch.ops.aten.all.dims(a, [])),
                                  _f(0, 1, NAN)),
    "argmax ties first": (lambda a: (a.argmax(1), a.argmin(1), a.argmax(), a.argmin(0, keepdim=True),
                                     a.argmax(keepdim=True)), TIES),
    "argmax nan wins": (lambda a: (a.argmax(1), a.argmin(1), a.argmax(), a.argmin()), WITH_NAN),
    "argmax int/uint8": (lambda a, b: (a.argmax(0), b.argmin(1)), _i(3, 7, 7, 1), _i(4, 4, 2, 2, dtype=torch.uint8).reshape(2, 2)),
    "max.dim ties first": (lambda a: (*a.max(1), *a.min(1, keepdim=True), *a.max(0)), TIES),
    "max.dim nan and signed zero": (lambda a: (*a.max(1), *a.min(1)), WITH_NAN),
    "max.dim bool": (lambda a: (*a.max(1), *a.min(0)), BOOLS),
    "max.dim values only": (lambda a: a.max(1).values + a.min(0, keepdim=True).values.sum(), torch.randn(3, 4)),
    "0-d inputs": (lambda a: (a.sum(), a.sum(0), a.mean(-1), a.amax(0), a.argmax(), a.argmax(0, keepdim=True),
                              *a.max(0), a.cumsum(0), a.softmax(0), a.log_softmax(0), *a.sort(), *a.topk(1),
                              a.var(0, correction=0), a.logsumexp(0), a.any(0)), torch.tensor(1.5)),
    "var correction corners": (lambda a: (a.var(1, correction=2), a.var(1, correction=3), a.std(1, correction=4),
                                          a.var(1, correction=0.5), a.var(0), torch.var_mean(a, 1, correction=0),
                                          torch.std_mean(a, (0, 1), keepdim=True)), torch.randn(2, 3)),
    "var nan/inf": (lambda a: (a.var(1), a.std(1)), WITH_NAN),
    "logsumexp inf": (lambda a: (a.logsumexp(1), a.logsumexp((0, 1)), a.logsumexp(0, keepdim=True)),
                      torch.tensor([[-INF, -INF], [INF, 1.0], [2.0, 1.0]])),
    "logsumexp int": (lambda a: a.logsumexp(0), _i(1, 2, 3)),
    "cumsum bool/int -> int64, dtype": (lambda a, b: (a.cumsum(0), b.cumsum(1), b.cumsum(1, dtype=torch.float32),
                                                      b.cumprod(0), a.cumprod(0)),
                                        _i(1, 0, 1, 1, dtype=torch.bool), _i(5, 2, 200, 100, dtype=torch.uint8).reshape(2, 2)),
    "cumsum nan": (lambda a: (a.cumsum(1), a.cumprod(1)), WITH_NAN),
    "sort stable ties": (lambda a: (*torch.sort(a, dim=1, stable=True), *torch.sort(a, dim=0, descending=True, stable=True),
                                    *torch.sort(a, dim=1, descending=True, stable=True)), TIES),
    "sort stable nan, inf, signed zero": (lambda a: (*torch.sort(a, dim=1, stable=True),
                                                     *torch.sort(a, dim=1, descending=True, stable=True),
                                                     *torch.sort(a.flatten(), stable=True)), WITH_NAN),
    "sort stable int/bool": (lambda a, b: (*torch.sort(a, stable=True), *torch.sort(a, descending=True, stable=True),
                                           *torch.sort(b, dim=1, stable=True), *torch.sort(b, descending=True, stable=True)),
                             _i(3, -9223372036854775808, 3, 9223372036854775807, 0), BOOLS),
    "sort stable uint8": (lambda a: (*torch.sort(a, stable=True), *torch.sort(a, descending=True, stable=True)),
                          _i(255, 0, 3, 255, 0, dtype=torch.uint8)),
    "topk nan": (lambda a: (torch.topk(a, 2, 1)[0], torch.topk(a, 3, 1, largest=False)[0]), WITH_NAN),
    "topk ints, distinct": (lambda a: (*torch.topk(a, 2), *torch.topk(a, 3, largest=False)), _i(4, -1, 7, 0, 3)),
    "softmax special": (lambda a: (a.softmax(1), a.log_softmax(1), a.softmax(0)),
                        torch.tensor([[-INF, -INF, 1.0], [INF, 1.0, 2.0], [1e30, -1e30, 0.0]])),
    "softmax int with dtype": (lambda a: (torch.softmax(a, 0, dtype=torch.float32), torch.log_softmax(a, 0, dtype=torch.float32)),
                               _i(1, 2, 3)),
    "vector_norm ords": (lambda a: tuple(torch.linalg.vector_norm(a, o, dim=1) for o in (0, 1, 2, 3, 0.5, INF, -INF, -1))
                         + (torch.linalg.vector_norm(a), torch.linalg.vector_norm(a, 2, (0, 1), keepdim=True)),
                         torch.randn(3, 4)),
    "count_nonzero": (lambda a, b: (torch.count_nonzero(a), torch.count_nonzero(a, 1), torch.count_nonzero(b, (0, 1)),
                                    torch.count_nonzero(b, 0)), WITH_NAN, BOOLS),
    "aminmax": (lambda a: (*torch.aminmax(a), *torch.aminmax(a, dim=1, keepdim=True), *torch.aminmax(a, dim=0)), WITH_NAN),
    "nansum": (lambda a: (torch.nansum(a), torch.nansum(a, 1), torch.nansum(a, 0, keepdim=True)), WITH_NAN),
    "cdist ps and modes": (lambda a, b: tuple(torch.cdist(a, b, p) for p in (0.0, 1.0, 2.0, 3.0, INF))
                           + (torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist"),
                              torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")),
                           torch.randn(2, 4, 3), torch.randn(2, 5, 3)),
    "cdist many rows (matmul path), broadcast batch": (lambda a, b: (torch.cdist(a, b), torch.cdist(a, b, 1.0)),
                                                       torch.randn(2, 30, 3), torch.randn(1, 27, 3)),
    "empty tensors": (lambda a, b, c: (a.sum(1), a.amax(0), a.argmax(0), *a.max(0), a.logsumexp(1), a.var(1),
                                       torch.cdist(b, c, 3.0), torch.cdist(b, c, INF), torch.linalg.vector_norm(a, INF, 0),
                                       a.cumsum(1), *torch.sort(a, 0), a.softmax(0)),
                      torch.randn(3, 0), torch.randn(2, 4, 0), torch.randn(2, 3, 0)),
    "pdist ps": (lambda a: tuple(F.pdist(a, p) for p in (0.0, 1.0, 2.0, 1.5, INF)), torch.randn(5, 3)),
    # histc: the last bin holds max, values outside [min, max] and NaN are not counted, positions
    # are int((v - min) * bins / (max - min)) in the input's dtype (values on and next to edges)
    "histc edges, nan, inf": (lambda a: (torch.histc(a, 4, 0, 4), torch.histc(a, 1, -1, 1), torch.histc(a, 3, 0.5, 3.5)),
                              _f(0, 1, 2, 3, 4, 4.0000005, -1e-7, 0.9999999, NAN, INF, -INF, -0.0)),
    "histc rounding at edges": (lambda a, b: (torch.histc(a, 10, 0, 1), torch.histc(b, 7, -0.3, 0.9)),
                                torch.arange(101, dtype=torch.float32) / 100, _EDGES),
    "histc min == max: the data's range": (lambda a, b, c: (torch.histc(a, 5), torch.histc(a, 6, 2, 2), torch.histc(b, 3),
                                                            torch.histc(c, 4), torch.histc(c, 4, 0, 1)),
                                           torch.randn(4, 6), torch.full((3, 2), 2.5), torch.tensor(-1.5)),
    "histc empty": (lambda a: (torch.histc(a, 3), torch.histc(a, 2, 0, 1)), torch.randn(3, 0)),
    "histc float64": (lambda a: (torch.histc(a, 13, -1, 1), torch.histc(a, 9)),
                      torch.linspace(-1, 1, 999, dtype=torch.float64)),
}

CASE_GROUPS = {f"cases{i // 14}": list(CASES)[i:i + 14] for i in range(0, len(CASES), 14)}


@pytest.mark.parametrize("group", list(CASE_GROUPS))
def test_dtypes_ties_special_values(group):
    check_together([(name, CASES[name][0], CASES[name][1:], {}) for name in CASE_GROUPS[group]])


@pytest.mark.parametrize("group", list(CASE_GROUPS))
def test_dtypes_ties_special_values_export_ir(group):
    check_together([(name, CASES[name][0], CASES[name][1:], {}) for name in CASE_GROUPS[group]], decompose=False)


# ---- channels-last operands --------------------------------------------------------------------
class ChannelsLast(torch.nn.Module):
    """Reductions of a conv output (channels-last inside): every dim, with and without keepdim."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        m, i = y.max(1)
        v, j = torch.sort(y, dim=1, stable=True)
        return (y.mean((2, 3)), y.mean((2, 3), keepdim=True) * y, y.sum(1), y.amax(-1, keepdim=True) - y,
                y.softmax(1), y.log_softmax(3), y.cumsum(2), m, i, y.argmin(2), y.var(1, keepdim=True),
                torch.logsumexp(y, (1, 3)), v, j, torch.topk(y, 2, dim=2)[0], (y > 0).any(1),
                torch.linalg.vector_norm(y, dim=1), torch.cdist(y.flatten(2), y.flatten(2)))


@pytest.mark.parametrize("decompose", [True, False])
def test_channels_last_and_dynamic_batch(decompose):
    """Channels-last values reduce without moving to torch's layout where a dim maps to a
    Keras axis, and the model runs at other batch sizes."""
    from recreate.tracer import convert_exported

    torch.manual_seed(0)
    model = ChannelsLast().eval()
    km = convert_exported(model, [torch.randn(2, 3, 5, 6)], "torch", dynamic_batch=True, decompose=decompose)
    for b in (1, 2, 5):
        x = torch.randn(b, 3, 5, 6)
        with torch.no_grad():
            ref = model(x)
        out = km(x.numpy())
        assert len(out) == len(ref)
        for i, (g, r) in enumerate(zip(out, ref)):
            compare(np.asarray(g), r.numpy(), 1e-5, f"batch {b}, output {i}")


# ---- dynamic batch -----------------------------------------------------------------------------
DYNAMIC = {
    "sum mean over batch": (lambda a: (a.sum(0), a.mean(), a.sum(1, keepdim=True), a.mean((0, 2))), (3, 4, 5)),
    "int sum / prod / any": (lambda a: ((a > 0).sum(0), (a > 0).any(), a.round().int().prod(1), (a > 0).all(0)), (3, 4)),
    "argmax max.dim over batch": (lambda a: (a.argmax(0), a.argmax(), *a.max(0), *a.min(1), a.amax(0), a.amin()), (3, 4)),
    "var over batch": (lambda a: (a.var(0, correction=0), a.var(1), a.std(), *torch.var_mean(a, (0, 1), correction=0)), (3, 4)),
    "cumsum sort over batch": (lambda a: (a.cumsum(0), a.cumprod(1), *torch.sort(a, dim=0, stable=True),
                                          torch.topk(a, 1, dim=0)[0], *torch.sort(a, dim=1, descending=True, stable=True)),
                               (3, 4)),
    "softmax logsumexp": (lambda a: (a.softmax(0), a.log_softmax(-1), a.logsumexp(0), a.logsumexp(1)), (3, 4)),
    "norms": (lambda a: (torch.linalg.vector_norm(a), torch.linalg.vector_norm(a, 1, 0), torch.count_nonzero(a > 0.5, 0),
                         torch.nansum(a, 0)), (3, 4)),
    "cdist over a batch": (lambda a, b: torch.cdist(a, b), (3, 4, 2), (3, 5, 2)),
}


def test_dynamic_batch():
    """Converted with a dynamic batch (inputs whose axis 0 is 3), run at other batch sizes."""
    torch.manual_seed(0)
    xs = {name: [torch.randn(*s) for s in shapes] for name, (_, *shapes) in DYNAMIC.items()}
    check, labels = check_together([(name, fn, xs[name], {}) for name, (fn, *_) in DYNAMIC.items()], dynamic_batch=True)
    for b in (1, 6):
        feeds, refs = [], []
        for name, (fn, *shapes) in DYNAMIC.items():
            f = [torch.randn(b, *s[1:]) if s[0] == 3 else x for s, x in zip(shapes, xs[name])]
            with torch.no_grad():
                r = fn(*f)
            feeds += f
            refs += list(r) if isinstance(r, tuple) else [r]
        out = check.keras_model([f.numpy() for f in feeds])
        assert len(out) == len(refs)
        for i, (g, t) in enumerate(zip(out, refs)):
            compare(np.asarray(g), t.numpy(), 1e-5, f"{labels[i]}, batch {b}, output {i}")


class Histc(torch.nn.Module):
    """histc of model inputs and of a conv output (channels-last inside): a fixed range, the
    data's range (min == max), and a mixture of experts' token count per expert."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x, ids):
        y = self.conv(x)
        return (torch.histc(x, 8), torch.histc(x, 6, -1, 1), torch.histc(y, 5), torch.histc(y.sigmoid(), 4, 0, 1),
                torch.histc(ids.reshape(-1).float(), bins=4, min=0, max=4))


@pytest.mark.parametrize("decompose", [True, False])
def test_histc_dynamic_batch(decompose):
    """histc counts every element, the batch's too: its output (bins,) does not follow the batch,
    but the counts (and with min == max the range) do. Converted at batch 2, run at 1, 3 and 7."""
    from recreate.tracer import convert_exported

    torch.manual_seed(0)
    model = Histc().eval()
    km = convert_exported(model, [torch.randn(2, 3, 5, 6), torch.randint(0, 4, (2, 2))], "torch", dynamic_batch=True,
                          decompose=decompose)
    for b in (1, 3, 7):
        x, ids = torch.randn(b, 3, 5, 6) * 2, torch.randint(0, 4, (b, 2))
        with torch.no_grad():
            ref = model(x, ids)
        out = km([x.numpy(), ids.numpy()])
        assert len(out) == len(ref)
        for i, (g, r) in enumerate(zip(out, ref)):
            compare(np.asarray(g), r.numpy(), 0.0, f"batch {b}, output {i}")


def test_pdist_dynamic_rows_refused():
    """pdist over a dynamic number of rows has a batch-dependent output length: a clear error."""
    from recreate.errors import ConversionError
    from recreate.tracer import convert_exported

    with pytest.raises(ConversionError, match="pdist"):
        convert_exported(module_for(F.pdist, (torch.randn(4, 3),), {}), [torch.randn(4, 3)], "torch",
                         dynamic_batch=True, decompose=True)
