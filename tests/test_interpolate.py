"""recreate.layers.Interpolate against torch.nn.functional.interpolate, and the Upsample
converters' error messages. The registry-wide test covers nn.Upsample*; here the layer is
property-tested directly for every mode (antialias and lanczos included, which nn.Upsample
cannot reach), its index rules are checked exhaustively where float rounding decides them,
and it is compiled (tf.function, XLA), saved (.keras, safe_mode=True) and run in TFLite."""

from __future__ import annotations

import math
import os
from fractions import Fraction

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import recreate
from recreate.errors import ConversionError
from recreate.layers.interpolate import Interpolate, axis_table

EXAMPLES = int(os.environ.get("RECREATE_EXAMPLES", "25"))
TOL = 1e-5
_RANKS = {"nearest": (1, 2, 3), "nearest-exact": (1, 2, 3), "area": (1, 2, 3), "linear": (1,),
          "bilinear": (2,), "bicubic": (2,), "trilinear": (3,), "lanczos": (2,)}


def _cl(x):
    return np.moveaxis(np.asarray(x), 1, -1)


def _cf(x):
    return np.moveaxis(np.asarray(x), -1, 1)


def torch_reference(x: torch.Tensor, **kw) -> np.ndarray:
    """F.interpolate, except where torch's CPU kernel is wrong: antialias=True with an output
    width of 1 and a changing height returns output row 0 in every row for contiguous (NCHW)
    input (torch 2.14.1; float32 and float64; a channels_last input is right). There the
    reference is torch's own channels_last result (channels doubled so the memory format is
    not ambiguous), which agrees with the separable definition."""
    out = F.interpolate(x, **kw)
    if kw.get("antialias") and out.shape[-1] == 1 and out.shape[-2] != x.shape[-2]:
        xx = torch.cat([x, x], 1).contiguous(memory_format=torch.channels_last)
        out = F.interpolate(xx, **kw)[:, : x.shape[1]]
    return out.numpy()


def run_layer(x: torch.Tensor, **kw) -> np.ndarray:
    return _cf(keras.ops.convert_to_numpy(Interpolate(**kw)(_cl(x.numpy()))))


def parity(got, ref):
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref)))) if ref.size else 0.0


def _nearest_exact_tie(n_in, n_out, factor):
    scale = Fraction(n_in, n_out) if factor is None else 1 / Fraction(factor)
    return any(((2 * i + 1) * scale / 2).denominator == 1 for i in range(n_out))


@st.composite
def interpolate_args(draw, mode):
    """(input shape in torch layout, F.interpolate keyword arguments) over torch's whole space."""
    antialias = mode.endswith("-aa") or mode == "lanczos"
    mode = mode.removesuffix("-aa")
    n = draw(st.sampled_from(_RANKS[mode]))
    top = {1: 12, 2: 9, 3: 5}[n]
    spatial = [draw(st.integers(1, top)) for _ in range(n)]
    kw = {"mode": mode}
    factors = [None] * n
    if draw(st.booleans()):
        sizes = [draw(st.integers(1, 2 * top)) for _ in range(n)]
        kw["size"] = sizes if draw(st.booleans()) else sizes[0]
        sizes = sizes if isinstance(kw["size"], list) else [sizes[0]] * n
    else:
        factors = [round(draw(st.floats(0.2, 3.5)), draw(st.integers(1, 3))) for _ in range(n)]
        factors = [f if math.floor(s * f) >= 1 else 1.0 for s, f in zip(spatial, factors)]
        kw["scale_factor"] = factors if len(set(factors)) > 1 or draw(st.booleans()) else factors[0]
        sizes = [math.floor(s * f) for s, f in zip(spatial, factors)]
        kw["recompute_scale_factor"] = draw(st.sampled_from([None, False, True]))
        if kw["recompute_scale_factor"] or mode == "area":
            factors = [None] * n
    if mode not in ("nearest", "nearest-exact", "area", "lanczos"):
        kw["align_corners"] = draw(st.sampled_from([None, False, True]))
    if antialias:
        kw["antialias"] = True
    if mode == "nearest-exact":  # exact ties: see test_nearest_indices_exhaustive
        assume(not any(_nearest_exact_tie(i, o, f) for i, o, f in zip(spatial, sizes, factors)))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial)
    return shape, kw


