"""torchvision's detection and deformable ops: layers against torchvision on random inputs,
the functional forms through the tracer, .keras round trips, TFLite with builtin ops only,
and torchvision's containers through recreate.convert. (Module parity for DeformConv2d,
RoIAlign, RoIPool and FrozenBatchNorm2d is in the registry-wide test.)"""

from __future__ import annotations

import importlib.util
import os

import recreate  # noqa: F401  (imports torchvision before tensorflow)
from recreate._backend import HAVE_TORCHVISION

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision not installed")

import torch  # noqa: E402
import torch.fx  # noqa: E402

import keras  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

if HAVE_TORCHVISION:
    import torchvision  # noqa: E402
    from torchvision.ops import batched_nms, deform_conv2d, nms, roi_align, roi_pool  # noqa: E402

from recreate.layers.deform_conv import DeformConv2D  # noqa: E402
from recreate.layers.nms import NonMaxSuppression  # noqa: E402
from recreate.layers.roi_align import RoIAlign  # noqa: E402
from recreate.layers.roi_pool import RoIPool  # noqa: E402
from recreate.layout import to_channels_first, to_channels_last  # noqa: E402

# fx records calls to these names in this module as leaf functions (how a user's model that
# calls them functionally is traced; see the report for the tracer's autowrap).
torch.fx.wrap("deform_conv2d")
torch.fx.wrap("nms")
torch.fx.wrap("batched_nms")
torch.fx.wrap("roi_align")
torch.fx.wrap("roi_pool")

EXAMPLES = int(os.environ.get("RECREATE_EXAMPLES", "25"))
TOL = 1e-5


def _cl(a):
    return np.transpose(np.asarray(a), (0, 2, 3, 1))


def _cf(a):
    return np.transpose(np.asarray(a), (0, 3, 1, 2))


def _err(got, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref) / np.maximum(1.0, np.abs(ref)))) if ref.size else 0.0


