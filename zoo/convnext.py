"""ConvNeXt-Tiny/Small/Base, recreated by hand in Keras with torchvision's names.

    python zoo/convnext.py --variant convnext_tiny --out out/     # random weights, verified
    python zoo/convnext.py --variant convnext_tiny --weights convnext_tiny.safetensors --out out/

Keras layers are named after torch module paths ("features.1.0.block.3"). Channels last
makes CNBlock's two Permutes no-ops and its LayerNorm a plain LayerNormalization over the
last axis (torchvision's eps is 1e-6, not Keras's 1e-3); LayerNorm2d (stem, downsampling,
head) is the same layer in channels-last. GELU is the exact erf form (approximate=False).
StochasticDepth is the identity in eval mode. The layer scale is a bare nn.Parameter of
CNBlock, (dim, 1, 1): here a bias-free 1x1 DepthwiseConv2D (an exact per-channel multiply)
named "<block>.layer_scale", filled by a weight rule registered in this script and mapped
to its CNBlock. "convnext_test" is a small ConvNeXt for fast tests.
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

# name: (stage widths, blocks per stage)
VARIANTS = {
    "convnext_tiny": ((96, 192, 384, 768), (3, 3, 9, 3)),
    "convnext_small": ((96, 192, 384, 768), (3, 3, 27, 3)),
    "convnext_base": ((128, 256, 512, 1024), (3, 3, 27, 3)),
    "convnext_test": ((16, 32, 64, 128), (1, 1, 2, 1)),
}


def layer_norm(x, name):
    return L.LayerNormalization(epsilon=1e-6, name=name)(x)


def cn_block(x, p, dim):
    y = L.DepthwiseConv2D(7, padding="same", name=f"{p}.block.0")(x)
    y = layer_norm(y, f"{p}.block.2")  # block.1 / block.6 are Permutes: no-ops channels-last
    y = L.Dense(4 * dim, name=f"{p}.block.3")(y)
    y = L.Activation("gelu")(y)  # keras gelu defaults to approximate=False, torch's nn.GELU()
    y = L.Dense(dim, name=f"{p}.block.5")(y)
    y = L.DepthwiseConv2D(1, use_bias=False, name=f"{p}.layer_scale")(y)
    return L.Add()([x, y])


def keras_convnext(variant: str, num_classes: int = 1000, size: int = 224) -> keras.Model:
    dims, depths = VARIANTS[variant]
    inp = keras.Input((size, size, 3))
    x = L.Conv2D(dims[0], 4, strides=4, name="features.0.0")(inp)
    x = layer_norm(x, "features.0.1")
    for s, (dim, n) in enumerate(zip(dims, depths)):
        if s:
            x = layer_norm(x, f"features.{2 * s}.0")
            x = L.Conv2D(dim, 2, strides=2, name=f"features.{2 * s}.1")(x)
        for i in range(n):
            x = cn_block(x, f"features.{2 * s + 1}.{i}", dim)
    x = L.GlobalAveragePooling2D(keepdims=True)(x)  # (N, 1, 1, C) like torch's (N, C, 1, 1)
    x = layer_norm(x, "classifier.0")
    x = L.Flatten(name="classifier.1")(x)  # 1x1 spatial: flatten order is the same
    out = L.Dense(num_classes, name="classifier.2")(x)
    return keras.Model(inp, out, name=variant)


def _layer_scale_rules():
    from torchvision.models.convnext import CNBlock

    rules = recreate.WeightRules((recreate.Map("kernel", "layer_scale", recreate.transforms.ReshapeToTarget()),))
    try:
        recreate.register_rules(CNBlock, L.DepthwiseConv2D, rules)
    except recreate.errors.RegistryError:
        pass  # already registered by an earlier build() in this process


def _layer_scale_owner(keras_name: str) -> str | None:
    return keras_name.removesuffix(".layer_scale") if keras_name.endswith(".layer_scale") else None


def build(variant: str = "convnext_tiny", weights: str | None = None, size: int = 224, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    import torchvision
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    if variant == "convnext_test":
        dims, depths = VARIANTS[variant]
        tm = ConvNeXt([CNBlockConfig(d, dims[i + 1] if i + 1 < len(dims) else None, n)
                       for i, (d, n) in enumerate(zip(dims, depths))])
    else:
        tm = getattr(torchvision.models, variant)(weights=None)
    if weights:
        tm.load_state_dict(dict(recreate.load_state_dict(weights)))
    else:
        recreate.testing.randomize_(tm, seed)  # also makes the 1e-6 layer scales O(1)
    km = keras_convnext(variant, tm.classifier[2].out_features, size)
    _layer_scale_rules()
    report = recreate.transfer_weights(tm, km, mapping=_layer_scale_owner)
    return tm.eval(), km, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="convnext_tiny", choices=sorted(VARIANTS))
    ap.add_argument("--size", type=int, default=224)
    recreate.report.add_arguments(ap)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.variant, args.weights, args.size)
    batches = recreate.testing.random_batches((2, 3, args.size, args.size), args.batches)
    return recreate.report.prove_and_save(args.variant, tm, km, transfer, batches, out=args.out,
                                          tolerance=args.tolerance, layers=True)


if __name__ == "__main__":
    sys.exit(main())
