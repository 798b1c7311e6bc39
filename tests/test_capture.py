"""Capture with torch.export (recreate.tracer): the patterns the fx tracer could not trace,
parameters kept as parameters, the torch model left as it was, typed errors with a source
line. Every test runs the torch.export path alone (RECREATE_CAPTURE=export)."""

import recreate  # noqa: I001 - first: torch before tensorflow
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recreate.errors import UntraceableError
from recreate.testing import randomize_
from recreate.testing.aten import compare


@pytest.fixture(autouse=True)
def _export_only(monkeypatch):
    monkeypatch.setenv("RECREATE_CAPTURE", "export")


def _check(model, *xs, kwargs=None, batches=(3, 1), tol=1e-5):
    """Convert at the example's batch, compare there and at other batch sizes; the
    reference must depend on the input (else the comparison proves nothing)."""
    model.eval()
    km = recreate.convert(model, xs, kwargs=kwargs)
    for b in (xs[0].shape[0], *batches):
        feeds = [torch.cat([x] * (b // x.shape[0] + 1))[:b] + 0.5 * torch.randn_like(
            torch.cat([x] * (b // x.shape[0] + 1))[:b]) for x in xs]
        with torch.no_grad():
            ref = model(*feeds)
            other = model(*[f * 2.0 + 1.0 for f in feeds])
        refs = ref if isinstance(ref, (tuple, list)) else [ref]
        assert any(not torch.allclose(r, o) for r, o in zip(refs, other if isinstance(other, (tuple, list)) else [other])), \
            "reference ignores its input"
        got = km([f.numpy() for f in feeds] if len(feeds) > 1 else feeds[0].numpy())
        got = got if isinstance(got, (list, tuple)) else [got]
        assert len(got) == len(refs)
        for g, r in zip(got, refs):
            compare(np.asarray(g), r.numpy(), tol)
    return km


class YoloC2f(nn.Module):
    """ultralytics C2f: list(x.chunk(2, 1)), then appending to the list in a loop."""

    def __init__(self):
        super().__init__()
        self.cv1 = nn.Conv2d(4, 8, 1)
        self.m = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1) for _ in range(2))
        self.cv2 = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SplitUnbind(nn.Module):
    """for t in torch.split(...), unbind then a comprehension, (*shape, -1, d) views,
    isinstance / torch.is_tensor checks and a branch on numel (diffusers, kornia, HF)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(3))
        self.proj = nn.Linear(6, 6)

    def forward(self, x):
        assert isinstance(x, torch.Tensor) and torch.is_tensor(x)
        parts = [t * 2 for t in torch.split(x, 2, dim=-1)]
        x = torch.cat(parts, -1)
        if x.numel() * 4 > 2**31:
            x = x.half()
        coords = x.unbind(-1)
        x = torch.stack([c * s for c, s in zip(coords, self.scale.repeat(2))], -1)
        input_shape = x.shape[:-1]
        h = x.view(*input_shape, -1, 3)
        h = h.view(*h.shape[:-2], -1)
        return self.proj(input=h)


class InlineModules(nn.Module):
    """Modules made inside forward (ACT2FN[...], nn.Softmax(dim=-1)(x)): they must not stay
    attached to the model after convert."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x):
        self.act = nn.GELU()
        return nn.Softmax(dim=-1)(self.act(self.fc(x)))


class ParamsOutside(nn.Module):
    """Parameters used outside registered modules (class token, position embedding, a
    functional conv with a computed weight)."""

    def __init__(self):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, 4))
        self.pos = nn.Parameter(torch.randn(1, 5, 4))
        self.norm = nn.LayerNorm(4)
        self.register_buffer("gain", torch.tensor(1.5))

    def forward(self, x):
        tok = self.cls.expand(x.shape[0], -1, -1)
        return self.norm(torch.cat([tok, x], 1) + self.pos) * self.gain


def test_patterns_fx_could_not_trace():
    torch.manual_seed(0)
    _check(YoloC2f(), torch.randn(2, 4, 8, 8))
    _check(SplitUnbind(), torch.randn(2, 3, 6))


def test_modules_made_in_forward_leave_the_model_unchanged():
    torch.manual_seed(0)
    m = InlineModules().eval()
    before = set(dict(m.named_modules()))
    recreate.convert(m, torch.randn(2, 5))
    assert set(dict(m.named_modules())) == before  # (running the torch model itself adds them)
    assert not m.training
    _check(m, torch.randn(2, 5))


def test_parameters_stay_parameters_and_refill():
    torch.manual_seed(0)
    m = ParamsOutside().eval()
    x = torch.randn(2, 4, 4)
    km = _check(m, x)
    names = {getattr(lyr, "torch_name", None) for lyr in km.layers}
    assert {"cls", "pos", "gain"} <= names
    # Any checkpoint of the architecture refills the converted model, strictly.
    other = ParamsOutside().eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
        other.gain.fill_(-2.0)
    report = recreate.transfer_weights(other.state_dict(), km)
    assert not report.unassigned_keras
    with torch.no_grad():
        compare(np.asarray(km(x.numpy())), other(x).numpy(), 1e-5)


def test_convert_leaves_the_torch_model_identical():
    torch.manual_seed(0)
    for m in (YoloC2f(), SplitUnbind(), ParamsOutside()):
        m.eval()
        state = copy.deepcopy(m.state_dict())
        attrs = {name: dict(vars(mod)) for name, mod in m.named_modules()}
        flags = {name: mod.training for name, mod in m.named_modules()}
        x = torch.randn(2, *{YoloC2f: (4, 8, 8), SplitUnbind: (3, 6), ParamsOutside: (4, 4)}[type(m)])
        recreate.convert(m, x)
        assert {n: mod.training for n, mod in m.named_modules()} == flags
        assert set(m.state_dict()) == set(state)
        assert all(torch.equal(m.state_dict()[k], v) for k, v in state.items())
        assert {n: set(vars(mod)) for n, mod in m.named_modules()} == {n: set(a) for n, a in attrs.items()}
        assert "forward" not in vars(m) and all("forward" not in vars(mod) for mod in m.modules())


class _FrozenDict(dict):
    """Like diffusers' FrozenDict (a model's `config`): refuses to be changed in place."""

    def _refuse(self, *a, **k):
        raise RuntimeError("You cannot use update on a FrozenDict")

    clear = update = __setitem__ = _refuse


class WithFrozenConfig(nn.Module):
    def __init__(self):
        super().__init__()
        self.config = _FrozenDict(scale=2.0, act="silu")
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return F.silu(self.fc(x)) * self.config["scale"]


def test_an_immutable_config_attribute_is_left_alone():
    torch.manual_seed(0)
    m = WithFrozenConfig().eval()
    config = m.config
    _check(m, torch.randn(2, 3))
    assert m.config is config and dict(config) == {"scale": 2.0, "act": "silu"}


class PositionIds(nn.Module):
    """CLIP's embeddings: a registered module applied to a non-persistent buffer only."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 4)
        self.pos = nn.Embedding(5, 4)
        self.register_buffer("position_ids", torch.arange(5)[None], persistent=False)

    def forward(self, x):
        return self.proj(x) + self.pos(self.position_ids)


def test_module_applied_to_a_buffer_keeps_its_weights():
    """The buffer's constant used to be made before the model input existed, so the Embedding
    ran eagerly on it with unset weights: a wrong constant (CLIP off by 0.13 after pre_layrnorm)."""
    torch.manual_seed(0)
    m = PositionIds().eval()
    km = _check(m, torch.randn(2, 5, 3))
    assert "pos" in {lyr.name for lyr in km.layers}
    other = PositionIds().eval()
    recreate.transfer_weights(other, km)
    x = torch.randn(3, 5, 3)
    with torch.no_grad():
        compare(np.asarray(km(x.numpy())), other(x).numpy(), 1e-5)


class RepeatByBatch(nn.Module):
    """RAFT's coordinate grid: a parameter-free grid repeated batch_size times."""

    def __init__(self):
        super().__init__()
        self.g = nn.Parameter(torch.randn(1, 3, 4))

    def forward(self, x):
        b = x.shape[0]
        twice = self.g.repeat(2 * b, 1, 1).view(b, 2, 3, 4).sum(1)
        return torch.cat([x, self.g.repeat(b, 1, 1), twice], -1)


def test_repeat_by_the_batch_size_follows_the_batch():
    """A repeat count torch.export keeps as k * batch is read from the batch at run time (it
    was baked to the example's batch: RAFT failed at a batch of 1)."""
    torch.manual_seed(0)
    km = _check(RepeatByBatch(), torch.randn(2, 3, 5), batches=(1, 4))
    assert "g" in {getattr(lyr, "torch_name", None) for lyr in km.layers}


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(3, 3), _Branches())

    def forward(self, x):
        return self.inner(x)


