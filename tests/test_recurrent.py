"""Recurrent family beyond the registry-wide property test: LSTM's nested (h_0, c_0) initial
state, .keras round trips, tf.function, error messages, and the Keras defaults the stock
weight rules rely on."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from torch import nn

import recreate
from recreate.convert import flatten_outputs
from recreate.converters.recurrent import _cell_cases, _rnn_cases
from recreate.errors import ConversionError, TransferError
from recreate.layers.recurrent import Recurrent, RecurrentCell
from recreate.testing import randomize_
from recreate.testing.parity import parity_error


def _flat_inputs(inputs) -> list[np.ndarray]:
    return [a for x in inputs for a in (x if isinstance(x, tuple) else (x,))]


def _torch_inputs(inputs) -> list:
    return [tuple(torch.tensor(a) for a in x) if isinstance(x, tuple) else torch.tensor(x) for x in inputs]


def _outputs(km, feeds) -> list[np.ndarray]:
    out = km(feeds if len(feeds) > 1 else feeds[0])
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in flatten_outputs(out)]


def _check(module, inputs, km=None, tolerance=1e-5):
    """Convert with the flattened inputs, run torch with its own (nested) call, compare."""
    flat = _flat_inputs(inputs)
    km = km or recreate.convert(module, tuple(torch.tensor(a) for a in flat))
    with torch.no_grad():
        ref = [t.numpy() for t in flatten_outputs(module(*_torch_inputs(inputs)))]
    got = _outputs(km, flat)
    assert [g.shape for g in got] == [r.shape for r in ref]
    for i, (g, r) in enumerate(zip(got, ref)):
        assert parity_error(g, r) <= tolerance, f"output {i}: {parity_error(g, r):.3g}"
    return km


# ---- LSTM's (h_0, c_0): nested in torch, flat positional inputs in Keras --------------------
@settings(max_examples=25)
@given(case=_rnn_cases(nn.LSTM, lstm_states=True))
def test_lstm_with_initial_states(case):
    _check(case.module, case.inputs)


@settings(max_examples=25)
@given(case=_cell_cases(nn.LSTMCell, lstm_states=True))
def test_lstm_cell_with_states(case):
    _check(case.module, case.inputs)


def test_full_lstm_example():
    """Everything at once: 3 layers, bidirectional, projection, sequence-first, states."""
    m = randomize_(nn.LSTM(4, 5, num_layers=3, bidirectional=True, proj_size=2, dropout=0.5), 3)
    rng = np.random.default_rng(0)
    x, h0, c0 = (rng.standard_normal(s).astype("float32") for s in ((6, 3, 4), (6, 3, 2), (6, 3, 5)))
    km = _check(m, (x, (h0, c0)))
    assert [tuple(o.shape) for o in km.outputs] == [(None, 3, 4), (6, 3, 2), (6, 3, 5)]


# ---- serialization and graph mode ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_keras_round_trip_and_tf_function(kind, tmp_path):
    import tensorflow as tf

    kw = {"proj_size": 2} if kind == "LSTM" else {"nonlinearity": "relu"} if kind == "RNN" else {}
    m = randomize_(getattr(nn, kind)(3, 4, num_layers=2, batch_first=True, bidirectional=True, **kw), 1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 3)).astype("float32")
    states = [rng.standard_normal((4, 2, 2 if kind == "LSTM" else 4)).astype("float32")]
    if kind == "LSTM":
        states.append(rng.standard_normal((4, 2, 4)).astype("float32"))
    inputs = (x, tuple(states)) if kind == "LSTM" else (x, states[0])
    km = _check(m, inputs)
    path = tmp_path / "rnn.keras"
    km.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    layer = loaded.get_layer(kind.lower())
    assert isinstance(layer, Recurrent)
    assert layer.get_config() == km.get_layer(kind.lower()).get_config()
    _check(m, inputs, km=loaded)

    feeds = [x, *states]
    graph = tf.function(lambda *a: loaded(list(a)), jit_compile=False)
    for g, e in zip(flatten_outputs(graph(*feeds)), _outputs(km, feeds)):
        np.testing.assert_array_equal(np.asarray(g), e)
    # A longer sequence through the same traced signature (the time axis is dynamic).
    sig = [tf.TensorSpec((None, None, 3))] + [tf.TensorSpec(s.shape) for s in states]
    graph = tf.function(lambda *a: loaded(list(a)), input_signature=sig)
    x7 = rng.standard_normal((2, 7, 3)).astype("float32")
    with torch.no_grad():
        ref = flatten_outputs(m(torch.tensor(x7), *_torch_inputs(inputs[1:])))
    for g, r in zip(flatten_outputs(graph(x7, *states)), ref):
        assert parity_error(np.asarray(g), r.numpy()) <= 1e-5


@pytest.mark.parametrize("batch_first", [True, False])  # unrolled / keras.ops.scan
def test_xla(batch_first):
    import tensorflow as tf

    m = randomize_(nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, batch_first=batch_first), 10)
    x = np.random.default_rng(10).standard_normal((2, 5, 3)).astype("float32")
    km = recreate.convert(m, torch.tensor(x))
    xla = tf.function(lambda a: km(a), jit_compile=True)
    with torch.no_grad():
        ref = flatten_outputs(m(torch.tensor(x)))
    for g, r in zip(flatten_outputs(xla(x)), ref):
        assert parity_error(np.asarray(g), r.numpy()) <= 1e-5


@pytest.mark.parametrize("cell", [nn.RNNCell(3, 2, nonlinearity="relu"), nn.LSTMCell(3, 2), nn.GRUCell(3, 2, bias=False)])
def test_cell_round_trip(cell, tmp_path):
    m = randomize_(cell, 2)
    x = np.random.default_rng(2).standard_normal((4, 3)).astype("float32")
    km = recreate.convert(m, torch.tensor(x))
    km.save(tmp_path / "cell.keras")
    loaded = keras.saving.load_model(tmp_path / "cell.keras", safe_mode=True)
    assert any(isinstance(lyr, RecurrentCell) for lyr in loaded.layers)
    _check(m, (x,), km=loaded)


def test_layer_config_round_trip():
    layer = Recurrent("LSTM", 3, 4, num_layers=2, bias=False, batch_first=True, bidirectional=True, proj_size=1,
                      name="enc.rnn")
    assert Recurrent.from_config(layer.get_config()).get_config() == layer.get_config()
    cell = RecurrentCell("RNN_RELU", 3, 4, bias=False, name="cell")
    assert RecurrentCell.from_config(cell.get_config()).get_config() == cell.get_config()


def test_sequence_first_time_axis_is_dynamic():
    """batch_first=False: the Keras model's leading (free) axis is torch's time axis."""
    m = randomize_(nn.GRU(2, 3, num_layers=2), 5)
    km = recreate.convert(m, torch.zeros(4, 2, 2))
    x9 = np.random.default_rng(3).standard_normal((9, 2, 2)).astype("float32")
    _check(m, (x9,), km=km)


def test_long_sequence_runs_in_a_loop():
    """Beyond UNROLL_MAX_STEPS a static-length sequence runs in keras.ops.scan."""
    from recreate.layers.recurrent import UNROLL_MAX_STEPS

    m = randomize_(nn.LSTM(2, 3, num_layers=2, batch_first=True, bidirectional=True, proj_size=1), 6)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, UNROLL_MAX_STEPS + 3, 2)).astype("float32")
    h0, c0 = rng.standard_normal((4, 2, 1)).astype("float32"), rng.standard_normal((4, 2, 3)).astype("float32")
    _check(m, (x, (h0, c0)))
    g = randomize_(nn.GRU(2, 3, batch_first=True, bidirectional=True), 6)
    _check(g, (x,))


# ---- errors -------------------------------------------------------------------------------
def test_lstm_needs_both_states():
    m = nn.LSTM(3, 4).eval()
    with pytest.raises(ConversionError, match=r"\(h_0, c_0\) as two tensors"):
        recreate.convert(m, (torch.zeros(5, 2, 3), torch.zeros(1, 2, 4)))


@pytest.mark.parametrize("module, shape", [(nn.LSTM(3, 4), (5, 3)), (nn.GRU(3, 4, batch_first=True), (5, 3)),
                                           (nn.GRUCell(3, 4), (3,))], ids=["LSTM", "GRU", "GRUCell"])
def test_unbatched_input(module, shape):
    """torch's unbatched forms (no batch axis at all): an RNN's (L, H_in) sequence goes in as
    it is; a cell's single feature vector makes a model that takes a batch of them."""
    m = randomize_(module, 3).eval()
    x = np.random.default_rng(3).standard_normal(shape).astype("float32")
    km = recreate.convert(m, torch.tensor(x))
    with torch.no_grad():
        ref = m(torch.tensor(x))
    ref = ref[0] if isinstance(ref, tuple) else ref
    cell = x.ndim == 1
    got = km(x[None] if cell else x)
    got = np.asarray(got[0] if isinstance(got, (list, tuple)) else got)
    np.testing.assert_allclose(got[0] if cell else got, ref.numpy(), atol=1e-5)
    assert not np.allclose(ref.numpy(), 0)


