"""torch.nn.Unflatten: split one axis into several, in PyTorch's axis order."""

from __future__ import annotations

import math

import keras
from keras import ops

from ._common import serializable


@serializable
class Unflatten(keras.layers.Layer):
    """`torch.nn.Unflatten(dim, unflattened_size)` on a tensor in PyTorch's axis order:
    axis `dim` (any, the batch axis included) becomes `sizes`; one size may be -1."""

    def __init__(self, dim: int, sizes, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.sizes = tuple(int(s) for s in sizes)
        if sum(s == -1 for s in self.sizes) > 1 or any(s < -1 for s in self.sizes):
            raise ValueError(f"sizes may hold one -1 and otherwise non-negative sizes, got {self.sizes}")

    def _sizes(self, n):
        if -1 not in self.sizes:
            return list(self.sizes)
        known = math.prod(s for s in self.sizes if s != -1)
        fill = None if n is None or known == 0 else n // known
        return [fill if s == -1 else s for s in self.sizes]

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        d = self.dim % len(shape)
        return tuple(shape[:d] + self._sizes(shape[d]) + shape[d + 1:])

    def call(self, x):
        shape = list(ops.shape(x))
        d = self.dim % len(shape)
        return ops.reshape(x, shape[:d] + list(self.sizes) + shape[d + 1:])

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "sizes": list(self.sizes)}
