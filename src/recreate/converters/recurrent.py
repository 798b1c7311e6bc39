"""Recurrent family: nn.RNN/LSTM/GRU and nn.RNNCell/LSTMCell/GRUCell, converted to
recreate.layers.Recurrent / RecurrentCell with every constructor argument (layers, bias,
batch_first, dropout (eval: not applied), bidirectional, proj_size, nonlinearity), initial
states and the full result; plus weight rules into stock Keras SimpleRNN/LSTM/GRU and
Bidirectional for hand-written models.

Initial states are positional inputs after the input, flattened: (x, h_0) for RNN/GRU,
(x, h_0, c_0) for torch's lstm(x, (h_0, c_0)); outputs are [output, h_n] or
[output, h_n, c_n], shaped as torch's.

Into stock Keras: torch stores weight_ih_l{k}[_reverse] (gates stacked on axis 0),
weight_hh_l{k}, and two biases; Keras stores cell/kernel (in, gates), cell/recurrent_kernel
and one bias (LSTM, SimpleRNN: the sum) or a (2, 3u) bias (GRU with reset_after=True, which
is torch's GRU math). A Keras layer holds one torch layer: layer 0, or the layer named by the
Keras layer's `torch_layer_index` attribute when a stacked torch RNN is recreated as several
Keras layers. Stock layers cannot project h (LSTM proj_size) nor return torch's stacked h_n.
"""

from __future__ import annotations

from hypothesis import strategies as st
from torch import nn

from .._backend import keras
from ..errors import ConversionError
from ..layers.recurrent import Recurrent, RecurrentCell
from ..registry import TORCH, Check, Map, WeightRules, register, register_rules
from ..testing.cases import make_case
from ..transfer import _variables
from ..transforms import GRU_GATES, LSTM_BIAS, TRANSPOSE, Chain, ReorderChunks, Stack, Sum

_GRU_KERNEL = Chain(GRU_GATES, TRANSPOSE, name="gates rzn->zrn, transpose")
_GRU_BIAS = Chain(Stack(2), ReorderChunks((1, 0, 2), axis=1), name="stack(b_ih,b_hh), gates rzn->zrn")
_RNN_BIAS = Sum(2, name="b_ih+b_hh")
_STACKED_BIAS = Stack(2, name="stack(b_ih,b_hh)")  # recreate's GRU layers keep torch's gate order


def _stock_checks(kind: str) -> tuple[Check, ...]:
    """Keras settings that must be torch's math for the weights to mean the same."""
    act = Check("activation", lambda m: keras.activations.get(getattr(m, "nonlinearity", "tanh")),
                "build the Keras layer with activation=<torch's nonlinearity> ('tanh' or 'relu')")
    if kind == "rnn":
        return (act,)
    gates = Check("recurrent_activation", lambda m: keras.activations.sigmoid,
                  "torch's gates are sigmoids: build the Keras layer with recurrent_activation='sigmoid'")
    if kind == "lstm":
        return (act, gates)
    return (act, gates, Check("reset_after", lambda m: True, "torch's GRU is Keras's GRU(reset_after=True)"))


def _rnn_rules(kind: str):
    kernel = _GRU_KERNEL if kind == "gru" else TRANSPOSE
    bias = {"gru": _GRU_BIAS, "lstm": LSTM_BIAS, "rnn": _RNN_BIAS}[kind]

    def rules(module, layer) -> WeightRules:
        k = int(getattr(layer, "torch_layer_index", 0))
        variables = list(_variables(layer))
        maps = []
        for rel in variables:
            sfx = f"_l{k}_reverse" if rel.startswith("backward_") else f"_l{k}"
            leaf = rel.rsplit("/", 1)[-1]
            if leaf == "kernel":
                maps.append(Map(rel, f"weight_ih{sfx}", kernel))
            elif leaf == "recurrent_kernel":
                maps.append(Map(rel, f"weight_hh{sfx}", kernel))
            elif leaf == "bias":
                maps.append(Map(rel, (f"bias_ih{sfx}", f"bias_hh{sfx}"), bias, fill=0.0))
        return WeightRules(tuple(maps), checks=_stock_checks(kind))

    return rules


