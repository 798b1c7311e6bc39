"""nn.Transformer encoder-decoder with causal and key-padding masks, recreated by hand in Keras.

    python zoo/transformer.py --variant small --out out/           # random weights, verified
    python zoo/transformer.py --variant base --norm-first --weights t.safetensors --out out/

Tokens are right-padded with 0. torch gets bool masks (True = masked): src/tgt/memory key
padding masks and a causal tgt_mask. Keras's MultiHeadAttention takes one bool
attention_mask (True = attend) of shape (N, T, S); the small serializable AttentionMask
layer builds it from the keys' tokens (and the causal triangle). Stock Embedding masking is
not used: it would also mask padded *queries*, which torch computes normally.
Every Keras layer is named after the torch module path (transformer.encoder.layers.0.self_attn
-> keras MultiHeadAttention), so transfer_weights fills it with the registered rules.
"""

from __future__ import annotations

import argparse
import sys

import recreate  # torch before keras/tensorflow (the torch-first isort section)
import recreate.report
import recreate.testing
import torch
from torch import nn

import keras
from keras import layers as L
from keras import ops

# name: (vocab, d_model, heads, encoder layers, decoder layers, feed-forward)
VARIANTS = {"small": (19, 16, 4, 2, 2, 24), "base": (32000, 512, 8, 6, 6, 2048)}


class Seq2SeqTransformer(nn.Module):
    def __init__(self, vocab, d, heads, n_enc, n_dec, ff, norm_first=False):
        super().__init__()
        self.src_embed = nn.Embedding(vocab, d)
        self.tgt_embed = nn.Embedding(vocab, d)
        self.transformer = nn.Transformer(d, heads, n_enc, n_dec, ff, dropout=0.1, batch_first=True, norm_first=norm_first)
        self.head = nn.Linear(d, vocab)

    def forward(self, src, tgt):
        causal = torch.triu(torch.ones(tgt.shape[1], tgt.shape[1], dtype=torch.bool), 1)
        y = self.transformer(self.src_embed(src), self.tgt_embed(tgt), tgt_mask=causal, tgt_is_causal=True,
                             src_key_padding_mask=src == 0, tgt_key_padding_mask=tgt == 0,
                             memory_key_padding_mask=src == 0)
        return self.head(y)


@keras.saving.register_keras_serializable(package="zoo_transformer")
class AttentionMask(L.Layer):
    """(query tokens (N, T), key tokens (N, S)) -> bool (N, T, S): attend to keys != 0 [and s <= t]."""

    def __init__(self, causal=False, **kwargs):
        super().__init__(**kwargs)
        self.causal = causal

    def call(self, query_tokens, key_tokens):
        t, s = ops.shape(query_tokens)[1], ops.shape(key_tokens)[1]
        mask = ops.broadcast_to(ops.not_equal(key_tokens, 0)[:, None, :], (ops.shape(key_tokens)[0], t, s))
        if self.causal:
            mask = ops.logical_and(mask, ops.arange(s)[None, None, :] <= ops.arange(t)[None, :, None])
        return mask

    def compute_output_shape(self, query_tokens_shape, key_tokens_shape):
        return (query_tokens_shape[0], query_tokens_shape[1], key_tokens_shape[1])

    def get_config(self):
        return {**super().get_config(), "causal": self.causal}


def _sublayer(x, p, norm_name, norm_first, fn):
    norm = L.LayerNormalization(epsilon=1e-5, name=f"{p}.{norm_name}")
    return L.Add()([x, fn(norm(x))]) if norm_first else norm(L.Add()([x, fn(x)]))


def _ff(p, d, ff):
    return lambda x: L.Dense(d, name=f"{p}.linear2")(L.Dense(ff, activation="relu", name=f"{p}.linear1")(x))


def _mha(p, name, d, heads):
    return L.MultiHeadAttention(heads, d // heads, name=f"{p}.{name}")


def keras_transformer(vocab, d, heads, n_enc, n_dec, ff, norm_first=False) -> keras.Model:
    src = keras.Input((None,), dtype="int32", name="src")
    tgt = keras.Input((None,), dtype="int32", name="tgt")
    src_mask, mem_mask = AttentionMask()(src, src), AttentionMask()(tgt, src)
    tgt_mask = AttentionMask(causal=True)(tgt, tgt)
    x = L.Embedding(vocab, d, name="src_embed")(src)
    for i in range(n_enc):
        p = f"transformer.encoder.layers.{i}"
        sa = _mha(p, "self_attn", d, heads)
        x = _sublayer(x, p, "norm1", norm_first, lambda h, sa=sa: sa(h, h, attention_mask=src_mask))
        x = _sublayer(x, p, "norm2", norm_first, _ff(p, d, ff))
    memory = L.LayerNormalization(epsilon=1e-5, name="transformer.encoder.norm")(x)
    y = L.Embedding(vocab, d, name="tgt_embed")(tgt)
    for i in range(n_dec):
        p = f"transformer.decoder.layers.{i}"
        sa, ca = _mha(p, "self_attn", d, heads), _mha(p, "multihead_attn", d, heads)
        y = _sublayer(y, p, "norm1", norm_first, lambda h, sa=sa: sa(h, h, attention_mask=tgt_mask))
        y = _sublayer(y, p, "norm2", norm_first, lambda h, ca=ca: ca(h, memory, attention_mask=mem_mask))
        y = _sublayer(y, p, "norm3", norm_first, _ff(p, d, ff))
    y = L.LayerNormalization(epsilon=1e-5, name="transformer.decoder.norm")(y)
    return keras.Model([src, tgt], L.Dense(vocab, name="head")(y), name="transformer")


def build(variant: str = "small", weights: str | None = None, norm_first: bool = False, seed: int = 0):
    """(torch model in eval mode, filled Keras model, transfer report)."""
    tm = Seq2SeqTransformer(*VARIANTS[variant], norm_first=norm_first)
    if weights:
        tm.load_state_dict(recreate.load_state_dict(weights))
    else:
        recreate.testing.randomize_(tm, seed)
    km = keras_transformer(*VARIANTS[variant], norm_first=norm_first)
    return tm.eval(), km, recreate.transfer_weights(tm, km)


def padded(g, vocab, lengths):
    x = torch.zeros(len(lengths), max(lengths), dtype=torch.int64)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randint(1, vocab, (n,), generator=g)
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="small", choices=sorted(VARIANTS))
    ap.add_argument("--norm-first", action="store_true", help="pre-norm layers (norm_first=True)")
    recreate.report.add_arguments(ap)
    args = ap.parse_args(argv)
    tm, km, transfer = build(args.variant, args.weights, args.norm_first)
    g = torch.Generator().manual_seed(1234)
    lengths = [((5, 2, 4), (3, 6, 1)), ((3, 3), (2, 4)), ((7, 1, 2, 6), (5, 5, 2, 3)), ((1, 4), (4, 1))]
    vocab = VARIANTS[args.variant][0]
    batches = [(padded(g, vocab, s), padded(g, vocab, t)) for s, t in lengths[:max(2, args.batches)]]
    return recreate.report.prove_and_save(f"transformer_{args.variant}", tm, km, transfer, batches, out=args.out,
                                          tolerance=args.tolerance, layers=False)


if __name__ == "__main__":
    sys.exit(main())
