"""Every registered torch.nn converter on PyTorch's own ModuleInfo samples
(torch.testing._internal.common_modules.module_db): each sample's module is built from its
constructor input, given random weights, put in eval mode, converted with the sample's
forward input and compared with torch, NaN-aware, within the entry's tolerance.

A comparison that proves nothing fails instead of passing: an all-NaN or empty reference,
or outputs that stay the same when the input changes (the sample is run a second time on
perturbed inputs, through the same Keras model). Samples that cannot be compared are listed
in the tables below, with the reason; nothing is skipped silently.

The default run checks the first `FAST_SAMPLES` samples of each module type and the
regression samples in `ALWAYS_RUN`; `pytest -m slow tests/test_module_db.py` runs the rest,
`-m "slow or not slow"` everything. Lazy modules (LazyConv*) are run: a first forward
materializes them into the module they become.
"""

from __future__ import annotations

import re

import recreate  # noqa: F401  (first: torch before tensorflow)
import torch
from recreate import registry
from recreate.convert import bind_leading_input, flatten_outputs, is_unbatched
from recreate.testing import randomize_
from recreate.testing.parity import parity_error

import numpy as np
import pytest

common_modules = pytest.importorskip("torch.testing._internal.common_modules")

#: Module types not run at all: module type name -> reason. Losses are added below.
EXCLUDED_TYPES: dict[str, str] = {
    "FractionalMaxPool2d": "random op: pooling regions are drawn at random on every call",
    "FractionalMaxPool3d": "random op: pooling regions are drawn at random on every call",
}
#: Loss modules are training-only: not registered, no inference converter.
LOSS = "training-only (a loss): no inference converter"

#: Samples not compared: (module type regex, sample id regex) -> reason. The sample id is
#: "<index>:<ModuleInput.desc>:ctor<args><kwargs>:fwd<args><kwargs>", tensors shown as
#: dtype[shape] (see `_sample_id`).
EXCLUDED_SAMPLES: dict[tuple[str, str], str] = {
    # Only float32 samples are requested; this keeps a complex one out should one appear.
    (".*", r".*complex.*"): "complex dtype: Keras has no complex tensors",
    (".*", r".*:fwd.*\[([^\]]*, )?0[,\]].*"): "zero-size input: the output is empty, nothing to compare",
    ("Softmax|LogSoftmax|Softmin", r".*:fwd\(float32\[\]\).*"):
        "softmax of a scalar is the constant 1 (log: 0): the output does not depend on the "
        "input (the converter refuses a rank-0 input: no axis for Keras's batch)",
}

#: Inputs changed before use, where the sample's own would make the comparison vacuous:
#: (module type regex, sample id regex) -> (function on each floating input tensor, why).
INPUT_FIXES: dict[tuple[str, str], tuple] = {
    ("LPPool.d", r".*:ctor\(1\.5,.*"): (torch.abs, "a fractional power of a negative input is NaN: "
                                                 "every output of the sample is NaN"),
}

#: Samples per module type in the default (fast) run; `pytest -m slow` runs the rest.
FAST_SAMPLES = 2
#: Samples also in the default run: the regression cases of bugs these samples found.
#: (module type regex, sample id regex) -> the bug.
ALWAYS_RUN: dict[tuple[str, str], str] = {
    (".*", r".*:fwd\(float32\[\]\).*"): "a scalar input had no axis for Keras's batch",
    ("Linear|Bilinear", r".*no_batch_dim.*"): "one feature vector (unbatched) was refused",
    ("Linear", r"0::.*"): "the input given by keyword (input=x) was not the layer's input",
    ("RNNCell|LSTMCell|GRUCell", ".*"): "unbatched cell inputs were refused",
    ("RNN|LSTM|GRU", r".*batch_first=True.*bidirectional=True.*:fwd\(float32\[\d+, \d+\],.*"): "unbatched sequences (with states) were refused",
    ("LPPool2d", r".*:ctor\(1\.5,.*"): "all-NaN reference (fractional power of negatives)",
}


