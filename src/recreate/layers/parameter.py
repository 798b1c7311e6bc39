"""`Parameter`: a torch parameter or buffer used outside registered modules, kept as a Keras
variable that remembers its torch name, so a converted model is refilled from any checkpoint
of its architecture (`recreate.transfer_weights(state_dict, model)`) and can be trained."""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


@serializable
class Parameter(keras.layers.Layer):
    """Holds one tensor (PyTorch layout) named `torch_name` in the torch state dict.

    call(ref) returns it; `ref` only anchors the layer in the functional graph. Parameters
    are trainable, buffers are not."""

    def __init__(self, shape, dtype_name: str = "float32", torch_name: str = "", trainable: bool = True, **kw):
        super().__init__(trainable=trainable, **kw)
        self.shape = tuple(int(s) for s in shape)
        self.dtype_name = dtype_name
        self.torch_name = torch_name

    def build(self, input_shape=None):
        self.value = self.add_weight(shape=self.shape, dtype=self.dtype_name, initializer="zeros",
                                     trainable=self.trainable, name="value")

    def call(self, ref):
        return ops.convert_to_tensor(self.value)

    def compute_output_shape(self, input_shape):
        return self.shape

    def compute_output_spec(self, ref):
        return keras.KerasTensor(self.shape, dtype=self.dtype_name)

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape), "dtype_name": self.dtype_name,
                "torch_name": self.torch_name}
