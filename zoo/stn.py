"""A spatial transformer network (defined here in torch), recreated by hand in Keras.

    python zoo/stn.py --size 28 --out out/     # random weights, verified

Localisation net -> theta (N, 2, 3) -> F.affine_grid -> F.grid_sample, as in the PyTorch
STN tutorial. Stock Keras has neither op: recreate.layers.AffineGrid and GridSample follow
ATen's coordinate rules exactly (align_corners, zero padding). The localisation features
(N, 10, 3, 3) are flattened in torch's C,H,W order; the Keras Flatten reads H,W,C, and
transfer_weights permutes the rows of the Dense that reads it (reported as such). Outputs:
the warped image and theta.
"""

from __future__ import annotations

import argparse
import sys

# ruff: noqa: I001 (import order is load order here)
import recreate  # first: torch/torchvision must load before keras/TF, else a segfault
import recreate.report
import recreate.testing
import keras
import torch
import torch.nn.functional as F
from keras import layers as L
from torch import nn

from recreate.layers.affine_grid import AffineGrid
from recreate.layers.grid_sample import GridSample


def _feat(size):
    return ((size - 6) // 2 - 4) // 2  # conv7, pool2, conv5, pool2 (floor, as both frameworks)


class STN(nn.Module):
    def __init__(self, channels=1, size=28, align_corners=False):
        super().__init__()
        self.align_corners = align_corners
        self.localization = nn.Sequential(nn.Conv2d(channels, 8, 7), nn.MaxPool2d(2), nn.ReLU(),
                                          nn.Conv2d(8, 10, 5), nn.MaxPool2d(2), nn.ReLU())
        self.fc_loc = nn.Sequential(nn.Linear(10 * _feat(size) ** 2, 32), nn.ReLU(), nn.Linear(32, 6))

    def forward(self, x):
        theta = self.fc_loc(self.localization(x).flatten(1)).view(-1, 2, 3)
        grid = F.affine_grid(theta, x.size(), align_corners=self.align_corners)
        return F.grid_sample(x, grid, align_corners=self.align_corners), theta


def keras_stn(channels=1, size=28, align_corners=False) -> keras.Model:
    inp = keras.Input((size, size, channels))
    x = L.Conv2D(8, 7, name="localization.0")(inp)
    x = L.ReLU()(L.MaxPooling2D(2)(x))
    x = L.Conv2D(10, 5, name="localization.3")(x)
    x = L.ReLU()(L.MaxPooling2D(2)(x))
    x = L.Flatten()(x)  # H,W,C order: transfer_weights permutes fc_loc.0's rows to match
    x = L.ReLU()(L.Dense(32, name="fc_loc.0")(x))
    theta = L.Reshape((2, 3))(L.Dense(6, name="fc_loc.2")(x))
    grid = AffineGrid((1, channels, size, size), align_corners=align_corners)(theta)  # (N, H, W, 2)
    out = GridSample("bilinear", "zeros", align_corners)(inp, grid)
    return keras.Model(inp, [out, theta], name="stn")


def build(size: int = 28, align_corners: bool = False, weights: str | None = None, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    tm = STN(1, size, align_corners)
    if weights:
        tm.load_state_dict(dict(recreate.load_state_dict(weights)))
    else:
        recreate.testing.randomize_(tm, seed)
        with torch.no_grad():  # start near the identity transform so the image stays in view
            tm.fc_loc[2].weight.mul_(0.2)
            tm.fc_loc[2].bias.copy_(torch.tensor([1.0, 0.1, 0.05, -0.1, 0.9, -0.05]))
    km = keras_stn(1, size, align_corners)
    return tm.eval(), km, recreate.transfer_weights(tm, km)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--align-corners", action="store_true")
    recreate.report.add_arguments(ap, tolerance=1e-5)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.size, args.align_corners, args.weights)
    batches = recreate.testing.random_batches((2, 1, args.size, args.size), args.batches)
    return recreate.report.prove_and_save("stn", tm, km, transfer, batches, out=args.out,
                                          tolerance=args.tolerance, layers=True)


if __name__ == "__main__":
    sys.exit(main())
