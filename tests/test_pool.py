"""Pooling beyond the registry-wide property test: torch's tie and NaN rules for the indices,
MaxUnpool's write order, FractionalMaxPool's errors and weight transfer, which converters
use stock Keras layers, graph mode with a free batch size, and .keras round trips
(safe_mode=True) of recreate's pooling layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import recreate
from recreate.convert import flatten_outputs
from recreate.errors import ConversionError
from recreate.layers.adaptive_pool import AdaptivePooling
from recreate.layers.avg_pool import AveragePooling
from recreate.layers.fractional_max_pool import FractionalMaxPooling
from recreate.layers.lp_pool import LPPooling
from recreate.layers.max_pool import MaxPooling
from recreate.layers.max_unpool import MaxUnpooling
from recreate.testing import assert_parity


def _ints(seed, shape, high=3):
    """Integer-valued floats: many exact ties inside every window."""
    return np.random.default_rng(seed).integers(-high, high + 1, shape).astype(np.float32)


# ---------------------------------------------------------------------------- ties, NaN, -inf

@settings(max_examples=30, deadline=None)
@given(n=st.sampled_from([1, 2, 3]), k=st.integers(1, 3), s=st.integers(1, 3), d=st.integers(1, 2),
       ceil=st.booleans(), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_max_pool_indices_follow_torch_ties(n, k, s, d, ceil, seed, data):
    p = data.draw(st.integers(0, k // 2))
    spatial = tuple(data.draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 6)) for _ in range(n))
    m = getattr(nn, f"MaxPool{n}d")(k, s, p, dilation=d, ceil_mode=ceil, return_indices=True)
    assert_parity(m, _ints(seed, (2, 2, *spatial), high=1))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_adaptive_max_pool_indices_follow_torch_ties(n):
    for seed, out in enumerate([1, 2, 3, 5]):
        assert_parity(getattr(nn, f"AdaptiveMaxPool{n}d")(out, return_indices=True), _ints(seed, (2, 3, *[5] * n), high=1))


@pytest.mark.parametrize("n", [2, 3])
def test_fractional_max_pool_indices_follow_torch_ties(n):
    samples = torch.rand(2, 3, n, generator=torch.Generator().manual_seed(1))
    m = getattr(nn, f"FractionalMaxPool{n}d")(2, output_size=3, return_indices=True, _random_samples=samples)
    assert_parity(m.eval(), _ints(0, (2, 3, *[6] * n), high=1))


@pytest.mark.parametrize("module", [
    nn.MaxPool2d(3, 2, 1, return_indices=True),
    nn.MaxPool2d(2, 1, 1, dilation=2, ceil_mode=True),
    nn.MaxPool1d(3, 1, 1, return_indices=True, ceil_mode=True),
    nn.AdaptiveMaxPool2d((2, 3), return_indices=True),
    nn.FractionalMaxPool2d(2, output_size=3, return_indices=True, _random_samples=torch.rand(2, 2, 2)),
], ids=repr)
def test_nan_and_infinities_follow_torch(module):
    """torch keeps the last NaN of a window (`val > max || isnan(val)`); -inf everywhere keeps
    the window's first position."""
    shape = (2, 2, 7, 6) if "1d" not in type(module).__name__ else (2, 2, 7)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[::5] = np.nan
    flat[1::7] = -np.inf
    flat[2::11] = np.inf
    assert_parity(module.eval(), x)
    assert_parity(module.eval(), np.full(shape, -np.inf, np.float32))


def test_max_pool_index_of_a_window_without_input():
    """With dilation a window can miss the input along an axis: torch gives -inf and its
    window start (past the input), whatever the other axes hold."""
    m = nn.MaxPool3d((1, 2, 2), stride=(1, 1, 2), padding=(0, 1, 0), dilation=(1, 2, 1), return_indices=True)
    x = np.array([0.3, 0.8], np.float32).reshape(1, 1, 1, 1, 2)
    values, indices = m(torch.from_numpy(x))
    assert torch.isinf(values).all() and indices.item() == 2
    assert_parity(m, x)


# ---------------------------------------------------------------------------- MaxUnpool

def test_max_unpool_keeps_the_last_of_duplicate_indices():
    """Overlapping windows name one input position twice; with values that differ there
    (a decoder changed them) torch's CPU kernel keeps the last write, in input order."""
    pool = nn.MaxPool2d(3, stride=1, return_indices=True)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 6, 7)).astype(np.float32))
    _, indices = pool(x)
    planes = indices.flatten(2).numpy().reshape(-1, indices[0, 0].numel())
    assert any(len(set(plane)) < len(plane) for plane in planes)  # duplicates exist
    values = np.random.default_rng(1).standard_normal(tuple(indices.shape)).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torch's kernel splits an image across threads: order is per thread
    try:
        assert_parity(nn.MaxUnpool2d(3, stride=1), (values, indices.numpy()), kwargs={"output_size": [6, 7]})
    finally:
        torch.set_num_threads(threads)


