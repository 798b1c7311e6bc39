"""Attention and transformer family beyond the registry-wide property test: torch's fast-path
semantics (pinned here as torch facts, then matched), fully masked rows, nested-tensor output,
.keras round trips with safe_mode=True, tf.function, weight transfer into hand-built models,
and error messages."""

from __future__ import annotations

import os
import warnings

import recreate
import torch
from recreate.convert import flatten_outputs
from recreate.errors import ConversionError
from recreate.layers.attention import MultiheadAttention
from recreate.layers.layer_norm import LayerNorm
from recreate.layers.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from recreate.testing import randomize_
from recreate.testing.parity import parity_error
from torch import nn

import keras
import numpy as np
import pytest
from hypothesis import given, settings


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _torch(module, inputs, kwargs=None):
    kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in (kwargs or {}).items()}
    with torch.no_grad():
        return [t.numpy() for t in flatten_outputs(module(*[torch.tensor(x) for x in inputs], **kw))]


def _keras(km, inputs, kwargs=None):
    feeds = list(inputs) + [v for v in (kwargs or {}).values() if isinstance(v, np.ndarray)]
    out = km(feeds if len(feeds) > 1 else feeds[0])
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in flatten_outputs(out)]


def _check(module, inputs, kwargs=None, km=None, tolerance=1e-5):
    """Convert (unless km is given), compare every output; NaN must sit where torch has NaN."""
    if km is None:
        kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in (kwargs or {}).items()}
        km = recreate.convert(module, tuple(torch.tensor(x) for x in inputs), kwargs=kw)
    ref, got = _torch(module, inputs, kwargs), _keras(km, inputs, kwargs)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        ok = ~np.isnan(r)
        assert parity_error(g[ok], r[ok]) <= tolerance
    return km


def _encoder_layer(seed=0, **kw):
    args = dict(d_model=8, nhead=2, dim_feedforward=6, batch_first=True)
    return randomize_(nn.TransformerEncoderLayer(**{**args, **kw}), seed)


# ---- torch facts the converters reproduce -----------------------------------------------------
def _fast_and_reference(module, *inputs, **kwargs):
    out = []
    for fast in (True, False):
        torch.backends.mha.set_fastpath_enabled(fast)
        try:
            with torch.no_grad():
                out.append(module(*inputs, **kwargs))
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    return out


def test_torch_fused_encoder_layer_reads_float_masks_as_boolean():
    """torch._transformer_encoder_layer_fwd masks every nonzero float (here +2.0), where the
    reference path adds it; and it runs exact GELU for nn.GELU(approximate='tanh')."""
    m = _encoder_layer(1)
    x = torch.tensor(_rand(2, 4, 8))
    plus2 = torch.zeros(4, 4)
    plus2[0, 1] = 2.0
    fast, ref = _fast_and_reference(m, x, src_mask=plus2)
    as_bool = _fast_and_reference(m, x, src_mask=plus2 != 0)[1]
    assert (fast - as_bool).abs().max() < 1e-5 and (fast - ref).abs().max() > 1e-3
    tanh = _encoder_layer(1, activation=nn.GELU(approximate="tanh"))
    erf = _encoder_layer(1, activation=nn.GELU())
    assert torch.equal(_fast_and_reference(tanh, x)[0], _fast_and_reference(erf, x)[0])
    # ... and recreate follows, because torch takes that path in eval under no_grad.
    _check(m, (x.numpy(),), {"src_mask": plus2.numpy()})
    _check(tanh, (x.numpy(),))


def test_torch_decoder_clones_run_relu_whatever_module_activation():
    """torch's TransformerDecoderLayer.__setstate__ sets activation=F.relu when 'activation' is not
    in __dict__ (a module activation lives in _modules), so deepcopy, and with it the clones
    nn.TransformerDecoder and nn.Transformer make, run ReLU. The converter reads the live
    attribute and matches what torch computes."""
    dec = randomize_(nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 6, activation=nn.GELU()), 2), 15)
    assert dec.layers[0].activation is torch.nn.functional.relu
    km = _check(dec, (_rand(3, 2, 8), _rand(4, 2, 8, seed=1)))
    assert km.get_layer("transformerdecoder").stack[0].activation == "relu"


def test_float_mask_is_added_where_torch_takes_its_reference_path():
    """batch_first=False (or odd heads, bias=False, another activation) is the reference path."""
    m = _encoder_layer(2, batch_first=False)
    mask = _rand(4, 4, seed=3)
    _check(m, (_rand(4, 2, 8),), {"src_mask": mask})