MODES = ["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area",
         "bilinear-aa", "bicubic-aa", "lanczos"]


@pytest.mark.parametrize("mode", MODES)
def test_layer_matches_torch(mode):
    @settings(max_examples=EXAMPLES)
    @given(args=interpolate_args(mode), seed=st.integers(0, 2**31 - 1))
    def check(args, seed):
        shape, kw = args
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
        ref = torch_reference(x, **kw)
        got = run_layer(x, **kw)
        err = parity(got, ref)
        if kw["mode"].startswith("nearest"):
            assert err == 0.0, f"{kw}: nearest must copy exactly, error {err}"
        assert err <= TOL, f"{kw} on {shape}: error {err:.3g}"

    check()


def _indices(table, n_out):
    return np.arange(n_out) if table is None else table[0][:, 0]


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_nearest_indices_exhaustive(mode):
    """Every (in, out) pair up to 24 -> 64, and scale factors with recompute=False, ties
    included: the index tables equal torch's bit for bit, on both of torch's 2-D kernels
    (vectorized: out_h + out_w <= 128; generic) and the 1-D one. Ties are points where
    (i [+ 0.5]) * scale is an integer in exact arithmetic; torch rounds them in float32
    (nearest-exact's generic kernel with a fused multiply-add), which the tables reproduce.
    A torch build without FMA would round some nearest-exact ties differently."""
    factors = [None] * 64 + [0.3, 0.5, 0.7, 1.0, 1.05, 1.1, 1.3, 1.5, 2.0, 2.05, 2.1, 2.5, 3.0, 1 / 3, 2 / 3]
    bad = []
    for n_in in range(1, 25):
        line = torch.arange(n_in, dtype=torch.float32)
        for j, f in enumerate(factors):
            n_out = j + 1 if f is None else math.floor(n_in * f)
            if n_out < 1:
                continue
            kw = {"size": n_out} if f is None else {"scale_factor": f, "recompute_scale_factor": False}
            one = F.interpolate(line.reshape(1, 1, n_in), mode=mode, **kw)[0, 0].numpy().astype(int)
            if not np.array_equal(one, _indices(axis_table(mode, n_in, n_out, scale=f), n_out)):
                bad.append(("1d", n_in, n_out, f))
            for other in (1, 200):  # output height + width below / above 128
                kw2 = ({"size": (n_out, other)} if f is None
                       else {"scale_factor": (f, 1.0), "recompute_scale_factor": False})
                two = F.interpolate(line.reshape(1, 1, n_in, 1).expand(1, 1, n_in, other), mode=mode, **kw2)
                two = two[0, 0, :, 0].numpy().astype(int)
                mine = axis_table(mode, n_in, n_out, scale=f, vectorized=n_out + other <= 128)
                if not np.array_equal(two, _indices(mine, n_out)):
                    bad.append(("2d", n_in, n_out, f, other))
    assert not bad, bad[:10]


def _matrix(table, n_in, n_out):
    if table is None:
        return np.eye(n_in)
    idx, w = table
    w = np.ones(idx.shape) if w is None else w
    m = np.zeros((n_out, n_in))
    for k in range(idx.shape[1]):
        np.add.at(m, (np.arange(n_out), idx[:, k]), w[:, k])
    return m


@pytest.mark.parametrize("mode,antialias", [("linear", False), ("bicubic", False), ("area", False),
                                            ("bilinear", True), ("bicubic", True), ("lanczos", True)])
