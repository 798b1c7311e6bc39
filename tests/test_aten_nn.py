"""ATen nn op converters (recreate.ops.aten_nn) on PyTorch's OpInfo samples and on batch-like
cases with a dynamic batch."""

from __future__ import annotations

import re

import recreate  # noqa: F401  (before torch/tensorflow: import order)
import torch
import torch.nn.functional as F
from recreate.testing.aten import check_op, opinfo_samples

import numpy as np
import pytest

aten = torch.ops.aten

# (OpInfo name, variant) -> the ATen ops at least one of its samples must reach.
OPS = {
    ("nn.functional.conv1d", ""): {aten.convolution.default},
    ("nn.functional.conv2d", ""): {aten.convolution.default},
    ("nn.functional.conv3d", ""): {aten.convolution.default},
    ("nn.functional.conv_transpose1d", ""): {aten.convolution.default},
    ("nn.functional.conv_transpose2d", ""): {aten.convolution.default},
    ("nn.functional.conv_transpose3d", ""): {aten.convolution.default},
    ("nn.functional.linear", ""): {aten.linear.default},
    ("addmm", ""): {aten.addmm.default},
    ("mm", ""): {aten.mm.default},
    ("bmm", ""): {aten.bmm.default},
    ("matmul", ""): {aten.matmul.default},
    ("baddbmm", ""): {aten.bmm.default},
    ("nn.functional.layer_norm", ""): {aten.layer_norm.default},
    ("nn.functional.group_norm", ""): {aten.group_norm.default},
    ("nn.functional.batch_norm", ""): {aten._native_batch_norm_legit_no_training.default},
    ("nn.functional.instance_norm", ""): {aten.instance_norm.default},
    ("nn.functional.max_pool1d", ""): {aten.max_pool2d_with_indices.default},
    ("nn.functional.max_pool2d", ""): {aten.max_pool2d_with_indices.default},
    ("nn.functional.max_pool3d", ""): {aten.max_pool3d_with_indices.default},
    ("nn.functional.avg_pool1d", ""): {aten.avg_pool2d.default},
    ("nn.functional.avg_pool2d", ""): {aten.avg_pool2d.default},
    ("nn.functional.avg_pool3d", ""): {aten.avg_pool3d.default},
    ("nn.functional.adaptive_avg_pool1d", ""): {aten._adaptive_avg_pool2d.default},
    ("nn.functional.adaptive_avg_pool2d", ""): {aten._adaptive_avg_pool2d.default},
    ("nn.functional.adaptive_avg_pool3d", ""): {aten._adaptive_avg_pool3d.default},
    ("nn.functional.adaptive_max_pool1d", ""): {aten.adaptive_max_pool2d.default},
    ("nn.functional.adaptive_max_pool2d", ""): {aten.adaptive_max_pool2d.default},
    ("nn.functional.interpolate", "nearest"): {aten.upsample_nearest1d.vec, aten.upsample_nearest2d.vec,
                                               aten.upsample_nearest3d.vec},
    ("nn.functional.interpolate", "bilinear"): {aten.upsample_bilinear2d.vec},
    ("nn.functional.interpolate", "bicubic"): {aten.upsample_bicubic2d.vec},
    ("nn.functional.interpolate", "linear"): {aten.upsample_linear1d.vec},
    ("nn.functional.interpolate", "trilinear"): {aten.upsample_trilinear3d.vec},
    ("nn.functional.grid_sample", ""): {aten.grid_sampler.default},
    ("nn.functional.scaled_dot_product_attention", ""): {aten.scaled_dot_product_attention.default},
    ("nn.functional.cosine_similarity", ""): {aten.cosine_similarity.default},
    ("einsum", ""): {aten.einsum.default},
    ("nn.functional.pixel_shuffle", ""): {aten.pixel_shuffle.default},
    ("nn.functional.pixel_unshuffle", ""): {aten.pixel_unshuffle.default},
    ("nn.functional.embedding_bag", ""): {aten._embedding_bag_forward_only.default},
}