def test_max_unpool_rejects_an_output_size_torch_rejects():
    m = nn.MaxUnpool2d(2)
    x, idx = np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 3, 3), np.int64)
    with pytest.raises(ValueError):
        m(torch.from_numpy(x), torch.from_numpy(idx), output_size=[9, 6])
    with pytest.raises(ConversionError, match=r"output_size=\[9, 6\].*within one stride"):
        recreate.convert(m, (torch.from_numpy(x), torch.from_numpy(idx)), kwargs={"output_size": [9, 6]})


def test_max_unpool_index_outside_the_plane_poisons_only_its_sample():
    """torch raises; a graph cannot, so that sample's output is NaN and no value lands in
    another sample's plane."""
    values = np.arange(1, 9, dtype=np.float32).reshape(2, 1, 4)
    indices = np.array([[[0, 2, 4, 6]], [[1, 3, 5, 8]]], np.int64)  # 8 is outside a plane of 8
    with pytest.raises(RuntimeError, match="invalid max index"):
        nn.MaxUnpool1d(2)(torch.from_numpy(values), torch.from_numpy(indices))
    got = np.asarray(MaxUnpooling((8,))(np.moveaxis(values, 1, -1), np.moveaxis(indices, 1, -1)))[..., 0]
    np.testing.assert_array_equal(got[0], [1, 0, 2, 0, 3, 0, 4, 0])
    assert np.isnan(got[1]).all()


def test_max_unpool_after_max_pool_in_one_model():
    """SegNet's pattern: pool with indices, then unpool them, as one Keras graph."""
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 9)).astype(np.float32)
    pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
    inp = keras.Input((8, 9, 3))
    values, indices = MaxPooling((2, 2), return_indices=True)(inp)
    km = keras.Model(inp, MaxUnpooling((8, 9))(values, indices))
    ref = unpool(*pool(torch.from_numpy(x)), output_size=[8, 9]).numpy()
    got = np.moveaxis(np.asarray(km(np.moveaxis(x, 1, -1))), -1, 1)
    np.testing.assert_array_equal(got, ref)


# ---------------------------------------------------------------------------- FractionalMaxPool

@pytest.mark.parametrize("torch_type", [nn.FractionalMaxPool2d, nn.FractionalMaxPool3d])
def test_fractional_max_pool_without_samples_is_refused(torch_type):
    """Without _random_samples every forward call draws new window positions, eval included."""
    m = torch_type(2, output_size=2).eval()
    x = torch.randn(1, 2, *[6] * (2 if torch_type is nn.FractionalMaxPool2d else 3))
    with pytest.raises(ConversionError, match="_random_samples"):
        recreate.convert(m, x)


def test_fractional_max_pool_samples_must_cover_the_batch():
    m = nn.FractionalMaxPool2d(2, output_size=2, _random_samples=torch.rand(1, 2, 2)).eval()
    with pytest.raises(ConversionError, match=r"batch 2"):
        recreate.convert(m, torch.randn(2, 2, 6, 6))


def test_fractional_max_pool_samples_are_a_transferred_weight():
    """A hand-written Keras model gets the samples from the torch module by name."""
    torch_model = nn.Sequential(nn.FractionalMaxPool2d(2, output_ratio=0.5, _random_samples=torch.rand(4, 3, 2)))
    inp = keras.Input((10, 8, 3))
    out = FractionalMaxPooling((2, 2), output_ratio=(0.5, 0.5), samples_batch=4, name="0")(inp)
    km = keras.Model(inp, out)
    report = recreate.transfer_weights(torch_model, km)
    assert report.complete
    x = np.random.default_rng(0).standard_normal((3, 3, 10, 8)).astype(np.float32)
    ref = torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(np.moveaxis(np.asarray(km(np.moveaxis(x, 1, -1))), -1, 1), ref)


# ---------------------------------------------------------------------------- stock layers where exact

