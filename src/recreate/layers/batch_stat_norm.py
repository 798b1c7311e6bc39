"""Batch norm that normalises with the batch's own statistics (torch track_running_stats=False)."""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


@serializable
class BatchStatNormalization(keras.layers.Layer):
    """torch BatchNorm with `track_running_stats=False`: even in eval mode the mean and the
    biased variance come from the current batch (all axes but the channel axis `axis`)."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-5, center: bool = True, scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)

    def build(self, input_shape):
        c = input_shape[self.axis]
        if self.scale:
            self.gamma = self.add_weight(shape=(c,), initializer="ones", name="gamma")
        if self.center:
            self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta")

    def call(self, x):
        rank = len(x.shape)
        axis = self.axis % rank
        red = [i for i in range(rank) if i != axis]
        mean = ops.mean(x, axis=red, keepdims=True)
        var = ops.mean(ops.square(x - mean), axis=red, keepdims=True)
        y = (x - mean) * ops.rsqrt(var + self.epsilon)
        shape = [1] * rank
        shape[axis] = -1
        if self.scale:
            y = y * ops.reshape(self.gamma, shape)
        if self.center:
            y = y + ops.reshape(self.beta, shape)
        return y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}
