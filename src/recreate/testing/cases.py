"""Building blocks for the strategies every registry entry declares.

A strategy yields a `Case`: an eval-mode torch module with random (never default) weights and
statistics, and random inputs in PyTorch layout. Hypothesis chooses constructor arguments and
shapes; numeric values come from a seeded generator, so every failure replays exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

SEEDS = st.integers(min_value=0, max_value=2**31 - 1)


@dataclass
class Case:
    """An eval-mode module, its positional inputs (numpy, PyTorch layout) and forward()
    keyword arguments (non-tensor values are fixed at conversion; arrays become inputs)."""

    module: object
    inputs: tuple
    kwargs: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(x.shape)}:{x.dtype}" for x in self.inputs)
        kw = "".join(
            f", {k}={(tuple(v.shape), str(v.dtype)) if hasattr(v, 'shape') else v!r}" for k, v in self.kwargs.items()
        )
        return f"Case({self.module!r}, inputs=[{shapes}]{kw})"


def randomize_(module, seed: int = 0):
    """Give every parameter and floating buffer random values, in place, and return the
    module in eval mode. Zero-initialised weights and default batch-norm statistics (mean 0,
    var 1) make a converter that ignores them look right; random values do not."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * _scale(p))
        for name, b in module.named_buffers():
            if not b.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if "var" in leaf:
                b.copy_(torch.rand(b.shape, generator=g, dtype=torch.float64).to(b.dtype) * 1.5 + 0.25)
            else:
                b.copy_(torch.randn(b.shape, generator=g, dtype=torch.float64).to(b.dtype) * 0.5)
    return module.eval()


def _scale(p) -> float:
    # Keep activations O(1) whatever the fan-in, so parity is measured where it matters.
    fan_in = int(np.prod(p.shape[1:])) if p.dim() > 1 else 1
    return 1.0 / max(1.0, fan_in) ** 0.5


def random_inputs(seed: int, *shapes, dtype=np.float32, scale: float = 1.0) -> tuple:
    rng = np.random.default_rng(int(seed))
    return tuple((rng.standard_normal(s) * scale).astype(dtype) for s in shapes)


def make_case(draw, module, *shapes, scale: float = 1.0, kwargs: dict | None = None) -> Case:
    """Randomise `module` and draw float32 inputs of `shapes` (PyTorch layout) for a Case."""
    seed = draw(SEEDS)
    randomize_(module, seed)
    return Case(module, random_inputs(seed + 1, *shapes, scale=scale), dict(kwargs or {}))


def calibrate_batchnorm_(model, *inputs):
    """Set every batch norm's running statistics to those of one forward pass on `inputs`
    (random data is fine), then return the model in eval mode. Default statistics (mean 0,
    var 1) hide a converter that ignores them; calibrated ones keep activations realistic
    through a deep network, unlike independent random statistics."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the one batch = that batch's statistics
        m.train()
    with torch.no_grad():
        model(*inputs)
    for m, (mom, _) in zip(bns, saved):
        m.momentum = mom
    return model.eval()


def assert_informative(model, *input_batches, min_abs: float = 1e-3, kwargs: dict | None = None):
    """Fail when a reference model cannot tell a converter's mistakes apart: its output is
    near zero, or does not change when the input does (zero-initialised heads, default
    statistics, models that ignore their input). Give two or more different input batches;
    `kwargs` go to every forward() call."""
    import torch

    from ..convert import flatten_outputs

    with torch.no_grad():
        outs = [[o.detach().double() for o in flatten_outputs(model(*_tuple(b), **(kwargs or {})))] for b in input_batches]
    for i, first in enumerate(outs[0]):
        peak = float(first.abs().max()) if first.numel() else 0.0
        if peak < min_abs:
            raise AssertionError(f"reference output {i} is near zero (max |y| = {peak:.3g}): randomise zero-initialised weights")
        if len(outs) > 1 and all(o[i].shape == first.shape and torch.allclose(o[i], first, atol=1e-6 * max(1.0, peak)) for o in outs[1:]):
            raise AssertionError(f"reference output {i} does not change with the input: parity on it proves nothing")


def _tuple(b):
    return tuple(b) if isinstance(b, (tuple, list)) else (b,)
