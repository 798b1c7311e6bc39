"""Op converters for sampling: F.grid_sample and F.affine_grid (spatial transformers,
optical-flow warps) onto recreate.layers.GridSample / AffineGrid."""

from __future__ import annotations

import torch.nn.functional as F

from ..layers.affine_grid import AffineGrid
from ..layers.grid_sample import GridSample
from ..trace import channels_last, identity
from . import cases as C
from . import register_op


@register_op(F.grid_sample, cases=C.custom(C.grid_sample_build))
def grid_sample(cx, x, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    x = cx.to(x, channels_last(x.rank))
    grid = cx.torch(grid)  # (N, *out, d) is already "channels-last" in torch
    out_rank = len(cx.out_shape)
    return cx.layer(GridSample(mode, padding_mode, bool(align_corners)), [x, grid], channels_last(out_rank))


@register_op(F.affine_grid, cases=C.custom(C.affine_grid_build))
def affine_grid(cx, theta, size, align_corners=None):
    theta = cx.torch(theta)
    return cx.layer(AffineGrid(tuple(int(s) for s in size), bool(align_corners)), [theta],
                    identity(len(cx.out_shape)))
