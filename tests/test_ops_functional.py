"""The functional-op converters of recreate.ops.functional through the op-registry property
test (tests/test_ops_parity.check_op_case), plus what the generic test cannot cover."""

from __future__ import annotations

import os

import recreate
import torch
import torch.nn.functional as F
from recreate import ops
from recreate.errors import ConversionError
from recreate.ops import functional
from torch import nn

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_ops_parity import check_op_case

ops.load_all()  # registers the op converters

EXAMPLES = max(5, int(os.environ.get("RECREATE_EXAMPLES", "25")) // 5)
MINE = {name: cases for name, cases in ops.op_cases().items()
        if any(ops.find_op(t) is fn and fn.__module__ == functional.__name__
               for t in ops.registered_ops() for fn in [ops.find_op(t)]
               if (t if isinstance(t, str) else getattr(t, "__name__", repr(t))) in name.split("/"))}


@pytest.mark.parametrize("name", sorted(MINE))
def test_functional_op_parity(name):
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=MINE[name](), io_layout=st.sampled_from(["torch", "keras"]))
    def check(case, io_layout):
        check_op_case(case, io_layout)

    check()


def test_every_listed_op_has_a_converter():
    for f in [F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
              F.group_norm, F.instance_norm, F.normalize, F.pixel_shuffle, F.pixel_unshuffle, F.unfold, F.fold,
              F.elu, F.selu, F.celu, F.softplus, F.hardtanh, F.relu6, F.leaky_relu, F.gelu, F.silu, F.mish,
              F.hardswish, F.hardsigmoid, F.logsigmoid, F.softsign, F.glu, F.log_softmax, F.softmin,
              F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.avg_pool1d, F.avg_pool3d,
              F.lp_pool1d, F.lp_pool2d, torch.clamp, torch.clip, "clamp", "clamp_", "clip", torch.max, torch.min,
              "max", "min", torch.argmax, torch.argmin, torch.cumsum, torch.cumprod, torch.sort, torch.topk]:
        assert ops.find_op(f) is not None, f


class _Parametric(nn.Module):
    """conv2d / conv_transpose2d / group_norm with the model's own parameters."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.b = nn.Parameter(torch.randn(4))
        self.wt = nn.Parameter(torch.randn(4, 2, 2, 2))
        self.gw = nn.Parameter(torch.randn(2))

    def forward(self, x):
        y = F.conv2d(x, self.w, self.b, stride=2, padding=1)
        y = F.conv_transpose2d(y, self.wt, None, stride=2, output_padding=1)
        return F.group_norm(y, 2, self.gw, None)


@pytest.mark.parametrize("io_layout", ["torch", "keras"])
def test_parameters_of_the_model(io_layout):
    torch.manual_seed(0)
    m = _Parametric().eval()
    x = torch.randn(2, 3, 7, 6)
    with torch.no_grad():
        ref = m(x).numpy()
    km = recreate.convert(m, (x,), io_layout=io_layout)
    feed = x.numpy() if io_layout == "torch" else np.moveaxis(x.numpy(), 1, -1)
    out = np.asarray(km(feed))
    if io_layout == "keras":
        out = np.moveaxis(out, -1, 1)
    assert np.abs(out - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


class _ComputedWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 3, 1, 1))

    def forward(self, x):
        return F.conv2d(x, self.w * x.mean())


def test_computed_weight_is_a_graph_input():
    """A conv weight computed from the input (not a parameter) stays a tensor in the graph."""
    m = _ComputedWeight().eval()
    km = recreate.convert(m, (torch.randn(1, 3, 4, 4),))
    for x in (torch.randn(2, 3, 4, 4), torch.randn(3, 3, 4, 4) + 1.0):
        ref = m(x).detach().numpy()
        np.testing.assert_allclose(np.asarray(km(x.numpy())), ref, atol=1e-5 * max(1.0, np.abs(ref).max()))


class _Nonzero(nn.Module):
    def forward(self, x):
        return torch.nonzero(x > 0)


def test_nonzero_raises():
    with pytest.raises(ConversionError, match="data-dependent"):
        recreate.convert(_Nonzero().eval(), (torch.randn(2, 3),))


class _Ties(nn.Module):
    def forward(self, x):
        return torch.argmax(x, 1), torch.max(x, -1).indices, torch.sort(x, dim=-1, stable=True).indices


def test_ties_take_the_first_index():
    """Documented tie behaviour: the first index of equal extremes, stable sort order."""
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    km = recreate.convert(_Ties().eval(), (x,))
    for k, t in zip(km(x.numpy()), _Ties()(x)):
        np.testing.assert_array_equal(np.asarray(k), t.numpy())


class _WhereOneArg(nn.Module):
    def forward(self, x):
        return torch.where(x > 0)


def test_where_with_one_argument_raises():
    """torch.where(cond) (= nonzero(as_tuple=True)) has a data-dependent shape: it is
    refused as a data-dependent size, naming nonzero (what torch.where(cond) lowers to)."""
    with pytest.raises(ConversionError, match="data-dependent"):
        recreate.convert(_WhereOneArg().eval(), (torch.randn(2, 3),))
