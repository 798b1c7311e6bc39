"""torch.cond and torch.while_loop in an exported graph -> recreate.layers.Cond / WhileLoop.

torch.export keeps these higher-order ops whole: the branches, the loop condition and the
loop body are subgraphs (get_attr nodes), and every tensor a subgraph reads (parameters,
constants, captured tensors) is passed to it as an operand. Each subgraph is built here into
its own keras.Model over those operands by the same Builder that builds the model, so a
registered module called inside keeps its path as layer name (transfer_weights looks into
the subgraph models) and parameters stay the model's variables (they arrive as operands).

A predicate that is a constant of the model picks its branch at conversion (the branch is
built inline, no Cond layer).
"""

from __future__ import annotations

from .._backend import keras
from ..errors import ConversionError
from ..trace import Value, identity
from .build import Builder, _batch_shapes, hint, symbolic


class Subgraph(Builder):
    """Builds one subgraph of a higher-order op, sharing the parent builder's converter."""

    def __init__(self, parent: Builder, gm, label: str):  # noqa: D107 - no super(): no export of its own
        self.torch = parent.torch
        self.model = parent.model
        self.ep = None
        self.gm = gm
        self.io_layout = parent.io_layout
        self.dynamic_batch = parent.dynamic_batch
        self.conv = parent.conv
        self.env = {}
        self.inputs = []
        self.param_nodes = {}
        self.examples = parent.examples
        self.label = label

    def _placeholders(self):
        return [n for n in self.gm.graph.nodes if n.op == "placeholder"]

    def _walk(self):
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                out = self.load(node.args[0])
                return list(out) if isinstance(out, (list, tuple)) else [out]
            if node.op == "call_function":
                self.env[node] = self.call_function(node)
            elif node.op == "get_attr":
                self.env[node] = self.get_attr(node)
            else:
                raise ConversionError(f"subgraph node kind {node.op} ({node.format_node()}) is not supported")
        raise ConversionError(f"{self.label}: subgraph has no output")

    def _swapped(self, fn, module_layers_fresh: bool):
        conv = self.conv
        saved = conv.batch_ref, conv.batch_shapes, conv.module_layers
        conv.batch_shapes = {**(saved[1] or {}), **_batch_shapes(self.gm.graph)}
        if module_layers_fresh:
            # Layers are not shared between the model and a nested model (Keras does not
            # restore a layer shared that way from a .keras file): a module called here gets
            # its own layers, filled by transfer_weights through the subgraph model.
            conv.module_layers = {}
        try:
            return fn()
        finally:
            conv.batch_ref, conv.batch_shapes, conv.module_layers = saved

    def inline(self, feeds: list) -> list:
        """The subgraph's outputs computed in the parent graph from `feeds` (no model)."""
        placeholders = self._placeholders()
        _check_arity(self.label, placeholders, feeds)
        self.env.update(zip(placeholders, feeds))
        return self._swapped(self._walk, module_layers_fresh=False)

    def keras_model(self, feeds: list, keep_data: list, out_perms: list | None) -> tuple:
        """The subgraph as a keras.Model whose inputs are the Values among `feeds`; a feed whose
        `keep_data` is True keeps its constant value (folding sees it). The outputs are put in
        `out_perms` (default: torch layout). Returns (model, its output Values' metadata)."""
        placeholders = self._placeholders()
        _check_arity(self.label, placeholders, feeds)

        def build():
            conv = self.conv
            conv.batch_ref = None
            for node, f, keep in zip(placeholders, feeds, keep_data):
                if not isinstance(f, Value):
                    self.env[node] = f
                    continue
                inp = self._input(node, f)
                self.env[node] = Value(inp, f.perm, f.shape, f.dtype, data=f.data if keep else None)
            if not self.inputs:
                raise ConversionError(f"{self.label}: a subgraph without tensor operands is not supported")
            outs = self._walk()
            vals = [v for v in outs if isinstance(v, Value)]
            if len(vals) != len(outs):
                raise ConversionError(f"{self.label}: a subgraph output that is not a tensor is not supported")
            perms = out_perms or [identity(v.rank) for v in vals]
            final = [self.conv.to_perm(v, p) for v, p in zip(vals, perms)]
            m = keras.Model(self.inputs[0] if len(self.inputs) == 1 else self.inputs,
                            [v.t for v in final][0] if len(final) == 1 else [v.t for v in final],
                            name=self.conv.fresh(self.label))
            return m, final

        return self._swapped(build, module_layers_fresh=True)

    def _input(self, node, f: Value):
        val = node.meta.get("val")
        kshape = [f.shape[p] for p in f.perm]
        if isinstance(val, self.torch.Tensor) and len(val.shape) == f.rank:
            kshape = [None if symbolic(val.shape[p]) else kshape[i] for i, p in enumerate(f.perm)]
        elif f.rank:
            kshape[0] = None  # no symbolic shape recorded: axis 0 may follow the batch
        dtype = str(f.dtype).replace("torch.", "")
        inp = keras.Input(batch_shape=tuple(kshape), dtype=dtype, name=self.conv.fresh(f"{self.label}.{node.name}"))
        self.inputs.append(inp)
        if self.conv.batch_ref is None or (kshape and kshape[0] is None
                                           and not (self.conv.batch_ref.shape and self.conv.batch_ref.shape[0] is None)):
            self.conv.batch_ref = inp  # constants hang off an input, preferably a batch-sized one
        return inp


