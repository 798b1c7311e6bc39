"""A deformable-conv detection head (FCOS-style, DCN v1/v2), recreated by hand in Keras.

    python zoo/deform_head.py --variant v2 --out out/     # random weights, verified
    python zoo/deform_head.py --variant v1 --size 20 --offset-groups 2
    python zoo/deform_head.py --variant v2 --weights head.safetensors --out out/

On one feature map: a conv tower (conv, GroupNorm, ReLU), a conv that predicts the
sampling offsets (and, in v2, modulation logits: mmcv's DCNv2 "pack" layout, offsets first,
then the mask channels, mask = sigmoid), torchvision.ops.DeformConv2d fed by them, then the
classification and (ReLU'd, as in FCOS) box-regression convs. Outputs: class logits and box
distances. recreate.layers.DeformConv2D samples exactly as torchvision's kernel; layers are
named after the torch module paths, so transfer_weights needs no mapping.

The offset predictor of a real head starts at zero, where a deformable conv is a plain conv
and parity would prove nothing about sampling. Here its offset rows are scaled up so the
offsets are several pixels, fractional, and some point outside the map (printed in main).
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
from torchvision.ops import DeformConv2d

from recreate.layers.deform_conv import DeformConv2D

VARIANTS = {"v1": False, "v2": True}  # name: modulated (predicts a mask)
TAPS = 9  # 3x3 deformable kernel


class DeformHead(nn.Module):
    def __init__(self, channels=32, num_classes=8, tower=2, use_mask=True, gn_groups=8, offset_groups=1):
        super().__init__()
        self.use_mask, self.n_off = use_mask, 2 * offset_groups * TAPS
        convs = []
        for _ in range(tower):
            convs += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(gn_groups, channels), nn.ReLU()]
        self.tower = nn.Sequential(*convs)
        self.offset = nn.Conv2d(channels, self.n_off + (offset_groups * TAPS if use_mask else 0), 3, padding=1)
        self.dcn = DeformConv2d(channels, channels, 3, padding=1)
        self.dcn_norm = nn.GroupNorm(gn_groups, channels)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, 4, 3, padding=1)

    def forward(self, x):
        t = self.tower(x)
        o = self.offset(t)
        mask = o[:, self.n_off:].sigmoid() if self.use_mask else None
        y = F.relu(self.dcn_norm(self.dcn(t, o[:, :self.n_off], mask)))
        return self.cls_logits(y), F.relu(self.bbox_pred(y))


def keras_deform_head(size=16, channels=32, num_classes=8, tower=2, use_mask=True, gn_groups=8,
                      offset_groups=1) -> keras.Model:
    inp = keras.Input((size, size, channels))
    x = inp
    for i in range(tower):
        x = L.Conv2D(channels, 3, padding="same", name=f"tower.{3 * i}")(x)  # stride 1: symmetric
        x = L.ReLU()(L.GroupNormalization(gn_groups, epsilon=1e-5, name=f"tower.{3 * i + 1}")(x))
    o = L.Conv2D((3 if use_mask else 2) * offset_groups * TAPS, 3, padding="same", name="offset")(x)
    n_off = 2 * offset_groups * TAPS  # channels-last: torch's channel split is on the last axis
    dcn = DeformConv2D(channels, 3, padding=1, offset_groups=offset_groups, use_mask=use_mask, name="dcn")
    y = dcn(x, o[..., :n_off], L.Activation("sigmoid")(o[..., n_off:])) if use_mask else dcn(x, o)
    y = L.ReLU()(L.GroupNormalization(gn_groups, epsilon=1e-5, name="dcn_norm")(y))
    cls = L.Conv2D(num_classes, 3, padding="same", name="cls_logits")(y)
    box = L.ReLU()(L.Conv2D(4, 3, padding="same", name="bbox_pred")(y))
    return keras.Model(inp, [cls, box], name="deform_head_" + ("v2" if use_mask else "v1"))


def build(variant: str = "v2", size: int = 16, offset_groups: int = 1, weights: str | None = None,
          seed: int = 0, offset_scale: float = 2.0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    cfg = dict(use_mask=VARIANTS[variant], offset_groups=offset_groups)
    tm = recreate.testing.reference_model(DeformHead(**cfg), weights, seed=seed)
    if weights is None:
        with torch.no_grad():  # offsets of several pixels (mask logits keep their O(1) scale)
            tm.offset.weight[:tm.n_off].mul_(offset_scale)
            tm.offset.bias[:tm.n_off].mul_(offset_scale)
    km = keras_deform_head(size, **cfg)
    return tm, km, recreate.transfer_weights(tm, km)


def offset_stats(tm, x) -> dict:
    """How much the predicted offsets exercise deformable sampling on input `x`."""
    with torch.no_grad():
        off = tm.offset(tm.tower(x))[:, :tm.n_off]
    h, w = x.shape[-2:]
    tap = torch.arange(TAPS).repeat(tm.n_off // (2 * TAPS))[None, :, None, None]
    y = torch.arange(h)[:, None] - 1 + tap // 3 + off[:, 0::2]  # padding 1, 3x3 taps
    xx = torch.arange(w)[None, :] - 1 + tap % 3 + off[:, 1::2]
    outside = (y <= -1) | (y >= h) | (xx <= -1) | (xx >= w)
    return {"offset_std": off.std().item(), "max_abs": off.abs().max().item(),
            "fraction_outside": outside.float().mean().item()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="v2", choices=sorted(VARIANTS))
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--offset-groups", type=int, default=1, help="divides the 32 channels")
    recreate.report.add_arguments(ap, tolerance=1e-5, batches=4)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.variant, args.size, args.offset_groups, args.weights)
    batches = recreate.testing.random_batches((2, 32, args.size, args.size), args.batches)
    print("offsets:", ", ".join(f"{k} {v:.3g}" for k, v in offset_stats(tm, batches[0]).items()))
    return recreate.report.prove_and_save(f"deform_head_{args.variant}", tm, km, transfer, batches,
                                          out=args.out, tolerance=args.tolerance, layers=True)


if __name__ == "__main__":
    sys.exit(main())
