"""TensorFlow Lite with BUILTIN ops only for recreate's shape and pooling layers: PixelShuffle,
PixelUnshuffle, ChannelShuffle, Fold, Unfold, adaptive pooling (uneven bins) and torch.roll.

Each test converts a small torch module holding several configurations (one input and one
output per configuration, so one TFLite conversion covers them all) with recreate.convert,
exports it with recreate.export.save_tflite(allow_select_tf_ops=False) (no Flex ops), runs the
file in the TFLite interpreter with a batch size other than the example's (the batch axis is
dynamic) and compares every output with torch's: 1e-4 x max(1, |ref|), integer outputs exactly.
"""

from __future__ import annotations

import recreate
import torch
from recreate.export import load_and_run, save_tflite
from recreate.testing.parity import parity_error
from torch import nn

import numpy as np

TOL = 1e-4


def _multi(fns):
    """A module whose forward takes one input per entry of `fns` and returns their outputs
    (flattened). Entries are modules (kept as submodules) or functions of one tensor. fx cannot
    trace *args, so forward is written with explicit arguments."""
    n = len(fns)
    args = ", ".join(f"x{i}" for i in range(n))
    body = "".join(f"    y{i} = self.f{i}(x{i})\n" for i in range(n))
    outs = ", ".join(f"*_flat(y{i})" for i in range(n))
    ns = {"_flat": _flat}
    exec(f"def forward(self, {args}):\n{body}    return ({outs},)\n", ns)  # noqa: S102
    m = type("Multi", (nn.Module,), {"forward": ns["forward"]})()
    for i, f in enumerate(fns):
        if isinstance(f, nn.Module):
            setattr(m, f"f{i}", f)
        else:
            object.__setattr__(m, f"f{i}", f)
    return m.eval()


def _flat(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def check_tflite(fns, shapes, tmp_path, run_batch=3, tol=TOL):
    """Convert (example batch = shapes' batch), export with builtin ops only, run the .tflite
    with batch `run_batch`, compare with torch. Returns the max errors per output."""
    m = _multi(fns)
    g = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(*s, generator=g) for s in shapes)
    km = recreate.convert(m, example)
    res = save_tflite(km, tmp_path / "m.tflite", allow_select_tf_ops=False)
    assert not res.select_tf_ops, res.builtin_error
    xs = tuple(torch.randn(run_batch, *s[1:], generator=g) for s in shapes)
    with torch.no_grad():
        refs = [r.numpy() for r in m(*xs)]
    outs = load_and_run(res.path, [x.numpy() for x in xs])
    assert len(outs) == len(refs)
    errors = []
    for i, (o, r) in enumerate(zip(outs, refs)):
        assert o.shape == r.shape, f"output {i}: TFLite shape {o.shape}, torch {r.shape}"
        if np.issubdtype(r.dtype, np.integer) or r.dtype == np.bool_:
            np.testing.assert_array_equal(o, r, err_msg=f"output {i}")
            errors.append(0.0)
            continue
        err = parity_error(o.astype(np.float64), r.astype(np.float64))
        assert err <= tol, f"output {i} ({fns[min(i, len(fns) - 1)]!r}): error {err:.3g}"
        errors.append(err)
    return errors


# ---- PixelShuffle / PixelUnshuffle / ChannelShuffle ---------------------------------------------
def test_pixel_shuffle_unshuffle(tmp_path):
    fns = [nn.PixelShuffle(2), nn.PixelShuffle(3), nn.PixelShuffle(1), nn.PixelShuffle(2),  # last: (N, B, C, H, W)
           nn.PixelUnshuffle(2), nn.PixelUnshuffle(3), nn.PixelUnshuffle(2)]
    shapes = [(2, 8, 3, 4), (2, 18, 2, 3), (2, 3, 2, 5), (2, 3, 8, 3, 4),
              (2, 3, 4, 6), (2, 2, 6, 3), (2, 2, 3, 4, 6)]
    check_tflite(fns, shapes, tmp_path)


def test_channel_shuffle(tmp_path):
    fns = [nn.ChannelShuffle(2), nn.ChannelShuffle(3), nn.ChannelShuffle(4), nn.ChannelShuffle(2)]
    shapes = [(2, 6, 5), (2, 6, 3, 4), (2, 8, 2, 3, 2), (2, 4, 1, 1)]
    check_tflite(fns, shapes, tmp_path)


# ---- Fold / Unfold ---------------------------------------------------------------------------------
UNFOLD = [dict(kernel_size=3), dict(kernel_size=(2, 3), dilation=(2, 1), padding=(1, 2), stride=(2, 3)),
          dict(kernel_size=2, stride=2), dict(kernel_size=(1, 2), padding=1, dilation=2)]


def _fold_input_shape(output_size, kw, c=2, n=2):
    from recreate.layers.fold import blocks, pair

    k = pair(kw["kernel_size"])
    oh, ow = blocks(pair(output_size), k, pair(kw.get("dilation", 1)), pair(kw.get("padding", 0)),
                    pair(kw.get("stride", 1)))
    return (n, c * k[0] * k[1], oh * ow)


def test_unfold_fold(tmp_path):
    fns = [nn.Unfold(**kw) for kw in UNFOLD]
    shapes = [(2, 3, 5, 6), (2, 2, 5, 7), (2, 1, 4, 6), (2, 3, 3, 4)]
    folds = [((5, 6), dict(kernel_size=3)),  # overlapping blocks add up
             ((5, 7), dict(kernel_size=(2, 3), dilation=(2, 1), padding=(1, 2), stride=(2, 3))),
             (4, dict(kernel_size=2, stride=2)),
             ((5, 4), dict(kernel_size=(1, 2), padding=1, dilation=2, stride=(3, 1)))]  # uncovered rows are 0
    fns += [nn.Fold(size, **kw) for size, kw in folds]
    shapes += [_fold_input_shape(size, kw) for size, kw in folds]
    check_tflite(fns, shapes, tmp_path)


