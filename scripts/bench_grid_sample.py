"""GridSample (bilinear) speed vs torch's grid_sample on the CPU, in one process.

    python scripts/bench_grid_sample.py

Input 1x64x128x128 with a 128x128 grid, and the same at batch 8. Keras runs in graph mode
(tf.function, and XLA), the way a converted model is served. Prints median times over
repeats and the ratio (target: Keras no worse than 2x torch).
"""

from __future__ import annotations

import statistics
import time

import recreate  # noqa: F401  (torch before keras)
import keras
import numpy as np
import tensorflow as tf
import torch
import torch.nn.functional as F

from recreate.layers.grid_sample import GridSample


def median_ms(fn, repeats: int = 15) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> int:
    rng = np.random.default_rng(0)
    layer = GridSample("bilinear", "zeros", False)
    print(f"{'case':<28}{'torch ms':>10}{'keras ms':>10}{'xla ms':>10}{'ratio':>8}")
    for n in (1, 8):
        x = rng.standard_normal((n, 64, 128, 128)).astype(np.float32)
        grid = rng.uniform(-1.1, 1.1, (n, 128, 128, 2)).astype(np.float32)
        tx, tg = torch.from_numpy(x), torch.from_numpy(grid)
        xc = tf.constant(np.moveaxis(x, 1, -1).copy())
        gc = tf.constant(grid)
        graph = tf.function(lambda a, b: layer(a, b))
        xla = tf.function(lambda a, b: layer(a, b), jit_compile=True)
        with torch.no_grad():
            t_torch = median_ms(lambda: F.grid_sample(tx, tg, align_corners=False))
        t_graph = median_ms(lambda: graph(xc, gc).numpy())
        t_xla = median_ms(lambda: xla(xc, gc).numpy())
        best = min(t_graph, t_xla)
        print(f"{f'bilinear {n}x64x128x128':<28}{t_torch:>10.1f}{t_graph:>10.1f}{t_xla:>10.1f}{best / t_torch:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
