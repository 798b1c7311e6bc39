"""Linear family, embeddings, shape and distance modules: what the registry-wide property
test cannot cover (transfer into stock Keras layers, .keras round trips, error messages,
torch semantics worth pinning down)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import torch
from torch import nn

import recreate
from recreate.errors import ConversionError
from recreate.layers.bilinear import Bilinear
from recreate.layers.channel_shuffle import ChannelShuffle
from recreate.layers.distance import CosineSimilarity, PairwiseDistance
from recreate.layers.embedding import MaxNormEmbedding
from recreate.layers.embedding_bag import EmbeddingBag
from recreate.layers.fold import Fold, Unfold
from recreate.layers.pixel_shuffle import PixelShuffle, PixelUnshuffle
from recreate.layers.unflatten import Unflatten
from recreate.testing import assert_parity, randomize_

RNG = np.random.default_rng(0)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# ---- transfer into hand-written models ---------------------------------------------------
class Tokens(nn.Module):
    def __init__(self, max_norm=None):
        super().__init__()
        self.emb = nn.Embedding(11, 4, padding_idx=0, max_norm=max_norm)
        self.head = nn.Linear(4, 3)

    def forward(self, idx):
        return self.head(self.emb(idx))


def test_transfer_embedding_into_stock_keras_embedding():
    tm = randomize_(Tokens(), 1)
    inp = keras.Input((5,), dtype="int64")
    km = keras.Model(inp, keras.layers.Dense(3, name="head")(keras.layers.Embedding(11, 4, name="emb")(inp)))
    report = recreate.transfer_weights(tm, km)
    assert report.complete
    idx = RNG.integers(0, 11, (3, 5))
    idx[0, 0] = 0  # padding_idx: a plain lookup of the (random) row in the forward pass
    res = recreate.verify(tm, km, torch.tensor(idx), tolerance=1e-5)
    assert res.passed, res


@pytest.mark.parametrize("run_torch_first", [False, True])
def test_transfer_max_norm_embedding_matches_before_and_after_torch_renormalised(run_torch_first):
    tm = randomize_(Tokens(max_norm=0.5), 2)
    idx = torch.tensor(RNG.integers(0, 11, (4, 6)))
    with torch.no_grad():
        before = tm.emb.weight.clone()
        if run_torch_first:  # torch renormalises the looked-up rows of its weight in place
            tm(idx)
            assert not torch.equal(before, tm.emb.weight)
    inp = keras.Input((6,), dtype="int64")
    emb = MaxNormEmbedding(11, 4, max_norm=0.5, name="emb")
    km = keras.Model(inp, keras.layers.Dense(3, name="head")(emb(inp)))
    recreate.transfer_weights(tm, km)  # the keras.layers.Embedding rule, found through the MRO
    with torch.no_grad():
        ref = tm(idx).numpy()
    np.testing.assert_allclose(_np(km(idx.numpy())), ref, atol=1e-5)


def test_max_norm_renorm_uses_torch_eps_and_norm_type():
    w = np.array([[3.0, 4.0], [0.3, 0.4], [1e-7, 0.0]], np.float32)
    for norm_type, max_norm in [(2.0, 1.0), (1.0, 1.0), (math.inf, 0.5), (0.5, 2.0), (2.0, 5e-8)]:
        m = nn.Embedding(3, 2, max_norm=max_norm, norm_type=norm_type)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(w))
        idx = np.array([[0, 1, 2, 0]])
        assert_parity(m.eval(), (idx,))


def test_bilinear_and_embedding_bag_fill_recreate_layers():
    tm = randomize_(nn.Bilinear(3, 2, 4), 0)
    a, b = keras.Input((3,)), keras.Input((2,))
    km = keras.Model([a, b], Bilinear(4, name="bil")(a, b))
    recreate.transfer_weights(tm, km, mapping={"bil": ""})
    x1, x2 = RNG.standard_normal((5, 3)).astype("f4"), RNG.standard_normal((5, 2)).astype("f4")
    np.testing.assert_allclose(_np(km([x1, x2])), tm(torch.tensor(x1), torch.tensor(x2)).detach().numpy(), atol=1e-5)


# ---- EmbeddingBag semantics ----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [None, 1])
def test_embedding_bag_csr_offsets_empty_bags_and_padding(mode, padding_idx):
    m = randomize_(nn.EmbeddingBag(5, 3, mode=mode, padding_idx=padding_idx, include_last_offset=True), 3)
    idx = np.array([1, 2, 1, 3, 4, 0])
    # empty bag, a bag of padding only, and offsets[-1] == len(idx) (CSR)
    for offsets in ([0, 2, 2, 6], [0, 1, 3, 6], [0, 0, 0, 6], [0, 6, 6]):
        assert_parity(m, (idx, np.array(offsets)))


def test_embedding_bag_per_sample_weights_as_keyword_and_2d():
    m = randomize_(nn.EmbeddingBag(6, 2, mode="sum", padding_idx=2), 4)
    idx = RNG.integers(0, 6, (3, 4))
    assert_parity(m, (idx,), kwargs={"per_sample_weights": RNG.standard_normal((3, 4)).astype("f4")})
    assert_parity(m, (idx.reshape(-1), np.array([0, 5, 5])),
                  kwargs={"per_sample_weights": RNG.standard_normal(12).astype("f4")})


def test_embedding_bag_conversion_errors_name_the_problem():
    m = nn.EmbeddingBag(5, 2, mode="mean")
    with pytest.raises(ConversionError, match="needs offsets"):
        recreate.convert(m, torch.tensor([1, 2, 3]))
    with pytest.raises(ConversionError, match="mode='sum' only"):
        recreate.convert(m, torch.tensor([[1, 2]]), kwargs={"per_sample_weights": torch.ones(1, 2)})


# ---- shape modules -------------------------------------------------------------------------
def test_pixel_shuffle_is_not_depth_to_space():
    """torch reads channel c*r*r + i*r + j, TF's depth_to_space channel (i*r + j)*C + c."""
    x = RNG.standard_normal((1, 8, 3, 2)).astype("f4")  # torch (N, C*r*r, H, W), C=2, r=2
    ref = nn.PixelShuffle(2)(torch.from_numpy(x)).numpy()
    x_cl = np.moveaxis(x, 1, -1)
    ours = np.moveaxis(_np(PixelShuffle(2)(x_cl)), -1, 1)
    np.testing.assert_array_equal(ours, ref)
    import tensorflow as tf

    d2s = np.moveaxis(tf.nn.depth_to_space(x_cl, 2).numpy(), -1, 1)
    assert not np.array_equal(d2s, ref)
    back = np.moveaxis(_np(PixelUnshuffle(2)(np.moveaxis(ref, 1, -1))), -1, 1)
    np.testing.assert_array_equal(back, x)


