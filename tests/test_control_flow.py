"""torch.cond and torch.while_loop captured by torch.export become recreate.layers.Cond and
WhileLoop: real conditionals and loops in the Keras graph, whose iteration count and branch
follow the data at run time, with the model's parameters kept as its variables."""

import recreate  # noqa: I001 - first: torch before tensorflow
import numpy as np
import pytest
import torch
from torch import nn

import keras
import tensorflow as tf

from recreate.layers import Cond, WhileLoop
from recreate.testing import randomize_


@pytest.fixture(autouse=True)
def _export_only(monkeypatch):
    monkeypatch.setenv("RECREATE_CAPTURE", "export")  # no fx fallback: the export path is under test


def _seeded(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def _close(km, m, x, tol=1e-5):
    want = m(x)
    want = want if isinstance(want, (tuple, list)) else (want,)
    got = km(x.numpy())
    got = got if isinstance(got, (tuple, list)) else (got,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = w.detach().numpy()
        assert np.asarray(g).shape == w.shape
        assert np.isfinite(w).all()
        np.testing.assert_allclose(np.asarray(g), w, atol=tol, rtol=tol)


class _Smooth(nn.Module):
    """Repeats a residual block until the update is small: the count depends on each input."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        def keep_going(i, h, delta):
            return (delta > 1e-3) & (i < 50)

        def step(i, h, delta):
            nxt = 0.5 * h + 0.5 * torch.tanh(self.fc(h))
            return i + 1, nxt, (nxt - h).abs().max()

        i, h, _ = torch.while_loop(keep_going, step, (torch.zeros((), dtype=torch.int64), x, x.abs().max() + 1))
        return self.head(h), i


def test_while_loop_iterates_as_the_data_says():
    m = randomize_(_Smooth(), 0).eval()
    xs = [_seeded(2, 6, seed=1), 4 * _seeded(3, 6, seed=2), 0.01 * _seeded(1, 6, seed=3)]
    counts = {int(m(x)[1]) for x in xs}
    assert len(counts) > 1, "the inputs should take different iteration counts"
    km = recreate.convert(m, xs[0])
    assert any(isinstance(lyr, WhileLoop) for lyr in km.layers)
    for x in xs:  # other batch sizes and other iteration counts than the example's
        _close(km, m, x)
    graph = tf.function(lambda t: km(t))
    for x in xs:
        out = graph(tf.constant(x.numpy()))
        np.testing.assert_allclose(np.asarray(out[0]), m(x)[0].detach().numpy(), atol=1e-5)
        assert int(out[1]) == int(m(x)[1])


def test_while_loop_parameters_stay_variables_and_the_model_saves(tmp_path):
    m = randomize_(_Smooth(), 0).eval()
    x = _seeded(2, 6, seed=1)
    km = recreate.convert(m, x)
    names = {getattr(v, "path", v.name) for v in km.weights}
    assert any("fc" in n for n in names), names
    other = randomize_(_Smooth(), 7).eval()
    recreate.transfer_weights(other, km)  # a new checkpoint of the same architecture refills it
    _close(km, other, x)
    path = tmp_path / "loop.keras"
    km.save(path)
    back = keras.saving.load_model(path, safe_mode=True)
    _close(back, other, _seeded(3, 6, seed=4))


class _ConvLoop(nn.Module):
    """A channels-last loop body (conv) whose carried image keeps its layout, and torch.cond
    inside the body."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        def keep_going(i, y):
            return i < 3

        def step(i, y):
            z = self.conv(y)
            z = torch.cond(z.mean() > 0, lambda t: t.relu(), lambda t: -t.relu(), (z,))
            return i + 1, z + y

        _, y = torch.while_loop(keep_going, step, (torch.zeros((), dtype=torch.int64), x))
        return y


def test_while_loop_with_a_conv_and_a_cond_in_its_body():
    m = randomize_(_ConvLoop(), 0).eval()
    x = _seeded(2, 3, 8, 8)
    km = recreate.convert(m, x)
    _close(km, m, x, 1e-4)
    _close(km, m, -_seeded(3, 3, 8, 8, seed=5), 1e-4)
    kl = recreate.convert(m, x, io_layout="keras")
    got = kl(np.transpose(x.numpy(), (0, 2, 3, 1)))
    np.testing.assert_allclose(np.transpose(np.asarray(got), (0, 3, 1, 2)), m(x).detach().numpy(), atol=1e-4)


class _ConstPred(nn.Module):
    """torch.cond on a constant of the model: the branch is chosen at conversion."""

    def __init__(self, flag):
        super().__init__()
        self.register_buffer("flag", torch.tensor(flag), persistent=False)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.cond(self.flag > 0, lambda t: self.fc(t), lambda t: -t, (x,))


@pytest.mark.parametrize("flag", [1.0, -1.0])
def test_cond_on_a_constant_is_inlined(flag):
    m = randomize_(_ConstPred(flag), 0).eval()
    km = recreate.convert(m, _seeded(2, 4))
    assert not any(isinstance(lyr, Cond) for lyr in km.layers)
    _close(km, m, _seeded(3, 4, seed=2))


class _IntCarry(nn.Module):
    def forward(self, x):
        return torch.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2), (0, x))[1]


def test_while_loop_carrying_a_python_int_is_refused_with_the_fix():
    with pytest.raises(recreate.RecreateError, match="carry it as a tensor"):
        recreate.convert(_IntCarry(), _seeded(2, 4))
