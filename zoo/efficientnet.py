"""EfficientNet-B0 (and B1-B3), recreated by hand in Keras with torchvision's names.

    python zoo/efficientnet.py --variant efficientnet_b0 --out out/     # random weights, verified
    python zoo/efficientnet.py --variant efficientnet_b0 --weights b0.safetensors --out out/

Keras layers are named after torch module paths ("features.2.0.block.1.0"), so
recreate.transfer_weights fills them with no mapping. Pitfalls handled here: EfficientNet
V1 batch norms use torch's eps=1e-5 (Keras defaults to 1e-3; transfer_weights refuses the
mismatch), stride-2 depthwise convs pad symmetrically (ZeroPadding2D + 'valid': Keras
'same' pads more on the bottom/right), and StochasticDepth is the identity in eval mode.
"""

from __future__ import annotations

import argparse
import sys

# ruff: noqa: I001 (import order is load order here)
import recreate  # first: torch/torchvision must load before keras/TF, else a segfault
import recreate.report
import recreate.testing
import keras
from keras import layers as L

VARIANTS = ("efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3")


def conv_bn(x, p, filters, k, stride=1, depthwise=False, act="silu"):
    """torchvision's Conv2dNormActivation: modules p.0 (conv), p.1 (bn), p.2 (activation)."""
    pad = (k - 1) // 2
    if pad and stride > 1:
        x, padding = L.ZeroPadding2D(pad)(x), "valid"
    else:
        padding = "same" if pad else "valid"  # stride 1: 'same' is torch's symmetric pad
    if depthwise:
        x = L.DepthwiseConv2D(k, strides=stride, padding=padding, use_bias=False, name=f"{p}.0")(x)
    else:
        x = L.Conv2D(filters, k, strides=stride, padding=padding, use_bias=False, name=f"{p}.0")(x)
    x = L.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{p}.1")(x)
    return L.Activation(act)(x) if act else x


def mbconv(x, p, cnf, in_ch, stride):
    expanded = cnf.adjust_channels(in_ch, cnf.expand_ratio)
    y, j = x, 0
    if expanded != in_ch:
        y = conv_bn(y, f"{p}.block.{j}", expanded, 1)
        j += 1
    y = conv_bn(y, f"{p}.block.{j}", None, cnf.kernel, stride, depthwise=True)
    j += 1
    s = L.GlobalAveragePooling2D(keepdims=True)(y)  # squeeze-excitation, AdaptiveAvgPool2d(1)
    s = L.Activation("silu")(L.Conv2D(max(1, in_ch // 4), 1, name=f"{p}.block.{j}.fc1")(s))
    s = L.Activation("sigmoid")(L.Conv2D(expanded, 1, name=f"{p}.block.{j}.fc2")(s))
    y = L.Multiply()([y, s])
    y = conv_bn(y, f"{p}.block.{j + 1}", cnf.out_channels, 1, act=None)
    if stride == 1 and in_ch == cnf.out_channels:
        y = L.Add()([y, x])  # StochasticDepth before the add: identity in eval mode
    return y


def keras_efficientnet(variant: str, num_classes: int = 1000, size: int = 224) -> keras.Model:
    from torchvision.models.efficientnet import _efficientnet_conf

    mult = {"efficientnet_b0": (1.0, 1.0), "efficientnet_b1": (1.0, 1.1),
            "efficientnet_b2": (1.1, 1.2), "efficientnet_b3": (1.2, 1.4)}[variant]
    setting, last = _efficientnet_conf(variant, width_mult=mult[0], depth_mult=mult[1])
    inp = keras.Input((size, size, 3))
    x = conv_bn(inp, "features.0", setting[0].input_channels, 3, 2)
    for s, cnf in enumerate(setting):
        in_ch = cnf.input_channels
        for i in range(cnf.num_layers):
            x = mbconv(x, f"features.{s + 1}.{i}", cnf, in_ch, cnf.stride if i == 0 else 1)
            in_ch = cnf.out_channels
    x = conv_bn(x, f"features.{len(setting) + 1}", last or 4 * setting[-1].out_channels, 1)
    x = L.GlobalAveragePooling2D()(x)  # avgpool + flatten: order-free after pooling to 1x1
    out = L.Dense(num_classes, name="classifier.1")(x)  # classifier.0 is Dropout: identity
    return keras.Model(inp, out, name=variant)


def build(variant: str = "efficientnet_b0", weights: str | None = None, size: int = 224, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    import torchvision

    tm = recreate.testing.reference_model(getattr(torchvision.models, variant)(weights=None), weights,
                                          calibrate=(8, 3, size, size), seed=seed)
    km = keras_efficientnet(variant, tm.classifier[1].out_features, size)
    report = recreate.transfer_weights(tm, km)
    return tm, km, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="efficientnet_b0", choices=VARIANTS)
    ap.add_argument("--size", type=int, default=224)
    recreate.report.add_arguments(ap)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.variant, args.weights, args.size)
    batches = recreate.testing.random_batches((2, 3, args.size, args.size), args.batches)
    return recreate.report.prove_and_save(args.variant, tm, km, transfer, batches, out=args.out,
                                          tolerance=args.tolerance, layers=True)


if __name__ == "__main__":
    sys.exit(main())