def _summary(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"{str(x.dtype).replace('torch.', '')}{list(x.shape)}"
    if isinstance(x, torch.nn.Module):
        return type(x).__name__
    if isinstance(x, (tuple, list)):
        return "(" + ",".join(_summary(a) for a in x) + ")"
    if isinstance(x, dict):
        return "{" + ",".join(f"{k}={_summary(v)}" for k, v in x.items()) + "}"
    return repr(x)


_SAMPLES: dict[int, list] = {}


def _samples(mi) -> list:
    key = id(mi)
    if key not in _SAMPLES:
        with torch.random.fork_rng():  # the same samples whatever ran before (xdist workers)
            torch.manual_seed(0)
            _SAMPLES[key] = mi.module_inputs_func(mi, device="cpu", dtype=torch.float32,
                                                  requires_grad=False, training=False)
    return _SAMPLES[key]


def _sample_id(i, sample) -> str:
    ci, fi = sample.constructor_input, sample.forward_input
    return (f"{i}:{sample.desc}:ctor{_summary(ci.args)}{_summary(ci.kwargs)}"
            f":fwd{_summary(fi.args)}{_summary(fi.kwargs)}")


def type_exclusion(mi) -> str | None:
    """Why a whole module type is not run (None: it is)."""
    name = mi.module_cls.__name__
    if name in EXCLUDED_TYPES:
        return EXCLUDED_TYPES[name]
    if name.endswith("Loss"):
        return LOSS
    if registry.find_entry(mi.module_cls) is None:
        return "no converter registered"
    return None


def _match(table: dict, name: str, sample_id: str):
    for (type_pat, sample_pat), value in table.items():
        if re.fullmatch(type_pat, name) and re.fullmatch(sample_pat, sample_id):
            return value
    return None


def _params(fast: bool = True):
    out = []
    for mi in common_modules.module_db:
        name = mi.module_cls.__name__
        reason = type_exclusion(mi)
        if reason is not None:  # one visible skip per type; its samples are not even generated
            out.append(pytest.param(mi, -1, id=f"{name}-excluded"))
            continue
        for i, s in enumerate(_samples(mi)):
            sid = _sample_id(i, s)
            fast_one = i < FAST_SAMPLES or _match(ALWAYS_RUN, name, sid) is not None
            marks = [] if (not fast or fast_one) else [pytest.mark.slow]
            out.append(pytest.param(mi, i, id=f"{name}-{sid}"[:150], marks=marks))
    return out


def _copy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, tuple):
        return tuple(_copy(a) for a in x)
    if isinstance(x, list):
        return [_copy(a) for a in x]
    if isinstance(x, dict):
        return {k: _copy(v) for k, v in x.items()}
    return x


#: Perturbations tried in turn (scale of the flipped sample, scale of the noise added): a
#: clamp, a shrink or a ReLU whose sample sits on one side of its kink (a single scalar)
#: still sees a different output with one of them.
PERTURBATIONS = ((-0.5, 0.25), (-3.0, 0.25), (4.0, 1.0))


def _perturb(x, g, flip: float, noise: float):
    """A different input of the same shape and dtype (for the does-it-depend-on-the-input
    check): floats flipped, scaled and jittered, integer indices rotated, masks kept."""
    if isinstance(x, torch.Tensor):
        if x.is_floating_point():
            return flip * x + noise * torch.randn(x.shape, generator=g, dtype=x.dtype)
        if x.dtype == torch.bool or x.numel() < 2:
            return x.clone()
        return x.flatten().roll(1).reshape(x.shape)
    if isinstance(x, tuple):
        return tuple(_perturb(a, g, flip, noise) for a in x)
    if isinstance(x, dict):
        return {k: _perturb(v, g, flip, noise) for k, v in x.items()}
    return x


def _differ(refs0, refs1) -> bool:
    return any(r0.shape != r1.shape or not np.array_equal(r0, r1, equal_nan=True)
               for r0, r1 in zip(refs0, refs1))


def _flat_inputs(module, args, kwargs) -> tuple[list, dict, bool]:
    """The Keras model's inputs as documented by recreate.convert: the positional tensors
    (nested tuples flattened, a leading input given by keyword included), with a batch axis
    where the module was given its unbatched form, then the tensor keyword arguments."""
    args, kwargs = bind_leading_input(module, tuple(args), kwargs)
    flat = [np.asarray(t) for t in flatten_outputs([a for a in args if a is not None])]
    unbatched = is_unbatched(module, [t.shape for t in flat])
    if unbatched:
        flat = [t[None] for t in flat]
    flat += [np.asarray(v) for v in (kwargs or {}).values() if isinstance(v, torch.Tensor)]
    return flat, unbatched


def _torch_outputs(module, args, kwargs, unbatched):
    with torch.no_grad():
        out = module(*_copy(args), **_copy(kwargs))
    ref = [np.asarray(t.detach()) for t in flatten_outputs(out)]
    return [r[None] for r in ref] if unbatched else ref