def test_nested_tensor_output_is_zero_at_padded_positions():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = randomize_(nn.TransformerEncoder(_encoder_layer(), 2), 4)
    x = _rand(2, 5, 8, seed=4)
    kpm = np.array([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], bool)
    ref = _torch(enc, (x,), {"src_key_padding_mask": kpm})[0]
    assert np.all(ref[0, 3:] == 0) and np.abs(ref[0, :3]).min() > 0  # torch's nested-tensor padding
    km = _check(enc, (x,), {"src_key_padding_mask": kpm})
    assert np.all(_keras(km, (x,), {"src_key_padding_mask": kpm})[0][0, 3:] == 0)
    # Not left-aligned: mask_check falls back to the masked dense path; without the check
    # torch keeps the first n positions (n = unmasked count) of each row.
    gaps = np.array([[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]], bool)
    _check(enc, (x,), {"src_key_padding_mask": gaps})
    enc.mask_check = False
    _check(enc, (x,), {"src_key_padding_mask": gaps})
    assert np.all(_torch(enc, (x,), {"src_key_padding_mask": gaps})[0][0, 3:] == 0)


# ---- fully masked rows ------------------------------------------------------------------------
@pytest.mark.parametrize("need_weights", [True, False])
def test_fully_masked_rows(need_weights):
    """torch: NaN, except scaled_dot_product_attention (reference path, need_weights=False),
    which gives zero weights, so the output is out_proj's bias."""
    m = randomize_(nn.MultiheadAttention(4, 2, batch_first=True), 5)
    q, kv = _rand(2, 3, 4), _rand(2, 3, 4, seed=1)
    kpm = np.array([[1, 1, 1], [0, 1, 0]], bool)
    kw = {"key_padding_mask": kpm, "need_weights": need_weights}
    ref = _torch(m, (q, kv, kv), kw)[0]
    assert np.isnan(ref[0]).all() == need_weights
    _check(m, (q, kv, kv), kw)


def test_fully_masked_rows_on_the_self_attention_fast_path():
    """torch's native fast path (query is key is value, bool masks) gives NaN even without
    weights; recreate's layer sees the same tensor three times and does the same."""
    m = randomize_(nn.MultiheadAttention(4, 2, batch_first=True), 6)
    x = _rand(2, 3, 4)
    kpm = np.array([[1, 1, 1], [0, 1, 0]], bool)
    with torch.no_grad():
        xt = torch.tensor(x)
        ref = m(xt, xt, xt, key_padding_mask=torch.tensor(kpm), need_weights=False)[0].numpy()
    assert np.isnan(ref[0]).all() and not np.isnan(ref[1]).any()
    inp, mask = keras.Input((3, 4)), keras.Input((3,), dtype="bool")
    layer = recreate.registry.lookup(m).make_layers(m, recreate.registry.BuildContext(((2, 3, 4),) * 3, {
        "need_weights": False}, ("key_padding_mask",)), "mha")[0]
    km = keras.Model([inp, mask], layer(inp, inp, inp, key_padding_mask=mask))
    recreate.transfer_weights(m, km, mapping={"mha": ""})
    got = np.asarray(km([x, kpm]))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert parity_error(got[1], ref[1]) <= 1e-5


# ---- is_causal --------------------------------------------------------------------------------
def test_is_causal_replaces_the_mask_on_the_reference_path():
    """need_weights=False and no padding mask: torch uses a top-left causal mask over every key
    (bias_k and the zero key included) whatever attn_mask says."""
    m = randomize_(nn.MultiheadAttention(4, 2, add_bias_kv=True, add_zero_attn=True), 7)
    q, kv = _rand(3, 2, 4), _rand(5, 2, 4, seed=1)
    lying = np.zeros((3, 5), np.float32)
    _check(m, (q, kv, kv), {"attn_mask": lying, "need_weights": False, "is_causal": True})


def test_is_causal_without_mask():
    x = _rand(2, 4, 8)
    # Fused encoder path: torch ignores the hint, and so does recreate.
    _check(_encoder_layer(), (x,), {"is_causal": True})
    # Reference path: torch raises; recreate refuses to convert.
    m = _encoder_layer(batch_first=False)
    with pytest.raises(RuntimeError, match="Need attn_mask"), torch.no_grad():
        m(torch.tensor(x), is_causal=True)
    with pytest.raises(ConversionError, match=r"is_causal=True\) without src_mask"):
        recreate.convert(m, torch.tensor(x), kwargs={"is_causal": True})
    mha = nn.MultiheadAttention(4, 1).eval()
    with pytest.raises(ConversionError, match="without attn_mask"):
        recreate.convert(mha, (torch.zeros(3, 2, 4),) * 3, kwargs={"is_causal": True})
    dec = nn.TransformerDecoderLayer(8, 2, 6).eval()
    with pytest.raises(ConversionError, match=r"memory_is_causal=True\) without memory_mask"):
        recreate.convert(dec, (torch.zeros(3, 2, 8),) * 2, kwargs={"memory_is_causal": True})


