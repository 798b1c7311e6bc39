"""Power-average pooling, torch's LPPool1d/2d/3d, on a channels-last tensor.

torch computes it as `avg_pool(x.pow(p), kernel, stride, 0, ceil_mode)` (so a ceil_mode window
hanging over the end is averaged over what it covers), then
`(sign(out) * relu(|out|)).mul(kernel numel).pow(1 / p)`; p = +-inf is max/min pooling of
|x|. Powers follow torch's special cases (x*x for 2, x*x*x for 3, sqrt for 0.5, ...), and sums
run in torch's order, so results agree to rounding even where a signed sum nearly cancels
(odd p on signed inputs); for other exponents torch's vectorised pow and TensorFlow's may
differ in the last bit, which a nearly-cancelling sum then amplifies.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ._common import serializable
from .avg_pool import avg_pool
from .max_pool import _ntuple, pool_output_size, separable_max, window_positions


def torch_pow(x, exponent: float):
    """`torch.pow(x, exponent)` for a float tensor and a Python scalar, with ATen's special cases."""
    e = float(exponent)
    if e == 1.0:
        return x
    if e == 2.0:
        return x * x
    if e == 3.0:
        return x * x * x
    if e == -2.0:
        return 1.0 / (x * x)
    if e == 0.5:
        return ops.sqrt(x)
    if e == -0.5:
        return 1.0 / ops.sqrt(x)
    if e == -1.0:
        return 1.0 / x
    if e == 0.0:
        return ops.ones_like(x)
    return ops.power(x, ops.convert_to_tensor(e, x.dtype))


@serializable
class LPPooling(keras.layers.Layer):
    """torch's lp_pool{1,2,3}d: (sum over the window of x^p)^(1/p), channels-last.

    Example::

        LPPooling(2.0, (3, 3), strides=(2, 2), ceil_mode=True)
    """

    def __init__(self, norm_type: float, pool_size, strides=None, ceil_mode: bool = False, **kwargs):
        super().__init__(**kwargs)
        if float(norm_type) == 0.0:
            raise ValueError("norm_type must be non-zero")
        self.norm_type = float(norm_type)
        self.pool_size = tuple(int(k) for k in pool_size) if isinstance(pool_size, (tuple, list)) else (int(pool_size),)
        n = len(self.pool_size)
        self.strides = self.pool_size if strides is None else _ntuple(strides, n, "strides")
        self.ceil_mode = bool(ceil_mode)

    def compute_output_shape(self, input_shape):
        spatial = input_shape[1:-1]
        if len(spatial) != len(self.pool_size):
            raise ValueError(f"{len(self.pool_size)}-d LP pooling got input shape {tuple(input_shape)}")
        out = tuple(None if n is None else pool_output_size(n, k, s, 0, 1, self.ceil_mode)
                    for n, k, s in zip(spatial, self.pool_size, self.strides))
        return (input_shape[0], *out, input_shape[-1])

    def call(self, x):
        if len(x.shape) != len(self.pool_size) + 2 or any(s is None for s in x.shape[1:-1]):
            raise ValueError(f"LP pooling needs static spatial sizes, got input shape {tuple(x.shape)}")
        p = self.norm_type
        if math.isinf(p):
            windows = [window_positions(int(n), k, s, 0, 1, self.ceil_mode)
                       for n, k, s in zip(x.shape[1:-1], self.pool_size, self.strides)]
            mag = ops.abs(x)
            return separable_max(mag, windows, False) if p > 0 else -separable_max(-mag, windows, False)
        n = len(self.pool_size)
        out = avg_pool(torch_pow(x, p), self.pool_size, self.strides, (0,) * n, self.ceil_mode, True, exact_sum=True)
        out = ops.sign(out) * ops.relu(ops.abs(out))
        out = out * ops.convert_to_tensor(float(np.prod(self.pool_size)), out.dtype)
        return torch_pow(out, 1.0 / p)

    def get_config(self):
        return {**super().get_config(), "norm_type": self.norm_type, "pool_size": list(self.pool_size),
                "strides": list(self.strides), "ceil_mode": self.ceil_mode}
