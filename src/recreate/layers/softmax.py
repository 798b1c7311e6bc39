"""Softmin and LogSoftmax along one axis (stock `keras.layers.Softmax` covers Softmax)."""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


class _AxisActivation(keras.layers.Layer):
    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


@serializable
class Softmin(_AxisActivation):
    """`torch.nn.Softmin`: `softmax(-x)` along `axis` (a Keras axis)."""

    def call(self, x):
        return ops.softmax(-x, axis=self.axis)


@serializable
class LogSoftmax(_AxisActivation):
    """`torch.nn.LogSoftmax`: `log(softmax(x))` along `axis`, computed stably."""

    def call(self, x):
        return ops.log_softmax(x, axis=self.axis)
