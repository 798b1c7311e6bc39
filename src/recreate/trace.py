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

Why torch.fx and not torch.export: fx records the calls the model's source makes
(F.interpolate, x.view, torch.cond), which map one-to-one onto the op registry, each with a
Hypothesis property; torch.export lowers to a few hundred aten ops (a second registry) and
needs unflatten to get module calls back. What fx alone could not do (RAFT's shape checks
and Python loop, Hugging Face's mask building and item assignment) the concrete fallback
tracer does: proxies carry the example's real tensors, so Python sees real shapes; a second
trace with one more sample finds what depends on the batch size (see `_batch_args_by_retracing`).
"""

from __future__ import annotations

import contextlib
import functools
import operator
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from ._backend import keras, require_torch
from ._memory import Releaser, release_free_memory
from .errors import ConversionError, RecreateError, UnsupportedOpError, UntraceableError
from .layout import to_channels_last_perm
from .registry import ANY, CHANNELS_LAST, BuildContext, find_entry


@dataclass
class Value:
    """A traced tensor on the Keras side."""

    t: object  # KerasTensor
    perm: tuple[int, ...]
    shape: tuple[int, ...]  # torch shape (example batch)
    dtype: object  # torch dtype
    data: object = None  # numpy value (torch layout) when the tensor is a model constant
    # The torch tensor a folded constant was computed as: views keep sharing storage with
    # their base, so an in-place op on a view changes the base too (see _fold).
    torch_ref: object = None

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

    def batch_axes(self, arg: int | None = None) -> set | None:
        """Torch axes that follow the batch size, of this node's result or of its positional
        argument `arg` (found by tracing with one more sample); None when unknown."""
        node = self.node if arg is None else (self.node.args[arg] if arg < len(self.node.args) else None)
        return self.conv.batch_axes_of(node)


def tensor(i: int) -> dict:
    return {"__tensor__": i}


def keeps_float64() -> bool:
    """Whether float64 torch tensors stay float64 in Keras: only in a float64 run (Keras's
    floatx set to float64, as the sweeps' float64 recheck does); float32 otherwise."""
    return keras.config.floatx() == "float64"


class _Converter:
    def __init__(self, model, io_layout: str):
        self.torch = require_torch("convert")
        self.model = model
        self.io_layout = io_layout
        self.names: set[str] = set()
        self.batch_ref = None
        self.modules = dict(model.named_modules())
        self.constant_keys: list[str] = []
        self.folded: list[Value] = []  # constants folded with torch, which in-place ops may change
        self._perm_cache: dict = {}
        self.module_layers: dict = {}  # module path -> {call signature: its Keras layers}
        self.batch_shapes: dict | None = None  # node name -> its shape with one more sample

    def batch_axes_of(self, node) -> set | None:
        import torch.fx

        if self.batch_shapes is None or not isinstance(node, torch.fx.Node):
            return None
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            return None
        other = self.batch_shapes.get(node.name)
        if other is None:  # no shape at B+1 (tracing did not record one): unknown
            return None
        if len(other) != len(meta.shape):
            return None
        return {i for i, (a, b) in enumerate(zip(meta.shape, other)) if a != b}

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
        hit = self._perm_cache.get(key)
        if hit is not None and hit[0] is v.t:  # the entry holds v.t, so its id cannot be reused
            return hit[1]
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
        self._perm_cache[key] = (v.t, res)
        return res

    def constant(self, array: np.ndarray, hint: str, perm=None) -> Value:
        from .layers.op import Constant

        if not array.flags.c_contiguous:
            # The example's value kept C-contiguous, as torch holds a computed tensor: a view
            # handed over as it is (an expand's stride-0 broadcast, a transpose) keeps its
            # layout when it is folded again (np.array keeps the order, torch's elementwise ops
            # follow it), and torch then refuses the export's `view` of a result that is
            # contiguous in eager torch (kornia MotionBlur's kernel).
            array = np.ascontiguousarray(array)
        if np.iscomplexobj(array):  # held as a real pair (recreate.tracer.complex_values)
            from .tracer.complex_values import constant

            return constant(self, array, hint, perm)
        rank = array.ndim
        perm = tuple(perm) if perm is not None else identity(rank)
        data = np.transpose(array, perm) if rank else array
        dt = str(data.dtype)
        if data.dtype == np.float64 and not keeps_float64():
            data, dt = data.astype(np.float32), "float32"
        if self.batch_ref is None:  # the layer would run eagerly: its output no graph tensor
            raise ConversionError(f"internal: constant {hint!r} made before any model input")
        layer = Constant(data.shape, dt, name=self.fresh(f"const.{hint}"))
        out = layer(self.batch_ref)
        layer.value.assign(data)
        torch_dtype = getattr(self.torch, str(array.dtype), self.torch.float32)
        return Value(out, perm, tuple(array.shape), torch_dtype, data=array)

    # -- modules ----------------------------------------------------------------------------
    def apply_module(self, module, inputs: list[Value], kwargs: dict, name: str | None, node=None, adhoc=False,
                     path: str | None = None):
        """Build (or, for a module with weights called again the same way, reuse) the
        module's Keras layers and call them. A module called again with other shapes or
        arguments gets new layers holding copies of its weights."""
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
        layers, copy_weights = None, adhoc
        stateless = next(iter(module.parameters()), None) is None and next(iter(module.buffers()), None) is None
        if path is not None and stateless:
            name = self.module_name(path)  # a layer per call (torchvision's ReLU used twice a block)
        elif path is not None:
            key = (tuple(v.shape[1:] for v in inputs), tuple(v.perm for v in feeds),
                   repr(sorted(const_kw.items())), tuple((k, v.shape[1:]) for k, v in tensor_kw.items()))
            seen = self.module_layers.setdefault(path, {})
            layers = seen.get(key)
            if layers is None:
                # The first call owns the module's path (transfer_weights fills it); a call
                # with other shapes or arguments, or in a torch.cond branch when the path is
                # taken, gets layers holding copies of the weights.
                name = self.module_name(path)
                copy_weights = bool(seen) or name != path
                layers = seen[key] = entry.make_layers(module, ctx, name)
        if layers is None:
            layers = entry.make_layers(module, ctx, name)
        y = None
        with _zero_initializers(layers):
            for i, lyr in enumerate(layers):
                if i == 0:
                    y = lyr(*[f.t for f in feeds], **{k: self.to_perm(v, identity(v.rank)).t for k, v in tensor_kw.items()})
                else:
                    y = lyr(y)
        if copy_weights:
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


@contextlib.contextmanager
def _zero_initializers(layers):
    """Build `layers` with zero initial weights: every weight is overwritten by the transfer
    (convert refuses a weight left unassigned), so random draws are wasted time and memory;
    the zeroed pages stay untouched until the transfer writes them. Measured on ResNet-50:
    the extra peak of a conversion fell 28 MB (187 -> 159 MB). The layers' own initializer
    settings (their config, used if they are ever built anew) are restored afterwards."""
    zeros = keras.initializers.Zeros()
    saved = []
    for lyr in layers:
        if lyr.built:
            continue
        for attr, value in list(vars(lyr).items()):
            if attr.endswith("_initializer") and isinstance(value, keras.initializers.Initializer):
                saved.append((lyr, attr, value))
                setattr(lyr, attr, zeros)
    try:
        yield
    finally:
        for lyr, attr, value in saved:
            setattr(lyr, attr, value)


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
    """The user's source line that created the node (not torch's or recreate's own frames)."""
    from ._frames import user_line

    return user_line(node.meta.get("stack_trace"))


def _in_place_operator(op):
    def method(self, other):
        return self.tracer.create_proxy("call_function", op, (self, other), {})

    return method


# Python's in-place operators on tensors: `y += w` writes into y.
_IN_PLACE_NAMES = ("iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow", "iand", "ior", "ixor",
                   "ilshift", "irshift", "imatmul")

# `y += w` on a traced tensor: torch.fx's Proxy has no __iadd__, so Python falls back to
# __add__ and the graph loses that y itself changed (a later use of y, or of another name for
# it, then read the unchanged y). These methods record operator.iadd & co instead; the
# converter writes the result into y (see _write_in_place).
_InPlaceOperators = type("_InPlaceOperators", (), {
    f"__{name}__": _in_place_operator(getattr(operator, name)) for name in _IN_PLACE_NAMES})


@functools.cache
def _in_place_proxy_class():
    import torch.fx as fx

    return type("InPlaceProxy", (_InPlaceOperators, fx.Proxy), {})


def trace(model, example_inputs=None, kwargs: dict | None = None):
    """torch.fx GraphModule of `model` with registered module types as leaves.

    Plain symbolic tracing first; when that fails (Python control flow on shapes, such as
    torchvision's Swin padding `if window_size[0] >= pad_H`), trace again with the example
    inputs flowing along, so shapes are concrete Python ints. Control flow on tensor VALUES
    still fails and raises UntraceableError naming the source line.

    `kwargs` are forward() keyword arguments: tensors stay inputs, other values are fixed
    (traced as constants, like the defaults of parameters not given)."""
    require_torch("convert")
    import torch.fx as fx

    from . import _backend
    from .ops.vision import AUTOWRAP

    class LeafTracer(fx.Tracer):
        def __init__(self):
            # torchvision's nms/batched_nms/deform_conv2d/roi_align/roi_pool branch on tensor
            # properties: record them as leaf calls for their op converters.
            super().__init__(autowrap_functions=AUTOWRAP)
            # Stack traces name the user's source line in errors, but recording them imports
            # torch._inductor (and triton), which segfaults when tensorflow was imported before
            # torch: then errors go without source lines.
            self.record_stack_traces = not _backend.tensorflow_loaded_before_torch()

        def is_leaf_module(self, m, qualname):
            return find_entry(type(m)) is not None

        def proxy(self, node):
            return _in_place_proxy_class()(node, self)

    return _trace_with(LeafTracer, model, example_inputs, kwargs)


def _contains_proxy(v, depth: int = 0) -> bool:
    import torch.fx as fx

    if isinstance(v, fx.Proxy):
        return True
    if depth < 3 and isinstance(v, (dict, list, tuple, set)):
        items = v.values() if isinstance(v, dict) else v
        return any(_contains_proxy(e, depth + 1) for e in items)
    return False


@contextlib.contextmanager
def _module_state_kept(model):
    """Tracing runs forward() with proxies, and a module that caches a value computed from
    its weights (timm's TinyViT/LeViT `attention_bias_cache[device] = ...` when not
    training) would keep a proxy in its cache: the torch model was broken after convert.
    Attributes (and the contents of dict/list/set attributes) that end up holding a proxy
    get their values from before tracing back."""
    import copy

    skip = {"_parameters", "_buffers", "_modules"}
    saved = []
    for mod in model.modules():
        state = {k: (v, copy.copy(v) if isinstance(v, (dict, list, set)) else None)
                 for k, v in vars(mod).items() if k not in skip}
        saved.append((mod, state))
    try:
        yield
    finally:
        for mod, state in saved:
            for k, v in list(vars(mod).items()):
                if k in skip or not _contains_proxy(v):
                    continue
                if k not in state:
                    delattr(mod, k)
                    continue
                orig, contents = state[k]
                if v is orig and contents is not None:  # changed in place: put the contents back
                    v.clear()
                    v.update(contents) if isinstance(v, (dict, set)) else v.extend(contents)
                else:
                    mod.__dict__[k] = orig


def _trace_with(LeafTracer, model, example_inputs, kwargs):  # noqa: N803 - a class
    import torch.fx as fx

    error = None
    for tracer_cls in (LeafTracer, _concrete_tracer(LeafTracer) if example_inputs is not None else None):
        if tracer_cls is None:
            break
        tracer = tracer_cls()
        try:
            with _module_state_kept(model), _unwrapped_functions(), _recorded_cond(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                concrete = _default_args(model, example_inputs, kwargs)
                if tracer_cls is LeafTracer:
                    graph = tracer.trace(model, concrete_args=concrete)
                else:
                    graph = tracer.trace(model, _example_args(model, example_inputs, kwargs), concrete_args=concrete)
            gm = fx.GraphModule(tracer.root, graph)
            if tracer_cls is not LeafTracer:
                gm._recreate_batch_nodes, gm._recreate_batch_shapes = _batch_args_by_retracing(
                    tracer_cls, model, example_inputs, concrete, graph, kwargs)
            return gm
        except Exception as e:  # noqa: BLE001 - fx raises many types
            error = e
    where = _innermost_module_frame(error, model)
    raise UntraceableError(
        f"torch.fx could not trace {type(model).__name__}{where}: {type(error).__name__}: "
        f"{str(error).splitlines()[0][:300] if str(error) else ''}. "
        "Data-dependent Python control flow cannot be traced: register a converter for the "
        "module that contains it (@recreate.register(ThatModule)) and the tracer keeps it whole, "
        "or recreate it by hand."
    ) from error


def _batch_args_by_retracing(tracer_cls, model, xs, concrete, graph, kwargs=None) -> tuple[set, dict | None]:
    """Concrete tracing bakes the example's batch size into Python arguments
    (torch.zeros(batch, n), x.view(batch, ...)). Trace again with one more sample: the nodes
    whose literal arguments change depend on the batch size. Returns their names, and for
    every tensor whose shape changed, its shape in the second trace (which axes follow the
    batch); None when the second trace failed or differs (batch axes then stay unknown)."""
    import torch

    try:
        def grow(x):
            return torch.cat([x, x[:1]]) if getattr(x, "ndim", 0) else x

        bigger = [grow(x) for x in xs]
        bigger_kw = {k: grow(v) if isinstance(v, torch.Tensor) else v for k, v in (kwargs or {}).items()}
        with _module_state_kept(model), _unwrapped_functions(), _recorded_cond(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            other = tracer_cls().trace(model, _example_args(model, bigger, bigger_kw), concrete_args=concrete)
    except Exception:  # noqa: BLE001 - best effort
        return set(), None
    a, b = list(graph.nodes), list(other.nodes)
    if len(a) != len(b):
        return set(), None
    out = set()
    shapes: dict = {}
    for n, m in zip(a, b):
        la = [x for x in _leaves((n.args, n.kwargs)) if not isinstance(x, torch.fx.Node)]
        lb = [x for x in _leaves((m.args, m.kwargs)) if not isinstance(x, torch.fx.Node)]
        sa, sb = n.meta.get("example_shape"), m.meta.get("example_shape")
        if sa is not None and sb is not None:  # a tensor without both stays unknown (None)
            shapes[n.name] = sb
        if n.op == "get_attr" and m.op == "get_attr":
            # a tensor made during tracing from concrete shapes (torch.zeros(input_shape))
            va, vb = _get_attr(model, n.target), _get_attr(model, m.target)
            if getattr(va, "shape", None) != getattr(vb, "shape", None):
                out.add(n.name)
                shapes[n.name] = tuple(getattr(vb, "shape", ()))
            continue
        if n.target != m.target or len(la) != len(lb):
            return set(), None
        if any(type(x) is not type(y) or (isinstance(x, (int, float)) and x != y) for x, y in zip(la, lb)):
            out.add(n.name)
    return out, shapes


def _explicit_forward(model):
    """`model`, or when its forward() is a decorator's (*args, **kwargs) wrapper (Hugging
    Face's config-default decorators), a stand-in whose forward() spells out the wrapped
    signature and calls the model's own forward. The stand-in shares the model's module tree,
    so module paths (Keras layer names) and parameters stay the same."""
    import inspect


    code = getattr(type(model).forward, "__code__", None)
    if code is None or not code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        return model
    params = _forward_params(model)
    if not params:
        return model
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    sig = ", ".join(f"{p.name}=_d[{p.name!r}]" if p.name in defaults else p.name for p in params)
    call = ", ".join(f"{p.name}={p.name}" for p in params)
    stand_in = _stand_in(model, type(model).__name__, sig, call, model.forward, defaults)
    stand_in.train(model.training)
    return stand_in


def _stand_in(model, class_name: str, signature: str, call: str, fn, defaults: dict | None = None):
    """A module sharing `model`'s module tree (so module paths and parameters are the same)
    whose forward(self, <signature>) returns fn(<call>): fx needs explicit parameters, where
    decorators and torch.cond branches have *args or closures."""
    import torch

    scope: dict = {"_d": defaults or {}}
    exec(f"def forward(self, {signature}):\n    return self._recreate_fn({call})", scope)  # noqa: S102 - fixed template
    stand_in = type(class_name, (torch.nn.Module,), {"forward": scope["forward"]})()
    for attr in ("_modules", "_parameters", "_buffers"):
        stand_in.__dict__[attr] = model.__dict__[attr]
    object.__setattr__(stand_in, "_recreate_fn", fn)
    return stand_in


def _forward_params(model) -> list:
    import inspect

    return [p for p in inspect.signature(model.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _is_tensor(v) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, (int, float, bool))


def _default_args(model, xs, kwargs: dict | None = None) -> dict | None:
    """Parameters of forward() after the example inputs that are not tensor inputs, fixed to
    the value given in `kwargs` or else their default (Hugging Face and timm models check
    their flags in Python; RAFT's num_flow_updates sets its loop count)."""
    import inspect

    if xs is None:
        return None
    kwargs = kwargs or {}
    params = _forward_params(model)
    names = {p.name for p in params}
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        raise ConversionError(f"{type(model).__name__}.forward() has no parameter(s) {unknown}; "
                              f"its parameters are {[p.name for p in params]}")
    out = {}
    for p in params[len(xs):]:
        if p.name in kwargs:
            if not _is_tensor(kwargs[p.name]):
                out[p.name] = kwargs[p.name]
        elif p.default is not inspect.Parameter.empty:
            out[p.name] = p.default
    return out or None


def _example_args(model, xs, kwargs: dict | None = None) -> dict:
    params = [p for p in _forward_params(model) if p.kind != p.KEYWORD_ONLY]
    out = {p.name: x for p, x in zip(params, xs)}
    out.update({k: v for k, v in (kwargs or {}).items() if _is_tensor(v)})
    return out


def _concrete_tracer(base):
    """A tracer whose proxies carry the real example tensors (torch.fx's MetaTracer with real
    values instead of meta ones): .shape, .size() and .dim() are concrete."""
    import torch
    from torch.fx.experimental.meta_tracer import MetaProxy, MetaTracer

    class ConcreteProxy(_InPlaceOperators, MetaProxy):
        def size(self, dim=None):
            meta = getattr(self, "_tensor_meta", None)
            if meta is not None:
                return meta.size() if dim is None else meta.size(dim)  # MetaProxy drops dim=0
            return super().size(dim)

        @property
        def device(self):
            return torch.device("cpu")  # MetaProxy reports "meta", which would leak into factories

        @property
        def ndim(self):
            meta = getattr(self, "_tensor_meta", None)
            return meta.dim() if meta is not None else super().__getattr__("ndim")

        def __len__(self):
            meta = getattr(self, "_tensor_meta", None)
            if meta is not None:
                return len(meta)
            return super().__len__()

        def __setitem__(self, key, value):
            self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})

        def __getattr__(self, attr):
            # MetaProxy gives tensor attributes (`w.T`, `.mT`, `.real`) no example value, and
            # every op using one then had none either (Falcon's `x @ self.weight.T`: the whole
            # attention lost its shapes, so its reshapes kept the example's batch size).
            rv = super().__getattr__(attr)
            meta = self.__dict__.get("_tensor_meta")
            if isinstance(meta, torch.Tensor) and not hasattr(rv, "_tensor_meta"):
                try:
                    value = getattr(meta, attr)
                except Exception:  # noqa: BLE001 - not an attribute of the example either
                    return rv
                if isinstance(value, torch.Tensor):
                    rv.install_tensor_meta(value)
            return rv

    class ConcreteTracer(MetaTracer, base):
        _TORCH_METHODS_TO_PATCH: list = []

        def proxy(self, node):
            return ConcreteProxy(node, self)

        def trace(self, root, meta_args, concrete_args=None):
            # MetaTracer's shortcuts (Embedding, LayerNorm, relu, ...) make meta-device results.
            import torch.fx.experimental.meta_tracer as mt

            saved = dict(mt.manual_meta_overrides)
            mt.manual_meta_overrides.clear()
            try:
                return super().trace(root, meta_args, concrete_args)
            finally:
                mt.manual_meta_overrides.update(saved)

        def create_proxy(self, kind, target, args, kwargs, *rest, **kw):
            rv = super().create_proxy(kind, target, args, kwargs, *rest, **kw)
            if kind == "get_attr":
                self._disable_module_getattr = True
                try:
                    obj = self.root
                    for atom in target.split("."):
                        obj = getattr(obj, atom)
                finally:
                    self._disable_module_getattr = False
                rv.install_tensor_meta(obj.detach())
            meta = getattr(rv, "_tensor_meta", None)
            if isinstance(meta, torch.Tensor):
                rv.node.meta["example_shape"] = tuple(meta.shape)
            return rv

    return ConcreteTracer


class _unwrapped_functions:
    """Trace through functions marked with torch.fx.wrap (torchvision's
    shifted_window_attention, _patch_merging_pad, ...) unless an op converter handles them
    whole: their insides are ordinary ops, and shape arithmetic in them is evaluated with the
    example's concrete shapes."""

    def __enter__(self):
        import torch.fx._symbolic_trace as st

        from . import ops as op_registry

        self.table = st._wrapped_fns_to_patch
        self.removed = {}
        for key, frame in list(self.table.items()):
            fn = frame.get(key[1])
            if fn is not None and op_registry.find_op(fn) is None:
                self.removed[key] = self.table.pop(key)
        return self

    def __exit__(self, *exc):
        self.table.update(self.removed)
        return False


_BRANCHES: dict[int, tuple] = {}  # torch.cond branch functions recorded while tracing


def cond_call(pred, key: int, operands):
    """What a traced torch.cond becomes: one graph node; run, it is torch.cond itself."""

    true_fn, false_fn = _BRANCHES[key]
    return _ORIGINAL_COND[0](pred, true_fn, false_fn, tuple(operands))


_ORIGINAL_COND: list = []


class _recorded_cond:
    """While tracing, torch.cond on traced values is recorded as a `cond_call` node (fx
    cannot trace it: it checks that the predicate is a real tensor); its branches are
    traced when the node is converted (recreate.ops.control_flow)."""

    def __enter__(self):
        import torch

        if not _ORIGINAL_COND:
            _ORIGINAL_COND.append(torch.cond)
        original = _ORIGINAL_COND[0]

        def traced_cond(pred, true_fn, false_fn, operands=(), *args, **kwargs):
            import torch.fx

            proxies = [v for v in (pred, *operands) if isinstance(v, torch.fx.Proxy)]
            if not proxies:
                return original(pred, true_fn, false_fn, operands, *args, **kwargs)
            key = len(_BRANCHES)
            _BRANCHES[key] = (true_fn, false_fn)
            return proxies[0].tracer.create_proxy("call_function", cond_call, (pred, key, tuple(operands)), {})

        self.saved = torch.cond
        torch.cond = traced_cond
        return self

    def __exit__(self, *exc):
        import torch

        torch.cond = self.saved
        return False


def convert_branch(conv, key: int, branch: int, feeds: list, name: str):
    """One branch function of a recorded torch.cond as a keras.Model over `feeds` (Values in
    PyTorch layout). The branch is traced with the model's modules as its own, so modules
    keep their paths as layer names (transfer_weights fills them where the name is free)."""
    import torch

    n = len(feeds)
    params = ", ".join(f"x{i}" for i in range(n))
    wrapper = _stand_in(conv.model, "Branch", params, params, _BRANCHES[key][branch])
    examples = [torch.randn(v.shape).to(v.dtype) if v.dtype.is_floating_point else torch.zeros(v.shape, dtype=v.dtype)
                for v in feeds]
    gm = trace(wrapper, examples)
    _propagate_shapes(gm, examples)
    inputs, env = [], {}
    saved = conv.batch_ref, conv.batch_shapes, conv.module_layers
    placeholders = [nd for nd in gm.graph.nodes if nd.op == "placeholder"]
    for node, v in zip(placeholders, feeds):
        inp = keras.Input(batch_shape=(None, *v.shape[1:]) if v.rank else (), dtype=str(v.dtype).replace("torch.", ""),
                          name=conv.fresh(f"{name}.{node.name}"))
        inputs.append(inp)
        env[node] = Value(inp, identity(v.rank), v.shape, v.dtype)
    # Layers are not shared with the rest of the model (Keras does not restore a layer
    # shared between nested models from a .keras file): a module already converted elsewhere
    # gets a copy holding its weights.
    conv.batch_ref, conv.batch_shapes, conv.module_layers = inputs[0], None, {}
    try:
        outputs = _convert_graph(conv, gm, env, examples)
    finally:
        conv.batch_ref, conv.batch_shapes, conv.module_layers = saved
    outs = [conv.to_perm(v, identity(v.rank)).t for v in _leaves(outputs) if isinstance(v, Value)]
    return keras.Model(inputs[0] if n == 1 else inputs, outs[0] if len(outs) == 1 else outs, name=conv.fresh(name))


def _innermost_module_frame(exc, model) -> str:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    from ._frames import is_user_file

    user = [f for f in frames if is_user_file(f.filename)]
    if not user:
        return ""
    f = user[-1]
    return f" at {f.filename}:{f.lineno} ({f.name}: {f.line})"


def convert_traced(model, xs: list, io_layout: str, kwargs: dict | None = None, name: str | None = None):
    """Trace `model` and build the Keras functional model (see module docstring)."""
    torch = require_torch("convert")

    from .ops import load_all

    load_all()  # registers the op converters

    kwargs = dict(kwargs or {})
    tensor_kw = {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v)))
                 for k, v in kwargs.items() if _is_tensor(v)}
    kwargs.update(tensor_kw)
    gm = trace(_explicit_forward(model), xs, kwargs)
    star = [n for n in gm.graph.nodes if n.op == "placeholder" and str(n.target).startswith("*")]
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder" and n not in star]
    params = _forward_params(model)
    if len(placeholders) != len(params) or len(xs) > len(params):
        raise ConversionError(f"model takes {len(params)} inputs, {len(xs)} example inputs given")
    concrete = _default_args(model, xs, kwargs) or {}
    # Placeholders follow forward()'s parameters: example inputs, tensor keyword inputs, and
    # fixed values (given or default), which keep the value they were traced with.
    feeds: dict = {}
    fixed: dict = {n: ({} if str(n.target).startswith("**") else ()) for n in star}
    for i, (node, p) in enumerate(zip(placeholders, params)):
        if i < len(xs):
            feeds[node] = xs[i]
        elif p.name in tensor_kw:
            feeds[node] = tensor_kw[p.name]
        elif p.name in concrete:
            fixed[node] = concrete[p.name]
        else:
            raise ConversionError(f"{type(model).__name__}.forward() parameter {p.name!r} has no example "
                                  "value and no default: pass it in example_inputs or kwargs")
    real = [feeds.get(n, fixed.get(n)) for n in placeholders if n not in star]
    batch_shapes = getattr(gm, "_recreate_batch_shapes", None)
    if batch_shapes is None:
        batch_shapes = _shapes_with_one_more(gm, real, set(feeds))
    _propagate_shapes(gm, real)
    conv = _Converter(model, io_layout)
    env: dict = dict(fixed)
    inputs = []
    ordered = [n for n in placeholders[:len(xs)]]
    ordered += sorted((n for n in feeds if n not in ordered),
                      key=lambda n: list(tensor_kw).index(params[placeholders.index(n)].name))
    for node in ordered:
        x = feeds[node]
        shape = tuple(x.shape)
        rank = len(shape)
        perm = channels_last(rank) if (io_layout == "keras" and rank >= 3) else identity(rank)
        kshape = tuple(shape[p] for p in perm)
        inp = keras.Input(shape=kshape[1:], dtype=str(x.dtype).replace("torch.", ""), name=conv.fresh(node.name))
        inputs.append(inp)
        env[node] = Value(inp, perm, shape, x.dtype)
        if conv.batch_ref is None:
            conv.batch_ref = inp

    conv.batch_shapes = batch_shapes
    outputs = _convert_graph(conv, gm, env, xs)
    flat = [v for v in _leaves(outputs) if isinstance(v, Value)]
    final = []
    for v in flat:
        want = channels_last(v.rank) if (io_layout == "keras" and v.rank >= 3) else identity(v.rank)
        final.append(conv.to_perm(v, want).t)
    # Keras maps a functional graph recursively, one Python frame per layer along the longest
    # path: EfficientNetV2-L (about 1,300 layers deep here) exceeded Python's default limit of
    # 1000. Python 3.11 calls between Python functions do not use the C stack, so more room is safe.
    with recursion_room(4 * len(gm.graph.nodes)):
        km = keras.Model(inputs[0] if len(inputs) == 1 else inputs, final[0] if len(final) == 1 else final,
                         name=name or _model_name(type(model).__name__))
    from .transfer import transfer_weights

    report = transfer_weights(model, km, strict=False)
    if report.unassigned_keras:
        raise ConversionError(f"converted layers left without weights: {report.unassigned_keras}")
    used_as_constants = set(conv.constant_keys)
    # A module that no output depends on (Hugging Face's pooler when only hidden states are
    # returned) leaves its tensors unused legitimately; a called module that did not take all
    # of its tensors points at its converter.
    live, stack = set(), [n for n in gm.graph.nodes if n.op == "output"]
    while stack:  # the nodes that the outputs depend on
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(n.all_input_nodes)
    called = {n.target for n in live if n.op == "call_module"}
    unused = [k for k in report.unused_torch if k not in used_as_constants
              and any(k.startswith(f"{c}.") for c in called)]
    if unused:
        raise ConversionError(
            f"torch tensors not used by the converted model: {unused[:20]}. A module that "
            "holds them was converted without them: check its converter"
        )
    return km


