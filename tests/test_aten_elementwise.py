"""Elementwise ATen op converters (recreate.ops.aten_elementwise) against PyTorch's OpInfo
samples in float32 and in the integer and bool dtypes each op supports, torch's type
promotion, special values, and a dynamic batch.

The default run checks up to LIMIT samples of an op in one captured module (one export and
one Keras model per op and dtype); the `slow` sweep checks every sample on its own."""

import recreate  # noqa: I001 - first: torch before tensorflow
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recreate.testing.aten import check_op, compare, opinfo_samples

LIMIT = 3  # float32 samples per op in the default run (and 1 int64 and 1 bool sample)

# OpInfo name (variant after "/") -> the ATen op packets one of which the captured graph must hold
OPS = {
    "abs": {"abs"}, "acos": {"acos"}, "acosh": {"acosh"}, "add": {"add"}, "asin": {"asin"},
    "asinh": {"asinh"}, "atan": {"atan"}, "atan2": {"atan2"}, "atanh": {"atanh"},
    "bitwise_and": {"bitwise_and"}, "bitwise_or": {"bitwise_or"}, "bitwise_xor": {"bitwise_xor"},
    "bitwise_not": {"bitwise_not"}, "ceil": {"ceil"}, "clamp": {"clamp"}, "clamp_min": {"clamp"},
    "clamp_max": {"clamp"}, "cos": {"cos"}, "cosh": {"cosh"},
    "div/no_rounding_mode": {"div"}, "div/trunc_rounding": {"div"}, "div/floor_rounding": {"div"},
    "true_divide": {"div"}, "floor_divide": {"div"},
    "eq": {"eq"}, "ne": {"ne"}, "lt": {"lt"}, "le": {"le"}, "gt": {"gt"}, "ge": {"ge"},
    "erf": {"erf"}, "erfc": {"erfc"}, "erfinv": {"erfinv"}, "exp": {"exp"}, "exp2": {"exp2"},
    "expm1": {"expm1"}, "floor": {"floor"}, "fmod": {"fmod"}, "isinf": {"isinf"}, "isnan": {"isnan"},
    "log": {"log"}, "log10": {"log10"}, "log1p": {"log1p"}, "log2": {"log2"},
    "logical_and": {"logical_and"}, "logical_or": {"logical_or"}, "logical_xor": {"logical_xor"},
    "logical_not": {"logical_not"}, "maximum": {"maximum"}, "minimum": {"minimum"}, "mul": {"mul"},
    "neg": {"neg"}, "pow": {"pow"}, "square": {"pow"}, "reciprocal": {"reciprocal"},
    "remainder": {"remainder"}, "round": {"round"}, "round/decimals_0": {"round"},
    "round/decimals_3": {"round"}, "round/decimals_neg_3": {"round"}, "rsqrt": {"rsqrt"},
    "sigmoid": {"sigmoid"}, "sign": {"sign"}, "sgn": {"sign"}, "signbit": {"signbit"}, "sin": {"sin"},
    "sinh": {"sinh"}, "sqrt": {"sqrt"}, "sub": {"sub"}, "rsub": {"sub"}, "tan": {"tan"}, "tanh": {"tanh"},
    "trunc": {"trunc"}, "where": {"where"}, "masked_fill": {"where"}, "copysign": {"copysign"},
    "hypot": {"hypot"}, "nextafter": {"nextafter"}, "nan_to_num": {"where"}, "xlogy": {"where"},
    "nn.functional.elu": {"elu"}, "nn.functional.selu": {"elu"}, "nn.functional.celu": {"where"},
    "nn.functional.gelu": {"gelu"}, "nn.functional.hardtanh": {"hardtanh"},
    "nn.functional.relu6": {"hardtanh"}, "nn.functional.leaky_relu": {"leaky_relu"},
    "nn.functional.relu": {"relu"}, "nn.functional.silu": {"silu"}, "nn.functional.hardswish": {"hardswish"},
    "nn.functional.hardsigmoid": {"hardsigmoid"}, "nn.functional.mish": {"mish"},
    "nn.functional.softplus": {"softplus"}, "clone": {"clone"}, "full_like": {"full_like"},
    "zeros_like": {"full_like"}, "ones_like": {"full_like"},
}

# Exclusions, as data: (OpInfo name, dtype or "*", sample-description regex) -> reason.
EXCLUDED = {
}

