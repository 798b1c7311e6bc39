"""ATen op converters that reuse a torch-level converter whose arguments match the ATen
schema one to one (aten.add.Tensor(self, other, *, alpha) is torch.add(input, other, *, alpha))."""

from __future__ import annotations

import operator

import torch

from ..trace import Value
from . import builtin, register_op

aten = torch.ops.aten


def _same(torch_target, *overloads):
    from . import find_op

    fn = find_op(torch_target)
    register_op(*overloads)(fn)


_same(torch.add, aten.add.Tensor, aten.add.Scalar)
_same(torch.sub, aten.sub.Tensor, aten.sub.Scalar)
_same(torch.mul, aten.mul.Tensor, aten.mul.Scalar)
_same(torch.div, aten.div.Tensor, aten.div.Scalar)
_same(torch.cat, aten.cat.default)
_same("view", aten.view.default, aten.reshape.default, aten._unsafe_view.default)
_same("unsqueeze", aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)
_same("permute", aten.permute.default)
_same(torch.relu, aten.relu.default)


_same(torch.mean, aten.mean.dim)


@register_op(aten._softmax.default, aten._log_softmax.default)
def softmax(cx, x, dim, half_to_float=False):
    fn = "log_softmax" if cx.node.target is aten._log_softmax.default else "softmax"
    return cx.op(fn, [{"__tensor__": 0}], [x], x.perm, kwargs={"axis": x.keras_axis(dim)})


@register_op(aten.split_with_sizes.default)
def split_with_sizes(cx, x, sizes, dim=0):
    return builtin._slices(cx, x, dim, list(sizes))


_ = (operator, Value)