# ---- unbatched inputs ---------------------------------------------------------------------------
def _unbatched_cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = nn.TransformerEncoder(_encoder_layer(), 2, norm=nn.LayerNorm(8))
    kpm, plus2 = np.array([0, 0, 1, 0], bool), np.where(np.eye(4, k=1) > 0, 2.0, 0.0).astype("float32")
    mha = nn.MultiheadAttention(6, 3, kdim=2, vdim=5, add_bias_kv=True, add_zero_attn=True, batch_first=True)
    return [
        (mha, (_rand(3, 6), _rand(4, 2, seed=1), _rand(4, 5, seed=2)),
         {"key_padding_mask": kpm, "attn_mask": _rand(3, 3, 4, seed=3), "average_attn_weights": False}),
        (nn.MultiheadAttention(4, 2, batch_first=True), (_rand(3, 4),) * 3, {"need_weights": False,
                                                                                "attn_mask": _rand(3, 3, seed=4)}),
        # Unbatched input takes torch's reference path: the float mask is added, not read as boolean.
        (_encoder_layer(activation=nn.GELU(approximate="tanh")), (_rand(4, 8),),
         {"src_mask": plus2, "src_key_padding_mask": kpm}),
        (enc, (_rand(4, 8),), {"src_key_padding_mask": kpm}),
        (nn.TransformerDecoderLayer(8, 2, 6, batch_first=True), (_rand(3, 8), _rand(4, 8, seed=1)),
         {"tgt_mask": np.triu(np.ones((3, 3), bool), 1), "memory_key_padding_mask": kpm, "tgt_is_causal": True}),
        (nn.Transformer(8, 2, 1, 1, 6), (_rand(4, 8), _rand(3, 8, seed=1)), {"src_key_padding_mask": kpm}),
    ]


@pytest.mark.parametrize("module, inputs, kwargs", _unbatched_cases(), ids=lambda v: type(v).__name__
                         if isinstance(v, nn.Module) else "")
def test_unbatched_inputs(module, inputs, kwargs):
    """torch takes (L, E) without a batch axis; the converted model's leading axis is then L."""
    _check(randomize_(module, 13), inputs, kwargs)


# ---- serialization and graph mode -------------------------------------------------------------
def _transformer_case():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = randomize_(nn.Transformer(8, 2, 2, 2, 12, activation="gelu", batch_first=True, norm_first=False), 8)
    src, tgt = _rand(2, 5, 8, seed=1), _rand(2, 4, 8, seed=2)
    kw = {
        "tgt_mask": nn.Transformer.generate_square_subsequent_mask(4).numpy(),
        "src_key_padding_mask": np.array([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], bool),
        "memory_key_padding_mask": np.array([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], bool),
    }
    return m, (src, tgt), kw


def test_transformer_keras_round_trip_and_tf_function(tmp_path):
    import tensorflow as tf

    m, inputs, kw = _transformer_case()
    km = _check(m, inputs, kw)
    path = tmp_path / "transformer.keras"
    km.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    layer = loaded.get_layer("transformer")
    assert isinstance(layer, Transformer) and layer.get_config() == km.get_layer("transformer").get_config()
    assert [v.path for v in loaded.weights] == [v.path for v in km.weights]
    recreate.transfer_weights(m, loaded, mapping={"transformer": ""})  # the rules still find every variable
    _check(m, inputs, kw, km=loaded)
    feeds = [*inputs, *kw.values()]
    graph = tf.function(lambda *a: loaded(list(a)), jit_compile=False)
    assert parity_error(np.asarray(graph(*feeds)), _torch(m, inputs, kw)[0]) <= 1e-5
    # Dynamic sequence lengths through one traced signature.
    sig = [tf.TensorSpec((None, None, 8)), tf.TensorSpec((None, None, 8)), tf.TensorSpec((None, None)),
           tf.TensorSpec((None, None), tf.bool), tf.TensorSpec((None, None), tf.bool)]
    graph = tf.function(lambda *a: loaded(list(a)), input_signature=sig)
    src, tgt = _rand(3, 6, 8, seed=5), _rand(3, 2, 8, seed=6)
    kw2 = {"tgt_mask": nn.Transformer.generate_square_subsequent_mask(2).numpy(),
           "src_key_padding_mask": np.zeros((3, 6), bool), "memory_key_padding_mask": np.eye(3, 6, 2, dtype=bool)}
    got = np.asarray(graph(src, tgt, *kw2.values()))
    assert parity_error(got, _torch(m, (src, tgt), kw2)[0]) <= 1e-5


