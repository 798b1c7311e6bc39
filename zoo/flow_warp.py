"""Flow warping (defined here in torch): a small net predicts a flow field in pixels, and
the image is resampled at base mesh + flow with F.grid_sample; recreated by hand in Keras.

    python zoo/flow_warp.py --size 32 --out out/     # random weights, verified

The flow is predicted at half resolution and upsampled bilinearly (align_corners=False,
recreate.layers.Interpolate). Channels-last helps: Keras's flow (N, H, W, 2) is already in
grid layout, where torch permutes (N, 2, H, W) -> (N, H, W, 2). Pixel flow is normalised
by 2 / (size - 1) per axis (x = width first) and added to the align_corners=True base mesh;
sampling uses padding_mode='border'. The base mesh is a non-persistent torch buffer, so it
is copied into a recreate Constant (not a weight transfer_weights sees). Outputs: the warped
image and the flow.
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

from recreate.layers.grid_sample import GridSample
from recreate.layers.interpolate import Interpolate
from recreate.layers.op import TENSOR, Constant, Op


class FlowWarp(nn.Module):
    def __init__(self, channels=3, size=32, width=16):
        super().__init__()
        self.flow = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, 2, 3, padding=1))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        self.register_buffer("base_grid", torch.stack([xs, ys], -1)[None], persistent=False)  # (1, H, W, 2)
        self.scale = [2.0 / (size - 1)] * 2  # pixels -> normalised, align_corners=True

    def forward(self, img):
        flow = F.interpolate(self.flow(img), scale_factor=2, mode="bilinear", align_corners=False)
        grid = self.base_grid + flow.permute(0, 2, 3, 1) * torch.tensor(self.scale)
        return F.grid_sample(img, grid, padding_mode="border", align_corners=True), flow


def keras_flow_warp(channels=3, size=32, width=16) -> keras.Model:
    t0, t1 = {TENSOR: 0}, {TENSOR: 1}
    inp = keras.Input((size, size, channels))
    x = L.ReLU()(L.Conv2D(width, 3, padding="same", name="flow.0")(inp))
    x = L.ZeroPadding2D(1)(x)  # stride 2: torch's symmetric pad, not Keras 'same'
    x = L.ReLU()(L.Conv2D(width, 3, strides=2, name="flow.2")(x))
    flow = L.Conv2D(2, 3, padding="same", name="flow.4")(x)
    flow = Interpolate(scale_factor=2, mode="bilinear", align_corners=False)(flow)  # (N, H, W, 2)
    step = Op("multiply", args=[t0, [2.0 / (size - 1)] * 2])(flow)
    base = Constant((1, size, size, 2), name="base_grid")(inp)
    grid = Op("add", args=[t0, t1])(base, step)
    out = GridSample("bilinear", "border", align_corners=True)(inp, grid)
    return keras.Model(inp, [out, flow], name="flow_warp")


def build(size: int = 32, width: int = 16, weights: str | None = None, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    tm = FlowWarp(3, size, width)
    if weights:
        tm.load_state_dict(dict(recreate.load_state_dict(weights)))
    else:
        recreate.testing.randomize_(tm, seed)
        with torch.no_grad():
            tm.flow[4].weight.mul_(3.0)  # flows of a few pixels: a real warp, not a near-identity
    km = keras_flow_warp(3, size, width)
    report = recreate.transfer_weights(tm, km)
    km.get_layer("base_grid").value.assign(tm.base_grid.numpy())  # the exact torch mesh
    return tm.eval(), km, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32, help="even")
    ap.add_argument("--width", type=int, default=16)
    recreate.report.add_arguments(ap, tolerance=1e-5)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.size, args.width, args.weights)
    batches = recreate.testing.random_batches((2, 3, args.size, args.size), args.batches)
    return recreate.report.prove_and_save("flow_warp", tm, km, transfer, batches, out=args.out,
                                          tolerance=args.tolerance, layers=True)


if __name__ == "__main__":
    sys.exit(main())