# (OpInfo name pattern, sample description pattern) -> why the sample is not converted.
# The description is "shapes | args | kwargs" (see _describe).
EXCLUDED = {
    (r".*", r"T\([^)]*\b0\b"): "a tensor with a 0-size axis: nothing to compute, Keras rejects empty spatial axes",
    (r"nn\.functional\.batch_norm", r"training': True|training=True|\| .*True, "):
        "training mode normalizes with batch statistics and updates running stats: not an inference graph",
    (r"nn\.functional\.embedding_bag", r"max_norm"):
        "max_norm renormalizes the weight in place (aten.embedding_renorm, not an nn op); see the shape family",
    (r"nn\.functional\.scaled_dot_product_attention", r"dropout_p': 0\.[1-9]"):
        "attention dropout is random",
}

LIMIT = 1  # samples per op in the default suite, spread over the OpInfo list (slow: all)


def _describe(s) -> str:
    def fmt(a):
        if isinstance(a, torch.Tensor):
            return f"T{tuple(a.shape)}"
        if isinstance(a, (list, tuple)):
            return type(a)(fmt(e) for e in a)
        return a

    return f"{fmt(s.input)} | {fmt(tuple(s.args))} | { {k: fmt(v) for k, v in s.kwargs.items()} }"


def _excluded(name: str, desc: str) -> str | None:
    for (op_pat, sample_pat), reason in EXCLUDED.items():
        if re.fullmatch(op_pat, name) and re.search(sample_pat, desc):
            return reason
    return None


def _run_samples(name, variant, limit):
    info, samples = opinfo_samples(name, variant=variant)
    reached, ran, skipped = set(), 0, []
    if len(samples) > limit:  # spread the picks over the list: its samples grow more varied
        step = len(samples) / limit
        picked = [samples[int(i * step)] for i in range(limit)]
        samples = picked + [s for s in samples if not any(s is p for p in picked)]
    for s in samples:
        if ran >= limit:
            break
        desc = _describe(s)
        reason = _excluded(name, desc)
        if reason:
            skipped.append((desc, reason))
            continue
        try:
            res = check_op(info.op, s.input, *s.args, tolerance=_tolerance(name), **s.kwargs)
        except Exception as e:
            raise AssertionError(f"{name} {variant} sample {desc}: {type(e).__name__}: {e}") from e
        reached |= res.aten_ops
        ran += 1
    assert ran, f"{name}: every sample excluded: {skipped[:3]}"
    want = OPS[(name, variant)]
    assert reached & want, f"{name}: no sample reached {want} (reached {reached})"
    return ran, skipped


def _tolerance(name: str) -> float:
    # long float32 sums (conv/matmul over many terms, bicubic weights) round differently
    return 1e-4 if any(k in name for k in ("conv", "mm", "matmul", "linear", "einsum", "bicubic")) else 1e-5


@pytest.mark.parametrize("name,variant", list(OPS), ids=[f"{n}{'-' + v if v else ''}" for n, v in OPS])
def test_opinfo(name, variant):
    _run_samples(name, variant, LIMIT)


@pytest.mark.slow
@pytest.mark.parametrize("name,variant", list(OPS), ids=[f"{n}{'-' + v if v else ''}" for n, v in OPS])
def test_opinfo_all(name, variant):
    _run_samples(name, variant, 40)


# ---- weights as model parameters (Keras variables), dynamic batch ------------------------------
class _Functional(torch.nn.Module):
    """Calls `fn(x, *params)` with its own parameters: the weights reach ATen as tensors (timm's
    weight-standardized convs, Hugging Face's custom norms), not through a registered module."""

    def __init__(self, fn, *params, buffers=()):
        super().__init__()
        self.fn = fn
        self.params = torch.nn.ParameterList([torch.nn.Parameter(p) for p in params])
        for i, b in enumerate(buffers):
            self.register_buffer(f"buffer{i}", b)
        self.n_buffers = len(buffers)

    def forward(self, x):
        bufs = [getattr(self, f"buffer{i}") for i in range(self.n_buffers)]
        return self.fn(x, *bufs, *self.params)


def _rand(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed + len(shape)).standard_normal(shape).astype(np.float32))


