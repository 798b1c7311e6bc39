"""tensor_ops converters (embedding, gather, addmm family, masked_fill): their case strategies
under both io layouts, other batch sizes, refusals, and an HF-like embedding subclass."""

from __future__ import annotations

import os

import recreate
import torch
import torch.nn.functional as F
from recreate import ops
from recreate.errors import ConversionError
from recreate.ops import tensor_ops
from recreate.testing.parity import parity_error
from torch import nn

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_ops_parity import check_op_case

ops.load_all()  # registers the op converters

EXAMPLES = int(os.environ.get("RECREATE_TENSOR_EXAMPLES", "25"))


_STRATEGIES = {
    "embedding": tensor_ops.embedding,
    "gather": tensor_ops.gather,
    "addmm": tensor_ops.addmm,
    "baddbmm": tensor_ops.baddbmm,
    "addbmm": tensor_ops.addbmm,
    "addmv": tensor_ops.addmv,
    "addr": tensor_ops.addr,
    "masked_fill": tensor_ops.masked_fill,
}


@pytest.mark.parametrize("io_layout", ["torch", "keras"])
@pytest.mark.parametrize("name", sorted(_STRATEGIES))
def test_tensor_op_parity(name, io_layout):
    cases = ops._CASES[_STRATEGIES[name]]

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=cases())
    def check(case):
        check_op_case(case, io_layout)

    check()


# ---- other batch sizes ------------------------------------------------------------------------
def _rows(inputs, n):
    return [np.concatenate([x] * 3, axis=0)[:n] for x in inputs]


@pytest.mark.parametrize("name", sorted(_STRATEGIES))
def test_other_batch_sizes(name):
    """The converted model, traced at one batch size, run at others (every case input is
    batch-first)."""
    cases = ops._CASES[_STRATEGIES[name]]

    @settings(max_examples=max(5, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=cases(), n=st.integers(1, 5))
    def check(case, n):
        txs = [torch.tensor(x) for x in case.inputs]
        km = recreate.convert(case.module, tuple(txs))
        feeds = _rows(case.inputs, n)
        with torch.no_grad():
            ref = case.module(*[torch.tensor(x) for x in feeds])
        out = np.asarray(km(feeds[0] if len(feeds) == 1 else feeds))
        assert out.shape == tuple(ref.shape), f"{case!r} at batch {n}"
        assert parity_error(out.astype(np.float64), ref.numpy().astype(np.float64)) <= 1e-5, f"{case!r} at batch {n}"

    check()


# ---- refusals ---------------------------------------------------------------------------------
class _Wrap(nn.Module):
    def __init__(self, fn, **mods):
        super().__init__()
        self.fn = fn
        for k, v in mods.items():
            self.add_module(k, v)

    def forward(self, x, y=None):
        return self.fn(self, x) if y is None else self.fn(self, x, y)


def test_embedding_max_norm_renormalises_each_call_and_leaves_the_model_alone():
    """max_norm renormalises the looked-up rows of the weight in place. Torch's output is then
    always the renormalised row, so the Keras model computes it per call from the weight it was
    given; converting must not renormalise the torch model's weight itself."""
    m = _Wrap(lambda s, i: F.embedding(i, s.e.weight, max_norm=1.0), e=nn.Embedding(5, 3)).eval()
    with torch.no_grad():
        m.e.weight.mul_(3.0)  # rows well over max_norm, so the renorm matters
    before = m.e.weight.detach().clone()
    km = recreate.convert(m, (torch.tensor([[1, 2]]),))
    assert torch.equal(m.e.weight, before)
    for ids in (torch.tensor([[1, 2]]), torch.tensor([[0, 4], [3, 1]])):
        ref = m(ids).detach().numpy()
        assert np.abs(ref).max() > 0.1
        np.testing.assert_allclose(np.asarray(km(ids.numpy())), ref, atol=1e-6)
        assert np.linalg.norm(ref, axis=-1).max() <= 1.0 + 1e-6


def test_masked_fill_needs_bool_mask():
    m = _Wrap(lambda s, x, k: x.masked_fill(k, 0.0)).eval()
    with pytest.raises((ConversionError, RuntimeError)):
        recreate.convert(m, (torch.randn(2, 3), torch.ones(2, 3, dtype=torch.long)))


# ---- an HF-like embedding subclass (OPT's learned positions) -----------------------------------
class OPTLearnedPositionalEmbedding(nn.Embedding):
    def __init__(self, num, dim):
        self.offset = 2
        super().__init__(num + self.offset, dim)

    def forward(self, ids):
        return super().forward(ids + self.offset) * 3.0


class TinyDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(11, 4)
        self.embed_positions = OPTLearnedPositionalEmbedding(6, 4)
        self.proj = nn.Linear(4, 4)
        self.register_buffer("token_type_ids", torch.zeros(1, 6, dtype=torch.long), persistent=False)

    def forward(self, ids):
        b, n = ids.shape
        pos = torch.arange(n).expand(b, -1)
        tt = torch.gather(self.token_type_ids.expand(b, -1), 1, pos)
        h = self.embed_tokens(ids) + self.embed_positions(pos) + tt.unsqueeze(-1)
        h = h.masked_fill(h < 0, 0.0)
        return self.proj(h)


def test_hf_like_embedding_subclass():
    torch.manual_seed(0)
    m = TinyDecoder().eval()
    ids = torch.randint(0, 11, (2, 5))
    km = recreate.convert(m, (ids,))
    assert recreate.verify(m, km, (ids,), tolerance=1e-4).passed
    for b in (1, 3):
        other = torch.randint(0, 11, (b, 5))
        with torch.no_grad():
            ref = m(other).numpy()
        assert np.abs(np.asarray(km(other.numpy())) - ref).max() < 1e-5
