"""GridSample and AffineGrid against torch, every mode, on random inputs and random grids
(coordinates well outside [-1, 1] included)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from recreate.layers.affine_grid import AffineGrid
from recreate.layers.grid_sample import GridSample
from recreate.testing import parity_error

EXAMPLES = 40


def _cl(x):
    return np.moveaxis(x, 1, -1)


def _run_grid_sample(x, grid, mode, padding_mode, align_corners):
    layer = GridSample(mode, padding_mode, align_corners)
    got = np.asarray(keras.ops.convert_to_numpy(layer(_cl(x), grid)))
    ref = F.grid_sample(torch.from_numpy(x), torch.from_numpy(grid), mode=mode, padding_mode=padding_mode,
                        align_corners=align_corners).numpy()
    return np.moveaxis(got, -1, 1), ref


def _away_from_ties(grid, spatial, align_corners, rank2d):
    """Nudge grid points whose source coordinate is within 1e-3 of a rounding tie (x.5)
    so float op order cannot decide the nearest pixel."""
    out = grid.copy()
    d = grid.shape[-1]
    for a in range(d):
        size = spatial[d - 1 - a]
        g = out[..., a].astype(np.float64)
        c = (g + 1) * (size - 1) / 2 if align_corners else ((g + 1) * size - 1) / 2
        frac = c - np.floor(c)
        near = np.abs(frac - 0.5) < 1e-3
        out[..., a] = np.where(near, g + 4e-3 / max(size, 1), g).astype(np.float32)
    return out


@st.composite
def grid_cases(draw, dims):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, 6)) for _ in range(dims))
    out = tuple(draw(st.integers(1, 5)) for _ in range(dims))
    spread = draw(st.sampled_from([1.0, 1.5, 3.0]))  # > 1: outside the image
    x = rng.standard_normal((n, c, *spatial)).astype(np.float32)
    grid = rng.uniform(-spread, spread, (n, *out, dims)).astype(np.float32)
    return x, grid


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=grid_cases(2), mode=st.sampled_from(["bilinear", "nearest", "bicubic"]),
       padding_mode=st.sampled_from(["zeros", "border", "reflection"]), align_corners=st.booleans())
def test_grid_sample_2d(case, mode, padding_mode, align_corners):
    x, grid = case
    if mode == "nearest":
        grid = _away_from_ties(grid, x.shape[2:], align_corners, True)
    got, ref = _run_grid_sample(x, grid, mode, padding_mode, align_corners)
    assert parity_error(got, ref) <= 1e-5, (mode, padding_mode, align_corners)


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=grid_cases(3), mode=st.sampled_from(["bilinear", "nearest"]),
       padding_mode=st.sampled_from(["zeros", "border", "reflection"]), align_corners=st.booleans())
def test_grid_sample_3d(case, mode, padding_mode, align_corners):
    x, grid = case
    if mode == "nearest":
        grid = _away_from_ties(grid, x.shape[2:], align_corners, False)
    got, ref = _run_grid_sample(x, grid, mode, padding_mode, align_corners)
    assert parity_error(got, ref) <= 1e-5, (mode, padding_mode, align_corners)


def test_nearest_ties_round_half_to_even():
    # W=4, align_corners=True: x = 0 maps to source 1.5 exactly (a tie) and takes pixel 2
    # (the even one), as torch's nearbyint does; x = -1 maps to 0, x = 1 to 3.
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4)
    grid = np.array([[[[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0]]]], np.float32)
    got, ref = _run_grid_sample(x, grid, "nearest", "zeros", True)
    np.testing.assert_array_equal(ref.ravel(), [2.0, 0.0, 3.0])
    np.testing.assert_array_equal(got, ref)


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dims=st.sampled_from([2, 3]), align_corners=st.booleans(),
       sizes=st.lists(st.integers(1, 6), min_size=3, max_size=3))
def test_affine_grid(seed, dims, align_corners, sizes):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3))
    size = (n, 2, *sizes[:dims])
    theta = rng.standard_normal((n, dims, dims + 1)).astype(np.float32)
    ref = F.affine_grid(torch.from_numpy(theta), size, align_corners=align_corners).numpy()
    got = np.asarray(keras.ops.convert_to_numpy(AffineGrid(size, align_corners)(theta)))
    assert got.shape == ref.shape
    assert parity_error(got, ref) <= 1e-5


def test_spatial_transformer_graph_and_serialization(tmp_path):
    """theta -> AffineGrid -> GridSample in one functional model, under tf.function, saved and
    loaded with safe_mode=True."""
    import tensorflow as tf

    size = (2, 3, 8, 9)
    img = keras.Input(size[1:])
    theta_in = keras.Input((2, 3))
    x = keras.layers.Permute((2, 3, 1))(img)
    grid = AffineGrid(size, align_corners=False)(theta_in)
    y = GridSample("bilinear", "border", False)(x, grid)
    km = keras.Model([img, theta_in], y)
    rng = np.random.default_rng(0)
    xi = rng.standard_normal(size).astype(np.float32)
    th = (np.array([[[1.0, 0.1, 0.2], [-0.1, 0.9, 0.0]]] * 2) + rng.normal(0, 0.1, (2, 2, 3))).astype(np.float32)
    ref = F.grid_sample(torch.from_numpy(xi), F.affine_grid(torch.from_numpy(th), size, align_corners=False),
                        padding_mode="border", align_corners=False).numpy()
    fast = tf.function(lambda a, b: km([a, b]), jit_compile=True)
    got = np.moveaxis(fast(xi, th).numpy(), -1, 1)
    assert parity_error(got, ref) <= 1e-5
    path = tmp_path / "stn.keras"
    km.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(again([xi, th]).numpy(), km([xi, th]).numpy(), atol=1e-6)


@pytest.mark.parametrize("mode,padding_mode", [("bilinear", "zeros"), ("nearest", "border"), ("bicubic", "reflection")])
def test_tflite_builtin_ops(mode, padding_mode, tmp_path):
    import tensorflow as tf

    x_in = keras.Input((6, 7, 2), batch_size=1)
    g_in = keras.Input((4, 5, 2), batch_size=1)
    km = keras.Model([x_in, g_in], GridSample(mode, padding_mode, True)(x_in, g_in))
    conv = tf.lite.TFLiteConverter.from_keras_model(km)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    blob = conv.convert()
    interp = tf.lite.Interpreter(model_content=blob)
    interp.allocate_tensors()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 6, 7)).astype(np.float32)
    grid = rng.uniform(-1.4, 1.4, (1, 4, 5, 2)).astype(np.float32)
    if mode == "nearest":
        grid = _away_from_ties(grid, x.shape[2:], True, True)
    ins = {d["name"]: d for d in interp.get_input_details()}
    for d in interp.get_input_details():
        val = _cl(x) if tuple(d["shape"]) == (1, 6, 7, 2) else grid
        interp.set_tensor(d["index"], val)
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    ref = F.grid_sample(torch.from_numpy(x), torch.from_numpy(grid), mode=mode, padding_mode=padding_mode,
                        align_corners=True).numpy()
    assert parity_error(np.moveaxis(out, -1, 1), ref) <= 1e-4
    assert ins


class SpatialTransformer(torch.nn.Module):
    """Localisation net -> affine_grid -> grid_sample -> classifier (the classic STN)."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 6))
        self.head = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Flatten(), torch.nn.Linear(3 * 10 * 10, 5))

    def forward(self, x):
        theta = self.loc(x).view(-1, 2, 3) * 0.3 + torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
        grid = F.affine_grid(theta, x.size(), align_corners=False)
        warped = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
        return self.head(warped), warped


