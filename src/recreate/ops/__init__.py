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
_CASES: dict[Callable, Callable] = {}


def register_op(*targets, cases: Callable | None = None):
    """Register a converter for `targets`. `cases`: a function () -> Hypothesis strategy of
    recreate.testing.Case whose module calls the op (see recreate.ops.cases); every op that
    declares cases is run by tests/test_ops_parity.py."""

    def deco(fn):
        for t in targets:
            if t in _OPS:
                raise RegistryError(f"op {t!r} already has a converter ({_OPS[t].__qualname__})")
            _OPS[t] = fn
        if cases is not None:
            if fn in _CASES:
                raise RegistryError(f"op converter {fn.__qualname__} already has cases")
            _CASES[fn] = cases
        return fn

    return deco


def find_op(target) -> Callable | None:
    fn = _OPS.get(target)
    schema = getattr(target, "_schema", None)
    if fn is None and schema is not None:
        # a custom op of a package imported later, registered by its "namespace::name"
        fn = _OPS.get(schema.name)
    return fn


def registered_ops() -> list:
    return list(_OPS)


def op_cases() -> dict[str, Callable]:
    """{name of the targets: cases} for every op converter that declares cases."""
    out = {}
    for fn, cases in _CASES.items():
        targets = [t for t, f in _OPS.items() if f is fn]
        name = "/".join(t if isinstance(t, str) else getattr(t, "__name__", repr(t)) for t in targets[:4])
        out[name] = cases
    return out


def ops_without_cases() -> list:
    return sorted({f.__qualname__ for f in _OPS.values() if f not in _CASES})


def load_all() -> None:
    """Import every op-converter module (each registers its converters on import)."""
    from . import builtin, control_flow, functional, sampling, tensor_ops, vision  # noqa: F401
    # ATen converters after the torch-level converters some of them reuse
    from . import aten_elementwise, aten_nn, aten_reduce, aten_shape  # noqa: F401
    from . import aten_export_ir  # noqa: F401  (last: where a family registered an op, it keeps it)
