"""Normalization family: transfer into stock Keras counterparts, configuration refusals
(epsilon, groups, rms_scaling), conversion errors, and the .keras round trip of
LocalResponseNormalization. Parity over the argument space is the registry-wide test's job."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
import torch
from keras import layers as L
from torch import nn

import recreate
from recreate.layers.local_response_norm import LocalResponseNormalization, channel_window
from recreate.testing import randomize_


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _torch(m, x):
    with torch.no_grad():
        return m(torch.from_numpy(x)).numpy()


def _single(layer, input_shape):
    inp = keras.Input(input_shape)
    layer.name = "m"
    return keras.Model(inp, layer(inp))


def _cl(x):
    return np.moveaxis(x, 1, -1) if x.ndim >= 3 else x


def _cf(x):
    return np.moveaxis(x, -1, 1) if x.ndim >= 3 else x


# torch module, stock Keras layer, input shape (PyTorch layout), whether Keras reads channels-last
STOCK = [
    (nn.LayerNorm(6), L.LayerNormalization(epsilon=1e-5), (2, 3, 6), False),
    (nn.LayerNorm((3, 6), eps=1e-3, bias=False), L.LayerNormalization(axis=(-2, -1), epsilon=1e-3, center=False), (2, 4, 3, 6), False),
    (nn.LayerNorm((4, 3, 6), elementwise_affine=False), L.LayerNormalization(axis=(1, 2, 3), epsilon=1e-5, center=False, scale=False), (2, 4, 3, 6), False),
    # Keras center=True although torch has no bias: beta is filled with 0.
    (nn.LayerNorm(5, bias=False), L.LayerNormalization(epsilon=1e-5), (3, 5), False),
    (nn.GroupNorm(3, 6), L.GroupNormalization(3, epsilon=1e-5), (2, 6, 4, 5), True),
    (nn.GroupNorm(2, 6, affine=False), L.GroupNormalization(2, epsilon=1e-5, center=False, scale=False), (3, 6), True),
    (nn.GroupNorm(1, 4, eps=1e-3, bias=False), L.GroupNormalization(1, epsilon=1e-3, center=False), (2, 4, 3), True),
    (nn.RMSNorm(6), L.RMSNormalization(epsilon=float(torch.finfo(torch.float32).eps)), (2, 3, 6), False),
    (nn.RMSNorm((3, 6), eps=1e-4), L.RMSNormalization(axis=(-2, -1), epsilon=1e-4), (2, 3, 6), False),
    (nn.RMSNorm(6, eps=1e-5, elementwise_affine=False), L.RMSNormalization(epsilon=1e-5), (2, 6), False),  # scale <- 1
    (nn.InstanceNorm2d(4, affine=True), L.GroupNormalization(-1, epsilon=1e-5), (2, 4, 3, 5), True),
    (nn.InstanceNorm1d(4, affine=True, bias=False), L.GroupNormalization(-1, epsilon=1e-5, center=False), (2, 4, 7), True),
    (nn.InstanceNorm3d(3, track_running_stats=True), L.BatchNormalization(epsilon=1e-5, center=False, scale=False), (2, 3, 2, 3, 2), True),
    (nn.InstanceNorm2d(3, eps=1e-3, affine=True, track_running_stats=True), L.BatchNormalization(epsilon=1e-3), (2, 3, 1, 1), True),
    (nn.SyncBatchNorm(5), L.BatchNormalization(epsilon=1e-5), (2, 5, 3), True),
    (nn.SyncBatchNorm(5, track_running_stats=False), recreate.layers.BatchStatNormalization(epsilon=1e-5), (3, 5), True),
]


@pytest.mark.parametrize("tm, layer, shape, channels_last", STOCK,
                         ids=[f"{type(t).__name__}-{type(k).__name__}-{i}" for i, (t, k, _, _) in enumerate(STOCK)])
def test_transfer_into_stock_keras(tm, layer, shape, channels_last):
    tm = randomize_(tm, 3)
    x = _rand(*shape)
    feed = _cl(x) if channels_last else x
    km = _single(layer, feed.shape[1:])
    report = recreate.transfer_weights(tm, km, mapping={"m": ""})
    assert report.complete
    got = np.asarray(km(feed))
    np.testing.assert_allclose(_cf(got) if channels_last else got, _torch(tm, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "tm, layer, shape, attr",
    [
        (nn.LayerNorm(6), L.LayerNormalization(), (2, 6), "epsilon"),  # Keras default 1e-3
        (nn.GroupNorm(2, 4), L.GroupNormalization(2), (2, 4), "epsilon"),
        (nn.GroupNorm(2, 4), L.GroupNormalization(4, epsilon=1e-5), (2, 4), "groups"),
        (nn.RMSNorm(6), L.RMSNormalization(), (2, 6), "epsilon"),  # torch finfo eps vs Keras 1e-6
        (nn.RMSNorm(6, eps=1e-5), L.RMSNormalization(epsilon=1e-6), (2, 6), "epsilon"),
        (nn.InstanceNorm2d(4, affine=True), L.GroupNormalization(2, epsilon=1e-5), (2, 3, 3, 4), "groups"),
        (nn.InstanceNorm2d(4, affine=True, eps=1e-3), L.GroupNormalization(-1), (2, 3, 3, 4), None),  # both 1e-3: fine
        (nn.InstanceNorm2d(4, affine=True), L.GroupNormalization(-1), (2, 3, 3, 4), "epsilon"),
        (nn.InstanceNorm1d(4, track_running_stats=True), L.BatchNormalization(center=False, scale=False), (2, 3, 4), "epsilon"),
        (nn.SyncBatchNorm(4), L.BatchNormalization(), (2, 4), "epsilon"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, (nn.Module, keras.Layer)) else str(v),
)
def test_configuration_mismatch_is_refused_atomically(tm, layer, shape, attr):
    tm = randomize_(tm, 1)
    km = _single(layer, shape[1:])
    before = [np.array(v) for v in km.weights]
    if attr is None:
        recreate.transfer_weights(tm, km, mapping={"m": ""})
        return
    with pytest.raises(recreate.TransferError, match=rf"'m'\.{attr}="):
        recreate.transfer_weights(tm, km, mapping={"m": ""})
    for b, v in zip(before, km.weights):
        np.testing.assert_array_equal(b, np.array(v))


def test_group_normalization_groups_are_contiguous_channel_blocks():
    # torch's groups are channel blocks [0, C/G), [C/G, 2C/G), ...; channels-last Keras
    # GroupNormalization reshapes C into (G, C/G), the same blocks. An interleaved assignment
    # would normalise these very differently scaled channels together.
    tm = nn.GroupNorm(3, 6, affine=False)
    x = _rand(2, 6, 3, 4) * np.array([100.0, 100.0, 1.0, 1.0, 0.01, 0.01], "float32")[None, :, None, None]
    km = recreate.convert(tm, torch.from_numpy(x))
    assert isinstance(km.get_layer("groupnorm"), L.GroupNormalization)
    np.testing.assert_allclose(np.asarray(km(x)), _torch(tm, x), atol=1e-5)


def test_layer_normalization_rms_scaling_is_refused():
    # Keras's deprecated rms_scaling divides by the standard deviation without centring.
    with pytest.warns(UserWarning, match="rms_scaling"):
        layer = L.LayerNormalization(epsilon=1e-5, rms_scaling=True)
    km = _single(layer, (6,))
    with pytest.raises(recreate.TransferError, match="rms_scaling"):
        recreate.transfer_weights(randomize_(nn.LayerNorm(6, bias=False), 0), km, mapping={"m": ""})


def test_rms_norm_eps_none_is_float32_machine_epsilon():
    tm = randomize_(nn.RMSNorm((2, 3)), 2)
    km = recreate.convert(tm, torch.randn(4, 2, 3))
    layer = km.get_layer("rmsnorm")
    assert isinstance(layer, L.RMSNormalization)
    assert layer.epsilon == pytest.approx(float(torch.finfo(torch.float32).eps), rel=0, abs=0)
    # Rows of tiny values: here eps dominates mean(x^2), so a wrong eps shows.
    x = _rand(4, 2, 3) * 1e-4
    np.testing.assert_allclose(np.asarray(km(x)), _torch(tm, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lazy", [nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
                                  nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d])
def test_unmaterialized_lazy_norm_is_refused(lazy):
    n = int(lazy.__name__[-2])
    with pytest.raises(recreate.ConversionError, match="run one forward pass first"):
        recreate.convert(lazy().eval(), torch.randn(2, 3, *[4] * n))


def test_materialized_lazy_norm_converts():
    m = nn.LazyInstanceNorm2d(affine=True, track_running_stats=True)
    m(torch.randn(2, 3, 4, 4))
    tm = randomize_(m, 0)
    assert type(tm) is nn.InstanceNorm2d
    recreate.testing.assert_parity(tm, _rand(2, 3, 4, 4))


@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm])
def test_normalizing_the_batch_axis_is_refused(cls):
    with pytest.raises(recreate.ConversionError, match="batch axis"):
        recreate.convert(cls((2, 3)).eval(), torch.randn(2, 3))


def test_instance_norm_eval_uses_running_stats():
    # track_running_stats=True: eval mode normalises with the running statistics, so the
    # output of a constant input is not zero (it would be with instance statistics).
    tm = randomize_(nn.InstanceNorm2d(3, track_running_stats=True), 7)
    x = np.full((1, 3, 2, 2), 0.7, dtype="float32")
    ref = _torch(tm, x)
    assert np.abs(ref).max() > 0.1
    km = recreate.convert(tm, torch.from_numpy(x))
    assert any(isinstance(lyr, L.BatchNormalization) for lyr in km.layers)
    np.testing.assert_allclose(np.asarray(km(x)), ref, atol=1e-5)


def test_cross_map_lrn2d_window_keeps_channel_zero():
    # torch's CrossMapLRN2d updates a running window sum and never subtracts channel 0, so
    # every channel's normaliser includes channel 0 (LocalResponseNorm's does not).
    x = np.zeros((1, 6, 1, 1), dtype="float32")
    x[0, 0], x[0, 5] = 10.0, 1.0
    for tm in (nn.CrossMapLRN2d(3, alpha=1.0, beta=1.0, k=1.0), nn.LocalResponseNorm(3, alpha=1.0, beta=1.0, k=1.0)):
        km = recreate.convert(tm, torch.from_numpy(x))
        np.testing.assert_allclose(np.asarray(km(x)), _torch(tm, x), rtol=1e-6)
    assert _torch(nn.CrossMapLRN2d(3, 1.0, 1.0, 1.0), x)[0, 5, 0, 0] == pytest.approx(1 / (1 + 101 / 3))
    assert channel_window(4, 3, "cross_map_lrn2d")[0].tolist() == [1, 1, 1, 1]
    assert channel_window(4, 3)[0].tolist() == [1, 1, 0, 0]


def test_local_response_norm_window_larger_than_channels():
    tm = nn.LocalResponseNorm(9, alpha=0.5, beta=0.75, k=2.0)
    recreate.testing.assert_parity(tm, _rand(2, 3, 4))
    recreate.testing.assert_parity(nn.LocalResponseNorm(4), _rand(2, 5, 2, 3, 2))


@pytest.mark.parametrize("layer", [
    LocalResponseNormalization(5, alpha=1e-3, beta=0.5, k=2.0),
    LocalResponseNormalization(4, variant="cross_map_lrn2d"),
], ids=lambda lyr: lyr.variant)
def test_local_response_norm_config_round_trip(layer):
    cfg = layer.get_config()
    assert type(layer).from_config(cfg).get_config() == cfg
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == cfg


def test_local_response_norm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        LocalResponseNormalization(3, variant="caffe")
    with pytest.raises(ValueError, match="size"):
        LocalResponseNormalization(0)


def test_keras_file_round_trip_safe_mode(tmp_path):
    """A converted LRN model (both variants) and the stock norm layers save to .keras and load
    with safe_mode=True where torch cannot be imported."""
    cases = [
        (nn.LocalResponseNorm(3, alpha=0.1, beta=0.75, k=1.5), (2, 5, 3, 4)),
        (nn.CrossMapLRN2d(4, alpha=0.2, beta=0.5, k=2.0), (2, 6, 3, 3)),
        (randomize_(nn.GroupNorm(2, 4), 0), (2, 4, 3)),
        (randomize_(nn.InstanceNorm2d(3, affine=True), 0), (2, 3, 2, 3)),
        (randomize_(nn.RMSNorm(5), 0), (2, 3, 5)),
    ]
    # recreate.layers.local_response_norm is imported explicitly until recreate.layers exports it.
    code = ["import sys", "sys.modules['torch'] = None", "import numpy as np, keras, recreate",
            "import recreate.layers.local_response_norm", "assert not recreate._backend.HAVE_TORCH"]
    for i, (tm, shape) in enumerate(cases):
        x = _rand(*shape, seed=i)
        km = recreate.convert(tm, torch.from_numpy(x))
        ref = _torch(tm, x)
        np.testing.assert_allclose(np.asarray(km(x)), ref, atol=1e-5)
        km.save(tmp_path / f"m{i}.keras")
        np.save(tmp_path / f"x{i}.npy", x)
        np.save(tmp_path / f"ref{i}.npy", ref)
        code.append(
            f"m = keras.saving.load_model({str(tmp_path / f'm{i}.keras')!r}, safe_mode=True)\n"
            f"np.testing.assert_allclose(np.asarray(m(np.load({str(tmp_path / f'x{i}.npy')!r}))), "
            f"np.load({str(tmp_path / f'ref{i}.npy')!r}), atol=1e-5)"
        )
    code.append("print('ok')")
    out = subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


@pytest.mark.parametrize("tm, shape", [
    (nn.LayerNorm(3), (4, 2, 3)),
    (nn.LayerNorm((2, 3), bias=False), (4, 2, 3)),
    (nn.LayerNorm(2, elementwise_affine=False), (5, 2)),
    (nn.LayerNorm(1, eps=1e-12), (3, 1)),
    (nn.LayerNorm(12, eps=1e-6), (3, 12)),
], ids=repr)
def test_layer_norm_is_torch_order_layer_norm_and_transfers(tm, shape, tmp_path):
    """nn.LayerNorm becomes recreate's LayerNorm; transfer_weights fills it (the rules of the
    stock LayerNormalization apply to the subclass) and it survives a .keras round trip."""
    tm = randomize_(tm, 1)
    short = int(np.prod(tm.normalized_shape)) < 8
    # Short rows with |mean| >> spread: the order of operations shows. From 8 values on torch
    # vectorizes its statistics and such rows differ by up to 6e-5 whatever the order.
    x = _rand(*shape, seed=2) + np.float32(100.0 if short else 0.0)
    km = recreate.convert(tm, torch.from_numpy(x))
    layer = km.get_layer("layernorm")
    assert type(layer) is recreate.layers.LayerNorm
    np.testing.assert_allclose(np.asarray(km(x)), _torch(tm, x), atol=1e-6 if short else 1e-5, rtol=0)
    norm = recreate.layers.LayerNorm(axis=layer.axis, epsilon=tm.eps, center=tm.bias is not None,
                                     scale=tm.weight is not None)
    hand = _single(norm, shape[1:])
    assert recreate.transfer_weights(tm, hand, mapping={"m": ""}).complete
    np.testing.assert_array_equal(np.asarray(hand(x)), np.asarray(km(x)))
    hand.save(tmp_path / "ln.keras")
    again = keras.saving.load_model(tmp_path / "ln.keras", safe_mode=True)
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(hand(x)))


def test_layer_norm_matches_torch_on_short_rows_at_default_eps():
    """2-7 values per row, eps=1e-5, mean 100: torch folds such rows one value at a time
    (Welford); keras.layers.LayerNormalization is 1e-3 away here, recreate's LayerNorm ~1 ulp."""
    for n in range(2, 8):
        tm = randomize_(nn.LayerNorm(n), n)
        x = _rand(4000, n, seed=n) + np.float32(100.0)
        km = recreate.convert(tm, torch.from_numpy(x[:2]))
        np.testing.assert_allclose(np.asarray(km(x)), _torch(tm, x), atol=1e-6, rtol=0)