INT_DTYPES = (torch.int64, torch.int32, torch.uint8, torch.bool)

# Ops checked together in one captured module (a capture costs ~1 s whatever its size, so one
# module per op would not fit the suite's time budget); a failure names the op and sample.
GROUP_SIZE = 12
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
    return info, kept[:limit] if limit else kept


def check_together(entries, *, dynamic_batch=False):
    """Check [(label, fn, args, kwargs)] in one module (its outputs: every entry's outputs in
    order); an assertion names the entry whose output differs. Returns (OpCheck, labels)."""
    def together(*packed):
        out = []
        for (_, fn, _, _), (args, kwargs) in zip(entries, packed):
            r = fn(*args, **kwargs)
            out.extend(r if isinstance(r, (tuple, list)) else [r])
        return tuple(out)

    packed = [(tuple(args), dict(kwargs)) for _, _, args, kwargs in entries]
    labels = []
    with torch.no_grad():
        for label, fn, args, kwargs in entries:
            r = fn(*args, **kwargs)
            labels.extend([label] * (len(r) if isinstance(r, (tuple, list)) else 1))
    try:
        return check_op(together, *packed, dynamic_batch=dynamic_batch), labels
    except AssertionError as e:
        m = re.match(r"output (\d+)", str(e))
        if m:
            raise AssertionError(f"{labels[int(m.group(1))]}: {e}") from None
        raise


def _opinfo_entries(keys, dtypes_limits):
    entries = []
    for key in keys:
        found = 0
        for dtype, limit in dtypes_limits:
            info, samples = _samples(key, dtype, limit)
            found += len(samples)
            entries += [(label, info.op, (s.input, *s.args), s.kwargs) for label, s in samples]
        assert found, f"{key}: no samples"
    return entries


def _assert_ops(check, keys):
    names = {o.overloadpacket.__name__ for o in check.aten_ops}
    for key in keys:
        assert names & OPS[key], f"{key}: none of {OPS[key]} in the captured graph ({sorted(names)})"


@pytest.mark.parametrize("group", list(GROUPS))
def test_opinfo(group):
    """Up to LIMIT float32 samples, one int64 and one bool sample where the op supports those dtypes
    (the slow sweep: every sample in float32, int64, int32, uint8 and bool)."""
    keys = GROUPS[group]
    check, _ = check_together(_opinfo_entries(keys, [(torch.float32, LIMIT), (torch.int64, 1), (torch.bool, 1)]))
    _assert_ops(check, keys)


@pytest.mark.slow
@pytest.mark.parametrize("key", list(OPS))
def test_opinfo_every_sample(key):
    check, _ = check_together(_opinfo_entries([key], [(d, None) for d in (torch.float32, *INT_DTYPES)]))
    _assert_ops(check, [key])


# ---- promotion, modes and special values torch defines -------------------------------------
def _i(*v, dtype=torch.int64):
    return torch.tensor(v, dtype=dtype)


def _f(*v):
    return torch.tensor(v, dtype=torch.float32)


SPECIAL = _f(float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 1e-30, 3.0)

