"""ResNet-18/34/50/101 and ResNeXt-50, recreated by hand in Keras with torchvision's names.

    python zoo/resnet.py --variant resnet18 --out out/          # random weights, verified
    python zoo/resnet.py --variant resnet50 --weights resnet50.safetensors --out out/

Every Keras layer that holds weights is named after the torch module path
("layer1.0.conv1"), so recreate.transfer_weights fills it with no mapping at all. Channels
last inside; torch's symmetric padding is an explicit ZeroPadding2D before a 'valid' conv
(Keras 'same' pads asymmetrically at stride 2).
"""

from __future__ import annotations

import argparse
import sys

import recreate  # first: imports torch/torchvision before keras
import recreate.report
import recreate.testing

import keras
from keras import layers as L

# name: (block, blocks per stage, groups, width per group)
VARIANTS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1, 64),
    "resnet34": ("basic", (3, 4, 6, 3), 1, 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, 64),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 1, 64),
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), 32, 4),
}


def conv_bn(x, name_conv, name_bn, filters, k, stride=1, groups=1, relu=True):
    pad = k // 2
    if pad and stride > 1:
        x = L.ZeroPadding2D(pad)(x)
        padding = "valid"
    else:
        padding = "same" if pad else "valid"  # stride 1: 'same' is torch's symmetric pad
    x = L.Conv2D(filters, k, strides=stride, padding=padding, groups=groups, use_bias=False, name=name_conv)(x)
    x = L.BatchNormalization(epsilon=1e-5, momentum=0.9, name=name_bn)(x)
    return L.ReLU()(x) if relu else x


def block(x, p, kind, width, out_ch, stride, groups, downsample):
    shortcut = x
    if kind == "basic":
        y = conv_bn(x, f"{p}.conv1", f"{p}.bn1", out_ch, 3, stride)
        y = conv_bn(y, f"{p}.conv2", f"{p}.bn2", out_ch, 3, relu=False)
    else:
        y = conv_bn(x, f"{p}.conv1", f"{p}.bn1", width, 1)
        y = conv_bn(y, f"{p}.conv2", f"{p}.bn2", width, 3, stride, groups)
        y = conv_bn(y, f"{p}.conv3", f"{p}.bn3", out_ch, 1, relu=False)
    if downsample:
        shortcut = conv_bn(x, f"{p}.downsample.0", f"{p}.downsample.1", out_ch, 1, stride, relu=False)
    return L.ReLU()(L.Add()([y, shortcut]))


def keras_resnet(variant: str, num_classes: int = 1000, size: int = 224) -> keras.Model:
    kind, depths, groups, wpg = VARIANTS[variant]
    expansion = 1 if kind == "basic" else 4
    inp = keras.Input((size, size, 3))
    x = conv_bn(inp, "conv1", "bn1", 64, 7, 2)
    # Inputs are post-ReLU (>= 0), so zero padding never wins the max: same as torch's -inf.
    x = L.MaxPooling2D(3, 2)(L.ZeroPadding2D(1)(x))
    in_ch = 64
    for s, n in enumerate(depths):
        planes = 64 * 2**s
        width = planes * wpg // 64 * groups
        out_ch = planes * expansion
        for i in range(n):
            stride = 2 if (s > 0 and i == 0) else 1
            x = block(x, f"layer{s + 1}.{i}", kind, width, out_ch, stride, groups,
                      downsample=(i == 0 and (stride != 1 or in_ch != out_ch)))
            in_ch = out_ch
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(num_classes, name="fc")(x)
    return keras.Model(inp, out, name=variant)


def build(variant: str = "resnet18", weights: str | None = None, size: int = 224, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    import torchvision

    tm = recreate.testing.reference_model(getattr(torchvision.models, variant)(weights=None), weights,
                                          calibrate=(8, 3, size, size), seed=seed)
    km = keras_resnet(variant, tm.fc.out_features, size)
    report = recreate.transfer_weights(tm, km)
    return tm, km, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="resnet18", choices=sorted(VARIANTS))
    ap.add_argument("--size", type=int, default=224)
    recreate.report.add_arguments(ap)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.variant, args.weights, args.size)
    batches = recreate.testing.random_batches((2, 3, args.size, args.size), args.batches)
    return recreate.report.prove_and_save(args.variant, tm, km, transfer, batches, out=args.out,
                                          tolerance=args.tolerance, layers=True)


if __name__ == "__main__":
    sys.exit(main())
