"""torch's FractionalMaxPool2d/3d with fixed random samples, on a channels-last tensor.

Fractional max pooling draws the window starts at random on every call unless the module
holds `_random_samples` (shape (N, C, dims), values in [0, 1)); with them the function is
deterministic, and this layer computes it exactly. The samples are the layer's weight
`random_samples`; batch element n and channel c use row (n, c), so the layer takes batches
of at most N samples, as torch does. Window starts along an axis of length L with output O
and kernel k (ATen's generate_intervals, in float32 like torch for float inputs):
    alpha = (L - k) / (O - 1);  start[i] = int((i + u) * alpha) - int(u * alpha);  start[O-1] = L - k
Sample column 0 drives the width in 2-d and the depth (time) in 3-d; the others follow.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ._common import serializable
from .max_pool import select_window_max, values_and_indices_spec


def fractional_output_size(size: int, output_size, output_ratio) -> int:
    return int(output_size) if output_size is not None else int(size * float(output_ratio))


@serializable
class FractionalMaxPooling(keras.layers.Layer):
    """Example::

        FractionalMaxPooling((2, 2), output_size=(5, 5), samples_batch=4)   # then set random_samples
    """

    def __init__(self, pool_size, output_size=None, output_ratio=None, samples_batch: int = 1,
                 return_indices: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(k) for k in pool_size)
        n = len(self.pool_size)
        if (output_size is None) == (output_ratio is None):
            raise ValueError("give exactly one of output_size and output_ratio")
        self.output_size = None if output_size is None else tuple(int(o) for o in output_size)
        self.output_ratio = None if output_ratio is None else tuple(float(r) for r in output_ratio)
        if len(self.output_size or self.output_ratio) != n:
            raise ValueError(f"output_size/output_ratio must have {n} entries")
        self.samples_batch = int(samples_batch)
        self.return_indices = bool(return_indices)

    def build(self, input_shape):
        self.random_samples = self.add_weight(
            name="random_samples", shape=(self.samples_batch, int(input_shape[-1]), len(self.pool_size)),
            initializer="zeros", trainable=False)

    def _out_sizes(self, spatial):
        if self.output_size is not None:
            return list(self.output_size)
        return [None if s is None else fractional_output_size(s, None, r) for s, r in zip(spatial, self.output_ratio)]

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0], *self._out_sizes(input_shape[1:-1]), input_shape[-1])
        return [shape, shape] if self.return_indices else shape

    def compute_output_spec(self, x):
        return values_and_indices_spec(self, x)

    def _starts(self, u, size: int, out: int, k: int):
        """(batch, C, out) int32 window starts from samples u (batch, C)."""
        last = ops.full(ops.shape(u), size - k, dtype="int32")[..., None]
        if out == 1:
            return last
        alpha = ops.convert_to_tensor(np.float32(size - k) / np.float32(out - 1), "float32")
        i = ops.convert_to_tensor(np.arange(out - 1, dtype=np.float32))
        u = ops.cast(u, "float32")[..., None]
        starts = ops.cast((i + u) * alpha, "int32") - ops.cast(u * alpha, "int32")
        return ops.concatenate([starts, last], axis=-1)

    def call(self, x):
        if len(x.shape) != len(self.pool_size) + 2 or any(s is None for s in x.shape[1:-1]):
            raise ValueError(f"fractional max pooling needs static spatial sizes, got input shape {tuple(x.shape)}")
        spatial = [int(s) for s in x.shape[1:-1]]
        n = len(spatial)
        outs = self._out_sizes(spatial)
        batch = ops.shape(x)[0]
        samples = self.random_samples[:batch]  # torch uses the first rows
        strides = [int(np.prod(spatial[i + 1:])) for i in range(n)]
        columns = [1, 0] if n == 2 else list(range(n))  # which sample column drives each spatial axis
        index = None
        for a in reversed(range(n)):
            axis, size, out, k = a + 1, spatial[a], outs[a], self.pool_size[a]
            starts = self._starts(samples[:, :, columns[a]], size, out, k)       # (batch, C, out)
            starts = ops.moveaxis(starts, 1, -1)                                  # (batch, out, C)
            start = ops.reshape(starts, (-1, *([1] * a), out, *([1] * (n - a - 1)), starts.shape[-1]))
            pos = ops.expand_dims(start, axis + 1) + ops.reshape(ops.arange(k, dtype="int32"),
                                                                 [k if d == axis + 1 else 1 for d in range(n + 3)])
            flat = ops.reshape(pos, (-1, *([1] * a), out * k, *([1] * (n - a - 1)), starts.shape[-1]))
            cur = list(x.shape[1:])
            shape = [-1, *cur[:a], out, k, *cur[a + 1:]]
            g = ops.reshape(ops.take_along_axis(x, flat, axis=axis), shape)
            if not self.return_indices:
                x = ops.max(g, axis=axis + 1)
                continue
            inner = None if index is None else ops.reshape(ops.take_along_axis(index, flat, axis=axis), shape)
            x, index = select_window_max(g, axis + 1, None, start, 1, strides[a], inner)
        return [x, index] if self.return_indices else x

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "output_size": None if self.output_size is None else list(self.output_size),
                "output_ratio": None if self.output_ratio is None else list(self.output_ratio),
                "samples_batch": self.samples_batch, "return_indices": self.return_indices}