def _std_conv(x, w, b):  # timm StdConv2d: the kernel is computed from the parameter
    w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.var(dim=(1, 2, 3), keepdim=True, unbiased=False) + 1e-6).sqrt()
    return F.conv2d(x, w, b, stride=2, padding=1)


PARAM_CASES = {
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [_rand(6, 3, 3, 3), _rand(6)], (2, 3, 9, 8)),
    "conv2d_groups_dilation": (lambda x, w: F.conv2d(x, w, None, 2, 2, 2, 2), [_rand(4, 2, 3, 3)], (2, 4, 11, 9)),
    "conv2d_depthwise": (lambda x, w, b: F.conv2d(x, w, b, 1, 1, 1, 4), [_rand(8, 1, 3, 3), _rand(8)], (2, 4, 7, 7)),
    "conv2d_depthwise_unequal_strides": (lambda x, w, b: F.conv2d(x, w, b, (3, 2), 0, 1, 4),
                                         [_rand(4, 1, 3, 3), _rand(4)], (2, 4, 6, 6)),
    "conv1d": (lambda x, w: F.conv1d(x, w, None, 3, 2, 1, 1), [_rand(5, 3, 4)], (2, 3, 10)),
    "conv3d": (lambda x, w, b: F.conv3d(x, w, b, 1, (0, 1, 1), 1, 2), [_rand(4, 1, 2, 3, 3), _rand(4)],
               (2, 2, 4, 5, 5)),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1, 2, 1), [_rand(4, 3, 3, 3), _rand(6)],
                         (2, 4, 5, 6)),
    "conv_transpose1d": (lambda x, w: F.conv_transpose1d(x, w, None, 3, 0, 2, 1, 2), [_rand(3, 2, 3)], (2, 3, 5)),
    "std_conv": (_std_conv, [_rand(6, 3, 3, 3), _rand(6)], (2, 3, 8, 8)),
    "linear": (lambda x, w, b: F.linear(x, w, b), [_rand(7, 5), _rand(7)], (2, 3, 5)),
    "linear_channels_last": (lambda x, w, b: F.linear(x.permute(0, 2, 3, 1), w, b),
                             [_rand(7, 3), _rand(7)], (2, 3, 4, 5)),
    "addmm": (lambda x, w, b: torch.addmm(b, x, w, beta=0.5, alpha=2.0), [_rand(5, 4), _rand(4)], (3, 5)),
    "baddbmm": (lambda x, w: torch.baddbmm(x[:, :, :2], x, w.expand(x.shape[0], 4, 2), beta=0.5, alpha=-1.0),
                [_rand(1, 4, 2)], (3, 2, 4)),
    "matmul_broadcast": (lambda x, w: x @ w, [_rand(3, 6, 2)], (2, 3, 4, 6)),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (5,), w, b, 1e-3), [_rand(5), _rand(5)], (2, 3, 5)),
    "layer_norm_2d": (lambda x, w: F.layer_norm(x, (4, 5), w), [_rand(4, 5)], (2, 3, 4, 5)),
    "layer_norm_channels_first": (lambda x, w, b: F.layer_norm(x.permute(0, 2, 3, 1), (3,), w, b).permute(0, 3, 1, 2),
                                  [_rand(3), _rand(3)], (2, 3, 4, 5)),
    "group_norm": (lambda x, w, b: F.group_norm(x, 2, w, b, 1e-4), [_rand(6), _rand(6)], (2, 6, 3, 4)),
    "batch_norm": (lambda x, m, v, w, b: F.batch_norm(x, m, v.abs() + 0.5, w, b, False, 0.1, 1e-3),
                   [_rand(4), _rand(4, seed=2)], (2, 4, 3, 3), [_rand(4, seed=1), _rand(4)]),
    "instance_norm": (lambda x, w, b: F.instance_norm(x, weight=w, bias=b), [_rand(3), _rand(3)], (2, 3, 4, 5)),
}