def test_unfold_then_fold_matches_torch():
    args = dict(kernel_size=(2, 3), dilation=(2, 1), padding=(1, 2), stride=(1, 2))
    x = RNG.standard_normal((2, 3, 6, 7)).astype("f4")
    cols = nn.Unfold(**args)(torch.from_numpy(x))
    ref = nn.Fold((6, 7), **args)(cols).numpy()
    got_cols = Unfold(**args)(np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(_np(got_cols), cols.numpy())
    got = Fold((6, 7), **args)(got_cols)
    np.testing.assert_allclose(np.moveaxis(_np(got), -1, 1), ref, atol=1e-6)
    # torch order on both sides too
    np.testing.assert_array_equal(_np(Unfold(**args, channels_last=False)(x)), cols.numpy())
    np.testing.assert_allclose(_np(Fold((6, 7), **args, channels_last=False)(got_cols)), ref, atol=1e-6)


def test_fold_refuses_a_block_count_that_does_not_match():
    with pytest.raises(ValueError, match="blocks"):
        Fold((4, 4), 2)(np.zeros((1, 4, 5), "f4"))


@pytest.mark.parametrize("module, x", [
    (nn.Unfold(2), torch.randn(3, 4, 4)),
    (nn.Fold(3, 2), torch.randn(8, 4)),
], ids=["Unfold", "Fold"])
def test_unbatched_inputs_are_refused_with_a_hint(module, x):
    with pytest.raises(ConversionError, match=r"batch axis \(x\[None\]\)"):
        recreate.convert(module, x)


def test_channel_shuffle_torch_order_option():
    x = RNG.standard_normal((2, 6, 3)).astype("f4")
    ref = nn.ChannelShuffle(3)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(_np(ChannelShuffle(3, channels_last=False)(x)), ref)


# ---- distances ------------------------------------------------------------------------------
def test_cosine_similarity_clamps_each_norm_not_their_product():
    a = np.array([[1e-5, 2e-5, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], np.float32)
    b = np.array([[1e-5, 1e-5, 1e-5], [1.0, 1.0, 1.0], [3.0, 2.0, 1.0]], np.float32)
    eps = 1e-8
    ref = nn.CosineSimilarity(1, eps)(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    got = _np(CosineSimilarity(1, eps)(a, b))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    product_clamp = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), eps)
    assert abs(product_clamp[0] - ref[0]) > 0.1  # the documented formula is not torch's


def test_distances_broadcast_across_ranks():
    x1 = RNG.standard_normal((4, 3)).astype("f4")
    x2 = RNG.standard_normal((3,)).astype("f4")
    for p in (2.0, 0.5, math.inf, -math.inf, 0.0, -1.0):
        ref = nn.PairwiseDistance(p, keepdim=True)(torch.from_numpy(x1), torch.from_numpy(x2)).numpy()
        np.testing.assert_allclose(_np(PairwiseDistance(p, keepdim=True)(x1, x2)), ref, rtol=2e-6)
    ref = nn.CosineSimilarity(-1)(torch.from_numpy(x1), torch.from_numpy(x2)).numpy()
    np.testing.assert_allclose(_np(CosineSimilarity(-1)(x1, x2)), ref, atol=1e-6)


# ---- serialisation --------------------------------------------------------------------------
def _bag_inputs():
    return (keras.Input((), dtype="int64"), keras.Input((), dtype="int64"))


LAYER_MODELS = {
    "Bilinear": lambda: ([keras.Input((3,)), keras.Input((2,))], lambda xs: Bilinear(4)(*xs),
                         [RNG.standard_normal((2, 3)).astype("f4"), RNG.standard_normal((2, 2)).astype("f4")]),
    "MaxNormEmbedding": lambda: (keras.Input((3,), dtype="int64"),
                                 lambda x: MaxNormEmbedding(7, 3, max_norm=0.05, norm_type=math.inf)(x),
                                 RNG.integers(0, 7, (2, 3))),
    "EmbeddingBag": lambda: (list(_bag_inputs()),
                             lambda xs: EmbeddingBag(7, 3, mode="max", padding_idx=-1, include_last_offset=True,
                                                     max_norm=0.04)(*xs),
                             [np.array([1, 6, 2, 3, 3]), np.array([0, 2, 2, 5])]),
    "Unflatten": lambda: (keras.Input((6, 2)), lambda x: Unflatten(1, (3, -1))(x),
                          RNG.standard_normal((2, 6, 2)).astype("f4")),
    "PixelShuffle": lambda: (keras.Input((2, 3, 8)), lambda x: PixelShuffle(2)(x),
                             RNG.standard_normal((1, 2, 3, 8)).astype("f4")),
    "PixelUnshuffle": lambda: (keras.Input((4, 6, 2)), lambda x: PixelUnshuffle(2)(x),
                               RNG.standard_normal((1, 4, 6, 2)).astype("f4")),
    "ChannelShuffle": lambda: (keras.Input((3, 6)), lambda x: ChannelShuffle(2)(x),
                               RNG.standard_normal((2, 3, 6)).astype("f4")),
    "Unfold+Fold": lambda: (keras.Input((5, 5, 2)),
                            lambda x: Fold(5, 3, padding=1, stride=2)(Unfold(3, padding=1, stride=2)(x)),
                            RNG.standard_normal((2, 5, 5, 2)).astype("f4")),
    "CosineSimilarity": lambda: ([keras.Input((3, 4)), keras.Input((1, 4))],
                                 lambda xs: CosineSimilarity(1, 1e-3)(*xs),
                                 [RNG.standard_normal((2, 3, 4)).astype("f4"), RNG.standard_normal((2, 1, 4)).astype("f4")]),
    "PairwiseDistance": lambda: ([keras.Input((4,)), keras.Input((4,))],
                                 lambda xs: PairwiseDistance(math.inf, 1e-6, True)(*xs),
                                 [RNG.standard_normal((2, 4)).astype("f4"), RNG.standard_normal((2, 4)).astype("f4")]),
}


@pytest.mark.parametrize("name", list(LAYER_MODELS))
def test_keras_file_round_trip_safe_mode(name, tmp_path):
    inputs, build, feed = LAYER_MODELS[name]()
    km = keras.Model(inputs, build(inputs))
    for layer in km.layers:
        cfg = layer.get_config()
        assert type(layer).from_config(cfg).get_config() == cfg
        for v in layer.weights:  # non-trivial weights, so that a lost weight shows
            v.assign(RNG.standard_normal(v.shape).astype("f4"))
    want = _np(km(feed))
    path = tmp_path / "m.keras"
    km.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(_np(again(feed)), want)
