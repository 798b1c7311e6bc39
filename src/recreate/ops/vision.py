"""Op converters for torchvision's functional ops (optional dependency)."""

from __future__ import annotations

from .._backend import HAVE_TORCHVISION
from . import register_op

if HAVE_TORCHVISION:
    from torchvision.ops import stochastic_depth as _stochastic_depth

    @register_op(_stochastic_depth)
    def stochastic_depth(cx, x, p, mode, training=True):
        # Identity at inference, which is what is converted.
        return x
