"""Transposed convolutions and Lazy convs: what the registry-wide property test cannot cover
(the layer on every drawn case, stock-Keras transfer, errors, output_size forms, .keras)."""

from collections import OrderedDict

import keras
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import recreate
from recreate import registry
from recreate.converters.conv_transpose import _output_padding
from recreate.errors import ConversionError
from recreate.layers.conv_transpose import ConvTranspose
from recreate.registry import BuildContext
from recreate.testing import assert_parity
from recreate.testing.cases import randomize_

TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
LAZY = (nn.LazyConv1d, nn.LazyConv2d, nn.LazyConv3d,
        nn.LazyConvTranspose1d, nn.LazyConvTranspose2d, nn.LazyConvTranspose3d)


def _cl(x):
    return np.moveaxis(np.asarray(x), 1, -1)


def _cf(x):
    return np.moveaxis(np.asarray(x), -1, 1)


@st.composite
def _any_case(draw):
    t = draw(st.sampled_from(TRANSPOSED))
    return draw(registry.find_entry(t).cases(t))


@settings(max_examples=40)
@given(case=_any_case())
def test_layer_matches_torch_on_every_case(case):
    """ConvTranspose alone (the converter sends groups=1 cases to stock Keras) on every case,
    filled by transfer_weights through the registered rule."""
    m, x = case.module, case.inputs[0]
    n = x.ndim - 2
    op = _output_padding(m, BuildContext((x.shape,), dict(case.kwargs)), n)
    inp = keras.Input(_cl(x).shape[1:])
    layer = ConvTranspose(m.out_channels, m.kernel_size, m.stride, m.padding, op, m.dilation, m.groups,
                          m.bias is not None, name="ct")
    km = keras.Model(inp, layer(inp))
    report = recreate.transfer_weights(nn.Sequential(OrderedDict(ct=m)), km)
    assert report.complete
    with torch.no_grad():
        ref = m(torch.tensor(x), **case.kwargs).numpy()
    got = _cf(km(_cl(x)))
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_layer_with_unknown_spatial_size():
    m = randomize_(nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 2), output_padding=(1, 2),
                                      dilation=(2, 1), groups=2), 0)
    layer = ConvTranspose(6, (3, 2), (2, 3), (1, 2), (1, 2), (2, 1), 2, name="ct")
    inp = keras.Input((None, None, 4))
    km = keras.Model(inp, layer(inp))
    recreate.transfer_weights(nn.Sequential(OrderedDict(ct=m)), km)
    assert layer.compute_output_shape((None, None, 5, 4)) == (None, None, 12, 6)
    for shape in [(1, 4, 3, 5), (2, 4, 1, 2)]:
        x = np.random.default_rng(1).standard_normal(shape).astype("float32")
        ref = m(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(_cf(km(_cl(x))), ref, atol=1e-5)


def test_layer_config_and_keras_file_round_trip(tmp_path):
    layer = ConvTranspose(6, (3, 2, 1), strides=(2, 1, 3), padding=(1, 0, 0), output_padding=(1, 0, 2),
                          dilation_rate=(1, 2, 1), groups=3, use_bias=False)
    cfg = layer.get_config()
    assert ConvTranspose.from_config(cfg).get_config() == cfg
    inp = keras.Input((3, 4, 2, 3))
    km = keras.Model(inp, layer(inp))
    km.layers[-1].kernel.assign(np.random.default_rng(0).standard_normal(km.layers[-1].kernel.shape))
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 2, 3)).astype("float32")
    km.save(tmp_path / "ct.keras")
    again = keras.saving.load_model(tmp_path / "ct.keras", safe_mode=True)
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(km(x)))


def test_transfer_into_stock_conv2d_transpose():
    """A hand-written Keras model with stock layers: torch's (k=3, s=2, padding=1,
    output_padding=1) is Conv2DTranspose(padding='valid', output_padding=1) + Cropping2D(1);
    torch's (k=4, s=2, padding=1) is Conv2DTranspose(padding='same')."""
    torch_model = randomize_(nn.Sequential(OrderedDict(
        up1=nn.ConvTranspose2d(3, 5, 3, stride=2, padding=1, output_padding=1),
        up2=nn.ConvTranspose2d(5, 2, 4, stride=2, padding=1, bias=False),
    )), 0)
    inp = keras.Input((5, 7, 3))
    y = keras.layers.Conv2DTranspose(5, 3, strides=2, padding="valid", output_padding=1, name="up1")(inp)
    y = keras.layers.Cropping2D(1)(y)
    y = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same", use_bias=False, name="up2")(y)
    km = keras.Model(inp, y)
    report = recreate.transfer_weights(torch_model, km)
    assert report.complete and [r.rule for r in report.rows] == ["ConvTranspose2d->Conv2DTranspose"] * 2
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 7)).astype("float32")
    assert recreate.verify(torch_model, km, x).passed
    ref = torch_model(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(_cf(km(_cl(x))), ref, atol=1e-5)


def test_keras_same_padding_is_not_torch_padding_1_output_padding_1():
    """The usual torch upsampler (k=3, s=2, padding=1, output_padding=1) has the shape of
    Keras's Conv2DTranspose(3, 2, padding='same') but not its values: TF crops the extra row
    and column at the start where torch crops them at the end. The converter never uses it."""
    m = randomize_(nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1), 0)
    x = np.random.default_rng(3).standard_normal((1, 2, 4, 4)).astype("float32")
    ref = m(torch.tensor(x)).detach().numpy()
    same = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same")
    same.build((None, 4, 4, 2))
    same.set_weights([m.weight.detach().numpy().transpose(2, 3, 1, 0), m.bias.detach().numpy()])
    got = _cf(same(_cl(x)))
    assert got.shape == ref.shape and np.abs(got - ref).max() > 0.1
    np.testing.assert_allclose(got[..., 1:, 1:], ref[..., :-1, :-1], atol=1e-5)  # shifted by one
    assert_parity(m, x)


