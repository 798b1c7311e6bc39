"""Padding modules: what the registry-wide property test does not cover.

- every (lo, hi) pair on small axes, per mode: the converter matches torch exactly wherever
  torch defines a result, and refuses (ConversionError) exactly where torch does not;
- torch's per-mode meaning of negative padding (reflect/replicate mirror about the uncropped
  edge, constant/circular crop first);
- which Keras layer is used (stock ZeroPadding only where it is exactly the module).
"""

import itertools
import re

import keras
import numpy as np
import pytest
import torch
from torch import nn

import recreate
from recreate.converters.padding import check_padding
from recreate.errors import ConversionError
from recreate.layers.pad import Pad
from recreate.registry import BuildContext, lookup
from recreate.testing import assert_parity

_1D = {"constant": lambda p: nn.ConstantPad1d(p, 0.5), "reflect": nn.ReflectionPad1d,
       "replicate": nn.ReplicationPad1d, "circular": nn.CircularPad1d}


def _run_layers(layers, x_cl):
    for lyr in layers:
        x_cl = lyr(x_cl)
    return np.asarray(x_cl)


@pytest.mark.parametrize("mode", list(_1D))
def test_every_small_padding_matches_or_is_refused(mode):
    rng = np.random.default_rng(0)
    checked = 0
    for n, lo, hi in itertools.product(range(1, 5), range(-4, 5), range(-4, 5)):
        m = _1D[mode]((lo, hi))
        x = rng.standard_normal((1, 2, n)).astype("float32")
        try:
            ref = m(torch.from_numpy(x)).numpy()
        except RuntimeError:
            ref = None
        ctx = BuildContext(((1, 2, n),))
        if check_padding(mode, n, lo, hi) is not None:
            with pytest.raises(ConversionError):
                lookup(m).make_layers(m, ctx, "pad")
            # torch refuses too, or returns an empty axis, or (circular) unwritten memory
            assert ref is None or ref.shape[-1] == 0 or mode == "circular", (n, lo, hi)
            continue
        assert ref is not None, f"converter accepts {(lo, hi)} on {n} elements, torch refuses"
        got = _run_layers(lookup(m).make_layers(m, ctx, "pad"), np.moveaxis(x, 1, -1))
        np.testing.assert_array_equal(np.moveaxis(got, -1, 1), ref, err_msg=str((n, lo, hi)))
        checked += 1
    assert checked > 40


@pytest.mark.parametrize("torch_type, expected", [
    (nn.ReflectionPad1d, [3, 4, 3, 2, 1, 0]),  # mirrors about x[0], which the crop removed
    (nn.ReplicationPad1d, [3, 4, 4, 4, 4, 4]),
    (nn.CircularPad1d, None),  # 4 > the 2 elements the crop leaves: torch has no defined result
])
def test_negative_padding_means_what_torch_means(torch_type, expected):
    m = torch_type((-3, 4))
    x = np.arange(5, dtype="float32").reshape(1, 1, 5)
    if expected is None:
        with pytest.raises(ConversionError, match="wraps more than once"):
            recreate.convert(m, torch.from_numpy(x))
        return
    np.testing.assert_array_equal(m(torch.from_numpy(x)).numpy()[0, 0], expected)
    km = assert_parity(m, x)
    np.testing.assert_array_equal(np.asarray(km(x))[0, 0], expected)


def test_circular_crops_then_wraps():
    m = nn.CircularPad1d((2, -1))
    x = np.arange(4, dtype="float32").reshape(1, 1, 4) + 10
    np.testing.assert_array_equal(m(torch.from_numpy(x)).numpy()[0, 0], [11, 12, 10, 11, 12])
    assert_parity(m, x)


@pytest.mark.parametrize("module, shape, layer_types", [
    (nn.ZeroPad2d((1, 2, 0, 3)), (2, 3, 4, 5), [keras.layers.ZeroPadding2D]),
    (nn.ZeroPad1d(2), (2, 3, 4), [keras.layers.ZeroPadding1D]),
    (nn.ConstantPad3d((1, 0, 2, 1, 0, 1), 0.0), (1, 2, 3, 3, 3), [keras.layers.ZeroPadding3D]),
    (nn.ConstantPad2d(1, -0.0), (2, 3, 4, 5), [Pad]),  # -0.0 is not ZeroPadding's +0.0
    (nn.ConstantPad2d(1, 2.5), (2, 3, 4, 5), [Pad]),
    (nn.ZeroPad2d((1, -1, 0, 0)), (2, 3, 4, 5), [Pad]),
    (nn.ZeroPad2d(1), (3, 4, 5), [Pad]),  # unbatched: rank n + 1
    (nn.ReflectionPad2d((2, -1, 1, 1)), (2, 3, 4, 5), [Pad, Pad]),  # grow, then crop
    (nn.ReplicationPad3d((-1, -1, 0, 0, 0, 0)), (1, 2, 3, 3, 3), [Pad]),
])
def test_layer_choice(module, shape, layer_types):
    layers = lookup(module).make_layers(module, BuildContext((shape,)), "p")
    assert [type(lyr) for lyr in layers] == layer_types
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    for io_layout in ("torch", "keras"):
        assert_parity(module, x, io_layout=io_layout)


@pytest.mark.parametrize("module, shape, match", [
    (nn.ReflectionPad2d(3), (1, 2, 3, 3), "reflection padding (3, 3) must be smaller than the size 3"),
    (nn.CircularPad1d((3, -3)), (1, 2, 4), "circular padding (3, -3) wraps more than once around the 1"),
    (nn.ConstantPad1d((3, -3), 1.0), (1, 2, 2), "crops more than the 2 element(s)"),
    (nn.ZeroPad2d(-2), (1, 2, 3, 3), "leaves the axis empty"),
    (nn.ReplicationPad3d(1), (2, 3, 3), "needs an input of rank >= 4"),
])
def test_refused_padding_says_why(module, shape, match):
    with pytest.raises(ConversionError, match=re.escape(match)):
        recreate.convert(module, torch.zeros(shape))