def test_convert_spatial_transformer_model():
    import recreate
    from recreate.testing import assert_informative, randomize_

    m = randomize_(SpatialTransformer(), 7)
    x = torch.randn(3, 1, 12, 12)
    assert_informative(m, x, torch.randn(3, 1, 12, 12))
    km = recreate.convert(m, x)
    report = recreate.verify(m, km, [x, torch.randn(3, 1, 12, 12)], tolerance=1e-5)
    assert report.passed, str(report)
    assert any(type(lyr).__name__ == "GridSample" for lyr in km.layers)


@pytest.mark.parametrize("mode,padding_mode", [("bilinear", "zeros"), ("nearest", "reflection"), ("bilinear", "border")])
def test_tflite_builtin_ops_5d(mode, padding_mode):
    import tensorflow as tf

    x_in = keras.Input((3, 4, 5, 2), batch_size=2)
    g_in = keras.Input((2, 3, 4, 3), batch_size=2)
    km = keras.Model([x_in, g_in], GridSample(mode, padding_mode, False)(x_in, g_in))
    conv = tf.lite.TFLiteConverter.from_keras_model(km)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interp = tf.lite.Interpreter(model_content=conv.convert())
    interp.allocate_tensors()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 3, 4, 5)).astype(np.float32)
    grid = rng.uniform(-1.3, 1.3, (2, 2, 3, 4, 3)).astype(np.float32)
    if mode == "nearest":
        grid = _away_from_ties(grid, x.shape[2:], False, True)
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.moveaxis(x, 1, -1) if tuple(d["shape"]) == (2, 3, 4, 5, 2) else grid)
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    ref = F.grid_sample(torch.from_numpy(x), torch.from_numpy(grid), mode=mode, padding_mode=padding_mode,
                        align_corners=False).numpy()
    assert parity_error(np.moveaxis(out, -1, 1), ref) <= 1e-4
