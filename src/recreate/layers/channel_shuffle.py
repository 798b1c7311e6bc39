"""torch.nn.ChannelShuffle on a channels-last (or PyTorch-order) tensor."""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


@serializable
class ChannelShuffle(keras.layers.Layer):
    """`torch.nn.ChannelShuffle(groups)`: channel k*groups + g of the output is channel
    g*(C/groups) + k of the input. The channel axis is the last one with
    `channels_last=True` (rank >= 3), axis 1 otherwise."""

    def __init__(self, groups: int, channels_last: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)
        self.channels_last = bool(channels_last)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, x):
        rank = len(x.shape)
        if rank < 3:
            raise ValueError(f"ChannelShuffle needs a tensor of rank >= 3 (torch), got shape {x.shape}")
        g = self.groups
        shape = list(ops.shape(x))
        c = shape[-1] if self.channels_last else shape[1]
        if self.channels_last:
            y = ops.reshape(x, shape[:-1] + [g, c // g])
            y = ops.swapaxes(y, -1, -2)
        else:
            y = ops.reshape(x, [shape[0], g, c // g] + shape[2:])
            y = ops.swapaxes(y, 1, 2)
        return ops.reshape(y, shape)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "channels_last": self.channels_last}
