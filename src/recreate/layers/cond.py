"""torch.cond as a Keras layer: keras.ops.cond choosing between two branch models.

Each branch is a functional keras.Model converted from torch.cond's true_fn / false_fn; both
take the same operands (PyTorch layout) and return the same structure. The predicate is a
boolean tensor with one element. Under tf.function/XLA/TFLite this is a real conditional:
only the chosen branch runs.
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