@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_parameter_weights_dynamic_batch(case):
    fn, params, shape, *buffers = PARAM_CASES[case]
    m = _Functional(fn, *params, buffers=buffers[0] if buffers else ()).eval()
    x = _rand(*shape, seed=3)
    got = check_op(m, x, tolerance=1e-4, dynamic_batch=True)
    assert any("convolution" in str(o) or "mm" in str(o) or "norm" in str(o) or "linear" in str(o)
               or "matmul" in str(o) for o in got.aten_ops), got.aten_ops
    # another batch size than the example's
    x5 = _rand(5, *shape[1:], seed=4)
    with torch.no_grad():
        ref = m(x5).numpy()
    out = np.asarray(got.keras_model(x5.numpy()))
    np.testing.assert_allclose(out, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=0)


DYNAMIC_CASES = {
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1, 2, True), (2, 3, 9, 8)),
    "max_pool2d_indices": (lambda x: F.max_pool2d(x, 2, return_indices=True)[1], (2, 3, 6, 7)),
    "max_pool3d": (lambda x: F.max_pool3d(x, 2, 1, 1), (2, 2, 4, 4, 5)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1, True, False, None), (2, 3, 8, 7)),
    "avg_pool3d_divisor": (lambda x: F.avg_pool3d(x, 2, 2, 1, False, True, 3), (2, 2, 4, 5, 5)),
    "adaptive_avg": (lambda x: F.adaptive_avg_pool2d(x, (3, 2)), (2, 3, 7, 5)),
    "adaptive_max_indices": (lambda x: F.adaptive_max_pool2d(x, 3, return_indices=True)[1], (2, 3, 7, 5)),
    "upsample_bilinear": (lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear", align_corners=True),
                          (2, 3, 4, 5)),
    "upsample_nearest": (lambda x: F.interpolate(x, size=(7, 3)), (2, 3, 4, 5)),
    "upsample_bicubic": (lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"), (2, 3, 4, 5)),
    "pixel_shuffle": (lambda x: F.pixel_shuffle(x, 2), (2, 8, 3, 4)),
    "pixel_unshuffle": (lambda x: F.pixel_unshuffle(x, 2), (2, 2, 4, 6)),
    "sdpa": (lambda x: F.scaled_dot_product_attention(x, x * 0.5, x, is_causal=True), (2, 2, 5, 4)),
    "cosine": (lambda x: F.cosine_similarity(x, x.flip(1), dim=1), (2, 3, 4)),
    "einsum": (lambda x: torch.einsum("bij,bkj->bik", x, x), (2, 3, 4)),
    "fold": (lambda x: F.fold(x, (4, 5), 2, 1, 0, 1), (2, 8, 12)),
    "dropout_eval_p0": (lambda x: F.dropout(x, 0.0, training=True) * 2, (2, 3)),
}


@pytest.mark.parametrize("case", list(DYNAMIC_CASES))
def test_dynamic_batch(case):
    fn, shape = DYNAMIC_CASES[case]
    x = _rand(*shape, seed=5)
    got = check_op(fn, x, dynamic_batch=True, tolerance=1e-5)
    x3 = _rand(3, *shape[1:], seed=6)
    with torch.no_grad():
        ref = fn(x3).numpy()
    out = np.asarray(got.keras_model(x3.numpy()))
    if ref.dtype == np.int64:
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_allclose(out, ref, atol=1e-5 * max(1.0, float(np.abs(ref).max())), rtol=0)


def test_grid_sample_dynamic_batch():
    x, grid = _rand(2, 3, 5, 6, seed=7), torch.rand(2, 4, 3, 2) * 2.4 - 1.2
    fn = lambda a, g: F.grid_sample(a, g, mode="bicubic", padding_mode="reflection", align_corners=False)  # noqa: E731
    got = check_op(fn, x, grid, dynamic_batch=True)
    x3, g3 = _rand(3, 3, 5, 6, seed=8), torch.rand(3, 4, 3, 2) * 2 - 1
    out = np.asarray(got.keras_model([x3.numpy(), g3.numpy()]))
    np.testing.assert_allclose(out, fn(x3, g3).numpy(), atol=1e-5)


def test_batch_norm_training_refused():
    from recreate.errors import ConversionError

    with pytest.raises(ConversionError, match="training"):
        check_op(lambda x: F.batch_norm(x, None, None, training=True), _rand(2, 3, 4))
