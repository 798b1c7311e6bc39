"""Complex tensors inside a model (rotary embeddings written with view_as_complex / polar, as
Llama's reference code, Llama 4, DeepSeek-V2 and QwenImage do) convert: held as real pairs,
the converted model's inputs and outputs real."""

import recreate  # noqa: I001 - first: torch before tensorflow
import numpy as np
import pytest
import torch
from torch import nn

import keras

from recreate.testing import randomize_


@pytest.fixture(autouse=True)
def _export_only(monkeypatch):
    monkeypatch.setenv("RECREATE_CAPTURE", "export")


def _seeded(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _check(m, x, others=(), tol=1e-5):
    m.eval()
    km = recreate.convert(m, x)
    for i, b in enumerate((x, *others)):
        want = m(b).detach().numpy()
        other = m(b * 2 + 1).detach().numpy()
        assert np.abs(want - other).max() > 1e-3, "reference ignores its input"
        got = np.asarray(km(b.numpy()))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=tol, rtol=tol, err_msg=f"batch {i}")
    return km


class _ReferenceRope(nn.Module):
    """Llama's reference code: a complex table made once, sliced to the sequence."""

    def __init__(self, dim=8, heads=2, max_len=32):
        super().__init__()
        freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        table = torch.polar(torch.ones(max_len, dim // 2), torch.outer(torch.arange(max_len).float(), freqs))
        self.register_buffer("freqs_cis", table, persistent=False)
        self.q = nn.Linear(dim * heads, dim * heads)
        self.heads, self.dim = heads, dim

    def forward(self, x):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.heads, self.dim)
        qc = torch.view_as_complex(q.float().reshape(*q.shape[:-1], -1, 2))
        f = self.freqs_cis[:s].view(1, s, 1, self.dim // 2)
        return torch.view_as_real(qc * f).flatten(3).type_as(x)


class _ComputedRope(nn.Module):
    """Llama 4's way: the phasors computed in forward from positions (polar of a tensor)."""

    def __init__(self, dim=8):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim)), persistent=False)
        self.k = nn.Linear(dim, dim)

    def forward(self, x):
        pos = torch.arange(x.shape[1], dtype=torch.float32)[None, :, None] + x[..., :1] * 0.1  # input-dependent phase
        angles = pos * self.inv_freq  # (b, s, dim/2)
        phasor = torch.polar(torch.ones_like(angles), angles)
        k = torch.view_as_complex(self.k(x).reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(k * phasor).flatten(2)


class _Arithmetic(nn.Module):
    """The rest of the supported set: complex x complex, division, add/sub with reals,
    conjugate, abs, angle, real / imag, cat and transpose on complex tensors."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)

    def forward(self, x):
        za = torch.view_as_complex(self.a(x).reshape(*x.shape[:-1], 4, 2))
        zb = torch.view_as_complex(self.b(x).reshape(*x.shape[:-1], 4, 2))
        z = za * zb.conj() + za / (zb + 3.0) - 0.5 * za
        z = torch.cat([z, za.transpose(-1, -2)[..., :1].transpose(-1, -2).expand_as(z)], dim=-1)
        parts = [z.abs(), z.angle(), z.real, z.imag, torch.view_as_real(z).flatten(-2)]
        return torch.cat(parts, dim=-1)


def test_reference_rope_with_a_complex_table():
    km = _check(randomize_(_ReferenceRope(), 0), _seeded(2, 10, 16), [_seeded(3, 10, 16, seed=1)])
    assert all(w.dtype in ("float32", "float64") for w in km.weights)


def test_rope_with_phasors_computed_in_forward():
    _check(randomize_(_ComputedRope(), 0), _seeded(2, 6, 8), [_seeded(1, 6, 8, seed=1), _seeded(4, 6, 8, seed=2)])


def test_complex_arithmetic_and_shape_ops(tmp_path):
    m = randomize_(_Arithmetic(), 0)
    km = _check(m, _seeded(2, 5, 8), [_seeded(3, 5, 8, seed=1)], tol=1e-4)
    path = tmp_path / "complex.keras"
    km.save(path)
    back = keras.saving.load_model(path, safe_mode=True)
    x = _seeded(3, 5, 8, seed=2)
    np.testing.assert_allclose(np.asarray(back(x.numpy())), m(x).detach().numpy(), atol=1e-4, rtol=1e-4)


class _Unsupported(nn.Module):
    def forward(self, x):
        z = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(torch.exp(z))


def test_an_unsupported_complex_op_is_named():
    with pytest.raises(recreate.RecreateError, match="exp"):
        recreate.convert(_Unsupported(), _seeded(2, 4, 8))


class _ComplexParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, dtype=torch.complex64))

    def forward(self, x):
        return torch.view_as_real(torch.view_as_complex(x.reshape(*x.shape[:-1], 4, 2)) * self.w)


def test_a_complex_parameter_is_refused_with_the_fix():
    with pytest.raises(recreate.RecreateError, match="complex"):
        recreate.convert(_ComplexParameter(), _seeded(2, 8))