for _t, _k, _kind in ((nn.LSTM, keras.layers.LSTM, "lstm"), (nn.GRU, keras.layers.GRU, "gru"),
                      (nn.RNN, keras.layers.SimpleRNN, "rnn")):
    register_rules(_t, _k, _rnn_rules(_kind))
    # Bidirectional wraps one of the above; the torch type says which.
    register_rules(_t, keras.layers.Bidirectional, _rnn_rules(_kind))


# ---- converters: one recreate layer per torch module ------------------------------------
def _direction_maps(mode: str, var_sfx: str, torch_sfx: str) -> list[Map]:
    """Variables of one (layer, direction) of Recurrent/RecurrentCell <- torch tensors.
    recreate's layers keep torch's gate order, so kernels are plain transposes."""
    bias = {"GRU": _STACKED_BIAS, "LSTM": LSTM_BIAS}.get(mode, _RNN_BIAS)
    return [
        Map(f"kernel{var_sfx}", f"weight_ih{torch_sfx}", TRANSPOSE),
        Map(f"recurrent_kernel{var_sfx}", f"weight_hh{torch_sfx}", TRANSPOSE),
        Map(f"bias{var_sfx}", (f"bias_ih{torch_sfx}", f"bias_hh{torch_sfx}"), bias, fill=0.0),
        Map(f"projection_kernel{var_sfx}", f"weight_hr{torch_sfx}", TRANSPOSE),
    ]


def recurrent_rules(module, layer) -> WeightRules:
    """nn.RNN/LSTM/GRU -> Recurrent: weight_ih_l{k}[_reverse] -> kernel_l{k}[_reverse], ..."""
    maps = []
    for k in range(layer.num_layers):
        for d in range(layer.num_directions):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            maps += _direction_maps(layer.mode, sfx, sfx)
    checks = (
        Check("mode", lambda m: m.mode),
        Check("num_layers", lambda m: m.num_layers),
        Check("bidirectional", lambda m: m.bidirectional),
    )
    return WeightRules(tuple(maps), checks=checks)


def _cell_mode(m) -> str:
    if isinstance(m, nn.LSTMCell):
        return "LSTM"
    if isinstance(m, nn.GRUCell):
        return "GRU"
    return {"tanh": "RNN_TANH", "relu": "RNN_RELU"}[m.nonlinearity]


def recurrent_cell_rules(module, layer) -> WeightRules:
    """nn.RNNCell/LSTMCell/GRUCell -> RecurrentCell."""
    return WeightRules(tuple(_direction_maps(layer.mode, "", "")),
                       checks=(Check("mode", _cell_mode),))


def _check_inputs(m, ctx, n_states: int, what: str, rank: int) -> None:
    """Positional inputs are the input then the flattened initial state(s)."""
    shapes = ctx.input_shapes
    kind = type(m).__name__
    # nn.RNN/LSTM/GRU take torch's unbatched (L, H_in) form as it is; the cells' unbatched
    # (H_in,) reaches them with a batch axis (recreate.convert adds it).
    if shapes and len(shapes[0]) == 1 and rank == 2:
        raise ConversionError(
            f"{kind} got an unbatched input of shape {shapes[0]} inside a traced model: give a batch "
            "of one (insert axis 0 in the input and the states)"
        )
    if "hx" in ctx.kwargs and "hx" not in ctx.tensor_kwargs:
        raise ConversionError(
            f"{kind} was called with hx={type(ctx.kwargs['hx']).__name__} as a keyword: give the initial "
            f"state(s) as positional inputs after the input instead ({what})"
        )
    extra = sorted(set(ctx.kwargs) - {"hx"})
    if extra:
        raise ConversionError(f"{kind}.forward() has no keyword argument(s) {extra}")
    given = len(shapes) - 1 + ("hx" in ctx.tensor_kwargs)
    if given not in (0, n_states):
        raise ConversionError(
            f"{kind} got {len(shapes)} positional input(s) {list(shapes)}: expected the input alone or "
            f"followed by {what}"
        )
    if shapes and shapes[0] and shapes[0][-1] != m.input_size:
        raise ConversionError(
            f"{kind}(input_size={m.input_size}) got an input of shape {shapes[0]}: its last axis must be "
            f"{m.input_size}"
        )