def test_weight_tables_match_torch(mode, antialias):
    """Per-axis weights as a matrix (torch's, read by resampling one-hot rows) for many
    sizes and scale factors: equal to float32 rounding (linear and the aa filters to 0 or 1
    ulp: the tables emulate torch's float32 arithmetic including its fused multiply-adds)."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for n_in in range(1, 21):
        eye = torch.eye(n_in)
        for trial in range(12):
            sf = None if trial < 6 else float(np.round(rng.uniform(0.2, 3.5), int(rng.integers(1, 4))))
            n_out = int(rng.integers(1, 60)) if sf is None else math.floor(n_in * sf)
            if n_out < 1:
                continue
            for ac in ([None] if mode in ("area", "lanczos") else [False, True]):
                if mode in ("linear", "area"):
                    x, size = eye.reshape(1, n_in, n_in), n_out
                    sfs = sf
                else:
                    x, size = eye.reshape(1, n_in, n_in, 1).expand(1, n_in, n_in, 3), (n_out, 3)
                    sfs = None if sf is None else (sf, 1.0)
                kw = {"size": size} if sf is None else {"scale_factor": sfs, "recompute_scale_factor": None if mode == "area" else False}
                ref = F.interpolate(x, mode=mode, align_corners=ac, antialias=antialias, **kw)[0]
                ref = (ref if ref.dim() == 2 else ref[..., 0]).T.double().numpy()
                table = axis_table(mode, n_in, n_out, align_corners=bool(ac), antialias=antialias,
                                   scale=None if mode == "area" else sf)
                worst = max(worst, float(np.abs(_matrix(table, n_in, n_out) - ref).max()))
    assert worst <= 1e-6, worst


def test_scale_factor_is_used_as_given():
    """recompute_scale_factor False/None: torch maps with 1/scale_factor, not in/out."""
    x = torch.randn(1, 2, 5)
    kw = dict(scale_factor=1.3, mode="linear", align_corners=False, recompute_scale_factor=False)
    ref = F.interpolate(x, **kw).numpy()
    assert ref.shape[-1] == 6
    assert not np.allclose(ref, F.interpolate(x, size=6, mode="linear").numpy(), atol=1e-3)
    assert parity(run_layer(x, **kw), ref) <= 1e-6
    kw["recompute_scale_factor"] = True
    assert parity(run_layer(x, **kw), F.interpolate(x, size=6, mode="linear").numpy()) <= 1e-6


def test_equal_size_shortcuts():
    """Linear copies an axis whose size does not change whatever the scale; bicubic does not."""
    x = torch.randn(1, 1, 4, 6)
    for mode in ("bilinear", "bicubic"):
        kw = dict(scale_factor=(1.2, 1.0), mode=mode, recompute_scale_factor=False)
        ref = F.interpolate(x, **kw).numpy()
        assert ref.shape[-2:] == (4, 6)
        assert np.allclose(ref, x.numpy()) == (mode == "bilinear")
        assert parity(run_layer(x, **kw), ref) <= 1e-6


def test_nearest_2d_kernel_threshold():
    """2-D nearest with scale 2.1 on 3 rows (out 6): torch halves the index only when
    out_h + out_w <= 128, and the layer follows."""
    for width in (3, 122, 123, 200):
        x = torch.randn(1, 2, 3, width)
        kw = dict(scale_factor=(2.1, 1.0), mode="nearest", recompute_scale_factor=False)
        assert parity(run_layer(x, **kw), F.interpolate(x, **kw).numpy()) == 0.0


def test_torch_antialias_width_one_bug_is_documented():
    """If this fails, torch fixed its antialias kernel for outputs 1 wide (see
    torch_reference): drop the workaround there and the note in interpolate.py."""
    x = torch.arange(8.0).reshape(1, 1, 8, 1)
    buggy = F.interpolate(x, size=(4, 1), mode="bilinear", antialias=True)
    assert torch.unique(buggy).numel() == 1
    got = run_layer(x, size=(4, 1), mode="bilinear", antialias=True)
    np.testing.assert_allclose(got[0, 0, :, 0], [5 / 7, 2.5, 4.5, 44 / 7], rtol=1e-6)


@pytest.mark.parametrize("ratio", [0.125, 0.25, 0.5, 2.0, 4.0, 8.0])
def test_tf_resize_path_only_where_exact(ratio):
    """Power-of-two ratios run TF's ResizeBilinear, and it matches torch; other ratios don't."""
    import tensorflow as tf

    for n in range(1, 10):
        n_in = n if ratio > 1 else int(n / ratio)
        x = torch.randn(2, 3, n_in, 5)
        for kw in (dict(size=(int(n_in * ratio), 5)), dict(scale_factor=(ratio, 1.0), recompute_scale_factor=False)):
            layer = Interpolate(mode="bilinear", **kw)
            graph = tf.function(layer).get_concrete_function(tf.TensorSpec((None, n_in, 5, 3), tf.float32)).graph
            assert "ResizeBilinear" in {op.type for op in graph.get_operations()}
            assert parity(run_layer(x, mode="bilinear", **kw), F.interpolate(x, mode="bilinear", **kw).numpy()) <= 1e-6
    layer = Interpolate(size=(7, 5), mode="bilinear")
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec((None, 3, 5, 2), tf.float32)).graph
    assert "ResizeBilinear" not in {op.type for op in graph.get_operations()}


CONFIGS = [
    ((2, 3, 5, 7), dict(size=(9, 4), mode="bilinear", align_corners=False)),
    ((2, 3, 5, 7), dict(scale_factor=2.0, mode="bilinear")),
    ((1, 2, 6, 5), dict(scale_factor=1.7, mode="bicubic", align_corners=True)),
    ((1, 2, 12, 11), dict(size=(3, 4), mode="bilinear", antialias=True)),
    ((1, 2, 9, 8), dict(size=(2, 3), mode="area")),
    ((1, 2, 4, 3, 5), dict(scale_factor=(1.5, 2.0, 0.6), mode="trilinear")),
    ((1, 2, 5, 6), dict(scale_factor=2.3, mode="nearest-exact")),
    ((2, 2, 7), dict(size=4, mode="linear", align_corners=True)),
]


@pytest.mark.parametrize("shape,kw", CONFIGS, ids=lambda v: str(v))
def test_graph_xla_and_keras_file(shape, kw, tmp_path):
    import tensorflow as tf

    x = torch.randn(*shape)
    ref = F.interpolate(x, **kw).numpy()
    inp = keras.Input(_cl(x.numpy()).shape[1:])  # batch left free
    model = keras.Model(inp, Interpolate(**kw, name="interp")(inp))
    for jit in (False, True):
        got = tf.function(model, jit_compile=jit)(_cl(x.numpy()))
        assert parity(_cf(got), ref) <= TOL
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    assert again.get_layer("interp").get_config() == model.get_layer("interp").get_config()
    assert parity(_cf(again(_cl(x.numpy()))), ref) <= TOL


def test_config_round_trip_has_every_argument():
    layer = Interpolate(scale_factor=[1.5, 2], mode="bicubic", align_corners=True,
                        recompute_scale_factor=False, antialias=True)
    cfg = layer.get_config()
    for k, v in dict(size=None, scale_factor=[1.5, 2.0], mode="bicubic", align_corners=True,
                     recompute_scale_factor=False, antialias=True).items():
        assert cfg[k] == v
    assert Interpolate.from_config(cfg).get_config() == cfg
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is Interpolate and restored.get_config() == cfg


@pytest.mark.parametrize("shape,kw", CONFIGS[:6] + CONFIGS[7:], ids=lambda v: str(v))
def test_tflite_builtin_ops(shape, kw):
    """Converted with TFLite's builtin op set only; the interpreter matches torch."""
    import tensorflow as tf

    x = torch.randn(1, *shape[1:])
    xin = _cl(x.numpy())
    inp = keras.Input(xin.shape[1:], batch_size=1)
    model = keras.Model(inp, Interpolate(**kw)(inp))
    fn = tf.function(lambda v: model(v)).get_concrete_function(tf.TensorSpec(xin.shape, tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], xin)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert parity(_cf(out), F.interpolate(x, **kw).numpy()) <= 1e-4


