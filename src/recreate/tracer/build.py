"""Exported graph -> Keras functional model.

Walks the core-ATen graph of `capture.export` node by node (one method per node kind, as
torch.fx's Interpreter does): user inputs become keras.Input, parameters and buffers become
`recreate.layers.Parameter` variables named after their torch path, registered module calls
become the module's Keras layers (named after the module path), and every ATen op goes
through the op registry (recreate.ops). Layout is tracked per value (see recreate.trace's
Value.perm): channels-last inside, one transpose at each boundary.

Shapes: torch.export's values carry symbolic shapes (the batch axis is a symbol). Converters
see the example's concrete shape (`cx.out_shape`) and which axes follow the batch
(`cx.batch_axes()`), read off the symbols.
"""

from __future__ import annotations

import functools
import operator
from collections import namedtuple

import numpy as np

from .._backend import keras, require_torch
from ..errors import ConversionError, RecreateError, UnsupportedOpError
from ..trace import (
    OpContext,
    Value,
    _Converter,
    _leaves,
    _python_tensor,
    _source_line,
    channels_last,
    identity,
    keeps_float64,
)
from . import capture, complex_values, direct

Meta = namedtuple("Meta", ["shape", "dtype"])


def _sym_types():
    import torch

    return (torch.SymInt, torch.SymFloat, torch.SymBool)


def hint(v):
    """The example's value of a (possibly symbolic) Python scalar."""
    import torch

    if isinstance(v, (torch.SymInt, torch.SymFloat, torch.SymBool)) and v.node.hint is None:
        raise ConversionError(
            f"a size that depends on tensor values ({v.node.expr}: nonzero, a boolean mask, a tensor of "
            "split points) has no fixed value: the output size is data-dependent. Register a converter for "
            "the module that computes it, or keep the size fixed")
    if isinstance(v, torch.SymInt):
        return int(v.node.hint)
    if isinstance(v, torch.SymFloat):
        return float(v.node.hint)
    if isinstance(v, torch.SymBool):
        return bool(v.node.hint)
    if isinstance(v, (list, tuple)) and not isinstance(v, torch.Size):
        return type(v)(hint(e) for e in v)
    return v


def symbolic(v) -> bool:
    import torch

    if isinstance(v, _sym_types()):
        return bool(v.node.expr.free_symbols)
    if isinstance(v, torch.Tensor):
        return any(symbolic(s) for s in v.shape)
    if isinstance(v, (list, tuple)):
        return any(symbolic(e) for e in v)
    return False


def _grown(s):
    """A symbolic size with every symbol one larger: which axes follow the batch."""
    import torch

    import sympy

    if not isinstance(s, torch.SymInt) or not s.node.expr.free_symbols:
        return hint(s)
    env = s.node.shape_env
    values = getattr(env, "backed_var_to_val", None) or env.var_to_val
    subs = {sym: sympy.Integer(int(values[sym]) + 1) for sym in s.node.expr.free_symbols}
    return int(s.node.expr.xreplace(subs))


def _meta(val):
    import torch

    if isinstance(val, torch.Tensor):
        return Meta(torch.Size(hint(tuple(val.shape))), val.dtype)
    if isinstance(val, (list, tuple)):
        return tuple(_meta(v) for v in val)
    return None


def _batch_shapes(graph) -> dict:
    """Each tensor node's shape with one more sample (ExportConverter's batch axes), and its
    example shape as `tensor_meta` (what the converters read)."""
    import torch

    shapes = {}
    for node in graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            node.meta["tensor_meta"] = _meta(val)
            shapes[node.name] = tuple(_grown(s) for s in val.shape)
        elif isinstance(val, (list, tuple)) and val and all(isinstance(v, torch.Tensor) for v in val):
            node.meta["tensor_meta"] = _meta(val)
    return shapes


class ExportConverter(_Converter):
    """_Converter with the batch axes read off torch.export's symbolic shapes."""

    def batch_axes_of(self, node) -> set | None:
        import torch

        val = getattr(node, "meta", {}).get("val") if node is not None else None
        if not isinstance(val, torch.Tensor):
            return None
        return {i for i, s in enumerate(val.shape) if symbolic(s)}