@contextlib.contextmanager
def recursion_room(depth: int):
    """Python's recursion limit raised to at least `depth` frames beyond the current stack,
    restored afterwards."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, depth + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _model_name(cls_name: str) -> str:
    """A Keras model name valid as a TF name scope (which must not start with "_")."""
    import re

    return re.sub(r"[^A-Za-z0-9_.\-]", "_", cls_name).lstrip("_") or "model"


def _convert_graph(conv, gm, env: dict, xs):
    """Convert the nodes of `gm` in order (placeholders already in `env`); return the
    output structure with Values in it."""
    import torch

    from . import ops as op_registry

    def load(a):
        return torch.fx.node.map_arg(a, lambda n: env[n])

    outputs = None
    batch_nodes: set = set()  # nodes whose Python value depends on the example's batch size
    baked = getattr(gm, "_recreate_batch_nodes", set())
    batch_nodes.update(n for n in gm.graph.nodes if n.name in baked)
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "get_attr":
            val = _get_attr(gm, node.target)
            if isinstance(val, torch.Tensor):
                conv.constant_keys.append(node.target)
                if node.name in baked:
                    batch_nodes.add(node)
                    env[node] = _python_tensor(conv, node, val.detach(), True, xs)
                else:
                    env[node] = conv.constant(val.detach().cpu().numpy(), node.target)
            else:
                env[node] = val
        elif node.op == "call_module":
            mod = gm.get_submodule(node.target)
            args = load(node.args)
            kw = load(node.kwargs)
            tensors = [a for a in args if isinstance(a, Value)]
            env[node] = conv.apply_module(mod, tensors, dict(kw), None, node=node, path=node.target)
            if getattr(mod, "inplace", False) is True:  # nn.ReLU(inplace=True): x itself changed
                env[node] = _write_in_place(args[0] if args else None, env[node])
        elif node.op in ("call_function", "call_method"):
            args, kw = load(node.args), load(node.kwargs)
            vals = [a for a in _leaves((args, kw)) if isinstance(a, Value)]
            if _batch_dependent(node, args, kw, batch_nodes, env):
                batch_nodes.add(node)
            if _is_record_type(node.target):
                # A dataclass or namedtuple output record: built here around the Values.
                env[node] = node.target(*args, **kw)
                continue
            if not vals:
                # Pure Python (shape arithmetic) or a tensor made from Python values: evaluate it.
                res = _eval_python(node, args, kw)
                if isinstance(res, torch.Tensor):
                    res = _python_tensor(conv, node, res, node in batch_nodes, xs)
                env[node] = res
                continue
            if node not in batch_nodes and _foldable(node, vals):
                # Only constants feed it (masks, index tables, relative position bias): compute it now.
                env[node] = _fold(conv, node, args, kw)
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
                if _in_place(node, kw):
                    env[node] = _write_in_place(args[0] if args else None, env[node])
            except (RecreateError, ValueError, TypeError, NotImplementedError) as e:
                raise ConversionError(f"converting {node.format_node()} ({_source_line(node)}): {e}") from e
        elif node.op == "output":
            outputs = load(node.args[0])
    return outputs


def _propagate_shapes(gm, args: list) -> None:
    """torch.fx ShapeProp (each node's `tensor_meta`) on real values, returning the freed
    activations to the OS as it goes (see _memory): measured on MobileNetV2, this pass at batch
    2 otherwise left 22-57 MB behind, more than the model's 14 MB of weights. (FakeTensorMode
    would need no activations, but modules take other paths on tensor subclasses: torch's
    MultiheadAttention fast path then returns an empty tensor instead of None.)"""
    import torch
    from torch.fx.passes.shape_prop import ShapeProp

    releaser = Releaser()

    class _Pass(ShapeProp):
        def run_node(self, n):
            out = super().run_node(n)
            releaser.add(sum(t.untyped_storage().nbytes() for t in _leaves(out) if isinstance(t, torch.Tensor)))
            return out

    with torch.no_grad():
        _Pass(gm).propagate(*args)
    release_free_memory()


_IN_PLACE_OPERATORS = {*(getattr(operator, name) for name in _IN_PLACE_NAMES), operator.setitem}


def _in_place(node, kwargs) -> bool:
    """Whether the node writes into its first argument: `x.add_(y)`, `x += y`, `x[i] = v`,
    `torch.relu_(x)`, `F.relu(x, inplace=True)`."""
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.startswith("_")
    if node.target in _IN_PLACE_OPERATORS or kwargs.get("inplace") is True:
        return True
    name = getattr(node.target, "__name__", "")
    return name.endswith("_") and not name.startswith("_")


def _write_in_place(target, result):
    """After an in-place op: the target Value becomes the result, so every later use of the
    tensor (by any node naming it, as torch code does after `y.add_(1)`) sees the write."""
    if isinstance(target, Value) and isinstance(result, Value) and result is not target:
        target.t, target.perm, target.shape, target.dtype = result.t, result.perm, result.shape, result.dtype
        target.data, target.torch_ref = result.data, result.torch_ref
        return target
    return result


def _shapes_with_one_more(gm, args: list, tensor_nodes: set) -> dict | None:
    """Shapes of the graph's tensors with one more sample in every input (symbolic traces);
    None when the graph does not run at that batch size."""
    import torch

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder" and not str(n.target).startswith("*")]
    bigger = [torch.cat([a, a[:1]]) if n in tensor_nodes and getattr(a, "ndim", 0) else a
              for n, a in zip(placeholders, args)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _propagate_shapes(gm, bigger)
    except Exception:  # noqa: BLE001 - best effort: batch axes then stay unknown
        return None
    return {n.name: tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes
            if hasattr(n.meta.get("tensor_meta"), "shape")}


_CREATION_METHODS = ("new_zeros", "new_ones", "new_full", "new_empty", "new_tensor")


def _batch_dependent(node, args, kwargs, batch_nodes, env) -> bool:
    """Whether the node's (Python) value depends on the batch size of the example: axis 0 of
    a non-constant tensor's shape, and everything computed from it."""
    target = node.target
    x = args[0] if args else None
    if isinstance(x, Value):
        # A constant's own shape is fixed, but a constant combined with a batch-size value
        # (ViT's class_token.expand(n, -1, -1)) follows the batch: fall through for those.
        if node.op == "call_function" and target is getattr:
            return x.data is None and args[1] == "shape"
        if node.op == "call_method" and target == "size":
            if x.data is not None:
                return False
            d = args[1] if len(args) > 1 else kwargs.get("dim")
            return d is None or d % max(x.rank, 1) == 0
    if target is operator.getitem and node.args and node.args[0] in batch_nodes \
            and isinstance(x, tuple) and not isinstance(x, Value):
        idx = args[1]
        if isinstance(idx, int):
            return idx % max(len(x), 1) == 0
        if isinstance(idx, slice):
            return 0 in range(len(x))[idx]
        return True
    if node in batch_nodes:
        return True
    # Taint flows through Python values only: a tensor computed with a batch-size argument
    # (x.view(batch, ...)) is an ordinary dynamic tensor.
    return any(n in batch_nodes and not isinstance(env.get(n), Value) for n in node.all_input_nodes)


