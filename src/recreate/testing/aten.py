"""Test one ATen op converter: wrap a torch call in a module, capture it with torch.export,
convert, and compare numerically against torch.

    from recreate.testing.aten import check_op
    check_op(torch.add, torch.randn(3, 4), torch.randn(4), alpha=2)

Also `opinfo_samples(name)`: PyTorch's own sample inputs for an op (OpInfo, the set its
backends and its ONNX exporter are tested against), float32 on the CPU.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class OpCheck:
    keras_model: object
    aten_ops: set  # the ATen ops the captured graph holds (to assert the op under test ran)
    error: float


def _tensor_leaves(x, out):
    import torch

    if isinstance(x, torch.Tensor):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for e in x:
            _tensor_leaves(e, out)
    elif isinstance(x, dict):
        for e in x.values():
            _tensor_leaves(e, out)
    return out


def _replace(x, it):
    import torch

    if isinstance(x, torch.Tensor):
        return next(it)
    if isinstance(x, (list, tuple)) and not isinstance(x, torch.Size):
        return type(x)(_replace(e, it) for e in x)
    if isinstance(x, dict):
        return {k: _replace(e, it) for k, e in x.items()}
    return x


def module_for(fn, args, kwargs):
    """A module whose forward(*tensors) calls fn with `args`/`kwargs`, their tensors being
    the forward inputs (in order) and everything else fixed."""
    import torch

    class Call(torch.nn.Module):
        def forward(self, *tensors):
            it = iter(tensors)
            a = _replace(args, it)
            k = _replace(kwargs, it)
            return fn(*a, **k)

    return Call().eval()


def _flat(out):
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    return []


def compare(got: np.ndarray, ref: np.ndarray, tolerance: float, what: str = "output") -> float:
    """The parity measure, NaN-aware: NaN must be NaN on both sides (and an output that is
    NaN everywhere proves nothing), infinities must agree, integers and bools exactly."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: Keras shape {got.shape}, torch {ref.shape}"
    if ref.dtype == bool or np.issubdtype(ref.dtype, np.integer):
        bad = int(np.sum(got.astype(ref.dtype) != ref))
        assert bad == 0, f"{what}: {bad} of {ref.size} values differ (exact dtype {ref.dtype})"
        return 0.0
    ref = ref.astype(np.float64)
    got = got.astype(np.float64)
    nan_r, nan_g = np.isnan(ref), np.isnan(got)
    assert (nan_r == nan_g).all(), f"{what}: NaN at {int((nan_r != nan_g).sum())} positions on one side only"
    if ref.size:
        assert not nan_r.all(), f"{what}: every value is NaN: nothing is compared"
    inf_r = np.isinf(ref)
    assert (np.isinf(got) == inf_r).all() and (got[inf_r] == ref[inf_r]).all(), f"{what}: infinities differ"
    ok = ~(nan_r | inf_r)
    if not ok.any():
        return 0.0
    scale = max(1.0, float(np.abs(ref[ok]).max()))
    err = float(np.abs(got[ok] - ref[ok]).max()) / scale
    assert err <= tolerance, f"{what}: error {err:.3g} > {tolerance:g} (max|keras - torch| / max(1, max|torch|))"
    return err


def check_op(fn, *args, tolerance: float = 1e-5, dynamic_batch: bool = False, **kwargs) -> OpCheck:
    """Convert `fn(*args, **kwargs)` (tensors among the arguments become the model's inputs)
    through torch.export, lowered to core ATen, and assert the Keras model matches torch."""
    import torch

    import keras

    from ..tracer import capture, convert_exported
    from ..transfer import to_numpy

    tensors = _tensor_leaves((args, kwargs), [])
    module = module_for(fn, args, kwargs)
    with torch.no_grad():
        ref = [to_numpy(t) for t in _flat(module(*[t.clone() for t in tensors]))]
    km = convert_exported(module, [t.clone() for t in tensors], "torch", dynamic_batch=dynamic_batch, decompose=True)
    ep, _, _ = capture.export(module, tuple(t.clone() for t in tensors), {}, dynamic_batch=dynamic_batch, decompose=True)
    ops = {n.target for n in ep.graph.nodes if n.op == "call_function"}
    feeds = [to_numpy(t) for t in tensors]
    out = km(feeds[0] if len(feeds) == 1 else feeds, training=False)
    got = [np.asarray(keras.ops.convert_to_numpy(o)) for o in (out if isinstance(out, (list, tuple)) else [out])]
    assert len(got) == len(ref), f"{len(got)} Keras outputs vs {len(ref)} torch outputs"
    err = max([compare(g, r, tolerance, f"output {i}") for i, (g, r) in enumerate(zip(got, ref))] or [0.0])
    return OpCheck(km, ops, err)


def opinfo_samples(name: str, *, variant: str = "", limit: int | None = None):
    """(OpInfo, [SampleInput]) for the OpInfo entry `name` (e.g. "add", "nn.functional.conv2d"),
    float32 on the CPU, without gradients."""
    import torch
    from torch.testing._internal.common_methods_invocations import op_db

    infos = [o for o in op_db if o.name == name and o.variant_test_name == variant]
    if not infos:
        raise KeyError(f"no OpInfo named {name!r} (variant {variant!r})")
    info = infos[0]
    samples = list(info.sample_inputs("cpu", torch.float32, requires_grad=False))
    return info, samples[:limit] if limit else samples
