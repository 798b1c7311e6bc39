"""Elementwise activations with PyTorch's arguments and formulas, where stock Keras has no
layer taking those arguments (Keras's `Activation` takes a name, not parameters) or rejects
values torch accepts (Keras's LeakyReLU refuses negative slopes).

The piecewise ones follow torch's kernels literally, comparisons and branch order included
(Threshold is `x <= threshold ? value : x`), so boundary points and overflow agree, not just
the mathematical function: Softplus with a large `threshold` returns inf where torch does.
"""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


class _Elementwise(keras.layers.Layer):
    def compute_output_shape(self, input_shape):
        return input_shape


@serializable
class Threshold(_Elementwise):
    """`torch.nn.Threshold`: `x` where `x > threshold`, else `value`."""

    def __init__(self, threshold: float, value: float, **kwargs):
        super().__init__(**kwargs)
        self.threshold = float(threshold)
        self.value = float(value)

    def call(self, x):
        return ops.where(x <= self.threshold, ops.cast(self.value, x.dtype), x)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "value": self.value}


@serializable
class Hardtanh(_Elementwise):
    """`torch.nn.Hardtanh`: clamp to [min_val, max_val]."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.min_val = float(min_val)
        self.max_val = float(max_val)

    def call(self, x):
        return ops.clip(x, self.min_val, self.max_val)

    def get_config(self):
        return {**super().get_config(), "min_val": self.min_val, "max_val": self.max_val}


@serializable
class LeakyReLU(_Elementwise):
    """`torch.nn.LeakyReLU` for any slope, negative ones included (Keras's LeakyReLU
    requires `negative_slope >= 0`)."""

    def __init__(self, negative_slope: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope)

    def call(self, x):
        return ops.where(x > 0, x, x * self.negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


@serializable
class Softplus(_Elementwise):
    """`torch.nn.Softplus`: `x` where `x * beta > threshold`, else `log1p(exp(x * beta)) / beta`
    (literally: inf where exp overflows below the threshold, as in torch)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)
        self.threshold = float(threshold)

    def call(self, x):
        xb = x * self.beta
        return ops.where(xb > self.threshold, x, ops.log1p(ops.exp(xb)) / self.beta)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "threshold": self.threshold}


@serializable
class Hardshrink(_Elementwise):
    """`torch.nn.Hardshrink`: 0 where `-lambd <= x <= lambd`, else `x`."""

    def __init__(self, lambd: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.lambd = float(lambd)

    def call(self, x):
        inside = ops.logical_and(x >= -self.lambd, x <= self.lambd)
        return ops.where(inside, ops.zeros_like(x), x)

    def get_config(self):
        return {**super().get_config(), "lambd": self.lambd}


@serializable
class Softshrink(_Elementwise):
    """`torch.nn.Softshrink`: `x - lambd` above `lambd`, `x + lambd` below `-lambd`, else 0."""

    def __init__(self, lambd: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.lambd = float(lambd)

    def call(self, x):
        lam = self.lambd
        return ops.where(x > lam, x - lam, ops.where(x < -lam, x + lam, ops.zeros_like(x)))

    def get_config(self):
        return {**super().get_config(), "lambd": self.lambd}


@serializable
class CELU(_Elementwise):
    """`torch.nn.CELU`: `x` for `x > 0`, else `alpha * expm1(x * (1 / alpha))`.

    torch multiplies by the float32 reciprocal where `keras.ops.celu` divides by alpha;
    with a negative alpha the branch grows like exp(|x / alpha|) and that one rounding
    becomes a relative error near 1e-5, so torch's order is kept."""

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if float(alpha) == 0.0:
            raise ValueError("CELU alpha must not be 0")
        self.alpha = float(alpha)

    def call(self, x):
        return ops.where(x > 0, x, ops.expm1(x * (1.0 / self.alpha)) * self.alpha)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@serializable
class GELU(_Elementwise):
    """`torch.nn.GELU(approximate=...)`: 'none' (erf, exact) or 'tanh'. Note the defaults
    differ: torch's is 'none', `keras.ops.gelu`'s is the tanh approximation."""

    def __init__(self, approximate: str = "none", **kwargs):
        super().__init__(**kwargs)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def call(self, x):
        return ops.gelu(x, approximate=self.approximate == "tanh")

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


@serializable
class GLU(keras.layers.Layer):
    """`torch.nn.GLU`: halves `a, b` of `axis` (a Keras axis), `a * sigmoid(b)`."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, x):
        a, b = ops.split(x, 2, axis=self.axis)
        return a * ops.sigmoid(b)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        n = shape[self.axis]
        if n is not None:
            if n % 2:
                raise ValueError(f"GLU halves axis {self.axis}, whose size {n} is odd")
            shape[self.axis] = n // 2
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
