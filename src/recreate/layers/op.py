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

from ._common import add, serializable
from .op_helpers import HELPERS as _FAMILY_HELPERS

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


def _repeat_batch(x, ref, shape):
    """Stack `x` (one sample's rows) once per sample of `ref`'s batch: shape (batch * k, ...)."""
    tiled = ops.broadcast_to(ops.expand_dims(x, 0), (ops.shape(ref)[0], *x.shape))
    return ops.reshape(tiled, (-1, *shape[1:]))


def _batch_arange(ref, shape, dtype):
    """The sample index along axis 0 (torch.arange(batch) viewed as (batch, 1, ...)),
    broadcast to `shape` whose axis 0 is `ref`'s (dynamic) batch size."""
    n = ops.shape(ref)[0]
    idx = ops.reshape(ops.arange(n, dtype=dtype), (-1, *([1] * (len(shape) - 1))))
    return ops.broadcast_to(idx, (n, *shape[1:]))


def _scaled_arange(ref, per_sample, extra, start, step, dtype):
    """torch.arange over a length that follows the batch: per_sample * batch + extra values
    from `start` by `step` (token indices of a flattened batch)."""
    n = ops.add(ops.multiply(ops.shape(ref)[0], per_sample), extra)
    idx = ops.arange(n, dtype="int64" if dtype == "int64" else "int32")
    return ops.add(ops.multiply(ops.cast(idx, dtype), ops.cast(step, dtype)), ops.cast(start, dtype))


def _expand_dynamic(x, ref, shape, dynamic):
    """broadcast_to(x, shape) where the axes in `dynamic` follow the batch: each takes x's
    run-time size, or `ref`'s batch size where x has size 1 there."""
    lead = len(shape) - len(x.shape)
    target = list(shape)
    for a in dynamic:
        i = a - lead
        if i >= 0 and x.shape[i] != 1:
            target[a] = ops.shape(x)[i]
        else:
            target[a] = ops.shape(ref)[0]
    return ops.broadcast_to(x, target)


def _chunk_axis(x, index, chunks, axis):
    """Part `index` of `chunks` equal parts of `x` along `axis`, sized at run time."""
    shape = ops.shape(x)
    parts = ops.reshape(x, (*[shape[i] for i in range(axis)], chunks, -1, *x.shape[axis + 1:]))
    return ops.take(parts, index, axis=axis)


def _roll(x, shift, axis=None):
    """keras.ops.roll as two static slices and a concatenation per axis: TFLite has no
    builtin ROLL (tf.roll needs the Flex delegate). Axes of unknown size use ops.roll."""
    if axis is None:
        return ops.roll(x, shift)
    shifts = list(shift) if isinstance(shift, (list, tuple)) else [shift]
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if len(shifts) == 1:
        shifts = shifts * len(axes)
    for s, a in zip(shifts, axes):
        a = a % len(x.shape)
        n = x.shape[a]
        if n is None:
            x = ops.roll(x, s, a)
            continue
        s = int(s) % n if n else 0
        if s:
            head = [slice(None)] * a
            x = ops.concatenate([x[(*head, slice(n - s, n))], x[(*head, slice(0, n - s))]], axis=a)
    return x


def _torch_floor_divide(x, y):
    return ops.floor(ops.divide(x, y))


def _torch_remainder(x, y):
    if "int" in str(getattr(x, "dtype", "")):
        return ops.mod(x, ops.cast(y, x.dtype))  # floor modulo, torch's sign convention
    return x - ops.floor(ops.divide(x, y)) * y


HELPERS = {
    "add": add,
    "getitem": _getitem,
    "broadcast_batch": _broadcast_batch,
    "repeat_batch": _repeat_batch,
    "chunk_axis": _chunk_axis,
    "expand_dynamic": _expand_dynamic,
    "batch_arange": _batch_arange,
    "scaled_arange": _scaled_arange,
    "torch_floor_divide": _torch_floor_divide,
    "torch_remainder": _torch_remainder,
    "roll": _roll,  # shadows keras.ops.roll: same semantics, TFLite builtins only
}


for _name, _fn in _FAMILY_HELPERS.items():  # the ATen op families' helpers (layers/op_helpers)
    HELPERS.setdefault(_name, _fn)


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

    def compute_output_spec(self, ref):
        # its own dtype, not the layer's compute dtype (integer index tables stay integers)
        return keras.KerasTensor(self.shape, dtype=self.dtype_name)

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape), "dtype_name": self.dtype_name}
