"""PyTorch's recurrent layers as Keras layers: nn.RNN / nn.LSTM / nn.GRU (any number of
layers, bidirectional, LSTM projections, initial states, the full (output, h_n[, c_n])
result) and nn.RNNCell / nn.LSTMCell / nn.GRUCell.

The gate math is torch's (ATen's RNN.cpp cells), in torch's gate order:
  RNN:  h' = act(x W_ih + h W_hh + b)                              (act: tanh or relu)
  LSTM: i, f, g, o = x W_ih + h W_hh + b;  c' = s(f) c + s(i) tanh(g);  h' = s(o) tanh(c')
        with proj_size > 0, h' = (s(o) tanh(c')) W_hr
  GRU:  r, z = s(x W_ih + b_ih + h W_hh + b_hh)[:2];  n = tanh(xn + r (h W_hn + b_hn))
        h' = n + z (h - n)                                          (Keras's reset_after=True)
Stock Keras LSTM/GRU/SimpleRNN compute the same for one torch layer and direction
(recreate's weight rules fill them), but cannot return torch's stacked h_n/c_n, take its
stacked initial states or project h; one layer here holds every torch layer's weights and
runs them in turn.

The input projection of a whole sequence is one matmul; only h W_hh runs per time step.
A short sequence of static length is unrolled; otherwise the steps run in `keras.ops.scan`
(a tf.while_loop under TensorFlow), so the sequence length may be dynamic (torch's
sequence-first layout puts time on the axis Keras treats as the batch) and the layer runs
under tf.function and XLA.
"""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable

MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")
#: Sequences with a static length up to this run unrolled (measured ~2x faster per step than
#: keras.ops.scan under tf.function); longer or dynamic ones run in keras.ops.scan.
UNROLL_MAX_STEPS = 64
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} (torch's RNNBase.mode), got {mode!r}")
    return mode


def _step(mode, xw, state, recurrent_kernel, recurrent_bias=None, projection=None):
    """One time step. `xw` is x W_ih + input bias (all gates); `state` is h or (h, c).
    Returns the new state in the same structure."""
    if mode == "LSTM":
        h, c = state
        gates = xw + ops.matmul(h, recurrent_kernel)
        i, f, g, o = ops.split(gates, 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        if projection is not None:
            h = ops.matmul(h, projection)
        return h, c
    h = state
    hw = ops.matmul(h, recurrent_kernel)
    if recurrent_bias is not None:
        hw = hw + recurrent_bias
    if mode == "GRU":
        xr, xz, xn = ops.split(xw, 3, axis=-1)
        hr, hz, hn = ops.split(hw, 3, axis=-1)
        r = ops.sigmoid(xr + hr)
        z = ops.sigmoid(xz + hz)
        n = ops.tanh(xn + r * hn)
        return n + z * (h - n)
    pre = xw + hw
    return ops.tanh(pre) if mode == "RNN_TANH" else ops.relu(pre)


def _project(x, w: dict, mode: str):
    """x W_ih + the bias that goes with it, for every gate (and time step) at once; returns
    it with the bias still to add to h W_hh (GRU's b_hh, which the reset gate scales)."""
    xw = ops.matmul(x, w["kernel"])
    bias = w["bias"]
    if bias is None:
        return xw, None
    if mode == "GRU":
        return xw + bias[0], bias[1]
    return xw + bias, None


def _make_weights(layer, mode, suffix, fan_in, hidden, proj, bias) -> dict:
    """One (layer, direction)'s variables, named after the torch tensors that fill them
    (weight_ih_l0 -> kernel_l0; see recreate.converters.recurrent)."""
    g = _GATES[mode] * hidden
    out = proj or hidden
    w = {
        "kernel": layer.add_weight(name=f"kernel{suffix}", shape=(fan_in, g), initializer="glorot_uniform"),
        "recurrent_kernel": layer.add_weight(name=f"recurrent_kernel{suffix}", shape=(out, g),
                                             initializer="orthogonal"),
        "bias": None,
        "projection": None,
    }
    if bias:
        # LSTM/RNN: b_ih + b_hh (one bias); GRU: (b_ih, b_hh) stacked, as Keras's GRU.
        shape = (2, g) if mode == "GRU" else (g,)
        w["bias"] = layer.add_weight(name=f"bias{suffix}", shape=shape, initializer="zeros")
    if proj:
        w["projection"] = layer.add_weight(name=f"projection_kernel{suffix}", shape=(hidden, proj),
                                           initializer="glorot_uniform")
    return w


@serializable
class Recurrent(keras.layers.Layer):
    """torch.nn.RNN / LSTM / GRU with every constructor argument, in eval mode.

    `call(inputs, hx=None, cx=None)` takes torch's tensors in torch's layout: `inputs` is
    (N, L, input_size) with batch_first else (L, N, input_size); hx (torch's h_0) is
    (num_layers * num_directions, N, proj_size or hidden_size), cx (LSTM's c_0) the same with
    hidden_size; zeros when absent. Unbatched, as torch: inputs (L, input_size), states
    without the N axis, results likewise. Returns (output, h_n) or, for LSTM, (output, h_n, c_n),
    shaped as torch's. Dropout between layers acts in training only and is not applied.

    Example::

        layer = Recurrent("LSTM", input_size=8, hidden_size=16, num_layers=2, batch_first=True)
        out, h_n, c_n = layer(x)   # x: (N, L, 8)
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, bidirectional: bool = False, proj_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.mode = _check_mode(mode)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.proj_size = int(proj_size)
        if self.num_layers < 1 or self.hidden_size < 1 or self.input_size < 1:
            raise ValueError(
                f"input_size, hidden_size and num_layers must be positive, got {self.input_size}, "
                f"{self.hidden_size}, {self.num_layers}"
            )
        if self.proj_size and (mode != "LSTM" or not 0 < self.proj_size < self.hidden_size):
            raise ValueError(
                f"proj_size={self.proj_size} needs mode='LSTM' and 0 < proj_size < hidden_size={self.hidden_size}"
            )

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def build(self, input_shape=None):
        self._cells = []
        for k in range(self.num_layers):
            fan_in = self.input_size if k == 0 else self.output_size * self.num_directions
            for d in range(self.num_directions):
                suffix = f"_l{k}" + ("_reverse" if d else "")
                self._cells.append(_make_weights(self, self.mode, suffix, fan_in, self.hidden_size,
                                                 self.proj_size, self.bias))

    def compute_output_shape(self, input_shape):
        states = self.num_layers * self.num_directions
        if len(input_shape) == 2:  # unbatched (L, input_size)
            shapes = [(input_shape[0], self.num_directions * self.output_size), (states, self.output_size)]
            if self.mode == "LSTM":
                shapes.append((states, self.hidden_size))
            return tuple(shapes)
        if len(input_shape) != 3:
            raise ValueError(f"Recurrent takes input of rank 3 (or 2, unbatched), got shape {tuple(input_shape)}")
        time_axis, batch_axis = (1, 0) if self.batch_first else (0, 1)
        out = [None, None, self.num_directions * self.output_size]
        out[time_axis], out[batch_axis] = input_shape[time_axis], input_shape[batch_axis]
        batch = input_shape[batch_axis]
        shapes = [tuple(out), (states, batch, self.output_size)]
        if self.mode == "LSTM":
            shapes.append((states, batch, self.hidden_size))
        return tuple(shapes)

    def call(self, inputs, hx=None, cx=None):
        if (cx is None) != (hx is None) and self.mode == "LSTM":
            raise ValueError("LSTM takes its initial states together: call(inputs, h_0, c_0)")
        if cx is not None and self.mode != "LSTM":
            raise ValueError(f"{self.mode} takes one initial state h_0, got a cell state too")
        if len(inputs.shape) == 2:
            # torch's unbatched form: input (L, input_size), states (layers * directions, H),
            # whatever batch_first says; run as a batch of one, time-major.
            def one(t):
                return None if t is None else ops.expand_dims(t, 1)

            result = self._call_time_major(ops.expand_dims(inputs, 1), one(hx), one(cx))
            return tuple(ops.squeeze(t, 1) for t in result)
        x = inputs if not self.batch_first else ops.transpose(inputs, (1, 0, 2))  # time-major
        output, *states = self._call_time_major(x, hx, cx)
        output = output if not self.batch_first else ops.transpose(output, (1, 0, 2))
        return (output, *states)

    def _call_time_major(self, x, hx, cx):
        batch = ops.shape(x)[1]
        h_n, c_n = [], []
        for k in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                i = k * self.num_directions + d
                w = self._cells[i]
                h = ops.zeros((batch, self.output_size), x.dtype) if hx is None else hx[i]
                state = h
                if self.mode == "LSTM":
                    state = (h, ops.zeros((batch, self.hidden_size), x.dtype) if cx is None else cx[i])
                seq, state = self._run(x, w, state, reverse=bool(d))
                outs.append(seq)
                if self.mode == "LSTM":
                    h_n.append(state[0])
                    c_n.append(state[1])
                else:
                    h_n.append(state)
            x = outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=-1)
        result = (x, ops.stack(h_n, axis=0))
        if self.mode == "LSTM":
            result = (*result, ops.stack(c_n, axis=0))
        return result

    def _run(self, x, w, state, reverse: bool):
        """Run one direction of one layer over time-major `x`; returns (outputs, last state)."""
        mode = self.mode
        xw, recurrent_bias = _project(x, w, mode)

        def step(s, xw_t):
            return _step(mode, xw_t, s, w["recurrent_kernel"], recurrent_bias, w["projection"])

        steps = x.shape[0]
        if steps is not None and steps <= UNROLL_MAX_STEPS:
            # A static, short sequence runs unrolled: no loop bookkeeping per step.
            xs, outs = ops.unstack(xw, num=steps, axis=0), [None] * steps
            for t in reversed(range(steps)) if reverse else range(steps):
                state = step(state, xs[t])
                outs[t] = state[0] if mode == "LSTM" else state
            return ops.stack(outs, axis=0), state
        if mode != "LSTM":
            last, ys = ops.scan(lambda h, xw_t: (step(h, xw_t),) * 2, state, xw, reverse=reverse)
            return ys, last
        # Keras's TensorFlow scan needs each step's output to have the carry's structure, and
        # keeps the carry in TensorArrays: one packed [h, c] tensor is the cheapest carry.
        width = self.output_size

        def packed_step(hc, xw_t):
            h, c = step((hc[:, :width], hc[:, width:]), xw_t)
            hc = ops.concatenate([h, c], axis=-1)
            return hc, hc

        last, ys = ops.scan(packed_step, ops.concatenate(state, axis=-1), xw, reverse=reverse)
        return ys[..., :width], (last[:, :width], last[:, width:])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "input_size": self.input_size,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers, "bias": self.bias,
                "batch_first": self.batch_first, "bidirectional": self.bidirectional,
                "proj_size": self.proj_size}


@serializable
class RecurrentCell(keras.layers.Layer):
    """torch.nn.RNNCell / LSTMCell / GRUCell: one time step.

    `call(inputs, hx=None, cx=None)` with inputs (N, input_size) and states
    (N, hidden_size), zeros when absent. Returns h' (RNN, GRU) or (h', c') (LSTM), as torch.

    Example::

        cell = RecurrentCell("GRU", input_size=4, hidden_size=3)
        h = cell(x, h)   # x: (N, 4), h: (N, 3)
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.mode = _check_mode(mode)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.bias = bool(bias)
        if self.hidden_size < 1 or self.input_size < 1:
            raise ValueError(f"input_size and hidden_size must be positive, got {self.input_size}, {self.hidden_size}")

    def build(self, input_shape=None):
        self._w = _make_weights(self, self.mode, "", self.input_size, self.hidden_size, 0, self.bias)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"RecurrentCell takes batched input of rank 2, got shape {tuple(input_shape)}")
        shape = (input_shape[0], self.hidden_size)
        return (shape, shape) if self.mode == "LSTM" else shape

    def call(self, inputs, hx=None, cx=None):
        if cx is not None and self.mode != "LSTM":
            raise ValueError(f"{self.mode} cell takes one state h, got a cell state too")
        if self.mode == "LSTM" and (hx is None) != (cx is None):
            raise ValueError("LSTM cell takes its states together: call(inputs, h, c)")
        w = self._w
        zeros = ops.zeros((ops.shape(inputs)[0], self.hidden_size), inputs.dtype)
        h = zeros if hx is None else hx
        xw, recurrent_bias = _project(inputs, w, self.mode)
        state = (h, zeros if cx is None else cx) if self.mode == "LSTM" else h
        return _step(self.mode, xw, state, w["recurrent_kernel"], recurrent_bias)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "input_size": self.input_size,
                "hidden_size": self.hidden_size, "bias": self.bias}