@pytest.mark.parametrize("module, stock", [
    (nn.AvgPool2d(2), keras.layers.AveragePooling2D),
    (nn.AvgPool2d(3, 2, 1), keras.layers.AveragePooling2D),  # count_include_pad, windows inside the padding
    (nn.AvgPool1d(3, 2, ceil_mode=True), keras.layers.AveragePooling1D),  # 9 = 1 + 2*4: no partial window
    (nn.AvgPool3d(2, divisor_override=8), keras.layers.AveragePooling3D),
    (nn.AvgPool2d(3, 2, 1, count_include_pad=False), AveragePooling),
    (nn.AvgPool2d(2, ceil_mode=True), AveragePooling),  # a window hangs over the end of 9
    (nn.AvgPool2d(2, divisor_override=3), AveragePooling),
    (nn.MaxPool2d(3, 2, 1), keras.layers.MaxPooling2D),
    (nn.MaxPool2d(3, 2, 1, dilation=2), MaxPooling),
    (nn.MaxPool2d(2, return_indices=True), MaxPooling),
], ids=repr)
def test_stock_keras_layer_only_where_exact(module, stock):
    n = int(type(module).__name__[-2])
    x = np.random.default_rng(0).standard_normal((2, 2, *[9] * n)).astype(np.float32)
    km = assert_parity(module, x)
    assert any(type(layer) is stock for layer in km.layers), [type(layer).__name__ for layer in km.layers]


def test_lp_pool_matches_torch_where_signed_sums_cancel():
    """p = 3 on signed inputs: the cube root of a nearly-cancelling sum magnifies any rounding
    difference; powers and sums in torch's order keep it exact."""
    x = np.random.default_rng(0).standard_normal((4, 8, 12, 12)).astype(np.float32)
    for p in (1.0, 3.0, -1.0):
        assert_parity(nn.LPPool2d(p, 3, stride=1, ceil_mode=True), x)


# ---------------------------------------------------------------------------- graph mode, .keras

_LAYER_CASES = [
    (nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True, return_indices=True), (2, 3, 9, 8)),
    (nn.MaxPool3d(2, 1, 1, return_indices=True), (2, 2, 4, 5, 3)),
    (nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=None), (2, 3, 9, 8)),
    (nn.AvgPool3d(2, 2, 1, ceil_mode=True, divisor_override=3), (2, 2, 5, 4, 3)),
    (nn.LPPool1d(2.5, 3, 2, ceil_mode=True), (2, 3, 10)),
    (nn.LPPool2d(float("inf"), 2, ceil_mode=True), (2, 3, 9, 8)),
    (nn.AdaptiveMaxPool2d((3, None), return_indices=True), (2, 3, 9, 8)),
    (nn.FractionalMaxPool2d(2, output_ratio=0.5, return_indices=True, _random_samples=torch.rand(3, 3, 2)), (2, 3, 9, 8)),
    (nn.FractionalMaxPool3d(2, output_size=2, _random_samples=torch.rand(3, 2, 3)), (2, 2, 5, 4, 6)),
]


def _inputs(module, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return np.abs(x) if isinstance(module, nn.LPPool1d) else x


@pytest.mark.parametrize("module, shape", _LAYER_CASES, ids=lambda v: repr(v) if isinstance(v, nn.Module) else "")
def test_graph_mode_with_a_free_batch_and_keras_file_round_trip(module, shape, tmp_path):
    module.eval()
    x = _inputs(module, shape)
    km = recreate.convert(module, torch.from_numpy(x))
    with torch.no_grad():
        ref = [t.numpy() for t in flatten_outputs(module(torch.from_numpy(x)))]
    graph = tf.function(km, input_signature=[tf.TensorSpec((None, *shape[1:]), tf.float32)])
    for batch in (shape[0], 1):  # the batch is free (fractional pooling: up to its samples' rows)
        got = graph(x[:batch])
        got = got if isinstance(got, (list, tuple)) else [got]
        for g, r in zip(got, ref):
            np.testing.assert_allclose(np.asarray(g), r[:batch], rtol=1e-5, atol=1e-5)
    path = tmp_path / "pool.keras"
    km.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    out, out_again = km(x), again(x)
    for a, b in zip(out if isinstance(out, list) else [out], out_again if isinstance(out_again, list) else [out_again]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("layer", [
    MaxPooling((3, 2), strides=(2, 1), padding=(1, 0), dilation=(2, 1), ceil_mode=True, return_indices=True),
    AveragePooling((3,), strides=(2,), padding=(1,), ceil_mode=True, count_include_pad=False, divisor_override=4),
    LPPooling(float("-inf"), (2, 2, 2), strides=(1, 2, 1)),
    MaxUnpooling((6, 7)),
    FractionalMaxPooling((2, 3), output_size=(3, 2), samples_batch=5, return_indices=True),
    AdaptivePooling((2, None), mode="max", return_indices=True),
], ids=lambda lyr: type(lyr).__name__)
def test_config_round_trip(layer):
    cfg = layer.get_config()
    assert type(layer).from_config(cfg).get_config() == cfg
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer), safe_mode=True)
    assert type(restored) is type(layer) and restored.get_config() == cfg
