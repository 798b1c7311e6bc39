"""transfer_weights into hand-written Keras models of stock layers."""

from __future__ import annotations

import warnings

import recreate
import torch
from recreate.testing import calibrate_batchnorm_, randomize_
from torch import nn

import keras
import numpy as np
import pytest
from keras import layers as L


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8, momentum=0.3)
        self.conv2 = nn.Conv2d(8, 6, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(6, eps=1e-3, momentum=0.05)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def keras_small(eps1=1e-5, filters2=6):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inp)
    x = L.ReLU()(L.BatchNormalization(epsilon=eps1, momentum=0.7, name="bn1")(x))
    x = L.Conv2D(filters2, 3, strides=2, name="conv2")(L.ZeroPadding2D(1)(x))
    x = L.ReLU()(L.BatchNormalization(epsilon=1e-3, momentum=0.95, name="bn2")(x))
    x = L.Flatten()(x)  # channels-last: H, W, C order; transfer permutes fc's rows
    return keras.Model(inp, L.Dense(5, name="fc")(x))


def torch_small(seed=0):
    m = randomize_(SmallNet(), seed)
    return calibrate_batchnorm_(m, torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(seed)))


def test_hand_written_model_matches_including_bn_stats_and_flatten():
    tm, km = torch_small(), keras_small()
    # The statistics are not the defaults, so a converter ignoring them would fail.
    assert tm.bn1.running_var.std() > 0.01 and tm.bn1.running_mean.abs().max() > 0.01
    report = recreate.transfer_weights(tm, km)
    assert report.tensors == 1 + 4 + 2 + 4 + 2 and report.complete
    assert any("CHW->HWC" in n for r in report.rows if r.keras == "fc" for n in r.notes)
    assert km.get_layer("bn1").momentum == pytest.approx(1 - tm.bn1.momentum)
    x = torch.randn(4, 3, 8, 8)
    res = recreate.verify(tm, km, x, tolerance=1e-5)
    assert res.passed, res
    assert res.outputs[0].max_abs <= 1e-5 and res.outputs[0].ref_max_abs > 0.1
    # The reference depends on the input (a constant model would pass any converter).
    assert not torch.allclose(tm(x), tm(torch.randn(4, 3, 8, 8)))
    assert "keras layer" in str(report) and "| keras layer |" in report.to_markdown()


def _snapshot(km):
    return [np.array(v.numpy()) for v in km.weights]


def test_mismatched_layer_raises_names_both_shapes_and_changes_nothing():
    tm, km = torch_small(), keras_small(filters2=7)
    before = _snapshot(km)
    with pytest.raises(recreate.TransferError) as e:
        recreate.transfer_weights(tm, km)
    msg = str(e.value)
    assert "conv2/kernel" in msg and "(3, 3, 8, 7)" in msg and "(6, 8, 3, 3)" in msg and "(3, 3, 8, 6)" in msg
    assert "no Keras variable was changed" in msg
    for a, b in zip(before, _snapshot(km)):
        np.testing.assert_array_equal(a, b)


def test_epsilon_mismatch_is_refused_with_the_fix():
    with pytest.raises(recreate.TransferError, match=r"bn1'.epsilon=0.001 but torch 'bn1' has 1e-05"):
        recreate.transfer_weights(torch_small(), keras_small(eps1=1e-3))


def test_strict_lists_unused_and_unassigned_and_non_strict_skips():
    tm = torch_small()
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inp)
    km = keras.Model(inp, L.Dense(2, name="head")(x))
    with pytest.raises(recreate.TransferError) as e:
        recreate.transfer_weights(tm, km)
    msg = str(e.value)
    assert "'head'" in msg and "bn1.running_mean" in msg and "fc.weight" in msg
    report = recreate.transfer_weights(tm, km, strict=False)
    assert "fc.weight" in report.unused_torch and "head/kernel" in report.unassigned_keras
    np.testing.assert_array_equal(
        km.get_layer("conv1").kernel.numpy(), tm.conv1.weight.detach().numpy().transpose(2, 3, 1, 0)
    )


def test_mapping_and_state_dict_and_dtype_casts():
    tm = torch_small()
    km = keras_small()
    km2 = keras.models.clone_model(km)
    sd = {k: (v.half() if k.startswith("conv1") else v.double() if k.startswith("fc") else v)
          for k, v in tm.state_dict().items()}
    report = recreate.transfer_weights(sd, km2)
    assert any("float16 -> float32" in c for c in report.casts)
    assert any("float64 -> float32" in c for c in report.casts)
    np.testing.assert_allclose(km2.get_layer("conv1").kernel.numpy(),
                               tm.conv1.weight.detach().half().float().numpy().transpose(2, 3, 1, 0))
    renamed = {f"k_{k}" if not k.startswith("fc") else k: v for k, v in tm.state_dict().items()}
    km3 = keras.models.clone_model(km)
    recreate.transfer_weights(renamed, km3, mapping=lambda name: f"k_{name}" if name != "fc" else None)
    np.testing.assert_array_equal(km3.get_layer("bn2").moving_variance.numpy(), tm.bn2.running_var.numpy())


def test_bf16_is_cast_and_reported():
    lin = nn.Linear(4, 3).to(torch.bfloat16)
    inp = keras.Input((4,))
    km = keras.Model(inp, L.Dense(3, name="lin")(inp))
    report = recreate.transfer_weights({"lin.weight": lin.weight, "lin.bias": lin.bias}, km)
    assert len(report.casts) == 2 and "bfloat16 -> float32" in report.casts[0]


