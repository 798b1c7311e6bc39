"""Pass: can the export IR be converted as it is, without run_decompositions?

torch.export's IR keeps the ops the model's code called (aten.conv2d, aten.linear,
aten.softmax.int, aten.flatten.using_ints, in-place aten.add_) and decomposing it to core ATen
retraces the whole graph: two thirds of ResNet-50's capture time. When every op of the graph
has a converter and every in-place op writes a tensor nobody else can see, the graph is
converted directly; otherwise it is decomposed to core ATen (functional, closed opset) first.
Both give the same function; the direct form is also closer to the model's source.
"""

from __future__ import annotations

import functools
import operator


@functools.cache
def _torch():
    import torch

    return torch


def functional_variant(op):
    """aten.add_.Tensor -> aten.add.Tensor (None when there is no such overload)."""
    schema = op._schema
    name = schema.name.split("::")[-1]
    if not name.endswith("_") or name.startswith("_"):
        return None
    packet = getattr(_torch().ops.aten, name[:-1], None)
    overload = op._overloadname
    return getattr(packet, overload, None) if packet is not None and overload in packet.overloads() else None


def in_place(op) -> bool:
    return isinstance(op, _torch()._ops.OpOverload) and op._schema.is_mutable


def _aliases(node) -> bool:
    """Whether the node's result may share memory with an input (a view, a getitem of a
    split, an in-place op's result)."""
    t = node.target
    if node.op != "call_function":
        return True  # placeholders: inputs, parameters and buffers belong to the caller
    if t is operator.getitem:
        return _aliases(node.args[0]) if hasattr(node.args[0], "op") else True
    if not isinstance(t, _torch()._ops.OpOverload):
        return False
    return any(r.alias_info is not None for r in t._schema.returns) or t._schema.is_mutable


def _safe_in_place(node, order) -> bool:
    """An in-place op that may be read as its functional form: it writes a fresh tensor
    (not a view, input or parameter) that nothing reads after the write or views at all."""
    target = node.args[0] if node.args else None
    if not hasattr(target, "op") or _aliases(target):
        return False
    if target.target is not operator.getitem and not isinstance(target.target, _torch()._ops.OpOverload):
        return False
    for user in target.users:
        if user is node:
            continue
        if order[user] > order[node] or _aliases(user):
            return False
    return True


def blocker(ep, find_op, leaf_op, no_ops, shape_only) -> str | None:
    """Why the exported graph needs decomposing first (None: it can be converted as is)."""
    torch = _torch()
    graph = ep.graph
    order = {n: i for i, n in enumerate(graph.nodes)}
    if any(s.kind.name != "USER_OUTPUT" for s in ep.graph_signature.output_specs):
        return "the model writes to its buffers or inputs"
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        t = node.target
        if t is leaf_op or t is operator.getitem or t in no_ops:
            continue
        val = node.meta.get("val")
        if not isinstance(val, (torch.Tensor, list, tuple)):
            continue  # Python scalars (symbolic sizes): evaluated by the builder
        if not isinstance(t, torch._ops.OpOverload):
            return f"{t} is not an ATen op"
        if t in shape_only or not any(isinstance(a.meta.get("val"), torch.Tensor) for a in node.all_input_nodes):
            continue  # made from Python values or only another tensor's shape: the builder evaluates it
        if in_place(t):
            functional = functional_variant(t)
            if functional is None or find_op(functional) is None:
                return f"in-place {t} has no functional converter"
            if not _safe_in_place(node, order):
                return f"in-place {t} writes a tensor that is read elsewhere"
        elif find_op(t) is None:
            return f"no converter for {t}"
    return None
