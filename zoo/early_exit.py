"""Dynamic control flow: an early-exit classifier with a data-dependent refinement loop.

    python zoo/early_exit.py --out out/                  # random weights, every path verified
    python zoo/early_exit.py --max-steps 6 --weights early_exit.safetensors --out out/

torch's forward branches on tensor values in Python: it exits after the first head when the
whole batch is confident (min over samples of max softmax > threshold), otherwise it refines
the features `while err > tol and steps < max_steps`, halving err each step from
err_0 = mean|x|, so the step count depends on the input. Keras has no Python branches on
values in a graph: the serializable EarlyExit layer says the same with keras.ops.cond and
keras.ops.while_loop, so it runs eagerly, under tf.function and in a saved .keras model.
Outputs: logits (N, C) and the steps taken, per sample (N,) float.
Verified on inputs chosen to take the exit branch and every loop count 0..max_steps.
"""

from __future__ import annotations

import argparse
import sys

import recreate  # torch before keras/tensorflow (the torch-first isort section)
import recreate.report
import recreate.testing
import torch
from recreate.transforms import TRANSPOSE
from torch import nn

import keras
from keras import layers as L
from keras import ops


class EarlyExitNet(nn.Module):
    def __init__(self, d=8, hidden=16, classes=4, threshold=0.6, tol=0.05, max_steps=4):
        super().__init__()
        self.stem, self.head = nn.Linear(d, hidden), nn.Linear(hidden, classes)
        self.refine, self.deep_head = nn.Linear(hidden, hidden), nn.Linear(hidden, classes)
        self.threshold, self.tol, self.max_steps = threshold, tol, max_steps

    def forward(self, x):
        z = torch.tanh(self.stem(x))
        logits = self.head(z)
        if logits.softmax(-1).amax(-1).min() > self.threshold:
            return logits, torch.zeros(x.shape[0])
        err, steps = x.abs().mean(), 0
        while err > self.tol and steps < self.max_steps:
            z = 0.5 * z + torch.tanh(self.refine(z))
            err, steps = err * 0.5, steps + 1
        return self.deep_head(z), torch.full((x.shape[0],), float(steps))


@keras.saving.register_keras_serializable(package="zoo_early_exit")
class EarlyExit(L.Layer):
    """EarlyExitNet.forward with keras.ops.cond / while_loop; sublayers carry torch's names."""

    def __init__(self, hidden, classes, threshold, tol, max_steps, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.classes = hidden, classes
        self.threshold, self.tol, self.max_steps = threshold, tol, max_steps
        self.stem = L.Dense(hidden, activation="tanh", name="stem")
        self.head = L.Dense(classes, name="head")
        self.refine = L.Dense(hidden, activation="tanh", name="refine")
        self.deep_head = L.Dense(classes, name="deep_head")

    def build(self, input_shape):
        self.stem.build(input_shape)
        for layer in (self.head, self.refine, self.deep_head):
            layer.build((None, self.hidden))

    def call(self, x):
        z = self.stem(x)
        logits = self.head(z)
        confident = ops.min(ops.max(ops.softmax(logits, axis=-1), axis=-1)) > self.threshold
        n = ops.shape(x)[0]

        def exit_now():
            return logits, ops.zeros((n,), dtype=logits.dtype)

        def refine():
            def keep_going(z, err, steps):
                return ops.logical_and(err > self.tol, steps < self.max_steps)

            def step(z, err, steps):
                return 0.5 * z + self.refine(z), err * 0.5, steps + 1

            z_out, _, steps = ops.while_loop(keep_going, step, (z, ops.mean(ops.abs(x)), ops.convert_to_tensor(0)))
            return self.deep_head(z_out), ops.full((n,), ops.cast(steps, logits.dtype))

        return ops.cond(confident, exit_now, refine)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.classes), (input_shape[0],)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "classes": self.classes,
                "threshold": self.threshold, "tol": self.tol, "max_steps": self.max_steps}


# The EarlyExit layer holds torch's four Linear modules as Dense sublayers of the same names.
recreate.register_rules(EarlyExitNet, EarlyExit, recreate.WeightRules(tuple(
    m for name in ("stem", "head", "refine", "deep_head")
    for m in (recreate.Map(f"{name}/kernel", f"{name}.weight", TRANSPOSE), recreate.Map(f"{name}/bias", f"{name}.bias")))))


def build(weights: str | None = None, max_steps: int = 4, d: int = 8, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    tm = EarlyExitNet(d=d, max_steps=max_steps)
    if weights:
        tm.load_state_dict(recreate.load_state_dict(weights))
    else:
        recreate.testing.randomize_(tm, seed)
    inp = keras.Input((d,))
    out = EarlyExit(16, 4, tm.threshold, tm.tol, max_steps, name="early_exit")(inp)
    km = keras.Model(inp, list(out), name="early_exit")
    return tm.eval(), km, recreate.transfer_weights(tm, km, mapping={"early_exit": ""})  # "" = the root


def path_inputs(tm, d: int, seed: int = 1234) -> dict[int, torch.Tensor]:
    """One batch per path: -1 = early exit, k = k refinement steps. err_0 is kept a factor
    1.2 away from every tol * 2**k, so float rounding cannot flip a loop test."""
    g = torch.Generator().manual_seed(seed)
    found: dict[int, torch.Tensor] = {}
    for trial in range(400):
        x = torch.randn(2, d, generator=g) * 2.0 ** (trial % 12 - 6)
        err0 = float(x.abs().mean())
        ratio = torch.log2(torch.tensor(err0 / tm.tol))
        if abs(float(ratio - ratio.round())) < 0.27:
            continue
        with torch.no_grad():
            z = torch.tanh(tm.stem(x))
            conf = float(tm.head(z).softmax(-1).amax(-1).min())
            _, steps = tm(x)
        if abs(conf - tm.threshold) < 1e-3:
            continue
        key = -1 if conf > tm.threshold else int(steps[0])
        found.setdefault(key, x)
    return dict(sorted(found.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=4)
    recreate.report.add_arguments(ap)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.weights, args.max_steps)
    paths = path_inputs(tm, 8)
    print("paths found (-1 = early exit, k = refinement steps):", sorted(paths))
    missing = sorted({-1, *range(args.max_steps + 1)} - set(paths))
    if missing:
        print(f"FAIL: found no input taking path(s) {missing}")
        return 1
    batches = list(paths.values())[::-1]  # most steps first: the informative check sees steps != 0
    rc = recreate.report.prove_and_save("early_exit", tm, km, transfer, batches, out=args.out,
                                        tolerance=args.tolerance, layers=False)
    import tensorflow as tf

    graph = tf.function(lambda x: km(x, training=False))
    for key, x in paths.items():
        t_logits, t_steps = (o.detach().numpy() for o in tm(x))
        k_logits, k_steps = (o.numpy() for o in graph(tf.constant(x.numpy())))
        ok = (k_steps == t_steps).all() and abs(k_logits - t_logits).max() <= args.tolerance * max(1, abs(t_logits).max())
        print(f"tf.function path {key:2d}: steps {k_steps[0]:.0f} (torch {t_steps[0]:.0f}) {'ok' if ok else 'MISMATCH'}")
        rc = rc or int(not ok)
    # One trace serves every path: the branch and the loop count are decided inside the graph.
    print(f"tf.function traced {graph.experimental_get_tracing_count()} time(s) for {len(paths)} paths")
    return rc


if __name__ == "__main__":
    sys.exit(main())