@pytest.mark.parametrize("kw", [
    {"need_weights": True, "average_attn_weights": False},
    {"need_weights": False},
], ids=["weights", "no-weights"])
def test_mha_keras_round_trip(kw, tmp_path):
    m = randomize_(nn.MultiheadAttention(6, 3, kdim=2, vdim=5, add_bias_kv=True, add_zero_attn=True), 9)
    q, k, v = _rand(4, 2, 6), _rand(3, 2, 2, seed=1), _rand(3, 2, 5, seed=2)
    kw = {**kw, "attn_mask": _rand(6, 4, 3, seed=3), "key_padding_mask": np.array([[0, 1, 0], [1, 0, 0]], bool)}
    km = _check(m, (q, k, v), kw)
    km.save(tmp_path / "mha.keras")
    loaded = keras.saving.load_model(tmp_path / "mha.keras", safe_mode=True)
    assert isinstance(loaded.get_layer("multiheadattention"), MultiheadAttention)
    _check(m, (q, k, v), kw, km=loaded)


LAYERS = [
    LayerNorm(axis=(-2, -1), epsilon=1e-5, center=False, name="ln"),
    MultiheadAttention(6, 3, use_bias=False, add_bias_kv=True, add_zero_attn=True, kdim=2, vdim=5,
                       batch_first=True, need_weights=False, is_causal=True, fast_path=False, name="mha"),
    TransformerEncoderLayer(8, 2, 6, activation="gelu_tanh", layer_norm_eps=(1e-5, 1e-3), norm_first=True,
                            use_bias=False, is_causal=True, name="enc_layer"),
    TransformerDecoderLayer(8, 2, 6, activation="silu", batch_first=True, tgt_is_causal=True, name="dec_layer"),
    TransformerEncoder([TransformerEncoderLayer(4, 2, 3, name=f"layers.{i}") for i in range(2)], norm_eps=1e-3,
                       norm_center=False, nested=True, mask_check=False, name="enc"),
    TransformerDecoder([TransformerDecoderLayer(4, 1, 3, name="layers.0")], name="dec"),
    Transformer(TransformerEncoder([TransformerEncoderLayer(4, 2, 3, name="layers.0")], name="encoder"),
                TransformerDecoder([TransformerDecoderLayer(4, 2, 3, name="layers.0")], norm_eps=1e-5,
                                   name="decoder"), name="t"),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda lyr: type(lyr).__name__)
def test_config_round_trip(layer):
    cfg = layer.get_config()
    assert type(layer).from_config(cfg).get_config() == cfg
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer), safe_mode=True)
    assert type(restored) is type(layer) and restored.get_config() == cfg


# ---- numerics ---------------------------------------------------------------------------------
def test_layer_norm_subtracts_the_mean_first():
    """A constant row normalises to exactly beta in torch's order; Keras's
    x * inv + (beta - mean * inv) rounds beta at the scale of mean * inv."""
    tm = randomize_(nn.LayerNorm(4, eps=1e-5), 14)
    x = _rand(3, 4, seed=14)
    x[0] = 7.0
    with torch.no_grad():
        ref = tm(torch.tensor(x)).numpy()
    ours, stock = LayerNorm(epsilon=1e-5, name="ln"), keras.layers.LayerNormalization(epsilon=1e-5, name="ln")
    for layer in (ours, stock):
        recreate.transfer_weights(tm, keras.Sequential([keras.Input((4,)), layer]), mapping={"ln": ""})
    np.testing.assert_array_equal(np.asarray(ours(x))[0], ref[0])
    assert parity_error(np.asarray(ours(x)), ref) <= 1e-6
    assert parity_error(np.asarray(stock(x))[0], ref[0]) > 1e-5


@pytest.mark.parametrize("torch_type", [nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
                                        nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer],
                         ids=lambda t: t.__name__)
def test_float64_parity(torch_type):
    """The registry's own cases in float64 agree with torch to 1e-10 (mostly 1e-14), so the
    float32 differences the parity test allows for these entries are rounding, amplified where
    LayerNorm sees nearly equal features. (tf.nn.gelu casts float32 constants to float64, 5e-9,
    which three layers amplified to 1.1e-7: recreate's GELU uses torch's formula instead.)"""
    entry = recreate.registry.find_entry(torch_type)

    @settings(max_examples=int(os.environ.get("F64_EXAMPLES", "8")))
    @given(case=entry.cases(torch_type))
    def check(case):
        m = case.module.double()
        inputs = tuple(x.astype("float64") for x in case.inputs)
        kw = {k: v.astype("float64") if isinstance(v, np.ndarray) and v.dtype == np.float32 else v
              for k, v in case.kwargs.items()}
        policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float64")
        try:
            _check(m, inputs, kw, tolerance=1e-10)
        finally:
            keras.config.set_dtype_policy(policy)

    check()