def test_initial_state_as_keyword():
    m = randomize_(nn.GRU(3, 4, num_layers=2), 9)
    rng = np.random.default_rng(9)
    x, h0 = rng.standard_normal((5, 2, 3)).astype("float32"), rng.standard_normal((2, 2, 4)).astype("float32")
    recreate.testing.assert_parity(m, (x,), kwargs={"hx": h0})
    lstm = nn.LSTM(3, 4).eval()
    with pytest.raises(ConversionError, match=r"hx=tuple as a keyword: give the initial state\(s\) as positional"):
        recreate.convert(lstm, torch.tensor(x), kwargs={"hx": (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))})


def test_input_size_mismatch():
    with pytest.raises(ConversionError, match=r"input_size=3.*last axis must be 3"):
        recreate.convert(nn.GRU(3, 4).eval(), torch.zeros(5, 2, 7))


def test_too_many_inputs():
    with pytest.raises(ConversionError, match="expected the input alone or followed by h_0"):
        recreate.convert(nn.RNN(3, 4).eval(), (torch.zeros(5, 2, 3), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        Recurrent("lstm", 3, 4)
    with pytest.raises(ValueError, match="proj_size=4 needs mode='LSTM' and 0 < proj_size < hidden_size=4"):
        Recurrent("LSTM", 3, 4, proj_size=4)
    with pytest.raises(ValueError, match="proj_size=1 needs mode='LSTM'"):
        Recurrent("GRU", 3, 4, proj_size=1)
    with pytest.raises(ValueError, match="rank 3"):
        Recurrent("GRU", 3, 4)(keras.Input(shape=(), batch_size=2))


def test_transfer_refuses_a_different_mode():
    """RNN_TANH and RNN_RELU have the same weights: only the configuration check tells them apart."""
    tm = nn.RNN(3, 4, nonlinearity="relu")
    layer = Recurrent("RNN_TANH", 3, 4, name="rnn")
    inp = keras.Input((2, 3))
    km = keras.Model(inp, layer(inp))
    with pytest.raises(TransferError, match=r"'rnn'.mode='RNN_TANH' but torch '' has 'RNN_RELU'.*mode='RNN_RELU'"):
        recreate.transfer_weights(tm, km, mapping={"rnn": ""})


def test_transfer_from_state_dict():
    """A state dict alone (no module) fills a hand-built Recurrent through the same rules."""
    tm = randomize_(nn.GRU(3, 4, num_layers=2, bidirectional=True), 7)
    layer = Recurrent("GRU", 3, 4, num_layers=2, bidirectional=True, name="gru")
    inp = keras.Input((2, 3))
    km = keras.Model(inp, layer(inp))
    recreate.transfer_weights(tm.state_dict(), km, mapping={"gru": ""})
    _check(tm, (np.random.default_rng(4).standard_normal((5, 2, 3)).astype("float32"),), km=km)


def test_stock_simple_rnn_activation_is_checked():
    tm = nn.RNN(3, 4, nonlinearity="relu", batch_first=True)
    inp = keras.Input((2, 3))
    km = keras.Model(inp, keras.layers.SimpleRNN(4, name="rnn")(inp))
    with pytest.raises(TransferError, match=r"activation=<function tanh.*relu.*activation=<torch's nonlinearity>"):
        recreate.transfer_weights(tm, km, mapping={"rnn": ""})
    km = keras.Model(inp, keras.layers.SimpleRNN(4, activation="relu", return_sequences=True, name="rnn")(inp))
    recreate.transfer_weights(randomize_(tm, 8), km, mapping={"rnn": ""})
    x = np.random.default_rng(6).standard_normal((2, 2, 3)).astype("float32")
    with torch.no_grad():
        ref = tm(torch.tensor(x))[0].numpy()
    np.testing.assert_allclose(_outputs(km, [x])[0], ref, atol=1e-5)


# ---- what the stock-Keras weight rules rely on ---------------------------------------------
def test_keras_defaults_match_torch():
    """Stock LSTM/GRU defaults are torch's math: sigmoid gates, tanh, GRU reset_after=True
    (numerical proof: tests/test_transfer.py::test_recurrent_into_stock_keras)."""
    lstm, gru = keras.layers.LSTM(2), keras.layers.GRU(2)
    assert lstm.cell.recurrent_activation is keras.activations.sigmoid
    assert lstm.cell.activation is keras.activations.tanh
    assert gru.cell.recurrent_activation is keras.activations.sigmoid
    assert gru.cell.reset_after is True