class Builder:
    def __init__(self, model, ep, args, kwargs, io_layout: str, dynamic_batch: bool = True):
        self.torch = require_torch("convert")
        self.model = model
        self.ep = ep
        self.io_layout = io_layout
        self.dynamic_batch = dynamic_batch
        self.gm = ep.graph_module
        self.conv = ExportConverter(model, io_layout)
        self.env: dict = {}
        self.inputs: list = []
        self.param_nodes: dict = {}  # placeholder node -> (torch name, tensor, trainable)
        self.examples = [a for a in _leaves((args, kwargs)) if isinstance(a, self.torch.Tensor)]
        self.conv.batch_shapes = _batch_shapes(self.ep.graph)

    # -- shapes -------------------------------------------------------------------------------
    # -- inputs -------------------------------------------------------------------------------
    def placeholders(self):
        from torch.export.graph_signature import InputKind

        sig = self.ep.graph_signature
        nodes = [n for n in self.ep.graph.nodes if n.op == "placeholder"]
        pairs = list(zip(nodes, sig.input_specs))
        # User inputs first: constants hang off the batch reference (an input), and a constant
        # made before it would be a concrete tensor that modules applied to it run eagerly on
        # (CLIP's position_embedding(position_ids) folded with uninitialised weights).
        users = [n.meta.get("val") for n, spec in pairs if spec.kind == InputKind.USER_INPUT]
        # An input whose axis 0 torch specialized (boxes (K, 5) beside images (N, C, H, W), a
        # broadcast operand of size 1) keeps that size, when another input carries the batch.
        self.batched = any(isinstance(v, self.torch.Tensor) and v.ndim and symbolic(v.shape[0]) for v in users)
        for node, spec in pairs:
            if spec.kind == InputKind.USER_INPUT:
                val = node.meta.get("val")
                if isinstance(val, self.torch.Tensor):
                    self._user_input(node, val)
                else:
                    self.env[node] = getattr(spec.arg, "value", hint(val))
        if not self.inputs:
            raise ConversionError(f"{type(self.model).__name__} has no tensor inputs to convert")
        if self.conv.batch_ref is None:
            self.conv.batch_ref = self.inputs[0]
        for node, spec in pairs:
            if spec.kind == InputKind.USER_INPUT:
                continue
            if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                tensor = (self.ep.state_dict.get(spec.target) if spec.target in self.ep.state_dict
                          else self.ep.constants.get(spec.target))
                persistent = spec.kind == InputKind.PARAMETER or spec.persistent is not False
                if persistent:
                    self.param_nodes[node] = (spec.target, tensor, spec.kind == InputKind.PARAMETER)
                else:
                    self.env[node] = self.conv.constant(tensor.detach().cpu().numpy(), spec.target)
            elif spec.kind == InputKind.CONSTANT_TENSOR:
                tensor = self.ep.constants[spec.target]
                self.env[node] = self.conv.constant(tensor.detach().cpu().numpy(), spec.target)
            else:
                raise ConversionError(f"exported input {spec.kind} ({spec.target}) is not supported")

    def _user_input(self, node, val):
        shape = tuple(hint(tuple(val.shape)))
        rank = len(shape)
        perm = channels_last(rank) if (self.io_layout == "keras" and rank >= 3) else identity(rank)
        kshape = tuple(shape[p] for p in perm)
        dims = [None if symbolic(val.shape[p]) else kshape[i] for i, p in enumerate(perm)]
        dtype = str(val.dtype).replace("torch.", "")
        if not self.dynamic_batch or (self.batched and (not dims or dims[0] is not None)):
            # every axis as in the example (op tests: 0-d inputs too; an input torch fixed)
            inp = keras.Input(batch_shape=tuple(dims) if self.dynamic_batch else kshape, dtype=dtype,
                              name=self.conv.fresh(node.name))
        elif not dims or dims[0] is not None:
            raise ConversionError(
                f"input {node.name} {tuple(shape)}: its axis 0 is not dynamic after capture (torch specialized it"
                f"{capture.specialization_site(val)}). Give example inputs whose first axis is the batch")
        else:
            inp = keras.Input(shape=tuple(dims[1:]), dtype=dtype, name=self.conv.fresh(node.name))
        self.inputs.append(inp)
        self.env[node] = Value(inp, perm, shape, val.dtype)
        if self.conv.batch_ref is None and (not self.dynamic_batch or (rank and dims[0] is None)):
            self.conv.batch_ref = inp

    def _parameter(self, node) -> Value:
        from ..layers.parameter import Parameter

        name, tensor, trainable = self.param_nodes[node]
        dtype = str(tensor.dtype).replace("torch.", "")
        if tensor.dtype.is_complex:
            raise ConversionError(
                f"parameter or buffer {name!r} is complex ({dtype}): Keras variables are real. Keep it as two real "
                "tensors (torch.view_as_real) or compute it in forward")
        if dtype in ("bfloat16", "float16") or (dtype == "float64" and not keeps_float64()):
            dtype = "float32"
        if dtype == "bool":  # not a variable type everywhere: a constant
            v = self.conv.constant(tensor.detach().cpu().numpy(), name)
        else:
            layer = Parameter(tuple(tensor.shape), dtype, torch_name=name, trainable=trainable,
                              name=self.conv.fresh(name))
            out = layer(self.conv.batch_ref)
            v = Value(out, identity(tensor.ndim), tuple(tensor.shape), tensor.dtype)
        self.env[node] = v
        return v

    def load(self, a):
        import torch

        def get(n):
            if n not in self.env and n in self.param_nodes:
                return self._parameter(n)
            return self.env[n]

        return torch.fx.node.map_arg(a, get)

    # -- nodes ----------------------------------------------------------------------------------
    def run(self):
        self.placeholders()
        outputs = None
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                outputs = self.output(node)
            elif node.op == "call_function":
                self.env[node] = self.call_function(node)
            elif node.op == "get_attr":  # a subgraph of torch.cond / torch.while_loop
                self.env[node] = self.get_attr(node)
            else:
                raise ConversionError(f"exported graph node kind {node.op} ({node.format_node()}) is not supported")
        return outputs

    def get_attr(self, node):
        obj = self.gm
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        return obj

    def output(self, node):
        from torch.export.graph_signature import OutputKind

        flat = self.load(node.args[0])
        specs = self.ep.graph_signature.output_specs
        return [v for v, s in zip(flat, specs) if s.kind == OutputKind.USER_OUTPUT]

    def call_function(self, node):
        import torch

        target = node.target
        if target is capture.module_call_op():
            return self.module_call(node)
        if target is operator.getitem:
            seq, i = self.load(node.args)
            return seq[i]
        val = node.meta.get("val")
        if target in no_ops():
            return None
        args, kwargs = self.load(node.args), self.load(node.kwargs)
        vals = [a for a in _leaves((args, kwargs)) if isinstance(a, Value)]
        if not isinstance(val, (torch.Tensor, list, tuple)) or (
                isinstance(val, (list, tuple)) and not any(isinstance(e, torch.Tensor) for e in val)):
            # A Python scalar (sym_size, shape arithmetic): the example's value; the converters
            # read which tensor axes follow the batch off the symbolic shapes.
            if isinstance(val, (*_sym_types(), int, float, bool)) or val is None:
                return hint(val)
        from .. import ops as op_registry

        shape_only = target in shape_only_ops() and op_registry.find_op(target) is None
        if not vals or shape_only:
            # A tensor made from Python values (full, arange, scalar_tensor) or from another
            # tensor's shape and dtype only (new_zeros, zeros_like): computed now.
            def example(a):
                return torch.zeros(a.shape, dtype=a.dtype) if isinstance(a, Value) else a

            with torch.no_grad():
                res = target(*hint(torch.fx.node.map_aggregate(args, example)),
                             **hint(torch.fx.node.map_aggregate(kwargs, example)))
            if "empty" in target.__name__:
                # Uninitialised memory (circular padding's buffer, filled before it is read):
                # zeros, so that a batch-sized one is the same for every sample.
                res = torch.zeros_like(res)
            dependent = symbolic(val) or any(symbolic(n.meta.get("val")) for n in node.all_input_nodes)
            if dependent and "arange" in target.__name__:
                made = self._batch_sized_arange(node, res)
                if made is not None:
                    return made
            return _python_tensor(self.conv, node, res, dependent, self.examples)
        if all(v.data is not None for v in vals) and not symbolic(val):
            return self.fold(node, args, kwargs)

        if complex_values.involved(val, vals):
            return complex_values.handle(self, node, args, kwargs)
        if target in control_flow_ops():
            return control_flow_ops()[target](self, node, args)
        fn = op_registry.find_op(target)
        if fn is None and direct.in_place(target):
            # The export IR's in-place ops on tensors nobody else reads (direct.py checked).
            fn = op_registry.find_op(direct.functional_variant(target))
        if fn is None:
            raise UnsupportedOpError(
                f"no converter for ATen op {target} (node {node.name}; {_source_line(node)}). "
                "Register one with @recreate.ops.register_op(torch.ops.aten....), or register a converter "
                "for the module around it so capture keeps it whole.")
        try:
            return fn(OpContext(self.conv, node), *args, **kwargs)
        except (RecreateError, ValueError, TypeError, NotImplementedError, IndexError, KeyError) as e:
            raise ConversionError(f"converting {node.format_node()} ({_source_line(node)}): "
                                  f"{type(e).__name__}: {e}") from e

    def _batch_sized_arange(self, node, res):
        """torch.arange(n) whose length n follows the batch (a * batch + c, read off the
        symbolic length at batch B and B + 1): an arange of that length at run time."""
        from ..layers.op import Op
        from ..trace import tensor

        grown = (self.conv.batch_shapes or {}).get(node.name)
        batch = self.examples[0].shape[0] if self.examples and self.examples[0].ndim else None
        if res.ndim != 1 or not grown or batch is None or self.conv.batch_ref is None:
            return None
        n0, n1 = int(res.shape[0]), int(grown[0])
        per_sample = n1 - n0
        extra = n0 - per_sample * batch
        start = res[0].item() if n0 else 0
        step = (res[1] - res[0]).item() if n0 > 1 else 1
        want = torch_arange_like(res, start, step)
        if per_sample <= 0 or want is None or not bool((want == res).all()):
            return None
        dtype = str(res.dtype).replace("torch.", "")
        layer = Op("scaled_arange", args=[tensor(0), per_sample, extra, start, step, dtype],
                   name=self.conv.fresh(node.name))
        return Value(layer(self.conv.batch_ref), identity(1), tuple(res.shape), res.dtype)

    def fold(self, node, args, kwargs):
        """Every tensor input is a constant: compute the result with torch, as a constant."""
        import torch

        def to_torch(a):
            if isinstance(a, Value):
                return torch.from_numpy(np.array(a.data))
            if isinstance(a, (list, tuple)):
                return type(a)(to_torch(e) for e in a)
            return a

        with torch.no_grad():
            res = node.target(*to_torch(hint(args)), **to_torch(hint(kwargs)))

        def back(r):
            if isinstance(r, torch.Tensor):
                return self.conv.constant(r.detach().cpu().numpy(), node.name)
            if isinstance(r, (list, tuple)):
                return type(r)(back(e) for e in r)
            return r

        return back(res)

    def module_call(self, node):
        key = node.args[0]
        call = capture.calls()[key]
        tensors = self.load(node.args[1])
        args, kwargs = call.rebuild_inputs(list(tensors))
        args, kwargs = _positional(call.module, args, kwargs)
        positional = [a for a in _leaves(list(args)) if isinstance(a, Value)]
        metas = node.meta["tensor_meta"]
        out_meta = call.rebuild_outputs(list(metas))
        stand_in = _NodeStandIn(node.name, {"tensor_meta": out_meta})
        res = self.conv.apply_module(call.module, positional, dict(kwargs), None, node=stand_in, path=call.path)
        return [v for v in _leaves(res) if isinstance(v, Value)]

    # -- model --------------------------------------------------------------------------------
    def finish(self, outputs, name: str | None):
        from ..trace import _model_name, recursion_room

        flat = [v for v in _leaves(outputs) if isinstance(v, Value)]
        if not flat:
            raise ConversionError(f"{type(self.model).__name__} returns no tensors: nothing to convert")
        final = []
        for v in flat:
            want = channels_last(v.rank) if (self.io_layout == "keras" and v.rank >= 3) else identity(v.rank)
            final.append(self.conv.to_perm(v, want).t)
        with recursion_room(4 * len(self.ep.graph.nodes)):
            return keras.Model(self.inputs[0] if len(self.inputs) == 1 else self.inputs,
                               final[0] if len(final) == 1 else final,
                               name=name or _model_name(type(self.model).__name__))