def _python_tensor(conv, node, res, batch_dependent: bool, xs):
    """A tensor made from Python values (torch.zeros(shape), torch.arange(n)). One that
    depends on the batch size and is the same for every sample becomes a constant broadcast
    to the model's batch; so does one holding the sample index, and rows repeated per sample."""
    import torch

    data = res.detach().cpu().numpy()
    if not batch_dependent:
        return conv.constant(data, node.name)
    from .layers.op import Op

    batch = xs[0].shape[0] if xs and getattr(xs[0], "ndim", 0) else None
    if batch and res.ndim and res.shape[0] == batch and bool((res == res[:1]).all()):
        one = conv.constant(data[:1], node.name)
        layer = Op("broadcast_batch", args=[tensor(0), tensor(1), list(data.shape)], name=conv.fresh(node.name))
        return Value(layer(one.t, conv.batch_ref), identity(res.ndim), tuple(res.shape), res.dtype)
    if batch and res.ndim and res.shape[0] == batch and not res.is_floating_point():
        ids = torch.arange(batch, dtype=res.dtype).reshape(-1, *([1] * (res.ndim - 1)))
        if bool((res == ids).all()):
            # The sample index (Hugging Face's mask functions index masks with arange(batch)).
            layer = Op("batch_arange", args=[tensor(0), list(data.shape), str(data.dtype)], name=conv.fresh(node.name))
            return Value(layer(conv.batch_ref), identity(res.ndim), tuple(res.shape), res.dtype)
    # Rows made per sample and stacked (RAFT's sampling grid: batch * h * w rows, the same for
    # every sample): one sample's rows, repeated per sample of the model's batch. Where the
    # second trace (one more sample) recorded this tensor, its row count must agree.
    other = (conv.batch_shapes or {}).get(node.name)
    if batch and res.ndim and res.shape[0] % batch == 0:
        k = res.shape[0] // batch
        rows = res.reshape(batch, k, *res.shape[1:])
        fits = other is None or (len(other) == res.ndim and other[0] == (batch + 1) * k
                                 and tuple(other[1:]) == tuple(res.shape[1:]))
        if fits and bool((rows == rows[:1]).all()):
            one = conv.constant(data[:k], node.name)
            layer = Op("repeat_batch", args=[tensor(0), tensor(1), list(data.shape)], name=conv.fresh(node.name))
            return Value(layer(one.t, conv.batch_ref), identity(res.ndim), tuple(res.shape), res.dtype)
    raise ConversionError(f"{node.format_node()} ({_source_line(node)}) makes a tensor whose values depend on the "
                          "batch size and differ between samples; this is not supported: compute it from the "
                          "inputs inside the model, or register a converter for the module that makes it")


