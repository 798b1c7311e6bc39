"""Local response normalization across channels, with torch's exact window and formula."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ._common import serializable

VARIANTS = ("local_response_norm", "cross_map_lrn2d")


def channel_window(channels: int, size: int, variant: str = "local_response_norm") -> np.ndarray:
    """The (C, C) 0/1 matrix W with sum_j x2[..., j] * W[j, c] = the squares torch sums for
    channel c. Channels outside [0, C) are zeros (torch zero-pads the window)."""
    w = np.zeros((channels, channels), dtype="float32")
    for c in range(channels):
        if variant == "local_response_norm":
            lo, hi = c - size // 2, c + (size - 1) // 2
        else:
            # torch's CrossMapLRN2d keeps a running window sum that adds channel
            # c + pre_pad - 1 and subtracts channel c - pre_pad only when c > pre_pad, so
            # channel 0 is never subtracted and the window is 2 * pre_pad - 1 wide.
            pre_pad = int((size - 1) / 2 + 1)
            lo, hi = c - pre_pad + 1, c + pre_pad - 1
            w[0, c] = 1.0
        w[max(0, lo):min(channels - 1, hi) + 1, c] = 1.0
    return w


@serializable
class LocalResponseNormalization(keras.layers.Layer):
    """torch's LocalResponseNorm (variant "local_response_norm") and CrossMapLRN2d
    (variant "cross_map_lrn2d") over the last (channel) axis of a channels-last tensor.

    local_response_norm: y = x / (k + alpha / size * sum_window x^2) ** beta, the window
    being channels [c - size // 2, c + (size - 1) // 2], zero-padded.
    cross_map_lrn2d: y = x * (k + alpha / size * sum_window x^2) ** -beta, with that legacy
    module's window (see `channel_window`).

    Example::

        LocalResponseNormalization(5, alpha=1e-4, beta=0.75, k=2.0)(x_nhwc)
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                 variant: str = "local_response_norm", **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = int(size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)
        self.variant = variant

    def build(self, input_shape):
        c = input_shape[-1]
        if c is None:
            raise ValueError(f"{type(self).__name__} needs a known channel count (last axis), got {input_shape}")
        # A constant, not a variable: it holds no trained state.
        self._window = channel_window(int(c), self.size, self.variant)

    def call(self, x):
        window = ops.convert_to_tensor(self._window, dtype=x.dtype)
        summed = ops.matmul(ops.square(x), window)
        if self.variant == "local_response_norm":
            # torch: avg_pool (sum / size), then * alpha + k, then ** beta, then x / that.
            return x / ops.power(summed / self.size * self.alpha + self.k, self.beta)
        return x * ops.power(summed * (self.alpha / self.size) + self.k, -self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha, "beta": self.beta,
                "k": self.k, "variant": self.variant}
