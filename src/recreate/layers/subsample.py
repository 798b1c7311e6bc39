"""Keep every s-th element along the spatial axes (stride applied after a stride-1 op)."""

from __future__ import annotations

import keras

from ._common import serializable


@serializable
class Subsample(keras.layers.Layer):
    """x[:, ::s1, ::s2, ..., :] on a channels-last tensor.

    TensorFlow's convolution refuses strides > 1 together with dilation > 1; a stride-1
    dilated convolution followed by this layer computes exactly the strided one."""

    def __init__(self, strides, **kwargs):
        super().__init__(**kwargs)
        self.strides = tuple(int(s) for s in strides)

    def call(self, x):
        idx = (slice(None), *(slice(None, None, s) for s in self.strides), slice(None))
        return x[idx]

    def compute_output_shape(self, input_shape):
        spatial = [None if d is None else -(-d // s) for d, s in zip(input_shape[1:-1], self.strides)]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "strides": list(self.strides)}