def _foldable(node, vals) -> bool:
    meta = node.meta.get("tensor_meta")
    if node.target in ("expand", "expand_as") and vals and vals[0].rank and meta is not None \
            and hasattr(meta, "shape") and len(meta.shape) == vals[0].rank \
            and vals[0].shape[0] == 1 and meta.shape[0] != 1:
        # Broadcasting a constant along axis 0 (token type ids to the batch): keep it dynamic.
        return False
    if node.op == "call_method" and node.target in _CREATION_METHODS:
        return all(v.data is not None for v in vals[1:])
    return all(v.data is not None for v in vals)


def _fold(conv, node, args, kwargs):
    """Evaluate a node whose tensor inputs are all constants, with torch, into constants.

    Folded results keep their torch tensor (Value.torch_ref), and later folds use it as it is,
    so views alias their base as in torch: Swin V2 zeroes a slice of a cloned bias in place
    (`b = qkv_bias.clone(); b[n:2n].zero_()`), which must change `b`. Model tensors (get_attr)
    are copied instead, so that an in-place op never writes to the model."""
    import torch

    copies = {}

    def to_torch(a):
        if isinstance(a, Value):
            if a.torch_ref is not None:
                return a.torch_ref
            if a.data is None:  # self of new_zeros & co: only its dtype matters
                return torch.empty((0,), dtype=a.dtype)
            if id(a) not in copies:
                copies[id(a)] = torch.tensor(np.asarray(a.data))
            return copies[id(a)]
        if isinstance(a, (list, tuple)) and not isinstance(a, torch.Size):
            return type(a)(to_torch(e) for e in a)
        if isinstance(a, dict):
            return {k: to_torch(e) for k, e in a.items()}
        return a

    targs, tkw = to_torch(args), to_torch(kwargs)
    with torch.no_grad():
        res = _eval_python(node, targs, tkw)
    if node.target is operator.setitem or (node.op == "call_method" and str(node.target).endswith("_")
                                           and not str(node.target).startswith("__")):
        # In-place on a constant: the constant, and every folded tensor sharing its storage
        # (its base, its other views), changes for every later use.
        target = args[0]
        changed = to_torch(target)
        if target.torch_ref is None:
            target.torch_ref = changed
            conv.folded.append(target)
        storage = changed.untyped_storage().data_ptr()
        for v in conv.folded:
            if v.torch_ref.untyped_storage().data_ptr() == storage:
                new = conv.constant(v.torch_ref.detach().cpu().numpy().copy(), node.name)
                v.t, v.data, v.perm = new.t, new.data, new.perm
        return target if res is not None else None

    def back(r):
        if isinstance(r, torch.Tensor):
            v = conv.constant(r.detach().cpu().numpy().copy(), node.name)
            v.torch_ref = r
            conv.folded.append(v)
            return v
        if isinstance(r, (list, tuple)) and not isinstance(r, torch.Size):
            return type(r)(back(e) for e in r)
        return r

    return back(res)


def _get_attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _is_record_type(target) -> bool:
    import dataclasses

    return isinstance(target, type) and target is not Value and (dataclasses.is_dataclass(target)
                                         or (issubclass(target, tuple) and hasattr(target, "_fields")))


def _leaves(x):
    import dataclasses

    if dataclasses.is_dataclass(x) and not isinstance(x, (type, dict, Value)):
        for f in dataclasses.fields(x):
            yield from _leaves(getattr(x, f.name))
    elif isinstance(x, (list, tuple)):
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