CASES = {
    "int + float scalar": (lambda a: a + 1.5, _i(1, 2, 3)),
    "int + float tensor, alpha": (lambda a, b: torch.add(a, b, alpha=3), _i(1, -2, 3), _f(0.5, 0.25, 2)),
    "int32 + int64": (torch.add, _i(1, 2, 3, dtype=torch.int32), _i(4, 5, 6)),
    "uint8 + 0-d int64": (torch.add, _i(1, 250, 3, dtype=torch.uint8), torch.tensor(7)),
    "bool + bool": (torch.add, _i(1, 0, 1, 0, dtype=torch.bool), _i(1, 1, 0, 0, dtype=torch.bool)),
    "bool * bool": (torch.mul, _i(1, 0, 1, 0, dtype=torch.bool), _i(1, 1, 0, 0, dtype=torch.bool)),
    "bool + int scalar": (lambda a: a + 2, _i(1, 0, dtype=torch.bool)),
    "int - int, alpha": (lambda a, b: torch.sub(a, b, alpha=2), _i(1, 2, 3), _i(4, 5, 6)),
    "rsub": (lambda a: 1.5 - a, _i(1, 2, 3)),
    "int / int": (torch.div, _i(7, -7, 3), _i(2, 2, 4)),
    "int // int": (lambda a, b: torch.div(a, b, rounding_mode="floor"), _i(7, -7, 7, -7, 6), _i(2, 2, -2, -2, 3)),
    "int trunc div": (lambda a, b: torch.div(a, b, rounding_mode="trunc"), _i(7, -7, 7, -7, 6), _i(2, 2, -2, -2, 3)),
    "float floor div (1 // 0.1 == 9)": (lambda a, b: torch.div(a, b, rounding_mode="floor"),
                                        _f(1, -1, 7.5, 3, -3, 0, float("inf")), _f(0.1, 0.1, -2, 0, 0, -2, 2)),
    "float trunc div": (lambda a, b: torch.div(a, b, rounding_mode="trunc"), _f(7.5, -7.5, 1, 3), _f(2, 2, 0.1, 0)),
    "int floor div scalar": (lambda a: torch.div(a, -3, rounding_mode="floor"), _i(7, -7, 0)),
    "int remainder": (torch.remainder, _i(7, -7, 7, -7), _i(3, 3, -3, -3)),
    "remainder scalar tensor": (lambda a: torch.remainder(5.5, a), _f(2, -2, 3)),
    "int fmod": (torch.fmod, _i(7, -7, 7, -7), _i(3, 3, -3, -3)),
    "float fmod": (torch.fmod, _f(7.5, -7.5, 1e7, -3, 0.3), _f(2, 2, 0.3, 0, 0.1)),
    "int ** int": (torch.pow, _i(2, -3, 4), _i(3, 3, 0)),
    "int ** float": (lambda a: a ** 0.5, _i(4, 9, 2)),
    "float ** special": (lambda a: (a ** 0.5, a ** 2, a ** 3, a ** -1, a ** -2, a ** -0.5, a ** 0, a ** 1, a ** 1.7), SPECIAL),
    "scalar ** tensor": (lambda a: 2.0 ** a, _f(0.5, -1, 3)),
    "int atan2": (torch.atan2, _i(1, -2, 0), _i(3, 1, 0)),
    "int == float": (lambda a: a == 2.0, _i(1, 2, 3)),
    "int < 1.5": (lambda a: a < 1.5, _i(1, 2, 3)),
    "bool < bool": (torch.lt, _i(1, 0, 1, 0, dtype=torch.bool), _i(1, 1, 0, 0, dtype=torch.bool)),
    "float < int tensor": (torch.lt, _f(0.5, 2.5, 3), _i(1, 2, 3)),
    "logical on floats (nan is true)": (lambda a, b: (torch.logical_and(a, b), torch.logical_or(a, b),
                                                      torch.logical_xor(a, b), torch.logical_not(a)), SPECIAL, SPECIAL.flip(0)),
    "bitwise int8 with scalar": (lambda a: (a & 3, a | 3, a ^ 3, ~a), _i(1, -2, 5, 127, dtype=torch.int8)),
    "bitwise bool with tensor": (lambda a, b: (a & b, a | b, a ^ b, ~a), _i(1, 0, 1, 0, dtype=torch.bool),
                                 _i(1, 1, 0, 0, dtype=torch.bool)),
    "bool & int scalar": (lambda a: torch.bitwise_and(a, 3), _i(1, 0, dtype=torch.bool)),
    "maximum nan": (lambda a, b: (torch.maximum(a, b), torch.minimum(a, b)), SPECIAL, SPECIAL.flip(0)),
    "maximum bool": (lambda a, b: (torch.maximum(a, b), torch.minimum(a, b)), _i(1, 0, 1, 0, dtype=torch.bool),
                     _i(1, 1, 0, 0, dtype=torch.bool)),
    "maximum int float": (torch.maximum, _i(1, 5, 3), _f(2.5, 0.5, 3)),
    "clamp int with float bounds": (lambda a: torch.clamp(a, 0.5, 2.5), _i(0, 1, 2, 3)),
    "clamp min only": (lambda a: torch.clamp(a, min=0.1), SPECIAL),
    "clamp max only tensor": (lambda a, b: torch.clamp(a, max=b), SPECIAL, SPECIAL.flip(0)),
    "clamp min > max": (lambda a: torch.clamp(a, 2.0, 1.0), SPECIAL),
    "clamp tensor bounds broadcast": (lambda a, lo, hi: torch.clamp(a, lo, hi), torch.randn(2, 3, 4), torch.randn(4), torch.tensor(0.5)),
    "where mixed dtypes": (lambda c, a, b: torch.where(c, a, b), _i(1, 0, 1, dtype=torch.bool), _i(1, 2, 3), _f(0.5, 0.5, 0.5)),
    "where scalar": (lambda a: torch.where(a > 0, a, 0.0), SPECIAL),
    "where int scalar": (lambda a: torch.where(a > 1, 7, a), _i(1, 2, 3)),
    "where condition broadcast": (lambda c, a: torch.where(c > 0, a, -a), torch.randn(2, 1, 4), torch.randn(3, 4)),
    "masked_fill": (lambda a, m: a.masked_fill(m, -1e9), torch.randn(2, 3, 4), torch.randn(3, 4) > 0),
    "masked_fill int": (lambda a: a.masked_fill(a > 1, 0), _i(1, 2, 3)),
    "isnan/isinf": (lambda a: (torch.isnan(a), torch.isinf(a), torch.isfinite(a), torch.signbit(a)), SPECIAL),
    "isnan int": (lambda a: (torch.isnan(a), torch.isinf(a)), _i(1, 2, 3)),
    "sign nan": (torch.sign, SPECIAL),
    "sign int/bool": (lambda a, b: (torch.sign(a), torch.sign(b), torch.abs(a)), _i(-3, 0, 3), _i(1, 0, dtype=torch.bool)),
    "rounding special": (lambda a: (torch.floor(a), torch.ceil(a), torch.trunc(a), torch.round(a), torch.frac(a)), SPECIAL),
    "rounding int": (lambda a: (torch.floor(a), torch.ceil(a), torch.trunc(a), torch.round(a)), _i(-3, 0, 3)),
    "round decimals": (lambda a: (torch.round(a, decimals=2), torch.round(a, decimals=-2), torch.round(a, decimals=0)),
                       _f(1234.5678, -0.125, 0.005, 250, 350, -149.99)),
    "unary on int": (lambda a: (torch.exp(a), torch.sqrt(a), torch.sigmoid(a), torch.sin(a), torch.reciprocal(a)), _i(1, 2, 3)),
    "unary special": (lambda a: (torch.exp(a), torch.log(a), torch.sqrt(a), torch.rsqrt(a), torch.tanh(a),
                                 torch.sigmoid(a), torch.reciprocal(a), torch.expm1(a), torch.log1p(a)), SPECIAL),
    "relu int": (torch.relu, _i(-3, 0, 3)),
    "relu nan": (torch.relu, SPECIAL),
    "elu params": (lambda a: F.elu(a, 0.5), torch.randn(3, 4)),
    "celu": (lambda a: F.celu(a, 0.7), torch.randn(3, 4)),
    "selu": (F.selu, torch.randn(3, 4)),
    "gelu tanh": (lambda a: F.gelu(a, approximate="tanh"), torch.randn(3, 4) * 3),
    "leaky_relu negative slope": (lambda a: F.leaky_relu(a, -0.3), torch.randn(3, 4)),
    "leaky_relu slope > 1": (lambda a: F.leaky_relu(a, 3.0), torch.randn(3, 4)),
    "softplus beta threshold": (lambda a: F.softplus(a, beta=2.0, threshold=5.0), torch.randn(3, 4) * 6),
    "softplus large": (F.softplus, torch.randn(3, 4) * 40),
    "relu6": (F.relu6, torch.randn(3, 4) * 5),
    "hardtanh bounds": (lambda a: F.hardtanh(a, -0.5, 2.0), torch.randn(3, 4) * 3),
    "activations special": (lambda a: (F.silu(a), F.hardswish(a), F.hardsigmoid(a), F.mish(a), F.gelu(a), F.elu(a)),
                            SPECIAL),
    "to int": (lambda a: (a.to(torch.int32), a.to(torch.int64), a.to(torch.bool)), _f(2.7, -2.7, 0, 0.2, -1e5)),
    "to float": (lambda a: (a.to(torch.float32), a.bool().float()), _i(1, 0, -5)),
    "full_like": (lambda a: (torch.zeros_like(a), torch.ones_like(a, dtype=torch.int32),
                             torch.full_like(a, float("inf")), torch.full_like(a, 7, dtype=torch.bool)), torch.randn(2, 3)),
    "fill_": (lambda a: a.clone().fill_(3.0), _i(1, 2, 3)),
    "fill_ tensor": (lambda a, v: a.clone().fill_(v), torch.randn(2, 3), torch.tensor(2.5)),
    "copy_ broadcast": (lambda a, b: a.clone().copy_(b), torch.randn(2, 3, 4), torch.randn(4)),
    "copy_ cast": (lambda a, b: a.clone().copy_(b), torch.randn(2, 3), _i(1, 2, 3)),
    "scalar_tensor in where": (lambda a: torch.where(a > 0, torch.scalar_tensor(2.0), a), torch.randn(3, 4)),
    "copysign": (torch.copysign, SPECIAL, SPECIAL.flip(0)),
    "hypot": (torch.hypot, SPECIAL, SPECIAL.flip(0)),
    "nextafter": (torch.nextafter, SPECIAL, SPECIAL.flip(0)),
    "nextafter toward an int tensor, broadcast": (torch.nextafter, torch.randn(2, 3), _i(0, 5, -5)),
    "erfc erfinv exp2": (lambda a: (torch.erfc(a), torch.erfinv(a), torch.exp2(a)), torch.rand(3, 4) * 1.8 - 0.9),
}


