"""Weight-transfer throughput and extra peak memory on a large model.

    python scripts/bench_transfer.py            # ~0.8 GB of float32 weights (default)
    python scripts/bench_transfer.py --gb 0.2

Targets (DESIGN.md): >= 1 GB/s, extra peak memory <= 0.5x the weights. Also times the naive
way (transpose everything, then keras set_weights) in the same process for a ratio. Memory
is the process's resident set sampled every millisecond during each call, minus the value
just before it.
"""

from __future__ import annotations

import argparse
import threading
import time

import recreate  # noqa: F401  (torch before keras)
import keras
import numpy as np
import torch


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakRSS:
    def __enter__(self):
        self.base = rss()
        self.peak = self.base
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, rss())

    @property
    def extra(self) -> int:
        return self.peak - self.base


def build(width: int, depth: int):
    torch.manual_seed(0)
    tm = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(depth)]).eval()
    inp = keras.Input((width,))
    x = inp
    for i in range(depth):
        x = keras.layers.Dense(width, name=str(i))(x)
    return tm, keras.Model(inp, x)


def naive(tm, km):
    ws = []
    for i, m in enumerate(tm):
        ws += [m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()]
    km.set_weights(ws)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=0.8)
    ap.add_argument("--width", type=int, default=4096)
    args = ap.parse_args(argv)
    depth = max(1, round(args.gb * 1e9 / (4 * args.width * (args.width + 1))))
    tm, km = build(args.width, depth)
    nbytes = sum(p.numel() * 4 for p in tm.parameters())
    print(f"model: {depth} x Linear({args.width}, {args.width}) = {nbytes / 1e9:.2f} GB float32")
    recreate.transfer_weights(tm, km)  # warm-up (TF kernels, first-touch of variables)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        report = recreate.transfer_weights(tm, km)
        dt = time.perf_counter() - t0
    with PeakRSS() as mem_naive:
        t0 = time.perf_counter()
        naive(tm, km)
        dt_naive = time.perf_counter() - t0
    x = np.random.default_rng(0).standard_normal((2, args.width)).astype("float32")
    np.testing.assert_allclose(km(x).numpy(), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-3, atol=1e-3)
    print(f"recreate.transfer_weights: {dt:.3f} s = {nbytes / dt / 1e9:.2f} GB/s, extra peak memory "
          f"{mem.extra / 1e9:.2f} GB = {mem.extra / nbytes:.2f}x weights ({report.tensors} tensors)")
    print(f"naive transpose-all + set_weights: {dt_naive:.3f} s = {nbytes / dt_naive / 1e9:.2f} GB/s, "
          f"extra peak {mem_naive.extra / 1e9:.2f} GB = {mem_naive.extra / nbytes:.2f}x")
    ok = nbytes / dt >= 1e9 and mem.extra <= 0.5 * nbytes
    print("targets (>= 1 GB/s, <= 0.5x):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
