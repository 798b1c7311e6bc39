"""Whole-model capture and build: torch.export -> core ATen graph -> Keras functional model.

`capture` exports the model with registered modules kept whole; `build` walks the graph and
converts each node (placeholders, module calls, ATen ops) into Keras layers.
"""

from .build import convert_exported

__all__ = ["convert_exported"]
