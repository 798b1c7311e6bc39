"""The op registry: converters for the functional calls, tensor methods and Python operators
the tracer meets between registered modules.

    @register_op(torch.add, operator.add, "add", "add_")
    def add(cx, x, y, *, alpha=1): ...

A target is a function (torch.add, operator.add, F.relu) or a Tensor method name ("view").
Converters receive `cx` (an OpContext, see recreate.trace) and the node's arguments with
tensors replaced by `Value`s; they return a Value, a Python value, or a tuple of them.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import RegistryError

_OPS: dict[object, Callable] = {}


def register_op(*targets):
    def deco(fn):
        for t in targets:
            if t in _OPS:
                raise RegistryError(f"op {t!r} already has a converter ({_OPS[t].__qualname__})")
            _OPS[t] = fn
        return fn

    return deco


def find_op(target) -> Callable | None:
    return _OPS.get(target)


def registered_ops() -> list:
    return list(_OPS)
