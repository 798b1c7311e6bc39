"""Bilinear upsampling speed: recreate.layers.Interpolate (graph mode) vs torch's
F.interpolate, on CPU, in one process.

    python scripts/bench_interpolate.py [--repeats 20] [--xla]

Shapes (PyTorch layout): 1x64x128x128 -> 256x256 and the same with batch 8 (a power-of-two
ratio: Interpolate runs TF's fused ResizeBilinear there, see its `_tf_resize_is_exact`), and
-> 200x200 (any other ratio: Interpolate's own gather tables). Keras is timed inside
`tf.function` (the documented fast path), on channels-last input; torch on its usual NCHW
input. Each timing is the median of `--repeats` calls after two warm-up calls, with the two
frameworks alternating so that machine noise hits both alike. Also prints the max error
against torch.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402  (before tensorflow: see recreate._backend)
import torch.nn.functional as F  # noqa: E402

from recreate.layers.interpolate import Interpolate  # noqa: E402  (imports keras after torch)

CASES = [((1, 64, 128, 128), (256, 256)), ((8, 64, 128, 128), (256, 256)), ((1, 64, 128, 128), (200, 200))]


def _median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def bench(shape, size, repeats, xla):
    import tensorflow as tf

    x = torch.randn(*shape)
    x_cl = tf.constant(np.moveaxis(x.numpy(), 1, -1))
    layer = Interpolate(size=size, mode="bilinear", align_corners=False)
    graph = tf.function(layer)
    fns = {"torch": lambda: F.interpolate(x, size=size, mode="bilinear", align_corners=False),
           "keras": lambda: graph(x_cl).numpy()}
    if xla:
        jit = tf.function(layer, jit_compile=True)
        fns["keras+xla"] = lambda: jit(x_cl).numpy()
    with torch.no_grad():
        for fn in fns.values():  # warm up (tracing, allocator)
            fn()
            fn()
        times = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                times[k].append(_median_ms(fn, 1))
        ref = np.moveaxis(fns["torch"]().numpy(), 1, -1)
    err = float(np.abs(graph(x_cl).numpy() - ref).max())
    med = {k: float(np.median(v)) for k, v in times.items()}
    path = "tf-resize" if layer._tf_resize_is_exact(x_cl, list(shape[2:]), list(size), [None, None]) else "gather"
    line = f"{tuple(shape)} -> {size}  [{path}]  torch {med['torch']:.2f} ms  keras(tf.function) {med['keras']:.2f} ms"
    if xla:
        line += f"  keras(XLA) {med['keras+xla']:.2f} ms"
    line += f"  ratio keras/torch {med['keras'] / med['torch']:.2f}  max|err| {err:.2e}"
    print(line, flush=True)
    return med


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--xla", action="store_true", help="also time tf.function(jit_compile=True)")
    args = p.parse_args(argv)
    import tensorflow as tf

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), tensorflow {tf.__version__}, "
          f"{os.cpu_count()} CPUs")
    for shape, size in CASES:
        bench(shape, size, args.repeats, args.xla)


if __name__ == "__main__":
    main()
