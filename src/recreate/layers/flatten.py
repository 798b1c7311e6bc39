"""torch.flatten order on a channels-last tensor."""

from __future__ import annotations

import math

import keras
from keras import ops

from ._common import serializable


@serializable
class Flatten(keras.layers.Layer):
    """`torch.nn.Flatten(start_dim, end_dim)` applied to a Keras tensor.

    With `channels_last=True` the input is a channels-last feature map (N, *spatial, C) whose
    torch counterpart is (N, C, *spatial); the output has PyTorch's element order (C before
    spatial), so a following Dense takes torch's Linear weight unchanged. The output is in
    torch's axis order. (keras.layers.Flatten gives H, W, C order instead; `transfer_weights`
    permutes a Dense after it, see its `flatten_rows` argument.)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1, channels_last: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)
        self.channels_last = bool(channels_last)

    def _torch_shape(self, shape):
        shape = list(shape)
        if self.channels_last and len(shape) >= 3:
            shape = [shape[0], shape[-1], *shape[1:-1]]
        return shape

    def compute_output_shape(self, input_shape):
        shape = self._torch_shape(input_shape)
        r = len(shape)
        s, e = self.start_dim % r, self.end_dim % r
        merged = shape[s : e + 1]
        size = None if any(d is None for d in merged) else int(math.prod(merged))
        return tuple(shape[:s] + [size] + shape[e + 1 :])

    def call(self, x):
        r = len(x.shape)
        if self.channels_last and r >= 3:
            x = ops.transpose(x, (0, r - 1, *range(1, r - 1)))
        s, e = self.start_dim % r, self.end_dim % r
        if s == e:
            return x
        dyn = ops.shape(x)
        new = [dyn[i] for i in range(s)] + [-1] + [dyn[i] for i in range(e + 1, r)]
        return ops.reshape(x, new)

    def get_config(self):
        return {**super().get_config(), "start_dim": self.start_dim, "end_dim": self.end_dim,
                "channels_last": self.channels_last}
