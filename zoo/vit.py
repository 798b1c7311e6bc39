"""Vision Transformer (ViT-B/16, ViT-B/32), recreated by hand in Keras with torchvision's names.

    python zoo/vit.py --variant vit_b_16 --out out/       # random weights, verified (224x224)
    python zoo/vit.py --variant vit_b_16 --weights vit_b_16.safetensors --out out/

Keras layers are named after torch module paths ("encoder.layers.encoder_layer_0.ln_1").
torch's MultiheadAttention (packed in_proj_weight (3E, E)) fills a stock
keras.layers.MultiHeadAttention through recreate's registered rules (per-head (E, H, D)
kernels). LayerNorm eps is 1e-6 (Keras defaults to 1e-3); GELU is the exact erf form.
Patches: conv_proj gives (N, h, w, D) channels-last, and a Reshape to (N, h*w, D) is the
same row-major token order as torch's reshape + permute. The class token and position
embedding are bare nn.Parameters: here Embedding layers looked up with constant indices,
filled by rules registered in this script ("class_token" -> the root module,
"encoder.pos_embedding" -> encoder). "vit_test" is a 2-layer ViT on 32x32 for fast tests.
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

from recreate.layers.op import TENSOR, Op

# name: (image size, patch, layers, heads, hidden, mlp)
VARIANTS = {
    "vit_b_16": (224, 16, 12, 12, 768, 3072),
    "vit_b_32": (224, 32, 12, 12, 768, 3072),
    "vit_test": (32, 16, 2, 2, 32, 64),
}
MAPPING = {"class_token": "", "encoder.pos_embedding": "encoder"}


def encoder_block(x, p, heads, hidden, mlp):
    y = L.LayerNormalization(epsilon=1e-6, name=f"{p}.ln_1")(x)
    y = L.MultiHeadAttention(heads, hidden // heads, name=f"{p}.self_attention")(y, y)
    x = L.Add()([x, y])  # dropouts are identity in eval mode
    y = L.LayerNormalization(epsilon=1e-6, name=f"{p}.ln_2")(x)
    y = L.Activation("gelu")(L.Dense(mlp, name=f"{p}.mlp.0")(y))  # approximate=False = nn.GELU()
    y = L.Dense(hidden, name=f"{p}.mlp.3")(y)
    return L.Add()([x, y])


def keras_vit(variant: str, num_classes: int = 1000) -> keras.Model:
    size, patch, depth, heads, hidden, mlp = VARIANTS[variant]
    tokens = (size // patch) ** 2
    inp = keras.Input((size, size, 3))
    x = L.Conv2D(hidden, patch, strides=patch, name="conv_proj")(inp)
    x = L.Reshape((tokens, hidden))(x)
    t0, t1 = {TENSOR: 0}, {TENSOR: 1}
    cls = L.Embedding(1, hidden, name="class_token")(Op("zeros", args=[[1]], kwargs={"dtype": "int32"})(x))
    cls = Op("broadcast_batch", args=[t0, t1, [-1, 1, hidden]])(cls, x)  # (1, D) -> (N, 1, D)
    x = L.Concatenate(axis=1)([cls, x])
    pos = L.Embedding(tokens + 1, hidden, name="encoder.pos_embedding")(
        Op("arange", args=[tokens + 1], kwargs={"dtype": "int32"})(x))
    x = Op("add", args=[t0, t1])(x, pos)  # (N, S, D) + (S, D)
    for i in range(depth):
        x = encoder_block(x, f"encoder.layers.encoder_layer_{i}", heads, hidden, mlp)
    x = L.LayerNormalization(epsilon=1e-6, name="encoder.ln")(x)
    x = Op("getitem", args=[t0, [[None, None, None], 0]])(x)  # x[:, 0]: the class token
    out = L.Dense(num_classes, name="heads.head")(x)
    return keras.Model(inp, out, name=variant)


def _parameter_rules():
    from torchvision.models.vision_transformer import Encoder, VisionTransformer

    reshape = recreate.transforms.ReshapeToTarget()
    for owner, param in ((VisionTransformer, "class_token"), (Encoder, "pos_embedding")):
        try:
            recreate.register_rules(owner, L.Embedding, recreate.WeightRules((recreate.Map("embeddings", param, reshape),)))
        except recreate.RegistryError:
            pass  # already registered by an earlier build() in this process


def build(variant: str = "vit_b_16", weights: str | None = None, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    from torchvision.models import VisionTransformer

    size, patch, depth, heads, hidden, mlp = VARIANTS[variant]
    tm = VisionTransformer(size, patch, depth, heads, hidden, mlp)  # = torchvision.models.<variant>()
    if weights:
        tm.load_state_dict(dict(recreate.load_state_dict(weights)))
    else:
        recreate.testing.randomize_(tm, seed)
    km = keras_vit(variant, tm.heads.head.out_features)
    _parameter_rules()
    report = recreate.transfer_weights(tm, km, mapping=MAPPING)
    return tm.eval(), km, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="vit_b_16", choices=sorted(VARIANTS))
    recreate.report.add_arguments(ap)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.variant, args.weights)
    size = VARIANTS[args.variant][0]
    batches = recreate.testing.random_batches((2, 3, size, size), args.batches)
    return recreate.report.prove_and_save(args.variant, tm, km, transfer, batches, out=args.out,
                                          tolerance=args.tolerance, layers=True)


if __name__ == "__main__":
    sys.exit(main())