def torch_arange_like(res, start, step):
    import torch

    try:
        return torch.arange(res.shape[0], dtype=torch.float64).mul(step).add(start).to(res.dtype)
    except (RuntimeError, TypeError):
        return None


def _positional(module, args, kwargs):
    """A module called with a keyword tensor (`self.fc(input=x)`): arguments that forward()
    takes positionally are passed positionally."""
    import inspect

    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return args, kwargs
    return tuple(bound.args), dict(bound.kwargs)


class _NodeStandIn:
    def __init__(self, name, meta):
        self.name = name
        self.meta = meta

    def format_node(self):
        return self.name


@functools.cache
def shape_only_ops() -> frozenset:
    """Ops whose result depends on a tensor argument's shape and dtype only."""
    import torch

    aten = torch.ops.aten
    names = ("new_zeros", "new_ones", "new_full", "new_empty", "zeros_like", "ones_like", "empty_like",
             "new_empty_strided", "empty_strided")
    return frozenset(getattr(getattr(aten, n), o) for n in names if hasattr(aten, n)
                     for o in getattr(aten, n).overloads())


@functools.cache
def control_flow_ops() -> dict:
    """torch.cond / torch.while_loop (higher-order ops) -> their handlers (tracer/control_flow.py)."""
    import torch

    from . import control_flow

    hop = torch.ops.higher_order
    return {hop.cond: control_flow.cond, hop.while_loop: control_flow.while_loop}