# ---- deform_conv2d ---------------------------------------------------------------------------
@st.composite
def deform_args(draw):
    groups = draw(st.integers(1, 2))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    og = draw(st.sampled_from([d for d in range(1, cin + 1) if cin % d == 0]))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    hw = [draw(st.integers(max(1, dd * (kk - 1) + 1 - 2 * pp), 7)) for kk, dd, pp in zip(k, d, p)]
    ho, wo = ((hw[i] + 2 * p[i] - (d[i] * (k[i] - 1) + 1)) // s[i] + 1 for i in range(2))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    n = draw(st.integers(1, 2))
    f = np.float32
    x = rng.standard_normal((n, cin, *hw)).astype(f)
    off = (rng.standard_normal((n, 2 * og * k[0] * k[1], ho, wo)) * draw(st.sampled_from([0.5, 3.0, 8.0]))).astype(f)
    # Some offsets land exactly on the -1 / H boundary of torchvision's zero rule.
    if draw(st.booleans()):
        off.reshape(-1)[:: 3] = np.round(off.reshape(-1)[:: 3])
    mask = rng.uniform(-1, 2, (n, og * k[0] * k[1], ho, wo)).astype(f) if draw(st.booleans()) else None
    w = (rng.standard_normal((cout, cin // groups, *k)) * 0.5).astype(f)
    b = rng.standard_normal(cout).astype(f) if draw(st.booleans()) else None
    return dict(x=x, off=off, mask=mask, w=w, b=b, s=s, p=p, d=d, groups=groups, og=og)


def _deform_layer(a):
    layer = DeformConv2D(a["w"].shape[0], a["w"].shape[2:], a["s"], a["p"], a["d"], groups=a["groups"],
                         offset_groups=a["og"], use_mask=a["mask"] is not None, use_bias=a["b"] is not None)
    feeds = [_cl(a["x"]), _cl(a["off"])] + ([_cl(a["mask"])] if a["mask"] is not None else [])
    layer(*feeds)
    layer.kernel.assign(np.transpose(a["w"], (2, 3, 1, 0)))
    if a["b"] is not None:
        layer.bias.assign(a["b"])
    return layer, feeds


def _deform_ref(a):
    t = lambda v: None if v is None else torch.tensor(v)  # noqa: E731
    return deform_conv2d(t(a["x"]), t(a["off"]), t(a["w"]), t(a["b"]), a["s"], a["p"], a["d"], mask=t(a["mask"])).numpy()


@settings(max_examples=EXAMPLES, deadline=None)
@given(a=deform_args())
def test_deform_conv2d_layer_matches_torchvision(a):
    layer, feeds = _deform_layer(a)
    assert _err(_cf(layer(*feeds)), _deform_ref(a)) <= TOL


def test_deform_conv2d_zero_rule_at_the_border():
    # torchvision: y <= -1 or y >= H gives 0; -1 < y < 0 blends row 0 with zero.
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 1, 1), np.float32)
    for dy in (-1.0, -0.999, -0.5, 0.0, 1.5, 2.0, 2.5, 2.999, 3.0):
        off = np.zeros((1, 2, 3, 3), np.float32)
        off[:, 0] = dy
        a = dict(x=x, off=off, mask=None, w=w, b=None, s=(1, 1), p=(0, 0), d=(1, 1), groups=1, og=1)
        layer, feeds = _deform_layer(a)
        np.testing.assert_allclose(_cf(layer(*feeds)), _deform_ref(a), atol=1e-6)


# ---- roi_align / roi_pool ----------------------------------------------------------------------
@st.composite
def roi_args(draw, adaptive_inside=False):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25, 2.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    k = draw(st.integers(1, 8))
    lo = 0.0 if adaptive_inside else -0.6
    x1y1 = rng.uniform(lo, 1.2 if not adaptive_inside else 1.0, (k, 2)) * [w / scale, h / scale]
    x2y2 = x1y1 + rng.uniform(-0.3 if not adaptive_inside else 0.0, 1.0, (k, 2)) * [w / scale, h / scale]
    if adaptive_inside:
        x2y2 = np.minimum(x2y2, [w / scale, h / scale])
    kind = rng.integers(0, 4, k)
    x2y2 = np.where((kind == 0)[:, None], x1y1, np.where((kind == 1)[:, None], x1y1 + 1e-3, x2y2))
    rois = np.concatenate([rng.integers(0, n, (k, 1)), x1y1, x2y2], 1).astype(np.float32)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    out = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return x, rois, out, scale


@settings(max_examples=EXAMPLES, deadline=None)
@given(args=roi_args(), ratio=st.sampled_from([1, 2, 3, 4]), aligned=st.booleans())
def test_roi_align_layer_fixed_ratio(args, ratio, aligned):
    x, rois, out, scale = args
    ref = roi_align(torch.tensor(x), torch.tensor(rois), out, scale, ratio, aligned).numpy()
    got = RoIAlign(out, scale, ratio, aligned)(_cl(x), rois)
    assert _err(_cf(got), ref) <= TOL


@settings(max_examples=EXAMPLES, deadline=None)
@given(args=roi_args(adaptive_inside=True), ratio=st.sampled_from([0, -1]), aligned=st.booleans())
def test_roi_align_layer_adaptive_inside_the_map(args, ratio, aligned):
    x, rois, out, scale = args
    ref = roi_align(torch.tensor(x), torch.tensor(rois), out, scale, ratio, aligned).numpy()
    bound = max(1, -(-x.shape[2] // out[0]), -(-x.shape[3] // out[1]))
    got = RoIAlign(out, scale, ratio, aligned, max_sampling_ratio=bound)(_cl(x), rois)
    assert _err(_cf(got), ref) <= TOL


def test_roi_align_adaptive_needs_a_bound():
    with pytest.raises(ValueError, match="max_sampling_ratio"):
        RoIAlign((2, 2), 1.0, -1)
    # A large enough bound is exact for RoIs larger than the map too.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    rois = np.array([[0, -7.3, -4.1, 13.2, 9.9], [0, 1, 1, 3, 3]], np.float32)
    ref = roi_align(torch.tensor(x), torch.tensor(rois), (2, 2), 1.0, -1, False).numpy()
    assert _err(_cf(RoIAlign((2, 2), 1.0, -1, max_sampling_ratio=12)(_cl(x), rois)), ref) <= TOL


@settings(max_examples=EXAMPLES, deadline=None)
@given(args=roi_args())
def test_roi_pool_layer(args):
    x, rois, out, scale = args
    ref = roi_pool(torch.tensor(x), torch.tensor(rois), out, scale).numpy()
    assert _err(_cf(RoIPool(out, scale)(_cl(x), rois)), ref) <= TOL


def test_roi_pool_rounds_half_away_from_zero():
    x = np.random.default_rng(1).standard_normal((1, 1, 6, 6)).astype(np.float32)
    rois = np.array([[0, 0.5, 1.5, 2.5, 3.5], [0, -0.5, -1.5, 2.5, 4.5], [0, 0.49999997, 0.5, 4.5, 5.5]], np.float32)
    ref = roi_pool(torch.tensor(x), torch.tensor(rois), (2, 2), 1.0).numpy()
    np.testing.assert_array_equal(_cf(RoIPool((2, 2), 1.0)(_cl(x), rois)), ref)


# ---- nms / batched_nms ---------------------------------------------------------------------------
@st.composite
def nms_args(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    k = draw(st.integers(1, 24))
    xy = rng.uniform(-5, 10, (k, 2))
    wh = rng.uniform(0, 6, (k, 2))
    wh[rng.random(k) < 0.15] = 0.0  # degenerate boxes (0/0 IoU: never suppress)
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    if draw(st.booleans()):  # tied scores: torchvision's stable sort keeps the lower index first
        scores = rng.choice(np.linspace(0, 1, 5), k).astype(np.float32)
    else:
        scores = rng.standard_normal(k).astype(np.float32)
    idxs = rng.integers(0, draw(st.integers(1, 4)), k)
    thr = draw(st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0]))
    return boxes, scores, idxs, thr


def _iou_ties(boxes, thr):
    b = torch.tensor(boxes)
    iou = torchvision.ops.box_iou(b, b).numpy()
    return np.any(np.abs(iou - thr) < 1e-6)


def _check_nms(out, count, ref):
    out, count = np.asarray(out), int(np.asarray(count)[0])
    assert count == len(ref)
    np.testing.assert_array_equal(out[:count], ref)
    assert (out[count:] == -1).all()


@settings(max_examples=EXAMPLES * 2, deadline=None)
@given(args=nms_args())
def test_nms_matches_torchvision(args):
    boxes, scores, idxs, thr = args
    if thr > 0 and _iou_ties(boxes, thr):
        return  # an IoU equal to the threshold: a 1-ulp difference decides it
    ref = nms(torch.tensor(boxes), torch.tensor(scores), thr).numpy()
    _check_nms(*NonMaxSuppression(thr)(boxes, scores), ref)
    ref = batched_nms(torch.tensor(boxes), torch.tensor(scores), torch.tensor(idxs), thr).numpy()
    _check_nms(*NonMaxSuppression(thr, batched=True)(boxes, scores, idxs), ref)


def test_nms_max_output_size_truncates_to_the_best():
    boxes = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5], [0, 0, 1, 1.01]], np.float32)
    scores = np.array([0.1, 0.9, 0.5, 0.3], np.float32)
    out, count = NonMaxSuppression(0.5, max_output_size=2)(boxes, scores)
    np.testing.assert_array_equal(np.asarray(out), [1, 2])
    assert int(np.asarray(count)[0]) == 2
    out, count = NonMaxSuppression(0.5, max_output_size=6)(boxes, scores)
    np.testing.assert_array_equal(np.asarray(out), [1, 2, 3, -1, -1, -1])