def _check_arity(label, placeholders, feeds):
    if len(placeholders) != len(feeds):
        raise ConversionError(f"{label}: the subgraph takes {len(placeholders)} operands, got {len(feeds)}")


def _metas(node) -> list:
    meta = node.meta.get("tensor_meta")
    return list(meta) if isinstance(meta, (list, tuple)) else [meta]


def _wrap(out, finals, node) -> list:
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [Value(o, v.perm, tuple(m.shape) if m is not None else v.shape, v.dtype)
            for o, v, m in zip(outs, finals, _metas(node))]


def cond(builder: Builder, node, args) -> list:
    """torch.ops.higher_order.cond(pred, true_graph, false_graph, operands)."""
    from ..layers.cond import Cond

    pred, true_gm, false_gm, operands = args
    operands = list(operands)
    name = node.name
    if not isinstance(pred, Value) or pred.data is not None:
        taken = bool(hint(pred)) if not isinstance(pred, Value) else bool(pred.data.reshape(-1)[0])
        gm, label = (true_gm, "true") if taken else (false_gm, "false")
        return Subgraph(builder, gm, f"{name}.{label}").inline(operands)
    keep = [True] * len(operands)
    true_model, finals = Subgraph(builder, true_gm, f"{name}.true").keras_model(operands, keep, None)
    false_model, _ = Subgraph(builder, false_gm, f"{name}.false").keras_model(operands, keep, [v.perm for v in finals])
    layer = Cond(true_model, false_model, name=builder.conv.fresh(name))
    out = layer(pred.t, *[v.t for v in operands if isinstance(v, Value)])
    return _wrap(out, finals, node)


def while_loop(builder: Builder, node, args) -> list:
    """torch.ops.higher_order.while_loop(cond_graph, body_graph, carried, additional)."""
    from ..layers.cond import WhileLoop

    cond_gm, body_gm, carried, additional = args
    carried, additional = list(carried), list(additional)
    name = node.name
    if not all(isinstance(v, Value) for v in carried):
        raise ConversionError(
            f"{name}: torch.while_loop carries a Python number ({[v for v in carried if not isinstance(v, Value)]}); "
            "carry it as a tensor (torch.tensor(0)) so that the loop can be converted")
    # The carried values change every iteration: never folded as constants; the additional
    # inputs (parameters, constants) are the same every time.
    feeds = carried + additional
    keep = [False] * len(carried) + [True] * len(additional)
    cond_model, _ = Subgraph(builder, cond_gm, f"{name}.cond").keras_model(feeds, keep, None)
    body_model, finals = Subgraph(builder, body_gm, f"{name}.body").keras_model(feeds, keep, [v.perm for v in carried])
    if len(finals) != len(carried):
        raise ConversionError(f"{name}: the loop body returns {len(finals)} values for {len(carried)} carried")
    layer = WhileLoop(cond_model, body_model, num_carried=len(carried), name=builder.conv.fresh(name))
    out = layer(*[v.t for v in carried], *[v.t for v in additional if isinstance(v, Value)])
    return _wrap(out, [Value(None, v.perm, v.shape, v.dtype) for v in carried], node)