def _keras_outputs(km, feeds):
    import keras

    out = km(feeds[0] if len(feeds) == 1 else feeds, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in flatten_outputs(out)]


def _map_floats(x, fn):
    if isinstance(x, torch.Tensor):
        return fn(x) if x.is_floating_point() else x
    if isinstance(x, (tuple, list)):
        return type(x)(_map_floats(a, fn) for a in x)
    if isinstance(x, dict):
        return {k: _map_floats(v, fn) for k, v in x.items()}
    return x


def check_sample(mi, index: int, seed: int = 0):
    """Build, randomize, convert and compare one ModuleInfo sample; fails on a mismatch or a
    vacuous comparison, skips (with the reason) an excluded one."""
    name = mi.module_cls.__name__
    reason = type_exclusion(mi)
    if reason is None:
        sample = _samples(mi)[index]
        sid = _sample_id(index, sample)
        reason = _match(EXCLUDED_SAMPLES, name, sid)
    if reason is not None:
        pytest.skip(f"excluded: {reason}")
    ci, fi = sample.constructor_input, sample.forward_input
    args, kwargs = tuple(fi.args), dict(fi.kwargs)
    fix = _match(INPUT_FIXES, name, sid)
    if fix is not None:
        args, kwargs = _map_floats(args, fix[0]), _map_floats(kwargs, fix[0])
    torch.manual_seed(seed)
    module = mi.module_cls(*ci.args, **ci.kwargs)
    if mi.is_lazy:  # a first forward materializes the parameters (the class becomes Conv*)
        with torch.no_grad():
            module(*_copy(args), **_copy(kwargs))
    randomize_(module, seed)
    tolerance = registry.lookup(module).tolerance

    km = recreate.convert(module, args, kwargs=kwargs)
    feeds, unbatched = _flat_inputs(module, args, kwargs)
    ref = _torch_outputs(module, args, kwargs, unbatched)
    _compare(_keras_outputs(km, feeds), ref, tolerance, "sample input")
    # Refuse vacuous passes: something compared, something finite, and an output that
    # follows the input (checked on a perturbed input, through the same Keras model).
    assert any(r.size for r in ref), "every output is empty: nothing was compared"
    assert any(np.isfinite(r).any() for r in ref), "every output is NaN/inf"
    g = torch.Generator().manual_seed(seed + 1)
    for flip, noise in PERTURBATIONS:
        a, kw = _perturb(args, g, flip, noise), _perturb(kwargs, g, flip, noise)
        if fix is not None:
            a, kw = _map_floats(a, fix[0]), _map_floats(kw, fix[0])
        ref2 = _torch_outputs(module, a, kw, unbatched)
        if _differ(ref, ref2):
            _compare(_keras_outputs(km, _flat_inputs(module, a, kw)[0]), ref2, tolerance,
                     f"perturbed input (x{flip:g} + {noise:g} noise)")
            return
    raise AssertionError("no output depends on the input: the comparison proves nothing")


def _compare(got, ref, tolerance, where):
    assert len(got) == len(ref), f"{where}: {len(got)} Keras outputs vs {len(ref)} torch outputs"
    for i, (k, t) in enumerate(zip(got, ref)):
        assert k.shape == t.shape, f"{where}, output {i}: Keras shape {k.shape} vs torch {t.shape}"
        err = parity_error(k, t)
        assert err <= tolerance, f"{where}, output {i}: error {err:.3g} x max(1,|ref|) exceeds {tolerance:g}"


@pytest.mark.parametrize("mi,index", _params())
def test_module_db_sample(mi, index):
    check_sample(mi, index)


def test_exclusions_are_used():
    """Every exclusion in the tables still matches something (stale entries hide nothing)."""
    names = {mi.module_cls.__name__ for mi in common_modules.module_db}
    assert set(EXCLUDED_TYPES) <= names
    ids = [(mi.module_cls.__name__, _sample_id(i, s)) for mi in common_modules.module_db
           if type_exclusion(mi) is None for i, s in enumerate(_samples(mi))]
    for table in (EXCLUDED_SAMPLES, INPUT_FIXES):
        for key in table:
            if key[1] == r".*complex.*":
                continue  # kept for float32-only samples today; complex dtypes are never compared
            assert any(_match({key: 1}, n, sid) for n, sid in ids), f"{key} matches no sample"