def test_float64_and_dynamic_batch():
    x = torch.randn(3, 2, 5, 4, dtype=torch.float64)
    kw = dict(size=(7, 3), mode="bicubic", align_corners=False)
    got = _cf(keras.ops.convert_to_numpy(Interpolate(**kw, dtype="float64")(_cl(x.numpy()))))
    assert got.dtype == np.float64
    # The tables hold torch's float32 weights; torch's float64 kernel computes them in double.
    assert parity(got, F.interpolate(x, **kw).numpy()) <= TOL
    layer = Interpolate(**kw)
    assert layer.compute_output_shape((None, 5, 4, None)) == (None, 7, 3, None)
    assert Interpolate(scale_factor=2.5, mode="nearest").compute_output_shape((None, 3, None, 2)) == (None, 7, None, 2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="cubic", size=2), "mode must be one of"),
    (dict(mode="nearest", size=2, scale_factor=2.0), "exactly one of size and scale_factor"),
    (dict(mode="nearest", size=2, align_corners=False), "align_corners can only be set"),
    (dict(mode="bilinear", size=2, recompute_scale_factor=True), "recompute_scale_factor is not meaningful"),
    (dict(mode="trilinear", size=2, antialias=True), "antialias=True is restricted"),
])
def test_layer_rejects_what_torch_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Interpolate(**kwargs)


