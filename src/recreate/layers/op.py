"""Serializable stand-ins for the tensor operations between registered modules.

`Op` calls one function from `keras.ops` (or from the small table of PyTorch-semantics
helpers below) with its tensor inputs placed into a fixed argument template. Only names
from those two places can be called, so a saved model stays loadable with safe_mode=True;
this is not a Lambda layer. `Constant` carries a tensor (a parameter or buffer used outside
a module, such as a class token) as a non-trainable weight.
"""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable

TENSOR = "__tensor__"


def _getitem(x, index):
    """x[index] with a JSON-able index: a list of [start, stop, step] slices, ints, None
    (new axis) and "..." (ellipsis)."""
    key = []
    for item in index:
        if isinstance(item, list):
            key.append(slice(*item))
        elif item == "...":
            key.append(Ellipsis)
        else:
            key.append(item)
    return x[tuple(key)]


def _broadcast_batch(x, ref, shape):
    """Broadcast `x` to `shape` whose axis 0 is the (dynamic) batch size of `ref`."""
    return ops.broadcast_to(x, (ops.shape(ref)[0], *shape[1:]))


def _torch_floor_divide(x, y):
    return ops.floor(ops.divide(x, y))


def _torch_remainder(x, y):
    return x - ops.floor(ops.divide(x, y)) * y


HELPERS = {
    "getitem": _getitem,
    "broadcast_batch": _broadcast_batch,
    "torch_floor_divide": _torch_floor_divide,
    "torch_remainder": _torch_remainder,
}


def _resolve(name: str):
    if name in HELPERS:
        return HELPERS[name]
    fn = getattr(ops, name, None)
    if fn is None or name.startswith("_"):
        raise ValueError(f"Op: {name!r} is neither a keras.ops function nor a recreate helper")
    return fn


def _fill(template, tensors):
    if isinstance(template, dict):
        if set(template) == {TENSOR}:
            return tensors[template[TENSOR]]
        return {k: _fill(v, tensors) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, tensors) for v in template]
    return template


@serializable
class Op(keras.layers.Layer):
    """Op("add", args=[{"__tensor__": 0}, 2.0]) computes keras.ops.add(inputs[0], 2.0)."""

    def __init__(self, fn: str, args=(), kwargs=None, **kw):
        super().__init__(**kw)
        _resolve(fn)
        self.fn = fn
        self.args = list(args)
        self.kwargs = dict(kwargs or {})

    def call(self, *tensors):
        f = _resolve(self.fn)
        return f(*_fill(self.args, list(tensors)), **_fill(self.kwargs, list(tensors)))

    def get_config(self):
        return {**super().get_config(), "fn": self.fn, "args": self.args, "kwargs": self.kwargs}


@serializable
class Constant(keras.layers.Layer):
    """A fixed tensor (filled at conversion). call(ref) returns it; `ref` only anchors the
    layer in the functional graph."""

    transfer_skip = True  # its value is set at conversion, not by transfer_weights

    def __init__(self, shape, dtype_name: str = "float32", **kw):
        super().__init__(**kw)
        self.shape = tuple(int(s) for s in shape)
        self.dtype_name = dtype_name

    def build(self, input_shape=None):
        self.value = self.add_weight(shape=self.shape, dtype=self.dtype_name, initializer="zeros",
                                     trainable=False, name="value")

    def call(self, ref):
        return ops.convert_to_tensor(self.value)

    def compute_output_shape(self, input_shape):
        return self.shape

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape), "dtype_name": self.dtype_name}