def _rnn_cases(torch_type, lstm_states: bool = True):
    """Cases for nn.RNN/LSTM/GRU. LSTM's initial state is a nested (h_0, c_0) pair, drawn
    only with `lstm_states=True` (assert_parity passes positional inputs as flat tensors)."""

    @st.composite
    def case(draw):
        input_size, hidden = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        layers, bidirectional = draw(st.integers(1, 3)), draw(st.booleans())
        batch_first = draw(st.booleans())
        kw = dict(num_layers=layers, bias=draw(st.booleans()), batch_first=batch_first,
                  dropout=draw(st.sampled_from([0.0, 0.3])) if layers > 1 else 0.0, bidirectional=bidirectional)
        if torch_type is nn.RNN:
            kw["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
        proj = 0
        if torch_type is nn.LSTM and hidden > 1 and draw(st.booleans()):
            proj = draw(st.integers(1, hidden - 1))
            kw["proj_size"] = proj
        m = torch_type(input_size, hidden, **kw)
        length, batch = draw(st.integers(1, 5)), draw(st.integers(1, 3))
        x = (batch, length, input_size) if batch_first else (length, batch, input_size)
        states = (layers * (2 if bidirectional else 1), batch)
        shapes = [x]
        if draw(st.booleans()) and (torch_type is not nn.LSTM or lstm_states):
            shapes.append((*states, proj or hidden))
            if torch_type is nn.LSTM:
                shapes.append((*states, hidden))
        c = make_case(draw, m, *shapes)
        if len(c.inputs) == 3:
            c.inputs = (c.inputs[0], c.inputs[1:])
        return c

    return case()


def _cell_cases(torch_type, lstm_states: bool = True):
    @st.composite
    def case(draw):
        input_size, hidden = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        kw = dict(bias=draw(st.booleans()))
        if torch_type is nn.RNNCell:
            kw["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
        m = torch_type(input_size, hidden, **kw)
        batch = draw(st.integers(1, 3))
        shapes = [(batch, input_size)]
        if draw(st.booleans()) and (torch_type is not nn.LSTMCell or lstm_states):
            shapes += [(batch, hidden)] * (2 if torch_type is nn.LSTMCell else 1)
        c = make_case(draw, m, *shapes)
        if len(c.inputs) == 3:
            c.inputs = (c.inputs[0], c.inputs[1:])
        return c

    return case()


@register(nn.RNN, nn.LSTM, nn.GRU, cases=_rnn_cases, layout=(TORCH, TORCH), rules={Recurrent: recurrent_rules})
def recurrent(m, ctx):
    lstm = m.mode == "LSTM"
    _check_inputs(m, ctx, 2 if lstm else 1, "(h_0, c_0) as two tensors" if lstm else "h_0", rank=3)
    return Recurrent(m.mode, m.input_size, m.hidden_size, num_layers=m.num_layers, bias=m.bias,
                     batch_first=m.batch_first, bidirectional=m.bidirectional,
                     proj_size=getattr(m, "proj_size", 0))


@register(nn.RNNCell, nn.LSTMCell, nn.GRUCell, cases=_cell_cases, layout=(TORCH, TORCH),
          rules={RecurrentCell: recurrent_cell_rules})
def recurrent_cell(m, ctx):
    lstm = isinstance(m, nn.LSTMCell)
    _check_inputs(m, ctx, 2 if lstm else 1, "(h, c) as two tensors" if lstm else "hx", rank=2)
    return RecurrentCell(_cell_mode(m), m.input_size, m.hidden_size, bias=m.bias)