# ---- weight transfer into hand-built models ---------------------------------------------------
def test_transfer_into_hand_built_encoder_from_state_dict():
    """A state dict alone fills a hand-built recreate TransformerEncoder through the rules."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = randomize_(nn.TransformerEncoder(_encoder_layer(activation="relu", norm_first=True), 3,
                                              norm=nn.LayerNorm(8, eps=1e-3)), 10)
    enc = TransformerEncoder([TransformerEncoderLayer(8, 2, 6, batch_first=True, norm_first=True,
                                                      name=f"layers.{i}") for i in range(3)],
                             norm_eps=1e-3, name="encoder")
    inp = keras.Input((5, 8))
    km = keras.Model(inp, enc(inp))
    report = recreate.transfer_weights(tm.state_dict(), km, mapping={"encoder": ""})
    assert report.complete  # every torch tensor used, every Keras variable filled
    assert report.tensors == len(km.weights) == len(tm.state_dict()) + 3 * 4  # in_proj w, b -> q, k, v
    _check(tm, (_rand(2, 5, 8),), km=km)


def test_stock_keras_multi_head_attention_still_filled():
    tm = randomize_(nn.MultiheadAttention(8, 2, batch_first=True), 11)
    q = keras.Input((5, 8))
    km = keras.Model(q, keras.layers.MultiHeadAttention(2, 4, name="mha")(q, q, q))
    recreate.transfer_weights(tm, km, mapping={"mha": ""})
    x = _rand(2, 5, 8)
    np.testing.assert_allclose(np.asarray(km(x)), _torch(tm, (x, x, x))[0], atol=1e-5)


def test_transfer_refuses_a_different_head_count():
    tm = nn.MultiheadAttention(8, 2)
    layer = MultiheadAttention(8, 4, name="mha")
    q = keras.Input((2, 8))
    km = keras.Model(q, layer(q, q, q))
    with pytest.raises(recreate.TransferError, match=r"'mha'.num_heads=4 but torch '' has 2"):
        recreate.transfer_weights(tm, km, mapping={"mha": ""})


# ---- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("activation, match", [
    (nn.LeakyReLU(0.2), r"activation=LeakyReLU\(negative_slope=0.2\) is not supported"),
    (lambda x: x * 2, "activation=<function"),
])
def test_unsupported_activation(activation, match):
    m = _encoder_layer(activation=activation, batch_first=False)
    with pytest.raises(ConversionError, match=match):
        recreate.convert(m, torch.zeros(3, 2, 8))


def test_supported_callable_activations():
    import functools

    import torch.nn.functional as F

    x = _rand(3, 2, 8)
    for act in (torch.relu, F.silu, nn.Tanh(), functools.partial(F.gelu, approximate="tanh")):
        _check(randomize_(nn.TransformerDecoderLayer(8, 2, 6, activation=act), 12), (x, x))


def test_custom_parts_are_refused():
    m = nn.Transformer(8, 2, 1, 1, 6, custom_encoder=nn.Identity()).eval()
    with pytest.raises(ConversionError, match="Transformer.encoder is a custom Identity"):
        recreate.convert(m, (torch.zeros(3, 2, 8), torch.zeros(3, 2, 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = nn.TransformerEncoder(_encoder_layer(), 1, norm=nn.BatchNorm1d(8)).eval()
    with pytest.raises(ConversionError, match=r"TransformerEncoder.norm=BatchNorm1d.* is not supported"):
        recreate.convert(enc, torch.zeros(2, 3, 8))
    layer = _encoder_layer()
    layer.norm2 = nn.RMSNorm(8)
    with pytest.raises(ConversionError, match=r"TransformerEncoderLayer.norm2 must be nn.LayerNorm\(8\)"):
        recreate.convert(layer, torch.zeros(2, 3, 8))


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiheadAttention(6, 4)
    with pytest.raises(ValueError, match="activation must be one of"):
        TransformerEncoderLayer(8, 2, activation="swish")
    with pytest.raises(ValueError, match="layer_norm_eps needs 1 or 3 values"):
        TransformerDecoderLayer(8, 2, layer_norm_eps=(1e-5, 1e-5))