def _convert(module, shape):
    return recreate.convert(module.eval(), torch.randn(*shape))


@pytest.mark.parametrize("module,shape,match", [
    (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 5), r"mode 'bilinear' needs 2 spatial axes"),
    (nn.Upsample(size=3, mode="area", align_corners=True), (1, 2, 5, 5), r"align_corners=True.*align_corners can only be set"),
    (nn.Upsample(scale_factor=0.1, mode="nearest"), (1, 2, 5, 5), r"must be greater than 0"),
    (nn.Upsample(size=(2, 3), mode="bicubic"), (1, 2, 5, 5, 5), r"mode 'bicubic' needs 2 spatial axes"),
    (nn.Upsample(scale_factor=2, mode="lanczos"), (1, 2, 5, 5), r"mode='lanczos'.*needs antialias=True"),
])
def test_converter_errors_name_the_argument(module, shape, match):
    with pytest.raises(ConversionError, match=match):
        _convert(module, shape)


@pytest.mark.parametrize("module,shape", [
    (nn.Upsample(scale_factor=1.5, mode="bicubic", align_corners=False), (2, 3, 6, 5)),
    (nn.Upsample(size=(4, 5, 3), mode="trilinear", align_corners=True), (1, 2, 3, 2, 4)),
    (nn.UpsamplingBilinear2d(scale_factor=2.5), (1, 2, 3, 4)),
    (nn.UpsamplingNearest2d(size=(5, 7)), (2, 3, 3, 4)),
])
def test_converted_module(module, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    recreate.testing.assert_parity(module.eval(), x)
    recreate.testing.assert_parity(module.eval(), x, io_layout="keras")


def test_integer_input_nearest_only():
    x = torch.arange(24, dtype=torch.int32).reshape(1, 2, 3, 4)
    got = run_layer(x, size=(5, 7), mode="nearest-exact")
    np.testing.assert_array_equal(got, F.interpolate(x.float(), size=(5, 7), mode="nearest-exact").int().numpy())
    with pytest.raises(ValueError, match="needs a floating-point input"):
        run_layer(x, size=(5, 7), mode="bilinear")


@pytest.mark.parametrize("mode,kw", [("bilinear", {"align_corners": True}), ("bilinear", {"align_corners": False}),
                                     ("bicubic", {"align_corners": False}), ("area", {}),
                                     ("bilinear", {"antialias": True, "align_corners": False}), ("nearest", {})])
def test_float64_input_uses_float64_tables(mode, kw):
    """A float64 run (how float32 rounding is told from a converter bug) must not lose
    precision here: torch computes these tables in double for a double input."""
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for size in [(10, 14), (3, 4), (11, 5)]:
        ref = F.interpolate(x, size=size, mode=mode, **kw).numpy()
        layer = Interpolate(size=size, mode=mode, dtype="float64", **kw)
        got = np.transpose(np.asarray(layer(np.transpose(x.numpy(), (0, 2, 3, 1)))), (0, 3, 1, 2))
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)