@pytest.mark.parametrize("form", ["spatial", "with_batch_and_channels"])
def test_output_size_forms(form):
    m = randomize_(nn.ConvTranspose2d(2, 4, 3, stride=(3, 2), padding=1, groups=2), 0)
    x = np.random.default_rng(4).standard_normal((2, 2, 3, 4)).astype("float32")
    size = [9, 8] if form == "spatial" else [2, 4, 9, 8]  # output_padding (2, 1) instead of (0, 0)
    km = assert_parity(m, x, kwargs={"output_size": size})
    assert km.output_shape == (None, 4, 9, 8)


def test_output_size_errors():
    m = randomize_(nn.ConvTranspose1d(2, 2, 3, stride=2), 0)
    x = torch.randn(1, 2, 5)
    with pytest.raises(ValueError):
        m(x, output_size=[13])  # torch: valid sizes are 11..12
    with pytest.raises(ConversionError, match="outside the valid sizes"):
        recreate.convert(m, x, kwargs={"output_size": [13]})
    with pytest.raises(ConversionError, match="list of ints"):
        recreate.convert(m, x, kwargs={"output_size": torch.tensor([12])})
    with pytest.raises(ConversionError, match="no keyword argument"):
        recreate.convert(m, x, kwargs={"output_sizes": [12]})


def test_unrunnable_configurations_raise():
    with pytest.raises(ValueError, match="zeros"):  # torch refuses other padding modes
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    m = nn.ConvTranspose2d(2, 2, 3).eval()
    m.padding_mode = "reflect"
    with pytest.raises(ConversionError, match="padding_mode='reflect'"):
        recreate.convert(m, torch.randn(1, 2, 4, 4))
    m = nn.ConvTranspose2d(2, 2, 3, padding="same").eval()  # accepted by __init__, fails in forward
    with pytest.raises(TypeError):
        m(torch.randn(1, 2, 4, 4))
    with pytest.raises(ConversionError, match="integer padding"):
        recreate.convert(m, torch.randn(1, 2, 4, 4))
    m = nn.ConvTranspose2d(2, 2, 3, stride=2, dilation=(1, 3)).eval()
    m.output_padding = (1, 3)  # must be < max(stride, dilation) = (2, 3)
    with pytest.raises(RuntimeError, match="output padding must be smaller"):
        m(torch.randn(1, 2, 4, 4))
    with pytest.raises(ConversionError, match="output_padding"):
        recreate.convert(m, torch.randn(1, 2, 4, 4))


@pytest.mark.parametrize("lazy_type", LAZY, ids=lambda t: t.__name__)
def test_lazy_module_needs_one_forward_pass(lazy_type):
    n = int(lazy_type.__name__[-2])
    m = lazy_type(4, 3).eval()
    x = torch.randn(1, 2, *([5] * n))
    with pytest.raises(ConversionError, match=r"not materialized.*Run one forward pass first") as err:
        recreate.convert(m, x)
    assert lazy_type.cls_to_become.__name__ in str(err.value)
    with torch.no_grad():
        m(x)
    assert type(m) is lazy_type.cls_to_become and m.in_channels == 2  # torch swaps the class
    assert_parity(m, x.numpy())


def test_lazy_module_loaded_from_state_dict_converts():
    """load_state_dict materializes the weights but keeps the Lazy class and in_channels=0
    until the first forward pass; the Lazy entry converts it as the regular class."""
    src = randomize_(nn.ConvTranspose2d(6, 4, 3, stride=2, groups=2, output_padding=1), 0)
    m = nn.LazyConvTranspose2d(4, 3, stride=2, groups=2, output_padding=1)
    m.load_state_dict(src.state_dict())
    assert type(m) is nn.LazyConvTranspose2d and m.in_channels == 0
    x = np.random.default_rng(5).standard_normal((1, 6, 3, 4)).astype("float32")
    assert_parity(m.eval(), x)  # converts first, then torch's forward swaps the class
    assert type(m) is nn.ConvTranspose2d
