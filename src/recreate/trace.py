"""Whole-model conversion: trace a torch model, keep registered modules whole, convert the
operations between them through the op registry, track each tensor's axis order.

Every value carries `perm`: the Keras tensor is the torch tensor permuted by `perm`
(identity = PyTorch's layout, (0, 2, 3, 1) = channels-last). Registered modules state the
layout they need; a transpose is inserted only when a value's perm differs, and torch's own
permute/transpose calls only change `perm` (no Keras op at all), so a network that is
channels-last throughout has no transposes inside. Where memory order matters (view,
reshape, flatten) the value is brought to PyTorch's order first; when the moved axes are all
of size 1 that is a free reshape.

Tracing uses torch.fx with registered module types as leaves. Code that fx cannot trace
(data-dependent Python control flow) raises UntraceableError naming the module and source
line: register a converter for that module (or recreate it by hand) and it becomes a leaf.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from ._backend import keras, require_torch
from .errors import ConversionError, RecreateError
from .layout import to_channels_last_perm
from .registry import ANY, CHANNELS_LAST, BuildContext, find_entry


class UntraceableError(RecreateError, RuntimeError):
    """torch.fx could not trace part of the model."""


class UnsupportedOpError(RecreateError, NotImplementedError):
    """An operation between modules has no op converter."""


@dataclass
class Value:
    """A traced tensor on the Keras side."""

    t: object  # KerasTensor
    perm: tuple[int, ...]
    shape: tuple[int, ...]  # torch shape (example batch)
    dtype: object  # torch dtype
    data: object = None  # numpy value (torch layout) when the tensor is a model constant

    @property
    def rank(self) -> int:
        return len(self.shape)

    def keras_axis(self, torch_dim: int) -> int:
        return self.perm.index(torch_dim % max(self.rank, 1))


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def channels_last(rank: int) -> tuple[int, ...]:
    return to_channels_last_perm(rank)


def compose_permute(perm: tuple[int, ...], torch_perm: tuple[int, ...]) -> tuple[int, ...]:
    """perm of y = x.permute(torch_perm) when x has `perm`: keras axis i holds torch axis
    perm[i] of x, which is axis inv(torch_perm)[perm[i]] of y."""
    inv = [0] * len(torch_perm)
    for j, p in enumerate(torch_perm):
        inv[p] = j
    return tuple(inv[p] for p in perm)


class OpContext:
    """What op converters use: layout changes, Keras op layers, constants."""

    def __init__(self, conv: _Converter, node):
        self.conv = conv
        self.node = node

    # -- shapes of this node's result (torch, from the traced example) -------------------
    @property
    def out_meta(self):
        return self.node.meta.get("tensor_meta")

    @property
    def out_shape(self) -> tuple[int, ...]:
        m = self.out_meta
        if m is None or not hasattr(m, "shape"):
            raise ConversionError(f"no shape recorded for {self.node.format_node()}")
        return tuple(m.shape)

    @property
    def out_dtype(self):
        return self.out_meta.dtype

    # -- layout ---------------------------------------------------------------------------
    def to(self, v: Value, perm: tuple[int, ...]) -> Value:
        return self.conv.to_perm(v, tuple(perm))

    def torch(self, v: Value) -> Value:
        return self.to(v, identity(v.rank))

    # -- building -------------------------------------------------------------------------
    def op(self, fn: str, args, tensors: list[Value], perm, shape=None, dtype=None, kwargs=None) -> Value:
        """Apply keras.ops.<fn> (or an Op helper) to `tensors` placed into `args`."""
        from .layers.op import Op

        layer = Op(fn, args=args, kwargs=kwargs or {}, name=self.conv.fresh(f"{self.node.name}"))
        out = layer(*[v.t for v in tensors])
        return Value(out, tuple(perm), tuple(shape if shape is not None else self.out_shape),
                     dtype if dtype is not None else self.out_dtype)

    def layer(self, layer, tensors: list[Value], perm, shape=None) -> Value:
        layer.name = self.conv.fresh(self.node.name)
        out = layer(*[v.t for v in tensors])
        return Value(out, tuple(perm), tuple(shape if shape is not None else self.out_shape), self.out_dtype)

    def const(self, array, perm=None) -> Value:
        return self.conv.constant(np.asarray(array), self.node.name, perm)

    def module(self, module, inputs: list[Value], kwargs=None) -> Value | tuple:
        """Convert a torch module instance made up on the spot (F.max_pool2d -> MaxPool2d,
        F.layer_norm -> LayerNorm with the call's weights): its weights are filled now."""
        return self.conv.apply_module(module, inputs, kwargs or {}, self.conv.fresh(self.node.name),
                                      node=self.node, adhoc=True)

    @property
    def batch_ref(self):
        return self.conv.batch_ref


def tensor(i: int) -> dict:
    return {"__tensor__": i}


class _Converter:
    def __init__(self, model, io_layout: str):
        self.torch = require_torch("convert")
        self.model = model
        self.io_layout = io_layout
        self.names: set[str] = set()
        self.batch_ref = None
        self.modules = dict(model.named_modules())
        self.constant_keys: list[str] = []
        self._perm_cache: dict = {}

    def fresh(self, base: str) -> str:
        base = base.replace("/", ".")
        name, i = base, 1
        while name in self.names or name in self.modules:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def module_name(self, path: str) -> str:
        """A module's Keras layer is named after its path (a second call gets a suffix)."""
        if path and path not in self.names:
            self.names.add(path)
            return path
        return self.fresh(f"{path or 'root'}.call")

    def to_perm(self, v: Value, perm: tuple[int, ...]) -> Value:
        if v.perm == perm or v.rank < 2:
            return Value(v.t, perm, v.shape, v.dtype) if v.rank < 2 else v
        key = (id(v.t), perm)
        if key in self._perm_cache:
            return self._perm_cache[key]
        # keras tensor K = x.permute(v.perm); want x.permute(perm) = K.permute(q), q[i] = v.perm.index(perm[i])
        q = tuple(v.perm.index(p) for p in perm)
        kshape = tuple(v.shape[p] for p in perm)
        # Memory order is unchanged when only size-1 axes move: then a reshape suffices.
        same_order = [p for p in v.perm if v.shape[p] != 1] == [p for p in perm if v.shape[p] != 1]
        free = same_order and q[0] == 0
        from .layers.op import Op

        name = self.fresh("reshape" if free else "transpose")
        if free:
            # Only size-1 axes move: memory order is unchanged, a reshape suffices.
            out = keras.layers.Reshape(kshape[1:], name=name)(v.t)
        elif q[0] == 0:
            out = keras.layers.Permute(tuple(a for a in q[1:]), name=name)(v.t)
        else:
            out = Op("transpose", args=[tensor(0), list(q)], name=name)(v.t)
        res = Value(out, perm, v.shape, v.dtype)
        self._perm_cache[key] = res
        return res

    def constant(self, array: np.ndarray, hint: str, perm=None) -> Value:
        from .layers.op import Constant

        rank = array.ndim
        perm = tuple(perm) if perm is not None else identity(rank)
        data = np.transpose(array, perm) if rank else array
        dt = str(data.dtype)
        if data.dtype == np.float64:
            data, dt = data.astype(np.float32), "float32"
        layer = Constant(data.shape, dt, name=self.fresh(f"const.{hint}"))
        out = layer(self.batch_ref)
        layer.value.assign(data)
        torch_dtype = getattr(self.torch, str(array.dtype), self.torch.float32)
        return Value(out, perm, tuple(array.shape), torch_dtype, data=array)

    # -- modules ----------------------------------------------------------------------------
    def apply_module(self, module, inputs: list[Value], kwargs: dict, name: str, node=None, adhoc=False):
        entry = find_entry(type(module))
        torch = self.torch
        if entry is None:
            raise ConversionError(f"{type(module).__name__} has no registered converter")
        feeds = []
        for v in inputs:
            if entry.layout[0] == ANY:
                feeds.append(self.to_perm(v, inputs[0].perm) if v.rank == inputs[0].rank else v)
            else:
                want_cl = entry.layout[0] == CHANNELS_LAST
                feeds.append(self.to_perm(v, channels_last(v.rank) if want_cl else identity(v.rank)))
        tensor_kw = {k: v for k, v in kwargs.items() if isinstance(v, Value)}
        const_kw = {k: v for k, v in kwargs.items() if not isinstance(v, Value)}
        ctx = BuildContext(
            tuple(v.shape for v in inputs),
            {**const_kw, **{k: v.shape for k, v in tensor_kw.items()}},
            tuple(tensor_kw),
        )
        module.eval()
        layers = entry.make_layers(module, ctx, name)
        y = None
        for i, lyr in enumerate(layers):
            if i == 0:
                y = lyr(*[f.t for f in feeds], **{k: self.to_perm(v, identity(v.rank)).t for k, v in tensor_kw.items()})
            else:
                y = lyr(y)
        if adhoc:
            from .transfer import fill_layer

            for lyr in layers:
                if lyr.weights:
                    fill_layer(module, lyr)
                lyr.transfer_skip = True
        meta = node.meta.get("tensor_meta") if node is not None and not adhoc else None
        if meta is None:  # ad-hoc module (F.* converted through a module): run torch for shapes
            with torch.no_grad():
                ex = [torch.zeros(v.shape, dtype=v.dtype) for v in inputs]
                meta = _meta_of(module(*ex))
        outs = list(y) if isinstance(y, (list, tuple)) else [y]
        out_layout = entry.layout[1]

        def rebuild(m):
            # Mirror torch's output structure (tuples, None for absent outputs such as
            # MultiheadAttention's weights with need_weights=False); Keras outputs come in order.
            if m is None:
                return None
            if isinstance(m, (list, tuple)) and not hasattr(m, "shape"):
                return tuple(rebuild(e) for e in m)
            shape, dtype = tuple(m.shape), m.dtype
            rank = len(shape)
            if out_layout == ANY:
                perm = feeds[0].perm if feeds and feeds[0].rank == rank else identity(rank)
            else:
                perm = channels_last(rank) if out_layout == CHANNELS_LAST else identity(rank)
            return Value(outs.pop(0), perm, shape, dtype)

        return rebuild(meta)


def _meta_of(out):
    """torch output -> the same structure of objects with .shape/.dtype (None kept)."""
    if out is None or hasattr(out, "shape"):
        return out
    if isinstance(out, (list, tuple)):
        return tuple(_meta_of(o) for o in out)
    if isinstance(out, dict):
        return tuple(_meta_of(o) for o in out.values())
    return None


def _source_line(node) -> str:
    """The user's source line that created the node (not torch.fx's own frames)."""
    st = node.meta.get("stack_trace")
    if st:
        lines = [ln.strip() for ln in st.strip().splitlines() if ln.strip().startswith("File")]
        lines = [ln for ln in lines if "/torch/fx/" not in ln and "/torch/nn/modules/module.py" not in ln]
        if lines:
            return lines[-1]
    return ""


def trace(model):
    """torch.fx GraphModule of `model` with registered module types as leaves."""
    torch = require_torch("convert")
    import torch.fx as fx

    class LeafTracer(fx.Tracer):
        def __init__(self):
            super().__init__()
            self.record_stack_traces = True

        def is_leaf_module(self, m, qualname):
            return find_entry(type(m)) is not None

    tracer = LeafTracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises many types
        where = _innermost_module_frame(e, model)
        raise UntraceableError(
            f"torch.fx could not trace {type(model).__name__}{where}: {type(e).__name__}: {str(e).splitlines()[0][:300]}. "
            "Data-dependent Python control flow cannot be traced: register a converter for the "
            "module that contains it (@recreate.register(ThatModule)) and the tracer keeps it whole, "
            "or recreate it by hand."
        ) from e
    del torch
    return fx.GraphModule(tracer.root, graph)


def _innermost_module_frame(exc, model) -> str:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "/torch/" not in f.filename and "/recreate/" not in f.filename]
    if not user:
        return ""
    f = user[-1]
    return f" at {f.filename}:{f.lineno} ({f.name}: {f.line})"