# ---- functional forms through the tracer ------------------------------------------------------------
def _traced_parity(net, inputs, io_layout="torch"):
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    km = recreate.convert(net, tuple(torch.tensor(x) for x in inputs), io_layout=io_layout)
    with torch.no_grad():
        ref = net(*[torch.tensor(x) for x in inputs])
    ref = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else [ref])]
    cl = io_layout == "keras"
    feeds = [to_channels_last(x) if cl and x.ndim >= 3 else x for x in inputs]
    got = km(feeds[0] if len(feeds) == 1 else feeds)
    got = got if isinstance(got, (list, tuple)) else [got]
    for g, r in zip(got, ref):
        g = to_channels_first(np.asarray(g)) if cl and r.ndim >= 3 else np.asarray(g)
        assert g.shape == r.shape
        assert _err(g, r) <= TOL
    return km


class _DeformNet(torch.nn.Module):
    def __init__(self, mask: bool, groups: int):
        super().__init__()
        self.offset = torch.nn.Conv2d(4, 2 * 2 * 9, 3, padding=1)
        self.mask = torch.nn.Conv2d(4, 2 * 9, 3, padding=1) if mask else None
        self.weight = torch.nn.Parameter(torch.randn(6, 4 // groups, 3, 3) * 0.3)
        self.bias = torch.nn.Parameter(torch.randn(6))

    def forward(self, x):
        off = self.offset(x) * 3.0
        m = torch.sigmoid(self.mask(x)) if self.mask is not None else None
        return deform_conv2d(x, off, self.weight, self.bias, padding=(1, 1), mask=m)


@pytest.mark.parametrize("mask,groups", [(False, 1), (True, 2)])
def test_functional_deform_conv2d_traced(mask, groups):
    torch.manual_seed(0)
    net = _DeformNet(mask, groups).eval()
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 5)).astype(np.float32)
    for io in ("torch", "keras"):
        _traced_parity(net, x, io)