# ---- adaptive pooling ------------------------------------------------------------------------------
def test_adaptive_avg_pool(tmp_path):
    fns = [nn.AdaptiveAvgPool1d(3), nn.AdaptiveAvgPool1d(2), nn.AdaptiveAvgPool1d(1),
           nn.AdaptiveAvgPool2d((3, 2)), nn.AdaptiveAvgPool2d((None, 4)), nn.AdaptiveAvgPool2d(5),
           nn.AdaptiveAvgPool3d((3, 2, 1)), nn.AdaptiveAvgPool3d((2, None, 3))]
    shapes = [(2, 3, 7), (2, 2, 5), (2, 3, 4),
              (2, 2, 7, 5), (2, 3, 5, 7), (2, 2, 5, 6),  # 5 -> 5 and 6 -> 5 (overlapping bins)
              (2, 2, 7, 5, 3), (2, 1, 5, 4, 7)]
    check_tflite(fns, shapes, tmp_path)


def test_adaptive_max_pool(tmp_path):
    fns = [nn.AdaptiveMaxPool1d(3), nn.AdaptiveMaxPool1d(4, return_indices=True), nn.AdaptiveMaxPool1d(2),
           nn.AdaptiveMaxPool2d((3, 2)), nn.AdaptiveMaxPool2d((4, 3), return_indices=True),
           nn.AdaptiveMaxPool2d((None, 3), return_indices=True), nn.AdaptiveMaxPool2d(1),
           nn.AdaptiveMaxPool3d((3, 2, 1)), nn.AdaptiveMaxPool3d((4, 3, 2), return_indices=True),
           nn.AdaptiveMaxPool3d((2, None, 3))]
    shapes = [(2, 3, 7), (2, 2, 7), (2, 2, 5),  # 7 -> 4: bins of lengths 2, 3, 2, 2; 5 -> 2: overlapping
              (2, 2, 7, 5), (2, 1, 7, 5), (2, 3, 5, 7),
              (2, 2, 3, 4),
              (2, 2, 7, 5, 3), (2, 1, 7, 5, 3), (2, 1, 5, 4, 7)]
    check_tflite(fns, shapes, tmp_path)


def test_max_pool_indices(tmp_path):
    """MaxPool with padding and return_indices: the masked windows of recreate's MaxPool layers
    (the same code as adaptive max pooling's bins). MaxPool3d without indices becomes Keras's
    MaxPooling3D, whose tf.MaxPool3D is no TFLite builtin: not tested here."""
    fns = [nn.MaxPool1d(3, 2, padding=1, return_indices=True), nn.MaxPool2d(3, padding=1, return_indices=True),
           nn.MaxPool2d((2, 3), stride=1, dilation=(2, 1), ceil_mode=True, return_indices=True),
           nn.MaxPool3d(2, padding=1, return_indices=True)]
    shapes = [(2, 2, 6), (2, 2, 4, 5), (2, 1, 5, 4), (2, 1, 3, 4, 3)]
    check_tflite(fns, shapes, tmp_path)


# ---- torch.roll through the tracer -----------------------------------------------------------------
class ConvRoll(nn.Module):
    """A 1x1 conv first, so the roll meets a channels-last tensor (its dims are remapped)."""

    def __init__(self, dims, shifts):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.dims, self.shifts = dims, shifts

    def forward(self, x):
        return torch.roll(self.conv(x), self.shifts, self.dims)


def test_roll(tmp_path):
    fns = [lambda x: torch.roll(x, 2, 1),
           lambda x: torch.roll(x, -1, -1),
           lambda x: torch.roll(x, (1, -2), (2, 3)),
           lambda x: torch.roll(x, shifts=(-7, 3, 1), dims=(-1, 1, 2)),  # |shift| > size wraps
           lambda x: x.roll(-3, 2) * 2.0,
           lambda x: torch.roll(nn.functional.relu(x), (0, 5), (1, -2)),
           ConvRoll((1, -1), (-1, 2)), ConvRoll((2, 3, 1), (3, -5, 1))]
    shapes = [(2, 5), (2, 3, 4), (2, 3, 4, 5), (2, 3, 4, 5), (2, 2, 3, 4, 5), (2, 3, 4), (2, 3, 4, 5), (2, 3, 4, 5)]
    check_tflite(fns, shapes, tmp_path)


class _Warp(nn.Module):
    """affine_grid from a predicted theta, then grid_sample: AffineGrid and GridSample as
    traced functional ops, 2-D and 3-D, both align_corners."""

    def __init__(self, dims: int, align_corners: bool):
        super().__init__()
        self.dims, self.ac = dims, align_corners
        self.theta = nn.Linear(4, dims * (dims + 1))

    def forward(self, x):
        n = x.shape[0]
        d = self.dims
        eye = torch.eye(d, d + 1)
        theta = self.theta(x.flatten(1)[:, :4]).view(n, d, d + 1) * 0.3 + eye
        size = (n, x.shape[1], *x.shape[2:])
        grid = torch.nn.functional.affine_grid(theta, size, align_corners=self.ac)
        return torch.nn.functional.grid_sample(x, grid, align_corners=self.ac)


def test_affine_grid_and_grid_sample(tmp_path):
    errs = check_tflite([_Warp(2, False), _Warp(2, True), _Warp(3, False)],
                        [(2, 2, 5, 6), (2, 2, 5, 6), (2, 2, 3, 4, 5)], tmp_path)
    assert max(errs) <= TOL