class _Branches(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # control flow on a tensor value
            return x * 2
        return x - 1


def test_data_dependent_control_flow_names_module_and_line():
    m = DataDependent().eval()
    with pytest.raises(UntraceableError) as info:
        recreate.convert(m, torch.randn(2, 3))
    msg = str(info.value)
    assert "'inner.1'" in msg, msg
    assert "test_capture.py" in msg and "if x.sum() > 0" in msg, msg
    assert "register a converter" in msg and "torch.cond" in msg


def test_batch_of_one_converts_to_a_dynamic_batch():
    torch.manual_seed(0)
    m = YoloC2f().eval()
    km = recreate.convert(m, torch.randn(1, 4, 8, 8))
    x = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        compare(np.asarray(km(x.numpy())), m(x).numpy(), 1e-5)


def test_registered_module_called_with_keyword_tensor():
    class Kw(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.pad = nn.ZeroPad2d(1)

        def forward(self, x):
            return F.relu(self.fc(input=x))

    _check(Kw(), torch.randn(2, 4))


@torch.library.custom_op("recreate_test::scaled_tanh", mutates_args=())
def _scaled_tanh(x: torch.Tensor, k: float) -> torch.Tensor:
    return torch.tanh(x) * k


@_scaled_tanh.register_fake
def _(x, k):
    return torch.empty_like(x)


def test_custom_op_with_a_registered_converter_is_kept_whole():
    """A torch.library custom op (a custom kernel) stays one node in the exported graph; a
    converter registered for it with recreate.ops.register_op converts it."""
    from recreate.ops import find_op, register_op

    op = torch.ops.recreate_test.scaled_tanh.default

    class UsesKernel(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return _scaled_tanh(self.fc(x), 3.0)

    m = UsesKernel().eval()
    if find_op(op) is None:
        with pytest.raises(recreate.errors.UnsupportedOpError, match="recreate_test.scaled_tanh"):
            recreate.convert(m, torch.randn(2, 4))

        @register_op(op)
        def scaled_tanh(cx, x, k):
            t = cx.op("tanh", [{"__tensor__": 0}], [x], x.perm)
            return cx.op("multiply", [{"__tensor__": 0}, float(k)], [t], x.perm)

    _check(m, torch.randn(2, 4))


FLOAT64_RUN = r"""
import recreate, torch, keras, numpy as np
from torch import nn
import torch.nn.functional as F
keras.config.set_floatx("float64"); keras.config.set_dtype_policy("float64")

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gain = nn.Parameter(torch.randn(1, 4, 1, 1))
        self.register_buffer("shift", torch.randn(4, 1, 1), persistent=False)

    def forward(self, x):
        y = self.conv(x) * self.gain + self.shift
        return F.interpolate(y, scale_factor=1.5, mode="bilinear", align_corners=True)

torch.manual_seed(0)
m = M().eval().double()
x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
km = recreate.convert(m, x)
dtypes = {w.dtype for w in km.weights}
assert dtypes == {"float64"}, dtypes
x2 = torch.randn(3, 3, 6, 6, dtype=torch.float64)
out = np.asarray(km(x2.numpy()))
with torch.no_grad():
    ref = m(x2).numpy()
assert out.dtype == np.float64, out.dtype
err = float(np.abs(out - ref).max())
assert err < 1e-12, err
print("float64 error", err)
"""


def test_a_float64_run_keeps_float64_everywhere():
    """With Keras's float64 policy a float64 model converts to float64 variables and constants
    (the sweeps' check that tells float32 rounding from a converter bug). In a subprocess: the
    policy is process-wide."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", FLOAT64_RUN], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    assert "float64 error" in p.stdout


class _KV:
    """A cache layer as Hugging Face's DynamicLayer: a plain object (no pytree registration)."""

    def __init__(self, keys, values):
        self.keys, self.values, self.initialized = keys, values, True


class _Cache:
    def __init__(self):
        self.layers = []
        self.offloading = False


class _CachingModel(nn.Module):
    """Returns (hidden, cache object holding each layer's keys and values)."""

    def __init__(self):
        super().__init__()
        self.k = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
        self.v = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))

    def forward(self, x):
        cache = _Cache()
        for k, v in zip(self.k, self.v):
            cache.layers.append(_KV(k(x), v(x).relu()))
            x = x + cache.layers[-1].values
        return {"hidden": x, "past_key_values": cache}


def test_an_output_object_torch_does_not_know_is_flattened():
    import torch.utils._pytree as pytree

    m = _CachingModel().eval()
    x = torch.randn(2, 3, 4)
    km = recreate.convert(m, x)
    assert len(km.outputs) == 5  # hidden, then each layer's keys and values in attribute order
    assert _Cache not in pytree.SUPPORTED_NODES and _KV not in pytree.SUPPORTED_NODES  # registration undone
    report = recreate.verify(m, km, [x, torch.randn(3, 3, 4)])
    assert report.passed and report.batches == 2, str(report)
    want = m(x)
    got = km(x.numpy())
    np.testing.assert_allclose(np.asarray(got[0]), want["hidden"].detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(np.asarray(got[4]), want["past_key_values"].layers[1].values.detach().numpy(), atol=1e-5)


@torch.library.custom_op("recreate_test::grouped_mm", mutates_args=())
def _grouped_mm_reference(x: torch.Tensor, w: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Hugging Face's grouped_mm_fallback (torch._grouped_mm wants bfloat16 on the CPU)."""
    out = torch.zeros(x.shape[0], w.shape[2], dtype=x.dtype)
    start = 0
    for e, end in enumerate(offs.tolist()):
        out[start:end] = x[start:end] @ w[e]
        start = end
    return out


@_grouped_mm_reference.register_fake
def _(x, w, offs):
    return x.new_empty(x.shape[0], w.shape[2])


class _Experts(nn.Module):
    """A mixture-of-experts layer as Hugging Face's grouped_mm path writes it: top-1 routing,
    tokens sorted by expert, per-expert counts from histc, a grouped matmul over the sorted
    rows, token indices from an arange over batch * tokens."""

    def __init__(self, dim=8, experts=3):
        super().__init__()
        self.router = nn.Linear(dim, experts)
        self.w = nn.Parameter(torch.randn(experts, dim, dim) * 0.3)
        self.experts = experts

    def forward(self, x):
        b, s, d = x.shape
        flat = x.reshape(-1, d)
        expert = self.router(flat).argmax(-1)
        order = expert.argsort(stable=True)
        token = torch.arange(b * s)[order]  # an arange whose length follows the batch
        counts = torch.histc(expert.float(), bins=self.experts, min=0, max=self.experts - 1)
        offs = counts.cumsum(0).to(torch.int32)
        out = torch.ops.recreate_test.grouped_mm(flat[token], self.w, offs)
        return torch.zeros_like(flat).index_add(0, token, out).reshape(b, s, d)


def test_mixture_of_experts_grouped_mm_through_a_custom_op_by_its_qualified_name():
    from recreate.ops import _OPS, find_op, load_all

    load_all()
    grouped = find_op(torch.ops.aten._grouped_mm.default)
    assert grouped is find_op(torch.ops.aten._grouped_mm.default) and grouped is not None
    _OPS["recreate_test::grouped_mm"] = grouped  # as "transformers::grouped_mm_fallback" is registered
    try:
        assert find_op(torch.ops.recreate_test.grouped_mm.default) is grouped
        m = _Experts().eval()
        x = torch.randn(2, 5, 8)
        with torch.no_grad():
            assert len(set(m.router(x.reshape(-1, 8)).argmax(-1).tolist())) > 1, "every token went to one expert"
        _check(m, x, batches=(3, 1), tol=1e-4)
    finally:
        _OPS.pop("recreate_test::grouped_mm")


class _ChecksNumel(torch.nn.Module):
    """`x.shape.numel()` (torch.Size.numel, a C function) turns the batch into a C integer:
    non-strict torch.export fixes it to the example's (kornia's perform_keep_shape_image)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.shape.numel() == 0:
            raise ValueError("empty")
        return self.conv(x).relu()


def test_batch_fixed_by_size_numel_is_captured_again_in_strict_mode():
    m = randomize_(_ChecksNumel(), 0).eval()
    km = recreate.convert(m, torch.rand(2, 3, 8, 8))
    assert recreate.verify(m, km, [torch.rand(2, 3, 8, 8), torch.rand(5, 3, 8, 8)], tolerance=1e-5).passed


def test_a_fixed_batch_names_the_guard_that_fixed_it():

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x.view(2, -1) * 2

    with pytest.raises(recreate.ConversionError, match=r"not dynamic after capture \(torch specialized it at .*guard Eq\(s\d+, 2\)"):
        recreate.convert(Fixed().eval(), torch.rand(2, 3, 4))


class _ViewOfFoldedExpand(torch.nn.Module):
    """A constant computed from an expand (a stride-0 view in torch) and then viewed: torch's
    eager result is contiguous, so the export keeps `view`, and folding it must too
    (kornia MotionBlur's kernel)."""

    def forward(self, x):
        grid = torch.arange(5.0, device=x.device).expand(5, 5)  # strides (0, 1)
        k = (torch.full((1, 1, 1), 0.5, device=x.device) * grid).view(1, 25)
        return x * k


def test_a_folded_constant_keeps_torch_layout_for_view():
    m = _ViewOfFoldedExpand().eval()
    x = torch.randn(2, 25)
    km = recreate.convert(m, x)
    assert recreate.verify(m, km, [x, torch.randn(3, 25)], tolerance=1e-6).passed
