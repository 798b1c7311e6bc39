"""The op-registry property test: every op converter that declares `cases`, traced inside a
small module and converted, matches torch within 1e-5 x max(1, |ref|), with inputs given in
torch order or channels-last (so values reach the op with a non-identity perm)."""

from __future__ import annotations

import os

import recreate
import torch
from recreate import ops
from recreate.testing.parity import parity_error

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ops.load_all()  # registers the op converters

EXAMPLES = max(5, int(os.environ.get("RECREATE_EXAMPLES", "25")) // 5)
OPS = ops.op_cases()


def _to_cl(x):
    return np.moveaxis(x, 1, -1) if x.ndim >= 3 else x


def check_op_case(case, io_layout, tolerance=1e-5):
    txs = [torch.tensor(x) for x in case.inputs]
    with torch.no_grad():
        ref = case.module(*[t.clone() for t in txs])
    refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    km = recreate.convert(case.module, tuple(txs), io_layout=io_layout)
    feeds = [(_to_cl(x) if io_layout == "keras" else x) for x in case.inputs]
    out = km(feeds[0] if len(feeds) == 1 else feeds)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    assert len(outs) == len(refs)
    for k, t in zip(outs, refs):
        k = np.asarray(k)
        if io_layout == "keras" and k.ndim >= 3:
            k = np.moveaxis(k, -1, 1)
        t = t.numpy()
        assert k.shape == t.shape, f"{case!r}: Keras shape {k.shape} vs torch {t.shape}"
        err = parity_error(k.astype(np.float64), t.astype(np.float64))
        assert err <= tolerance, f"{case!r}: error {err:.3g}"


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_parity(name):
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=OPS[name](), io_layout=st.sampled_from(["torch", "keras"]))
    def check(case, io_layout):
        check_op_case(case, io_layout)

    check()


def test_families_have_cases():
    names = " ".join(OPS)
    for op in ["add", "mul", "eq", "relu", "exp", "mean", "sum", "amax", "softmax", "view", "permute",
               "getitem", "cat", "roll"]:
        assert op in names, f"op {op} declares no cases"
