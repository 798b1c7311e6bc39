"""Op helper tables by family, merged into recreate.layers.op.HELPERS (Keras only)."""

from . import elementwise, nn, reduce, shape

HELPERS = {**elementwise.HELPERS, **shape.HELPERS, **reduce.HELPERS, **nn.HELPERS}
