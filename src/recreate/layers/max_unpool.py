"""torch's MaxUnpool1d/2d/3d on channels-last tensors: scatter each value to the position its
index names in its channel's output plane; every other position is 0.

Indices are torch's (flat, row-major, into each channel's output plane), as MaxPool with
return_indices=True produces them. Where two values name the same position (overlapping
pooling windows), torch's CPU kernel writes them in input order, so the last one stays; this
layer keeps the last one too, exactly (a segment max of each value's input ordinal, then a
gather), rather than leaving the choice to a scatter's order. torch raises on an index
outside the output plane; a graph cannot raise, so such a sample's whole output is NaN
(loud in any check) and no value reaches another sample.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ._common import serializable


@serializable
class MaxUnpooling(keras.layers.Layer):
    """`layer(values, indices)`: values (N, *spatial, C) float, indices of the same shape
    (integer); returns (N, *output_size, C).

    Example::

        MaxUnpooling((8, 8))(pooled, indices)   # after MaxPooling(2, return_indices=True) on 8x8
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(int(s) for s in output_size)

    def compute_output_shape(self, x_shape, indices_shape=None):
        if len(x_shape) != len(self.output_size) + 2:
            raise ValueError(f"{len(self.output_size)}-d max unpooling got input shape {tuple(x_shape)}")
        return (x_shape[0], *self.output_size, x_shape[-1])

    def call(self, x, indices):
        if any(s is None for s in x.shape[1:]):
            raise ValueError(f"max unpooling needs static spatial and channel sizes, got {tuple(x.shape)}")
        channels = int(x.shape[-1])
        m = int(np.prod(x.shape[1:]))          # values per sample
        plane = int(np.prod(self.output_size))  # positions per channel
        values = ops.reshape(x, (-1, m))
        idx = ops.reshape(ops.cast(indices, "int64"), (-1, m))
        channel = ops.convert_to_tensor(np.arange(m) % channels, "int64")
        target = idx * channels + channel  # position in the channels-last output (plane * C)
        batch = ops.shape(values)[0]
        size = plane * channels
        inside = ops.logical_and(idx >= 0, idx < plane)
        segment = target + ops.expand_dims(ops.arange(batch, dtype="int64") * size, 1)
        segment = ops.where(inside, segment, -1)  # dropped: must not reach another sample's plane
        ordinal = ops.broadcast_to(ops.arange(m, dtype="int32")[None], ops.shape(target))
        # the last value written to each position: the largest input ordinal naming it
        last = ops.segment_max(ops.reshape(ordinal, (-1,)), ops.reshape(segment, (-1,)), num_segments=batch * size)
        last = ops.reshape(last, (-1, size))  # positions nobody names hold the dtype's minimum
        picked = ops.take_along_axis(values, ops.maximum(last, 0), axis=1)
        out = ops.where(last >= 0, picked, ops.zeros_like(picked))
        bad = ops.logical_not(ops.all(inside, axis=1, keepdims=True))
        out = ops.where(bad, ops.convert_to_tensor(np.nan, out.dtype), out)
        return ops.reshape(out, (-1, *self.output_size, channels))

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size)}
