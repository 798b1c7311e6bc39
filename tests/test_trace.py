"""Whole-model conversion through the tracer: real architectures nobody here wrote, small
models that exercise the op converters, layout bookkeeping, untraceable code."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from torch import nn

import recreate
from recreate.testing import assert_informative, calibrate_batchnorm_, randomize_
from recreate.trace import UnsupportedOpError, UntraceableError

torchvision = pytest.importorskip("torchvision")


def _transposes(km) -> list[str]:
    return [lyr.name for lyr in km.layers
            if type(lyr).__name__ == "Permute" or (type(lyr).__name__ == "Op" and lyr.fn == "transpose")]


def _check(model, x, tolerance=1e-4):
    x2 = torch.randn_like(x)
    assert_informative(model, x, x2)
    km = recreate.convert(model, x)
    report = recreate.verify(model, km, [x, x2], tolerance=tolerance)
    assert report.passed, str(report)
    return km, report


def _vision(name, size, **kw):
    m = getattr(torchvision.models, name)(**kw)
    randomize_(m, 0)
    calibrate_batchnorm_(m, torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1)))
    return m, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_classifiers(name):
    m, x = _vision(name, 64)
    km, _ = _check(m, x)
    # channels-last throughout: the only transpose is at the input boundary
    assert _transposes(km) == ["transpose"], _transposes(km)


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("resnet50", 64), ("efficientnet_b0", 64), ("convnext_tiny", 64),
                                       ("vit_b_16", 224), ("regnet_y_400mf", 64), ("densenet121", 64),
                                       ("shufflenet_v2_x1_0", 64), ("mnasnet0_5", 64), ("squeezenet1_1", 64)])
def test_torchvision_more(name, size):
    m, x = _vision(name, size)
    km, report = _check(m, x)
    if name == "resnet50":
        assert _transposes(km) == ["transpose"]


class Mixer(nn.Module):
    """Functional ops between modules: token parameter, expand, cat, permute, view, softmax,
    getitem, mean, chunk, matmul, arithmetic with constants."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.token = nn.Parameter(torch.randn(1, 1, 8))
        self.scale = nn.Parameter(torch.randn(8, 1, 1))
        self.proj = nn.Linear(8, 12)
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        y = self.conv(x) * self.scale + 0.5
        n = y.shape[0]
        t = y.flatten(2).transpose(1, 2)  # (N, HW, C)
        t = torch.cat([self.token.expand(n, -1, -1), t], dim=1)
        q, k, v = self.proj(t).chunk(3, dim=-1)
        att = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)
        out = (att @ v)[:, 0] - v.mean(dim=1)
        pooled = y.mean(dim=(2, 3), keepdim=True).view(n, -1)
        return self.head(out) + pooled[:, :5].sum(dim=1, keepdim=True), torch.relu(y).permute(0, 2, 3, 1)


def test_functional_ops_and_two_outputs():
    m = randomize_(Mixer(), 3)
    x = torch.randn(2, 3, 9, 10)
    km = recreate.convert(m, x)
    report = recreate.verify(m, km, x, tolerance=1e-5)
    assert report.passed and len(report.outputs) == 2, str(report)


def test_keras_file_and_graph_mode(tmp_path):
    import tensorflow as tf

    m, x = _vision("resnet18", 32)
    km = recreate.convert(m, x)
    path = tmp_path / "r.keras"
    km.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    fast = tf.function(lambda a: again(a))
    np.testing.assert_allclose(fast(x.numpy()).numpy(), m(x).detach().numpy(), rtol=1e-4, atol=1e-4)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent: fx cannot trace it
            return self.a(x)
        return -x


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.branchy = Branchy()

    def forward(self, x):
        return self.branchy(self.pre(x))


def test_untraceable_code_names_the_line_and_the_fix():
    with pytest.raises(UntraceableError) as e:
        recreate.convert(Outer().eval(), torch.randn(2, 4))
    msg = str(e.value)
    assert "test_trace.py" in msg and "x.sum() > 0" in msg and "@recreate.register" in msg


def test_registering_the_untraceable_module_makes_it_a_leaf():
    class KBranchy(keras.layers.Layer):
        def build(self, shape):
            self.dense = keras.layers.Dense(4, name="a")
            self.dense.build(shape)

        def call(self, x):
            y = self.dense(x)
            return keras.ops.cond(keras.ops.sum(x) > 0, lambda: y, lambda: -x)

    @recreate.register(Branchy, rules={KBranchy: recreate.WeightRules((
        recreate.Map("a/kernel", "a.weight", recreate.transforms.TRANSPOSE), recreate.Map("a/bias", "a.bias")))},
        layout=("torch", "torch"))
    def branchy(m):
        return KBranchy()

    try:
        m = randomize_(Outer(), 1)
        km = recreate.convert(m, torch.randn(2, 4))
        for sign in (1.0, -1.0):  # both branches
            x = torch.randn(1, 4).abs() * sign
            np.testing.assert_allclose(km(x.numpy()).numpy(), m(x).detach().numpy(), atol=1e-5)
    finally:
        recreate.registry.unregister(Branchy)


def test_unsupported_op_error():
    class Weird(nn.Module):
        def forward(self, x):
            return torch.fft.fft(x).real

    with pytest.raises(UnsupportedOpError, match="fft"):
        recreate.convert(Weird().eval(), torch.randn(2, 4))