def _run(km, x):
    return np.asarray(keras.ops.convert_to_numpy(km(x)))


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_recurrent_into_stock_keras(kind, bidirectional):
    tm = randomize_(getattr(nn, kind)(5, 4, batch_first=True, bidirectional=bidirectional), 1)
    klass = {"LSTM": L.LSTM, "GRU": L.GRU, "RNN": L.SimpleRNN}[kind]
    inp = keras.Input((6, 5))
    cell = klass(4, return_sequences=True)
    layer = L.Bidirectional(cell, name="rnn") if bidirectional else klass(4, return_sequences=True, name="rnn")
    km = keras.Model(inp, layer(inp))
    recreate.transfer_weights(tm, km, mapping={"rnn": ""})
    x = _rand(3, 6, 5)
    ref = tm(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(_run(km, x), ref, atol=1e-5)


@pytest.mark.parametrize("kdim", [None, 3])
def test_multihead_attention_into_stock_keras(kdim):
    tm = randomize_(nn.MultiheadAttention(8, 2, batch_first=True, kdim=kdim, vdim=kdim), 2)
    q, kv = keras.Input((5, 8)), keras.Input((7, kdim or 8))
    mha = L.MultiHeadAttention(2, 4, name="mha")
    km = keras.Model([q, kv], mha(q, kv, kv))
    recreate.transfer_weights(tm, km, mapping={"mha": ""})
    xq, xkv = _rand(2, 5, 8), _rand(2, 7, kdim or 8, seed=1)
    ref = tm(torch.from_numpy(xq), torch.from_numpy(xkv), torch.from_numpy(xkv))[0].detach().numpy()
    np.testing.assert_allclose(_run(km, [xq, xkv]), ref, atol=1e-5)


@pytest.mark.parametrize(
    "torch_module, keras_layer, shape",
    [
        (nn.LayerNorm(6), L.LayerNormalization(epsilon=1e-5), (2, 3, 6)),
        (nn.LayerNorm((3, 6)), L.LayerNormalization(axis=(-2, -1), epsilon=1e-5), (2, 3, 6)),
        (nn.Embedding(10, 4), L.Embedding(10, 4), None),
        (nn.PReLU(), L.PReLU(shared_axes=[1]), (2, 3, 6)),
        (nn.ConvTranspose2d(3, 4, 3, stride=2), L.Conv2DTranspose(4, 3, strides=2), (2, 3, 5, 5)),
        (nn.Conv2d(3, 6, 3, groups=3), L.DepthwiseConv2D(3, depth_multiplier=2), (2, 3, 6, 6)),
        (nn.Conv1d(3, 4, 2), L.Conv1D(4, 2), (2, 3, 7)),
        (nn.Conv3d(2, 4, 2, bias=False), L.Conv3D(4, 2, use_bias=True), (1, 2, 4, 4, 4)),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else "",
)
def test_stock_keras_counterparts(torch_module, keras_layer, shape):
    tm = randomize_(torch_module, 4)
    keras_layer.name = "m"
    if shape is None:  # embedding
        x = np.random.default_rng(0).integers(0, 10, (2, 5))
        inp = keras.Input((5,), dtype="int64")
    else:
        x = _rand(*shape)
        cl = np.moveaxis(x, 1, -1) if isinstance(tm, nn.modules.conv._ConvNd) else x
        inp = keras.Input(cl.shape[1:])
    km = keras.Model(inp, keras_layer(inp))
    report = recreate.transfer_weights(tm, km, mapping={"m": ""})
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    if isinstance(tm, nn.modules.conv._ConvNd):
        got = np.moveaxis(_run(km, cl), -1, 1)
        if tm.bias is None:
            assert any("bias=0" in n for n in report.rows[0].notes)
    else:
        got = _run(km, x)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_group_norm_into_stock_keras():
    tm = randomize_(nn.GroupNorm(2, 6, eps=1e-5), 5)
    inp = keras.Input((4, 4, 6))
    km = keras.Model(inp, L.GroupNormalization(2, epsilon=1e-5, name="gn")(inp))
    recreate.transfer_weights(tm, km, mapping={"gn": ""})
    x = _rand(2, 6, 4, 4)
    got = np.moveaxis(_run(km, np.moveaxis(x, 1, -1)), -1, 1)
    np.testing.assert_allclose(got, tm(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_unbuilt_model_is_refused():
    km = keras.Sequential([L.Dense(3, name="fc")])
    with pytest.raises(recreate.TransferError, match="not built"):
        recreate.transfer_weights({"fc.weight": torch.zeros(3, 4)}, km)


def test_lazy_unmaterialized_module_is_refused():
    lazy = nn.LazyLinear(3)
    inp = keras.Input((4,))
    km = keras.Model(inp, L.Dense(3, name="lin")(inp))
    with pytest.raises(recreate.TransferError, match="forward pass"):
        recreate.transfer_weights(lazy, km, mapping={"lin": ""})


@pytest.mark.parametrize("form", ["parametrizations", "hook"])
def test_weight_norm_transfers_the_weight_it_computes(form):
    """Wav2Vec2's positional conv keeps its weight as weight norm's parts (g, v): the Keras
    conv takes the weight they compute, and the parts count as used."""
    import torch

    conv = torch.nn.Conv1d(8, 8, 3, padding=1, groups=2)
    if form == "parametrizations":
        conv = torch.nn.utils.parametrizations.weight_norm(conv, dim=2)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated in favour of the parametrization
            conv = torch.nn.utils.weight_norm(conv, dim=2)
    with torch.no_grad():  # g away from its initial value ||v||, so that g matters
        (conv.parametrizations.weight.original0 if form == "parametrizations" else conv.weight_g).mul_(1.7)
    m = torch.nn.Sequential(conv, torch.nn.GELU()).eval()
    x = torch.randn(2, 8, 12)
    km = recreate.convert(m, x)
    report = recreate.verify(m, km, [x], tolerance=1e-5)
    assert report.passed, str(report)
