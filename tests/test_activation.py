"""Activations: what the registry-wide property test does not cover.

- every stock Keras activation the converters use computes torch's function over the whole
  useful float32 range (the reason it may be used at all);
- recreate's activation layers: config round trip and .keras save/load (safe_mode=True);
- the errors for configurations torch itself refuses;
- legacy `dim=None` softmax, the Softplus overflow band, PReLU into a hand-written model.
"""

import re

import keras
import numpy as np
import pytest
import torch
from torch import nn

import recreate
from recreate.errors import ConversionError
from recreate.layers import activations as ra
from recreate.layers import softmax as rs
from recreate.testing import assert_parity, randomize_
from recreate.testing.parity import parity_error

# Dense near the branch points, then out to +-1e30. Beyond 5.7e37 torch's Hardswish
# (x * 6 / 6) and exact GELU overflow to inf where Keras returns x: outside any model's range.
_X = np.concatenate([
    np.linspace(-8, 8, 16001), np.linspace(-120, 120, 24001), np.geomspace(1e2, 1e30, 2000),
    -np.geomspace(1e2, 1e30, 2000), [0.0, -0.0, 1e-30, -1e-30, 88.72, 88.73, -88.73],
]).astype("float32")[None, :]

_STOCK_MODULES = [
    nn.ReLU(), nn.ReLU6(), nn.Sigmoid(), nn.Tanh(), nn.Hardsigmoid(), nn.Hardswish(), nn.SiLU(),
    nn.Mish(), nn.SELU(), nn.Softsign(), nn.LogSigmoid(), nn.Tanhshrink(), nn.GELU(), nn.Softplus(),
    nn.ELU(), nn.ELU(0.3), nn.ELU(-1.7), nn.LeakyReLU(), nn.LeakyReLU(0.0), nn.LeakyReLU(2.5), nn.RReLU(),
]


@pytest.mark.parametrize("module", _STOCK_MODULES, ids=repr)
def test_stock_keras_activation_is_torch_over_the_float_range(module):
    km = assert_parity(module.eval(), _X)
    main = km.get_layer(type(module).__name__.lower())
    assert type(main).__module__.startswith("keras."), f"{module!r} should use stock Keras, got {type(main)}"


_OWN_MODULES = [
    nn.Threshold(0.3, -7.0), nn.Hardtanh(-2.5, 0.25), nn.LeakyReLU(-0.4), nn.RReLU(-0.5, -0.1),
    nn.Softplus(2.0, 1.0), nn.Softplus(-1.5, 3.0), nn.Softplus(1.0, 150.0), nn.Hardshrink(1.3),
    nn.Hardshrink(-0.5), nn.Softshrink(0.0), nn.Softshrink(2.2), nn.CELU(0.3), nn.CELU(-0.7), nn.CELU(2.9),
    nn.GELU(approximate="tanh"),
]


@pytest.mark.parametrize("module", _OWN_MODULES, ids=repr)
def test_recreate_activation_is_torch_over_the_float_range(module):
    assert_parity(module.eval(), _X)


def test_celu_keeps_torch_order_of_rounding():
    # keras.ops.celu divides by alpha; torch multiplies by 1/alpha. With alpha < 0 the branch
    # grows like exp(|x/alpha|) and the difference is 8e-6 relative: close to the 1e-5 bar.
    x = np.linspace(-60, 0, 60001).astype("float32")
    ref = torch.nn.functional.celu(torch.from_numpy(x), -0.7).numpy()
    ours = parity_error(np.asarray(ra.CELU(-0.7)(x)), ref)
    stock = parity_error(np.asarray(keras.ops.celu(x, -0.7)), ref)
    assert ours < 1e-6 < stock


def test_softplus_overflows_where_torch_does():
    # Below the threshold torch evaluates log1p(exp(x * beta)) / beta literally: inf from 88.7.
    m = nn.Softplus(beta=1.0, threshold=150.0)
    x = np.array([[80.0, 89.0, 149.0, 151.0, -200.0]], dtype="float32")
    ref = m(torch.from_numpy(x)).numpy()
    assert np.isinf(ref[0, 1]) and np.isinf(ref[0, 2]) and ref[0, 3] == 151.0
    km = assert_parity(m, x)
    np.testing.assert_array_equal(np.asarray(km(x)), ref)


