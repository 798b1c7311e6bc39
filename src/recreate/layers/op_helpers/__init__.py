"""Op helper tables by family, merged into recreate.layers.op.HELPERS (Keras only)."""

from . import complex_pairs, elementwise, nn, reduce, shape

HELPERS = {**complex_pairs.HELPERS, **elementwise.HELPERS, **shape.HELPERS, **reduce.HELPERS, **nn.HELPERS}
