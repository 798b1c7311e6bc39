"""A small U-Net (defined here in torch), recreated by hand in Keras with the same names.

    python zoo/unet.py --base 16 --size 64 --out out/     # random weights, verified

Three decoder styles, one per level, because each has a trap:
- up1: ConvTranspose2d(k=3, s=2, p=1, output_padding=1). Keras Conv2DTranspose(padding='same')
  is NOT this (it is shifted by one pixel); padding='valid', output_padding=1 gives torch's
  full (2H + 2) output, and Cropping2D(1) keeps rows/cols [1, 2H + 1) exactly as torch does.
- up2: bilinear upsampling with align_corners=True (recreate.layers.Interpolate; Keras
  UpSampling2D/Resizing have no align_corners) followed by a 1x1 conv.
- up3: ConvTranspose2d(k=2, s=2): no overlap, no padding: Conv2DTranspose 'valid' is exact.
Skips concatenate [skip, upsampled] on channels: torch dim=1 is Keras axis -1, same order.
Batch norms use torch's eps=1e-5 (Keras defaults to 1e-3).
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
from keras import layers as L
from torch import nn

from recreate.layers.interpolate import Interpolate


def double_conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Up(nn.Module):
    def __init__(self, cin, cout, kind):
        super().__init__()
        if kind == "tconv3":
            self.up = nn.ConvTranspose2d(cin, cin // 2, 3, stride=2, padding=1, output_padding=1)
        elif kind == "bilinear":
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                    nn.Conv2d(cin, cin // 2, 1))
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = double_conv(cin, cout)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    def __init__(self, in_ch=3, classes=2, base=16):
        super().__init__()
        b = base
        self.inc = double_conv(in_ch, b)
        self.down1, self.down2, self.down3 = double_conv(b, 2 * b), double_conv(2 * b, 4 * b), double_conv(4 * b, 8 * b)
        self.pool = nn.MaxPool2d(2)
        self.up1, self.up2, self.up3 = Up(8 * b, 4 * b, "tconv3"), Up(4 * b, 2 * b, "bilinear"), Up(2 * b, b, "tconv2")
        self.outc = nn.Conv2d(b, classes, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(self.pool(x1))
        x3 = self.down2(self.pool(x2))
        x4 = self.down3(self.pool(x3))
        return self.outc(self.up3(self.up2(self.up1(x4, x3), x2), x1))


def k_double_conv(x, p, c):
    for i in (0, 3):
        x = L.Conv2D(c, 3, padding="same", use_bias=False, name=f"{p}.{i}")(x)  # stride 1: symmetric
        x = L.ReLU()(L.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{p}.{i + 1}")(x))
    return x


def k_up(x, skip, p, cin, cout, kind):
    if kind == "tconv3":
        x = L.Conv2DTranspose(cin // 2, 3, strides=2, padding="valid", output_padding=1, name=f"{p}.up")(x)
        x = L.Cropping2D(1)(x)
    elif kind == "bilinear":
        x = Interpolate(scale_factor=2, mode="bilinear", align_corners=True, name=f"{p}.up.0")(x)
        x = L.Conv2D(cin // 2, 1, name=f"{p}.up.1")(x)
    else:
        x = L.Conv2DTranspose(cin // 2, 2, strides=2, name=f"{p}.up")(x)
    return k_double_conv(L.Concatenate()([skip, x]), f"{p}.conv", cout)


def keras_unet(in_ch=3, classes=2, base=16, size=64) -> keras.Model:
    b = base
    inp = keras.Input((size, size, in_ch))
    x1 = k_double_conv(inp, "inc", b)
    x2 = k_double_conv(L.MaxPooling2D(2)(x1), "down1", 2 * b)
    x3 = k_double_conv(L.MaxPooling2D(2)(x2), "down2", 4 * b)
    x4 = k_double_conv(L.MaxPooling2D(2)(x3), "down3", 8 * b)
    y = k_up(x4, x3, "up1", 8 * b, 4 * b, "tconv3")
    y = k_up(y, x2, "up2", 4 * b, 2 * b, "bilinear")
    y = k_up(y, x1, "up3", 2 * b, b, "tconv2")
    return keras.Model(inp, L.Conv2D(classes, 1, name="outc")(y), name="unet")


def build(base: int = 16, size: int = 64, weights: str | None = None, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    tm = UNet(base=base)
    if weights:
        tm.load_state_dict(dict(recreate.load_state_dict(weights)))
    else:
        recreate.testing.randomize_(tm, seed)
        g = torch.Generator().manual_seed(seed + 1)
        recreate.testing.calibrate_batchnorm_(tm, torch.randn(4, 3, size, size, generator=g))
    km = keras_unet(base=base, size=size)
    return tm.eval(), km, recreate.transfer_weights(tm, km)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--size", type=int, default=64, help="divisible by 8")
    recreate.report.add_arguments(ap, tolerance=1e-5)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.base, args.size, args.weights)
    batches = recreate.testing.random_batches((2, 3, args.size, args.size), args.batches)
    # layers="auto": "up1.up" is compared only when the output fails, since its Keras output
    # is the uncropped (2H + 2) tensor and would read as a shape mismatch in the table.
    return recreate.report.prove_and_save("unet", tm, km, transfer, batches, out=args.out,
                                          tolerance=args.tolerance, layers="auto")


if __name__ == "__main__":
    sys.exit(main())
