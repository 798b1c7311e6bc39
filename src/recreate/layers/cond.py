"""torch.cond and torch.while_loop as Keras layers over converted subgraph models.

Cond: keras.ops.cond choosing between two branch models. Each branch is a functional keras.Model converted from torch.cond's true_fn / false_fn; both
take the same operands (PyTorch layout) and return the same structure. The predicate is a
boolean tensor with one element. Under tf.function/XLA/TFLite this is a real conditional:
only the chosen branch runs.

WhileLoop: keras.ops.while_loop over a condition model and a body model; the carried values
keep their shapes and dtypes (torch.while_loop requires it), the additional inputs are the
same every iteration (parameters and constants the body reads).
"""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


@serializable
class Cond(keras.layers.Layer):
    """call(pred, *operands) -> true_branch(operands) if pred else false_branch(operands).

    Example::

        y = Cond(true_model, false_model)(pred, x)
    """

    def __init__(self, true_branch, false_branch, **kw):
        super().__init__(**kw)
        if isinstance(true_branch, dict):
            true_branch = keras.saving.deserialize_keras_object(true_branch)
        if isinstance(false_branch, dict):
            false_branch = keras.saving.deserialize_keras_object(false_branch)
        self.true_branch = true_branch
        self.false_branch = false_branch

    def sublayers_for_transfer(self) -> list:
        """The two branch models (transfer_weights looks into them by layer name)."""
        return [self.true_branch, self.false_branch]

    def build(self, *shapes):
        self.built = True

    def call(self, pred, *operands):
        xs = list(operands)
        feed = xs[0] if len(xs) == 1 else xs
        p = ops.reshape(ops.cast(pred, "bool"), ())
        return ops.cond(p, lambda: self.true_branch(feed), lambda: self.false_branch(feed))

    def compute_output_spec(self, pred, *operands):
        xs = list(operands)
        return self.true_branch.compute_output_spec(xs[0] if len(xs) == 1 else xs)

    def get_config(self):
        return {**super().get_config(),
                "true_branch": keras.saving.serialize_keras_object(self.true_branch),
                "false_branch": keras.saving.serialize_keras_object(self.false_branch)}


@serializable
class WhileLoop(keras.layers.Layer):
    """call(*carried, *additional) -> the carried values once `cond_model` says stop.

    `cond_model([*carried, *additional])` returns a one-element boolean tensor and
    `body_model([*carried, *additional])` the next carried values, as torch.while_loop's
    cond_fn and body_fn. Under tf.function / TFLite this is a real loop (a While op).

    Example::

        i, y = WhileLoop(cond_model, body_model, num_carried=2)(i0, y0, weight)
    """

    def __init__(self, cond_model, body_model, num_carried: int, **kw):
        super().__init__(**kw)
        if isinstance(cond_model, dict):
            cond_model = keras.saving.deserialize_keras_object(cond_model)
        if isinstance(body_model, dict):
            body_model = keras.saving.deserialize_keras_object(body_model)
        self.cond_model = cond_model
        self.body_model = body_model
        self.num_carried = int(num_carried)

    def sublayers_for_transfer(self) -> list:
        return [self.cond_model, self.body_model]

    def build(self, *shapes):
        self.built = True

    @staticmethod
    def _feed(xs):
        return xs[0] if len(xs) == 1 else list(xs)

    def call(self, *inputs):
        carried, extra = list(inputs[:self.num_carried]), list(inputs[self.num_carried:])

        def cond(*state):
            return ops.reshape(ops.cast(self.cond_model(self._feed([*state, *extra])), "bool"), ())

        def body(*state):
            out = self.body_model(self._feed([*state, *extra]))
            out = list(out) if isinstance(out, (list, tuple)) else [out]
            # torch keeps each carried value's dtype; a body output may come out wider
            return tuple(ops.cast(o, s.dtype) for o, s in zip(out, state))

        out = ops.while_loop(cond, body, tuple(carried))
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        return out[0] if len(out) == 1 else out

    def compute_output_spec(self, *inputs):
        carried = [keras.KerasTensor(x.shape, dtype=x.dtype) for x in inputs[:self.num_carried]]
        return carried[0] if len(carried) == 1 else carried

    def get_config(self):
        return {**super().get_config(), "num_carried": self.num_carried,
                "cond_model": keras.saving.serialize_keras_object(self.cond_model),
                "body_model": keras.saving.serialize_keras_object(self.body_model)}