CASE_GROUPS = {f"cases{i // 20}": list(CASES)[i:i + 20] for i in range(0, len(CASES), 20)}


@pytest.mark.parametrize("group", list(CASE_GROUPS))
def test_promotion_and_special_values(group):
    check_together([(name, CASES[name][0], CASES[name][1:], {}) for name in CASE_GROUPS[group]])


# ---- channels-last operands --------------------------------------------------------------------
def test_channels_last_operands():
    """Elementwise ops keep a channels-last layout and broadcast lower-rank operands the torch way."""
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.scale = torch.nn.Parameter(torch.randn(4, 1, 1))

        def forward(self, x, bias):
            y = self.conv(x)
            z = torch.where(y > 0, y * self.scale, torch.clamp(y + bias, -0.5, 0.5))
            return F.gelu(z) - torch.remainder(y, 0.7) + (y > bias).float()

    model = M().eval()
    x, bias = torch.randn(2, 3, 5, 6), torch.randn(6)
    km = recreate.convert(model, (x, bias))
    for b in (2, 5):
        xs = torch.randn(b, 3, 5, 6)
        with torch.no_grad():
            ref = model(xs, bias).numpy()
        compare(np.asarray(km([xs.numpy(), bias.numpy()])), ref, 1e-5)


# ---- dynamic batch -----------------------------------------------------------------------------
# Operands that do not follow the batch are constants of the module (a dynamic-batch model's
# inputs all have the batch as axis 0).
ROW, ROW_POS = torch.randn(4), torch.rand(4) + 0.5

