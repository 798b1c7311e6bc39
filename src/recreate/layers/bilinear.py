"""torch.nn.Bilinear: y = x1^T A x2 + b on the last axis of two inputs."""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


@serializable
class Bilinear(keras.layers.Layer):
    """`torch.nn.Bilinear(in1, in2, out, bias)`: y[..., o] = sum_ij x1[..., i] A[o, i, j]
    x2[..., j] + b[o], on tensors in PyTorch's axis order (features last). The kernel keeps
    torch's weight layout (units, in1, in2), so torch's weight is copied unchanged."""

    def __init__(self, units: int, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input1_shape, input2_shape):
        self.kernel = self.add_weight(name="kernel", shape=(self.units, input1_shape[-1], input2_shape[-1]),
                                      initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer)
                     if self.use_bias else None)

    def compute_output_shape(self, input1_shape, input2_shape):
        return (*input1_shape[:-1], self.units)

    def call(self, input1, input2):
        y = ops.einsum("...i,oij,...j->...o", input1, self.kernel, input2)
        if self.bias is not None:
            y = y + self.bias
        return y

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}
