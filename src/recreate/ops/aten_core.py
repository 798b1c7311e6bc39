"""Shared by the ATen op families: `same` registers ATen overloads for a torch-level converter
whose arguments match the ATen schema one to one (aten.add.Tensor(self, other, *, alpha) is
torch.add(input, other, *, alpha))."""

from __future__ import annotations

from . import find_op, register_op


def same(torch_target, *overloads):
    fn = find_op(torch_target)
    if fn is None:
        raise KeyError(f"no torch-level converter for {torch_target!r}")
    register_op(*overloads)(fn)
