"""A custom kernel: a torch.library custom op inside a model, recreated as a registered Keras layer.

    python zoo/custom_kernel.py --out out/           # random weights, verified
    python zoo/custom_kernel.py --weights mlp.safetensors --out out/

The template for your own kernels. torch: `zoo::bias_gelu_gate` is a custom op (its CPU
implementation stands in for a fused CUDA kernel; register_fake gives its shapes), called by
the module BiasGeluGate. The tracer cannot look inside a kernel, so tell recreate what the
*module* means: `@recreate.register(BiasGeluGate, ...)` returns the Keras layer BiasGeluGate
(keras.ops, serializable) and the weight rule `bias <- bias`, `gate <- gate`. The registered
module is a leaf: `recreate.convert(model, x)` converts the Linear layers around it as usual.
`cases` is the Hypothesis strategy the parity test (tests/test_zoo_text.py) draws from.
"""

from __future__ import annotations

import argparse
import sys

import recreate  # torch before keras/tensorflow (the torch-first isort section)
import recreate.report
import recreate.testing
import torch
from recreate.registry import TORCH
from torch import nn

import keras
from hypothesis import strategies as st

try:  # defined once per process, even when this file is imported twice
    bias_gelu_gate = torch.ops.zoo.bias_gelu_gate
except (AttributeError, RuntimeError):
    @torch.library.custom_op("zoo::bias_gelu_gate", mutates_args=())
    def bias_gelu_gate(x: torch.Tensor, bias: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """gelu(x + bias) * sigmoid(gate), over the last axis: one fused kernel on a GPU."""
        return torch.nn.functional.gelu(x + bias) * torch.sigmoid(gate)

    @bias_gelu_gate.register_fake
    def _(x, bias, gate):
        return torch.empty_like(x)


class BiasGeluGate(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(features))
        self.gate = nn.Parameter(torch.zeros(features))

    def forward(self, x):
        return torch.ops.zoo.bias_gelu_gate(x, self.bias, self.gate)


@keras.saving.register_keras_serializable(package="zoo_custom_kernel")
class KerasBiasGeluGate(keras.layers.Layer):
    """gelu(x + bias) * sigmoid(gate) on the last axis (exact erf GELU, torch's default)."""

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(input_shape[-1],), initializer="zeros")
        self.gate = self.add_weight(name="gate", shape=(input_shape[-1],), initializer="zeros")

    def call(self, x):
        return keras.ops.gelu(x + self.bias, approximate=False) * keras.ops.sigmoid(self.gate)

    def compute_output_shape(self, input_shape):
        return input_shape


def bias_gelu_gate_cases(torch_type):
    """Features, leading axes and input scale drawn widely (GELU's tails, sigmoid saturation)."""
    @st.composite
    def case(draw):
        features = draw(st.integers(1, 9))
        lead = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
        return recreate.testing.make_case(draw, torch_type(features), (*lead, features),
                                          scale=draw(st.sampled_from([0.1, 1.0, 5.0])))

    return case()


@recreate.register(BiasGeluGate, cases=bias_gelu_gate_cases, layout=(TORCH, TORCH),
                   rules={KerasBiasGeluGate: recreate.WeightRules((recreate.Map("bias", "bias"),
                                                                   recreate.Map("gate", "gate")))})
def bias_gelu_gate_layer(m):
    return KerasBiasGeluGate()


class GatedMLP(nn.Module):
    def __init__(self, d=12, hidden=32, out=5):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), BiasGeluGate(hidden), nn.Linear(hidden, out)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) + x[..., : self.fc2.out_features]


def build(weights: str | None = None, d: int = 12, seed: int = 0):
    """(torch model in eval mode, recreate.convert'ed Keras model, None: convert transfers)."""
    tm = GatedMLP(d)
    if weights:
        tm.load_state_dict(recreate.load_state_dict(weights))
    else:
        recreate.testing.randomize_(tm, seed)
    return tm.eval(), recreate.convert(tm.eval(), torch.randn(2, 7, d)), None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    recreate.report.add_arguments(ap)
    args = ap.parse_args(argv)
    tm, km, _ = build(args.weights)
    leaf = [type(layer).__name__ for layer in km.layers if isinstance(layer, KerasBiasGeluGate)]
    print(f"converted: {len(km.layers)} Keras layers, the custom kernel as {leaf}")
    g = torch.Generator().manual_seed(1234)
    batches = [torch.randn(1 + i, 7, 12, generator=g) * (1 + i) for i in range(max(2, args.batches))]  # convert fixes all but batch
    rc = recreate.report.prove_and_save("custom_kernel", tm, km, None, batches, out=args.out,
                                        tolerance=args.tolerance, layers=False)
    return rc if leaf else 1


if __name__ == "__main__":
    sys.exit(main())
