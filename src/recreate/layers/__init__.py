"""Keras layers with PyTorch semantics that stock Keras lacks or gets subtly wrong.

Keras only: importing this package never imports torch, so converted models load and serve
in a TensorFlow-only image (`keras.saving.load_model(path, safe_mode=True)` after
`import recreate`).
"""

from .adaptive_pool import AdaptivePooling
from .affine_grid import AffineGrid
from .batch_stat_norm import BatchStatNormalization
from .flatten import Flatten
from .grid_sample import GridSample
from .pad import Pad
from .subsample import Subsample

__all__ = ["AdaptivePooling", "AffineGrid", "BatchStatNormalization", "Flatten", "GridSample", "Pad", "Subsample"]