class _RoINet(torch.nn.Module):
    def __init__(self, pool, as_list):
        super().__init__()
        self.pool, self.as_list = pool, as_list

    def forward(self, x, boxes):
        rois = [boxes[:2, 1:], boxes[2:, 1:]] if self.as_list else boxes
        if self.pool:
            return roi_pool(x, rois, (2, 3), 0.5)
        return roi_align(x, rois, (3, 2), 0.5, 2, True)


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("as_list", [False, True])
def test_functional_roi_ops_traced(pool, as_list):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    rois = np.array([[0, 1, 2, 9, 8], [0, -3, 0, 4, 20], [1, 2.5, 3.5, 3.5, 4.5], [1, 0, 0, 14, 12]], np.float32)
    if as_list:
        rois[:2, 0], rois[2:, 0] = 0, 1
    _traced_parity(_RoINet(pool, as_list).eval(), (x, rois))
    _traced_parity(_RoINet(pool, as_list).eval(), (x, rois), "keras")


class _NMSNet(torch.nn.Module):
    def __init__(self, batched):
        super().__init__()
        self.batched = batched

    def forward(self, boxes, scores, idxs):
        if self.batched:
            return batched_nms(boxes, scores, idxs, 0.4)
        return nms(boxes, scores, 0.4)


@pytest.mark.parametrize("batched", [False, True])
def test_functional_nms_traced(batched):
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 6, (12, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 4, (12, 2))], 1).astype(np.float32)
    scores = rng.random(12).astype(np.float32)
    idxs = rng.integers(0, 3, 12)
    net = _NMSNet(batched).eval()
    km = recreate.convert(net, (torch.tensor(boxes), torch.tensor(scores), torch.tensor(idxs)))
    ref = net(torch.tensor(boxes), torch.tensor(scores), torch.tensor(idxs)).numpy()
    out = np.asarray(km([boxes, scores, idxs]))
    np.testing.assert_array_equal(out[: len(ref)], ref)
    assert (out[len(ref):] == -1).all()


# ---- torchvision containers through the tracer -------------------------------------------------------
def _containers():
    from torchvision.ops import (
        MLP,
        Conv2dNormActivation,
        Conv3dNormActivation,
        SqueezeExcitation,
        StochasticDepth,
    )
    from torchvision.ops.misc import FrozenBatchNorm2d

    return [
        (Conv2dNormActivation(3, 5, 3, stride=2, groups=1, activation_layer=torch.nn.SiLU), (2, 3, 7, 6)),
        (Conv2dNormActivation(4, 4, 3, groups=2, norm_layer=FrozenBatchNorm2d, dilation=2), (1, 4, 8, 8)),
        (Conv3dNormActivation(2, 3, 3, padding=1), (1, 2, 4, 5, 3)),
        (SqueezeExcitation(6, 3), (2, 6, 4, 5)),
        (MLP(5, [8, 4], norm_layer=torch.nn.LayerNorm, dropout=0.2), (3, 5)),
        (StochasticDepth(0.3, "row"), (2, 3, 4, 4)),
    ]


@pytest.mark.parametrize("i", range(6))
def test_torchvision_containers_convert(i):
    from recreate.testing.cases import randomize_

    module, shape = _containers()[i]
    randomize_(module, i)
    x = np.random.default_rng(i).standard_normal(shape).astype(np.float32)
    _traced_parity(module.eval(), x)
    _traced_parity(module.eval(), x, "keras")