DYNAMIC = {
    "add": (lambda a: a + 2 * ROW, (3, 4)),
    "sub alpha": (lambda a, b: torch.sub(a, b, alpha=0.5), (3, 4), (3, 4)),
    "div modes": (lambda a: (a / ROW_POS, torch.div(a, ROW_POS, rounding_mode="floor"),
                             torch.div(a, ROW, rounding_mode="trunc")), (3, 4)),
    "remainder fmod": (lambda a: (torch.remainder(a, 0.3), torch.fmod(a, 0.3)), (3, 4)),
    "pow atan2": (lambda a, b: (a.abs() ** b, torch.atan2(a, b), a ** 2), (3, 4), (3, 4)),
    "compare where": (lambda a: torch.where((a > ROW) | (a == 0), a, ROW), (3, 4)),
    "clamp": (lambda a: (torch.clamp(a, -0.5, 0.5), torch.clamp(a, ROW, None), F.hardtanh(a)), (3, 4)),
    "masked_fill": (lambda a: a.masked_fill(a < 0, -1e4), (3, 2, 4)),
    "unary math": (lambda a: (a.abs().sqrt(), a.exp(), a.sin(), a.tanh(), a.sign(), a.floor(), a.round(decimals=1),
                              a.abs().log1p(), a.sigmoid(), a.reciprocal(), a.neg(), a.erf()), (3, 4)),
    "activations": (lambda a: (F.relu(a), F.gelu(a), F.silu(a), F.elu(a), F.leaky_relu(a), F.hardswish(a),
                               F.hardsigmoid(a), F.mish(a), F.softplus(a)), (3, 5)),
    "casts and fills": (lambda a: (a.to(torch.int32), torch.zeros_like(a), torch.full_like(a, 3.0), a.clone().fill_(1.0),
                                   torch.isnan(a), torch.isinf(a)), (3, 4)),
    "copy_ broadcast": (lambda a: a.clone().copy_(ROW), (3, 4)),
    "nextafter": (lambda a, b: (torch.nextafter(a, b), torch.nextafter(a, ROW)), (3, 4), (3, 4)),
    "logical bitwise": (lambda a, b: (torch.logical_xor(a > 0, b > 0), (a > 0) & (b < 0), ~(a > 0),
                                      torch.maximum(a, b), torch.minimum(a, b)), (3, 4), (3, 4)),
}


