"""Converters for the ops torch.export's IR keeps above core ATen (the calls the model's code
made: aten.flatten.using_ints, aten.softmax.int, aten.to.dtype, aten.dropout, aten.pad ...), so
a graph made of them converts without run_decompositions (see recreate/tracer/direct.py).
Each reuses the torch-level converter of the same call; an op another family registered
first keeps that converter."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from ..errors import ConversionError
from . import find_op, register_op

aten = torch.ops.aten


def _overloads(*names):
    out = []
    for n in names:
        name, overload = n.split(".")
        packet = getattr(aten, name, None)
        if packet is not None and overload in packet.overloads():
            out.append(getattr(packet, overload))
    return out


def _free(*targets):
    return [t for t in targets if find_op(t) is None]


def _like(torch_target, *names):
    targets = _free(*_overloads(*names))
    if targets:
        register_op(*targets)(find_op(torch_target))


_like(torch.flatten, "flatten.using_ints")
_like(torch.softmax, "softmax.int", "log_softmax.int")
_like("to", "to.dtype", "to.dtype_layout", "to.device", "to.other", "type_as.default")
_like(F.pad, "pad.default")
_like("contiguous", "contiguous.default", "detach.default", "lift_fresh.default")
_like(torch.chunk, "chunk.default")
_like(torch.split, "split.Tensor", "split.sizes")
_like(torch.unbind, "unbind.int")
_like(torch.transpose, "transpose.int")
_like("expand_as", "expand_as.default")
_like(torch.unflatten, "unflatten.int")
_like(operator.and_, "__and__.Tensor", "__and__.Scalar")
_like(operator.or_, "__or__.Tensor", "__or__.Scalar")
_like(operator.xor, "__xor__.Tensor", "__xor__.Scalar")
_like(torch.matmul, "matmul.default")
_like(torch.einsum, "einsum.default")


def dropout(cx, x, p, train):
    if train and p > 0:
        raise ConversionError("dropout in training mode: call model.eval() before converting")
    return x


_drop = _free(*_overloads("dropout.default", "feature_dropout.default", "alpha_dropout.default",
                          "feature_alpha_dropout.default"))
if _drop:
    register_op(*_drop)(dropout)
