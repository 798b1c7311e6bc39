"""A GRU-decoder seq2seq model over a 2-layer bidirectional LSTM encoder, recreated in Keras.

    python zoo/seq2seq.py --variant small --out out/           # random weights, verified
    python zoo/seq2seq.py --variant base --weights seq2seq.safetensors --out out/

Source batches are right-padded with token 0 and their lengths differ. torch packs them
(pack_padded_sequence), so each direction of each layer sees only the real tokens; Keras
gets the same from masking: Embedding(mask_zero=True) makes a mask that Bidirectional(LSTM)
honours (a masked step keeps the state, and the backward pass meets the padding first, while
its state is still zero), and zero_output_for_mask=True gives pad_packed_sequence's zeros.
Outputs: decoder logits (N, T, V) and the padded encoder memory (N, S, 2H).

torch's 2-layer nn.LSTM is two Keras Bidirectional layers: the second is named
"encoder_l1" and mapped onto "encoder" with torch_layer_index = 1 (the weight rules read
weight_ih_l1 / weight_ih_l1_reverse).
"""

from __future__ import annotations

import argparse
import sys

import recreate  # torch before keras/tensorflow (the torch-first isort section)
import recreate.report
import recreate.testing
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import keras
from keras import layers as L

# name: (source vocab, target vocab, embedding, hidden)
VARIANTS = {"small": (20, 17, 8, 6), "base": (8000, 8000, 256, 512)}


class Seq2Seq(nn.Module):
    def __init__(self, src_vocab, tgt_vocab, emb, hidden):
        super().__init__()
        self.embed = nn.Embedding(src_vocab, emb, padding_idx=0)
        self.encoder = nn.LSTM(emb, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.tgt_embed = nn.Embedding(tgt_vocab, emb)
        self.decoder = nn.GRU(emb, hidden, batch_first=True)
        self.head = nn.Linear(hidden, tgt_vocab)

    def forward(self, src, tgt):
        lengths = (src != 0).sum(1).cpu()
        packed = pack_padded_sequence(self.embed(src), lengths, batch_first=True, enforce_sorted=False)
        out, (h, _) = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        h0 = torch.tanh(self.bridge(torch.cat([h[-2], h[-1]], -1)))  # last layer: forward, backward
        y, _ = self.decoder(self.tgt_embed(tgt), h0[None])
        return self.head(y), memory


def keras_seq2seq(src_vocab, tgt_vocab, emb, hidden) -> keras.Model:
    src = keras.Input((None,), dtype="int32", name="src")
    tgt = keras.Input((None,), dtype="int32", name="tgt")
    x = L.Embedding(src_vocab, emb, mask_zero=True, name="embed")(src)
    lstm = dict(return_sequences=True, zero_output_for_mask=True)
    x = L.Bidirectional(L.LSTM(hidden, **lstm), name="encoder")(x)
    top = L.Bidirectional(L.LSTM(hidden, return_state=True, **lstm), name="encoder_l1")
    top.torch_layer_index = 1
    memory, h_fw, _, h_bw, _ = top(x)
    h0 = L.Dense(hidden, activation="tanh", name="bridge")(L.Concatenate()([h_fw, h_bw]))
    y = L.GRU(hidden, return_sequences=True, reset_after=True, name="decoder")(
        L.Embedding(tgt_vocab, emb, name="tgt_embed")(tgt), initial_state=h0)
    return keras.Model([src, tgt], [L.Dense(tgt_vocab, name="head")(y), memory], name="seq2seq")


def build(variant: str = "small", weights: str | None = None, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    tm = Seq2Seq(*VARIANTS[variant])
    if weights:
        tm.load_state_dict(recreate.load_state_dict(weights))
    else:
        recreate.testing.randomize_(tm, seed)
    km = keras_seq2seq(*VARIANTS[variant])
    report = recreate.transfer_weights(tm, km, mapping={"encoder_l1": "encoder"})
    return tm.eval(), km, report


def padded_batch(g, vocab, lengths, tgt_vocab, tgt_len):
    """Right-padded source batch with the given lengths (one is the full width) and a target."""
    src = torch.zeros(len(lengths), max(lengths), dtype=torch.int64)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(1, vocab, (n,), generator=g)
    return src, torch.randint(0, tgt_vocab, (len(lengths), tgt_len), generator=g)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="small", choices=sorted(VARIANTS))
    recreate.report.add_arguments(ap)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.variant, args.weights)
    src_vocab, tgt_vocab, _, _ = VARIANTS[args.variant]
    g = torch.Generator().manual_seed(1234)
    lengths = [(7, 3, 1, 5), (4, 4, 2), (9, 1, 6, 8, 2), (2, 5), (6, 6, 6)]  # differ within each batch
    batches = [padded_batch(g, src_vocab, n, tgt_vocab, 4 + i) for i, n in enumerate(lengths[:max(2, args.batches)])]
    return recreate.report.prove_and_save(f"seq2seq_{args.variant}", tm, km, transfer, batches, out=args.out,
                                          tolerance=args.tolerance, layers=False)


if __name__ == "__main__":
    sys.exit(main())