@functools.cache
def no_ops() -> frozenset:
    import torch

    aten = torch.ops.aten
    out = set()
    for n in ("_assert_scalar.default", "sym_constrain_range_for_size.default", "_assert_tensor_metadata.default",
              "sym_constrain_range.default", "_assert_async.msg", "_assert_async.default"):
        name, overload = n.split(".")
        packet = getattr(aten, name, None)
        if packet is not None and hasattr(packet, overload):
            out.add(getattr(packet, overload))
    return frozenset(out)


def convert_exported(model, xs: list, io_layout: str, kwargs: dict | None = None, name: str | None = None,
                     *, dynamic_batch: bool = True, decompose: bool | None = None):
    """Capture `model` with torch.export and build the Keras model (module docstring).
    `dynamic_batch=False` keeps every axis as in the example (op tests: 0-d inputs)."""
    torch = require_torch("convert")
    from ..ops import load_all

    load_all()
    kwargs = {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in (kwargs or {}).items()}
    ep, args, kw = capture.export(model, tuple(xs), kwargs, dynamic_batch=dynamic_batch, decompose=decompose)
    builder = Builder(model, ep, args, kw, io_layout, dynamic_batch)
    outputs = builder.run()
    km = builder.finish(outputs, name)
    from ..transfer import transfer_weights

    report = transfer_weights(model, km, strict=False)
    if report.unassigned_keras:
        raise ConversionError(f"converted layers left without weights: {report.unassigned_keras}")
    return km