def convert_traced(model, xs: list, io_layout: str, kwargs: dict | None = None, name: str | None = None):
    """Trace `model` and build the Keras functional model (see module docstring)."""
    torch = require_torch("convert")
    from torch.fx.passes.shape_prop import ShapeProp

    from . import ops as op_registry
    from .ops import builtin, sampling, vision  # noqa: F401  (registers the built-in op converters)

    if kwargs:
        raise ConversionError("keyword inputs are not supported for traced models yet; pass tensors positionally")
    gm = trace(model)
    with torch.no_grad():
        ShapeProp(gm).propagate(*xs)
    conv = _Converter(model, io_layout)
    env: dict = {}
    inputs = []
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node, x in zip(placeholders, xs):
        shape = tuple(x.shape)
        rank = len(shape)
        perm = channels_last(rank) if (io_layout == "keras" and rank >= 3) else identity(rank)
        kshape = tuple(shape[p] for p in perm)
        inp = keras.Input(shape=kshape[1:], dtype=str(x.dtype).replace("torch.", ""), name=conv.fresh(node.name))
        inputs.append(inp)
        env[node] = Value(inp, perm, shape, x.dtype)
        if conv.batch_ref is None:
            conv.batch_ref = inp
    if len(placeholders) != len(xs):
        raise ConversionError(f"model takes {len(placeholders)} inputs, {len(xs)} example inputs given")

    def load(a):
        return torch.fx.node.map_arg(a, lambda n: env[n])

    outputs = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "get_attr":
            val = _get_attr(gm, node.target)
            if isinstance(val, torch.Tensor):
                conv.constant_keys.append(node.target)
                env[node] = conv.constant(val.detach().cpu().numpy(), node.target)
            else:
                env[node] = val
        elif node.op == "call_module":
            mod = gm.get_submodule(node.target)
            args = load(node.args)
            kw = load(node.kwargs)
            tensors = [a for a in args if isinstance(a, Value)]
            env[node] = conv.apply_module(mod, tensors, dict(kw), conv.module_name(node.target), node=node)
        elif node.op in ("call_function", "call_method"):
            args, kw = load(node.args), load(node.kwargs)
            if not any(isinstance(a, Value) for a in _leaves((args, kw))):
                # Pure Python (shape arithmetic): evaluate it.
                env[node] = _eval_python(node, args, kw)
                continue
            fn = op_registry.find_op(node.target)
            if fn is None:
                tname = node.target if isinstance(node.target, str) else getattr(node.target, "__qualname__", repr(node.target))
                raise UnsupportedOpError(
                    f"no op converter for {node.op} {tname!r} (node {node.name}; {_source_line(node)}). "
                    "Register one with @recreate.ops.register_op(...), or register a converter for "
                    "the module around it so the tracer keeps it whole."
                )
            try:
                env[node] = fn(OpContext(conv, node), *args, **kw)
            except (RecreateError, ValueError, TypeError, NotImplementedError) as e:
                raise ConversionError(f"converting {node.format_node()} ({_source_line(node)}): {e}") from e
        elif node.op == "output":
            outputs = load(node.args[0])
    flat = [v for v in _leaves(outputs) if isinstance(v, Value)]
    final = []
    for v in flat:
        want = channels_last(v.rank) if (io_layout == "keras" and v.rank >= 3) else identity(v.rank)
        final.append(conv.to_perm(v, want).t)
    km = keras.Model(inputs[0] if len(inputs) == 1 else inputs, final[0] if len(final) == 1 else final,
                     name=name or type(model).__name__)
    from .transfer import transfer_weights

    report = transfer_weights(model, km, strict=False)
    if report.unassigned_keras:
        raise ConversionError(f"converted layers left without weights: {report.unassigned_keras}")
    used_as_constants = set(conv.constant_keys)
    unused = [k for k in report.unused_torch if k not in used_as_constants]
    if unused:
        raise ConversionError(
            f"torch tensors not used by the converted model: {unused[:20]}. A module that "
            "holds them was converted without them: check its converter"
        )
    return km


def _get_attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _leaves(x):
    if isinstance(x, (list, tuple)):
        for e in x:
            yield from _leaves(e)
    elif isinstance(x, dict):
        for e in x.values():
            yield from _leaves(e)
    else:
        yield x


def _eval_python(node, args, kwargs):
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


__all__ = ["OpContext", "UnsupportedOpError", "UntraceableError", "Value", "convert_traced", "operator"]
