"""Recurrent weight rules: torch RNN/LSTM/GRU -> Keras SimpleRNN/LSTM/GRU, and Bidirectional.

torch stores weight_ih_l{k}[_reverse] (gates stacked on axis 0), weight_hh_l{k}, and two
biases; Keras stores cell/kernel (in, gates), cell/recurrent_kernel and one bias (LSTM,
SimpleRNN: the sum) or a (2, 3u) bias (GRU with reset_after=True, which is torch's GRU math).
A Keras layer holds one torch layer: layer 0, or the layer named by the Keras layer's
`torch_layer_index` attribute when a stacked torch RNN is recreated as several Keras layers.
"""

from __future__ import annotations

from torch import nn

from .._backend import keras
from ..registry import Check, Map, WeightRules, register_rules
from ..transfer import _variables
from ..transforms import GRU_GATES, LSTM_BIAS, TRANSPOSE, Chain, ReorderChunks, Stack, Sum

_GRU_KERNEL = Chain(GRU_GATES, TRANSPOSE, name="gates rzn->zrn, transpose")
_GRU_BIAS = Chain(Stack(2), ReorderChunks((1, 0, 2), axis=1), name="stack(b_ih,b_hh), gates rzn->zrn")
_RNN_BIAS = Sum(2, name="b_ih+b_hh")


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
        checks = (Check("reset_after", lambda m: True, "torch's GRU is Keras's GRU(reset_after=True)"),) if kind == "gru" else ()
        return WeightRules(tuple(maps), checks=checks)

    return rules


for _t, _k, _kind in ((nn.LSTM, keras.layers.LSTM, "lstm"), (nn.GRU, keras.layers.GRU, "gru"),
                      (nn.RNN, keras.layers.SimpleRNN, "rnn")):
    register_rules(_t, _k, _rnn_rules(_kind))
    # Bidirectional wraps one of the above; the torch type says which.
    register_rules(_t, keras.layers.Bidirectional, _rnn_rules(_kind))