def test_dynamic_batch():
    """Converted with a dynamic batch (every input's axis 0), run at other batch sizes."""
    torch.manual_seed(0)
    xs = {name: [torch.randn(*s) for s in shapes] for name, (_, *shapes) in DYNAMIC.items()}
    check, labels = check_together([(name, fn, xs[name], {}) for name, (fn, *_) in DYNAMIC.items()], dynamic_batch=True)
    for b in (1, 6):
        feeds, refs = [], []
        for fn, *shapes in DYNAMIC.values():
            f = [torch.randn(b, *s[1:]) for s in shapes]
            with torch.no_grad():
                r = fn(*f)
            feeds += f
            refs += list(r) if isinstance(r, tuple) else [r]
        out = check.keras_model([f.numpy() for f in feeds])
        assert len(out) == len(refs)
        for i, (g, t) in enumerate(zip(out, refs)):
            compare(np.asarray(g), t.numpy(), 1e-5, f"{labels[i]}, batch {b}, output {i}")


# ---- nextafter: bit-exact at special values --------------------------------------------------
def _nextafter_grid(dtype):
    """Every pair of special values of `dtype`: signed zeros, infinities, NaN, ±1, the smallest
    and largest subnormals, the smallest normal and the largest finite values."""
    fi = torch.finfo(dtype)
    sub = fi.smallest_normal * fi.eps  # the smallest subnormal (2 ** (min_exp - mantissa bits))
    top_sub = fi.smallest_normal - sub
    vals = [0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1.0, -1.0, 3.5, sub, -sub, 2 * sub, top_sub,
            -top_sub, fi.smallest_normal, -fi.smallest_normal, fi.max, -fi.max]
    v = torch.tensor(vals, dtype=torch.float64).to(dtype)
    assert bool((v[8] > 0) & (v[8] < fi.smallest_normal)), "the grid holds a subnormal"
    return v.repeat_interleave(len(vals)), v.repeat(len(vals))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16],
                         ids=lambda d: str(d).replace("torch.", ""))
def test_nextafter_special_values_bit_exact(dtype):
    """nextafter toward itself, across signed zeros, from and to infinities, NaN, through the
    subnormals and at the largest finite value, bit for bit (values, NaN and sign bits).
    TensorFlow's CPU kernels treat subnormal operands as zero, so the converter steps the bit
    patterns. float64 runs with Keras's float64 policy (a float32 model computes float64 tensors
    in float32); float16 and bfloat16 step in their own dtype inside the float32 layer."""
    from recreate.transfer import to_numpy

    import keras

    a, b = _nextafter_grid(dtype)
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    if dtype == torch.float64:
        keras.config.set_floatx("float64")
        keras.config.set_dtype_policy("float64")
    try:
        check = check_op(torch.nextafter, a, b, tolerance=0.0)
        got = np.asarray(keras.ops.convert_to_numpy(check.keras_model([to_numpy(a), to_numpy(b)])))
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    assert {o.overloadpacket.__name__ for o in check.aten_ops} >= {"nextafter"}
    if dtype == torch.float64:
        assert got.dtype == np.float64, got.dtype
    ref = torch.nextafter(a, b).double().numpy()
    got = got.astype(np.float64)
    same = ((got == ref) & (np.signbit(got) == np.signbit(ref))) | (np.isnan(got) & np.isnan(ref))
    bad = [(float(a[i]), float(b[i]), float(ref[i]), float(got[i])) for i in np.flatnonzero(~same)]
    assert not bad, f"(x, other, torch, keras): {bad[:8]}"