# ---- serialization, TFLite ------------------------------------------------------------------------------
def _layer_models():
    """(name, keras model with fixed batch, feeds, torch reference outputs)."""
    rng = np.random.default_rng(11)
    out = []
    for mask, groups, og in ((False, 1, 1), (True, 2, 2)):
        a = dict(x=rng.standard_normal((1, 4, 6, 5)).astype(np.float32), w=(rng.standard_normal((6, 4 // groups, 3, 3)) * 0.3).astype(np.float32),
                 b=rng.standard_normal(6).astype(np.float32), s=(1, 1), p=(1, 1), d=(1, 1), groups=groups, og=og)
        a["off"] = (rng.standard_normal((1, 2 * og * 9, 6, 5)) * 3).astype(np.float32)
        a["mask"] = rng.random((1, og * 9, 6, 5)).astype(np.float32) if mask else None
        layer, feeds = _deform_layer(a)
        ins = [keras.Input(batch_size=1, shape=f.shape[1:]) for f in feeds]
        km = keras.Model(ins, layer(*ins))
        km.layers[-1].set_weights(layer.get_weights())
        out.append((f"deform_mask{mask}", km, feeds, [_deform_ref(a)], [True]))
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    rois = np.array([[0, 1, 2, 9, 8], [1, -3, 0, 4, 20], [1, 2.5, 3.5, 3.5, 4.5], [0, 0, 0, 0, 0]], np.float32)
    for name, layer, ref in (
        ("roi_align", RoIAlign((3, 2), 0.5, 2, True), roi_align(torch.tensor(x), torch.tensor(rois), (3, 2), 0.5, 2, True)),
        ("roi_align_adaptive", RoIAlign((2, 2), 0.5, -1, False, max_sampling_ratio=8),
         roi_align(torch.tensor(x), torch.tensor(rois), (2, 2), 0.5, -1, False)),
        ("roi_pool", RoIPool((2, 3), 0.5), roi_pool(torch.tensor(x), torch.tensor(rois), (2, 3), 0.5)),
    ):
        xi, ri = keras.Input(batch_size=2, shape=(7, 6, 3)), keras.Input(batch_size=4, shape=(5,))
        out.append((name, keras.Model([xi, ri], layer(xi, ri)), [_cl(x), rois], [ref.numpy()], [True]))
    xy = rng.uniform(0, 6, (10, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 4, (10, 2))], 1).astype(np.float32)
    scores = rng.random(10).astype(np.float32)
    idxs = rng.integers(0, 3, 10).astype(np.int32)
    ref = nms(torch.tensor(boxes), torch.tensor(scores), 0.3).numpy()
    bi, si = keras.Input(batch_size=10, shape=(4,)), keras.Input(batch_size=10, shape=())
    padded = np.full(10, -1)
    padded[: len(ref)] = ref
    out.append(("nms", keras.Model([bi, si], NonMaxSuppression(0.3)(bi, si)), [boxes, scores],
                [padded, np.array([len(ref)])], [False, False]))
    ref = batched_nms(torch.tensor(boxes), torch.tensor(scores), torch.tensor(idxs), 0.3).numpy()
    ii = keras.Input(batch_size=10, shape=(), dtype="int32")
    padded = np.full(10, -1)
    padded[: len(ref)] = ref
    out.append(("batched_nms", keras.Model([bi, si, ii], NonMaxSuppression(0.3, batched=True)(bi, si, ii)),
                [boxes, scores, idxs], [padded, np.array([len(ref)])], [False, False]))
    return out


def _compare(got, refs, cl_flags, tol):
    got = got if isinstance(got, (list, tuple)) else [got]
    for g, r, cl in zip(got, refs, cl_flags):
        g = _cf(g) if cl else np.asarray(g)
        if np.issubdtype(np.asarray(r).dtype, np.integer):
            np.testing.assert_array_equal(g, r)
        else:
            assert _err(g, r) <= tol


@pytest.mark.parametrize("i", range(6))
def test_keras_round_trip_safe_mode(tmp_path, i):
    name, km, feeds, refs, cl = _layer_models()[i]
    _compare(km(feeds), refs, cl, TOL)
    path = tmp_path / f"{name}.keras"
    km.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    _compare(loaded(feeds), refs, cl, TOL)


@pytest.mark.parametrize("i", range(6))
def test_tflite_builtin_ops_only(i):
    import tensorflow as tf

    name, km, feeds, refs, cl = _layer_models()[i]
    conv = tf.lite.TFLiteConverter.from_keras_model(km)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interp = tf.lite.Interpreter(model_content=conv.convert())
    interp.allocate_tensors()
    # Match tensors by shape and dtype (the interpreter's order is not the model's).
    used = set()
    for d in interp.get_input_details():
        j = next(j for j, f in enumerate(feeds) if j not in used and tuple(np.shape(f)) == tuple(d["shape"])
                 and np.issubdtype(np.asarray(f).dtype, np.integer) == np.issubdtype(d["dtype"], np.integer))
        used.add(j)
        interp.set_tensor(d["index"], np.asarray(feeds[j]).astype(d["dtype"]))
    interp.invoke()
    outs = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
    if len(refs) == 2 and outs[0].shape != refs[0].shape:
        outs = outs[::-1]
    _compare(outs, refs, cl, 1e-4)


# ---- import guard ----------------------------------------------------------------------------------------
def test_converters_import_without_torchvision(monkeypatch):
    import recreate._backend as backend
    from recreate import registry

    monkeypatch.setattr(backend, "HAVE_TORCHVISION", False)
    before = len(list(registry.entries()))
    for mod in ("converters/vision_ops.py", "ops/vision.py"):
        path = os.path.join(os.path.dirname(recreate.__file__), mod)
        pkg = "recreate." + os.path.dirname(mod)
        spec = importlib.util.spec_from_file_location(f"{pkg}._probe_{os.path.basename(mod)[:-3]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert not hasattr(module, "deform_conv") and not hasattr(module, "nms")
    assert len(list(registry.entries())) == before


# ---- module converters: call forms and errors ----------------------------------------------------------
@pytest.mark.parametrize("io_layout", ["torch", "keras"])
def test_deform_conv2d_module_mask_positional_or_keyword(io_layout):
    from recreate.testing import assert_parity
    from recreate.testing.cases import randomize_

    m = randomize_(torchvision.ops.DeformConv2d(4, 6, 3, padding=1, groups=2), 0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    off = (rng.standard_normal((2, 36, 5, 6)) * 3).astype(np.float32)  # 2 offset groups
    mask = rng.random((2, 18, 5, 6)).astype(np.float32)
    assert_parity(m, (x, off), kwargs={"mask": mask}, io_layout=io_layout)
    assert_parity(m, (x, off, mask), io_layout=io_layout)
    assert_parity(m, (x, off), io_layout=io_layout)


def test_module_converters_explain_what_they_need():
    from recreate.errors import ConversionError
    from recreate.registry import BuildContext, lookup

    m = torchvision.ops.DeformConv2d(4, 6, 3)
    with pytest.raises(ConversionError, match="offset"):
        lookup(m).make_layers(m, BuildContext(((1, 4, 5, 5),)), "d")
    with pytest.raises(ConversionError, match="multiple of"):
        lookup(m).make_layers(m, BuildContext(((1, 4, 5, 5), (1, 17, 3, 3))), "d")
    r = torchvision.ops.RoIAlign(2, 1.0, 2)
    with pytest.raises(ConversionError, match=r"Tensor\[K, 5\]"):
        lookup(r).make_layers(r, BuildContext(((1, 3, 5, 5), (4, 4))), "r")


def test_autowrap_list_makes_functional_calls_leaves():
    from recreate.ops import find_op
    from recreate.ops.vision import AUTOWRAP

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(3, 2, 3, 3))

        def forward(self, x, off, b, sc, i):
            return tv_deform_conv2d(x, off, self.w, padding=1), tv_nms(b, sc, 0.5), tv_batched_nms(b, sc, i, 0.5), tv_roi_align(x, b, 2), tv_roi_pool(x, b, 2)

    # (fx autowraps module-level names that do not start with "_")
    g = torch.fx.Tracer(autowrap_functions=AUTOWRAP).trace(Net())
    called = [n.target for n in g.nodes if n.op == "call_function"]
    assert called == list(AUTOWRAP[:1] + AUTOWRAP[3:] + AUTOWRAP[1:3])
    assert all(find_op(t) is not None for t in called)


if HAVE_TORCHVISION:
    from torchvision.ops import batched_nms as tv_batched_nms  # noqa: E402
    from torchvision.ops import deform_conv2d as tv_deform_conv2d  # noqa: E402
    from torchvision.ops import nms as tv_nms  # noqa: E402
    from torchvision.ops import roi_align as tv_roi_align  # noqa: E402
    from torchvision.ops import roi_pool as tv_roi_pool  # noqa: E402