@pytest.mark.parametrize("rank", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("torch_type", [nn.Softmax, nn.Softmin, nn.LogSoftmax])
def test_softmax_dim_none_follows_torch_legacy_rule(torch_type, rank):
    x = np.random.default_rng(rank).standard_normal((2, 3, 4, 2, 3)[:rank]).astype("float32")
    for io_layout in ("torch", "keras"):
        with pytest.warns(UserWarning, match="Implicit dimension"):
            assert_parity(torch_type(), x, io_layout=io_layout)


@pytest.mark.parametrize("rank", [3, 4])
def test_softmax2d_is_over_channels(rank):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)[:rank]).astype("float32")
    assert_parity(nn.Softmax2d(), x, io_layout="keras")


def test_glu_keeps_keras_shapes_right():
    # keras.layers.Activation("glu") would report its input's shape as its output shape.
    km = recreate.convert(nn.GLU(1), torch.zeros(2, 6, 5))
    assert tuple(km.output.shape) == (None, 3, 5)
    assert_parity(nn.GLU(1), np.random.default_rng(0).standard_normal((2, 6, 5)).astype("float32"))


def test_prelu_fills_a_hand_written_stock_keras_prelu():
    torch_model = randomize_(nn.Sequential(nn.Conv2d(3, 4, 1), nn.PReLU(4)), 0)
    inp = keras.Input((5, 5, 3))
    y = keras.layers.Conv2D(4, 1, name="0")(inp)
    y = keras.layers.PReLU(shared_axes=[1, 2], name="1")(y)
    km = keras.Model(inp, y)
    recreate.transfer_weights(torch_model, km)
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype("float32")
    ref = torch_model(torch.from_numpy(x)).detach().numpy()
    got = np.moveaxis(np.asarray(km(np.moveaxis(x, 1, -1))), -1, 1)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_prelu_on_rank1_input():
    assert_parity(randomize_(nn.PReLU(), 0), np.linspace(-3, 3, 7).astype("float32"))


def _mutated(module, **attrs):
    for k, v in attrs.items():
        setattr(module, k, v)
    return module


@pytest.mark.parametrize("module, shape, match", [
    (nn.Softshrink(-1.0), (2, 3), "lambd=-1.0"),
    (_mutated(nn.CELU(), alpha=0.0), (2, 3), "alpha=0.0"),
    (_mutated(nn.CELU(), alpha=1e-300), (2, 3), "alpha=1e-300"),
    (_mutated(nn.RReLU(), lower=0.5, upper=0.1), (2, 3), "lower=0.5 > upper=0.1"),
    (_mutated(nn.Hardtanh(), min_val=2.0), (2, 3), "min_val=2.0 > max_val=1.0"),
    (_mutated(nn.GELU(), approximate="erf"), (2, 3), "approximate='erf'"),
    (nn.PReLU(4), (2, 3, 5), "num_parameters=4 needs 4 channels on axis 1 of the input, found 3"),
    (nn.PReLU(4), (4,), "found none"),
    (nn.GLU(1), (2, 5, 4), "odd size 5"),
    (nn.GLU(3), (2, 4, 4), "dim=3 is out of range for a rank-3"),
    (nn.Softmax(-4), (2, 4, 4), "dim=-4 is out of range"),
    (nn.Softmax2d(), (2, 4), "3-D or 4-D input, got rank 2"),
])
def test_refused_configurations_say_why(module, shape, match):
    with pytest.raises(ConversionError, match=re.escape(match)):
        recreate.convert(module, torch.zeros(shape))


LAYERS = [
    ra.Threshold(0.5, -2.0), ra.Hardtanh(-2.0, 3.0), ra.LeakyReLU(-0.2), ra.Softplus(2.0, 150.0),
    ra.Hardshrink(0.7), ra.Softshrink(0.3), ra.CELU(-0.5), ra.GELU("tanh"), ra.GLU(2),
    rs.Softmin(1), rs.LogSoftmax(0),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda lyr: type(lyr).__name__)
def test_config_round_trip(layer):
    cfg = layer.get_config()
    assert type(layer).from_config(cfg).get_config() == cfg
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == cfg


def test_keras_file_round_trip_safe_mode(tmp_path):
    inp = keras.Input((4, 6))
    y = inp
    for layer in LAYERS:
        y = layer(y)
    km = keras.Model(inp, y)
    x = np.random.default_rng(0).standard_normal((2, 4, 6)).astype("float32") * 3
    path = tmp_path / "act.keras"
    km.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(km(x)))
    assert [type(lyr) for lyr in again.layers] == [type(lyr) for lyr in km.layers]
