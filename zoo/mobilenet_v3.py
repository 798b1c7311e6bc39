"""MobileNetV3 small/large, recreated by hand in Keras with torchvision's names.

    python zoo/mobilenet_v3.py --variant mobilenet_v3_small --out out/     # random weights, verified
    python zoo/mobilenet_v3.py --variant mobilenet_v3_large --weights mnv3l.safetensors --out out/

Keras layers are named after torch module paths ("features.4.block.1.0"), so
recreate.transfer_weights fills them with no mapping. Pitfalls handled here: torchvision's
MobileNetV3 batch norms use eps=1e-3 (Keras's default, by luck; transfer_weights checks it),
the stride-2 depthwise convs pad symmetrically (ZeroPadding2D + 'valid', not Keras 'same'),
and Keras 3's hard_sigmoid/hard_swish are exactly torch's relu6(x + 3) / 6 forms.
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

VARIANTS = ("mobilenet_v3_small", "mobilenet_v3_large")


def conv_bn(x, p, filters, k, stride=1, depthwise=False, act=None):
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
    x = L.BatchNormalization(epsilon=1e-3, momentum=0.99, name=f"{p}.1")(x)
    return L.Activation(act)(x) if act else x


def squeeze_excite(x, p, channels, squeeze):
    s = L.GlobalAveragePooling2D(keepdims=True)(x)  # AdaptiveAvgPool2d(1)
    # Activations as separate layers (not activation=...): each named layer's output then
    # equals its torch module's, so verify's per-layer table localises any mismatch.
    s = L.ReLU()(L.Conv2D(squeeze, 1, name=f"{p}.fc1")(s))
    s = L.Activation("hard_sigmoid")(L.Conv2D(channels, 1, name=f"{p}.fc2")(s))
    return L.Multiply()([x, s])


def inverted_residual(x, p, cnf):
    act = "hard_swish" if cnf.use_hs else "relu"
    y, j = x, 0
    if cnf.expanded_channels != cnf.input_channels:
        y = conv_bn(y, f"{p}.block.{j}", cnf.expanded_channels, 1, act=act)
        j += 1
    y = conv_bn(y, f"{p}.block.{j}", None, cnf.kernel, cnf.stride, depthwise=True, act=act)
    j += 1
    if cnf.use_se:
        from torchvision.models._utils import _make_divisible

        y = squeeze_excite(y, f"{p}.block.{j}", cnf.expanded_channels, _make_divisible(cnf.expanded_channels // 4, 8))
        j += 1
    y = conv_bn(y, f"{p}.block.{j}", cnf.out_channels, 1)
    if cnf.stride == 1 and cnf.input_channels == cnf.out_channels:
        y = L.Add()([y, x])
    return y


def keras_mobilenet_v3(variant: str, num_classes: int = 1000, size: int = 224) -> keras.Model:
    from torchvision.models.mobilenetv3 import _mobilenet_v3_conf

    setting, last_channel = _mobilenet_v3_conf(variant)  # torchvision's own table of blocks
    inp = keras.Input((size, size, 3))
    x = conv_bn(inp, "features.0", setting[0].input_channels, 3, 2, act="hard_swish")
    for i, cnf in enumerate(setting):
        x = inverted_residual(x, f"features.{i + 1}", cnf)
    x = conv_bn(x, f"features.{len(setting) + 1}", 6 * setting[-1].out_channels, 1, act="hard_swish")
    x = L.GlobalAveragePooling2D()(x)  # avgpool + flatten: order-free after pooling to 1x1
    x = L.Activation("hard_swish")(L.Dense(last_channel, name="classifier.0")(x))
    out = L.Dense(num_classes, name="classifier.3")(x)  # classifier.2 is Dropout: identity
    return keras.Model(inp, out, name=variant)


def build(variant: str = "mobilenet_v3_small", weights: str | None = None, size: int = 224, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    import torchvision

    tm = recreate.testing.reference_model(getattr(torchvision.models, variant)(weights=None), weights,
                                          calibrate=(8, 3, size, size), seed=seed)
    km = keras_mobilenet_v3(variant, tm.classifier[3].out_features, size)
    report = recreate.transfer_weights(tm, km)
    return tm, km, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="mobilenet_v3_small", choices=VARIANTS)
    ap.add_argument("--size", type=int, default=224)
    recreate.report.add_arguments(ap)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.variant, args.weights, args.size)
    batches = recreate.testing.random_batches((2, 3, args.size, args.size), args.batches)
    return recreate.report.prove_and_save(args.variant, tm, km, transfer, batches, out=args.out,
                                          tolerance=args.tolerance, layers=True)


if __name__ == "__main__":
    sys.exit(main())
