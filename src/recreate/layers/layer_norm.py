"""LayerNormalization computed in torch's order: (x - mean) / sqrt(var + eps) * gamma + beta.

keras.layers.LayerNormalization (3.15, TensorFlow backend) computes x * inv + (beta - mean * inv)
with inv = gamma * rsqrt(var + eps): the same function, but beta - mean * inv is rounded at the
scale of |mean * inv|, so beta loses its low bits when a row's mean is large against its spread.
With one feature, or a constant row, the exact output is beta: torch and this layer return it,
Keras misses it by about 2**-24 * |x| / sqrt(eps) (1e-4 seen). On 300 drawn nn.Transformer
stacks (d_model 2-8) recreate's float32 output missed the float64 result by at most 4.6e-6
with Keras's order and 2.2e-6 with this one (torch's own float32: 2.5e-6).

torch's statistics (ATen RowwiseMoments) fold a row shorter than one AVX2 vector (8 floats) one
value at a time, Welford's way, and divide by std::sqrt; this layer does the same for fewer than
8 normalized values, so small norms match torch to the last bit or two: over 100k standard-normal
rows of 2-7 values at eps=1e-5, max |diff| 1.2e-7 (the mean-then-variance order: 3.1e-5 at 3
values, Keras's 2.3e-5). From 8 values on the order no longer matters (both within 1e-6).
"""

from __future__ import annotations

import itertools
import math

import keras
from keras import ops

from ._common import serializable


@serializable
class LayerNorm(keras.layers.LayerNormalization):
    """keras.layers.LayerNormalization (same arguments, variables and config; rms_scaling is
    not supported) with torch's order of operations.

    Example::

        norm = LayerNorm(epsilon=1e-5)
        y = norm(x)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.rms_scaling:
            raise ValueError("LayerNorm does not support rms_scaling (use keras.layers.RMSNormalization)")

    def call(self, inputs):
        x = ops.cast(inputs, "float32") if inputs.dtype in ("float16", "bfloat16") else inputs
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        rank = len(x.shape)
        axes = sorted(a % rank for a in axes)
        shape = [1] * rank
        for a in axes:
            shape[a] = x.shape[a]
        if None not in shape and math.prod(shape) < WELFORD_BELOW:
            mean, var = _welford_moments(x, axes, shape)
        else:
            mean = ops.mean(x, axis=axes, keepdims=True)
            var = ops.mean(ops.square(x - mean), axis=axes, keepdims=True)
        y = (x - mean) * (1.0 / ops.sqrt(var + self.epsilon))
        if self.gamma is not None:
            y = y * ops.reshape(ops.cast(self.gamma, y.dtype), shape)
        if self.beta is not None:
            y = y + ops.reshape(ops.cast(self.beta, y.dtype), shape)
        return ops.cast(y, self.compute_dtype)


#: Rows with fewer normalized values than this get torch's one-at-a-time (Welford) statistics.
WELFORD_BELOW = 8


def _welford_moments(x, axes, shape):
    """Mean and biased variance over `axes` (keepdims), folding the values in row-major order
    as torch's scalar RowwiseMoments loop does: a static loop over fewer than 8 slices."""
    index = [slice(None)] * len(shape)
    m1 = m2 = None
    for k, position in enumerate(itertools.product(*(range(shape[a]) for a in axes))):
        for a, i in zip(axes, position):
            index[a] = slice(i, i + 1)
        value = x[tuple(index)]
        if m1 is None:
            m1, m2 = value, ops.zeros_like(value)
            continue
        delta = value - m1
        m1 = m1 + delta / float(k + 1)
        m2 = m2 + delta * (value - m1)
    return m1, m2 / float(math.prod(shape))
