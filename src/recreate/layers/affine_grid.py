"""torch.nn.functional.affine_grid: sampling grids for GridSample from affine matrices."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ._common import serializable


def base_coordinates(steps: int, align_corners: bool) -> np.ndarray:
    """torch's linspace_from_neg_one: [-1, 1] over `steps` points, pulled in to pixel centers
    when not align_corners; a single step is 0."""
    if steps <= 1:
        return np.zeros((max(steps, 0),), np.float32)
    r = np.linspace(-1.0, 1.0, steps, dtype=np.float32)
    if not align_corners:
        r = r * np.float32((steps - 1) / steps)
    return r


@serializable
class AffineGrid(keras.layers.Layer):
    """`F.affine_grid(theta, size, align_corners)` for a static `size`.

    `size` is torch's (N, C, H, W) or (N, C, D, H, W); N and C are not used (the batch comes
    from theta). call(theta): theta (N, 2, 3) or (N, 3, 4). Returns the grid in PyTorch's
    layout (N, H, W, 2) / (N, D, H, W, 3), ready for GridSample.
    """

    def __init__(self, size, align_corners: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(s) for s in size)
        if len(self.size) not in (4, 5):
            raise ValueError(f"size must be (N, C, H, W) or (N, C, D, H, W), got {self.size}")
        self.align_corners = bool(align_corners)

    def _base(self) -> np.ndarray:
        spatial = self.size[2:]
        axes = [base_coordinates(s, self.align_corners) for s in spatial]
        mesh = np.meshgrid(*axes, indexing="ij")  # (D,) H, W
        # (x, y[, z], 1): x runs along W (the last spatial axis).
        comps = [mesh[-1 - i] for i in range(len(spatial))] + [np.ones_like(mesh[0])]
        return np.stack(comps, axis=-1).reshape(-1, len(spatial) + 1).astype(np.float32)

    def compute_output_shape(self, theta_shape):
        return (theta_shape[0], *self.size[2:], len(self.size) - 2)

    def call(self, theta):
        d = len(self.size) - 2
        base = ops.convert_to_tensor(self._base(), dtype=theta.dtype)  # (P, d+1)
        # grid[n, p, i] = sum_j base[p, j] * theta[n, i, j]: a batched matmul (the einsum form
        # lowers to a TFLite graph whose dynamic batch overflows at allocation)
        grid = ops.matmul(base[None], ops.transpose(theta, (0, 2, 1)))
        return ops.reshape(grid, (-1, *self.size[2:], d))

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "align_corners": self.align_corners}
