"""Capture: torch.export (non-strict) with registered modules kept whole.

torch.export runs the model's own Python with fake tensors and symbolic shapes, so chunk
iteration, `*shape` unpacking, isinstance checks and shape-derived branches trace as they run;
only control flow on tensor values stops it. Its graph is ATen.

Registered module types (recreate's converters: Conv2d, BatchNorm2d, MultiheadAttention, a
user's @recreate.register type) stay whole: while exporting, each top-most registered
module's forward is routed through one custom op, `recreate::module_call(key, tensors)`,
whose fake kernel runs the module itself (so its output shapes, symbolic batch included, are
torch's own). The graph then has one node per module call, keyed by the module path; the
call's non-tensor arguments and its output structure are kept in a side table (`Call`).
This is the equivalent of preserve_module_call_signature + unflatten without rebuilding a
module hierarchy: the builder needs only the call's inputs, outputs and module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import traceback
import warnings

from .._backend import require_torch
from ..errors import ConversionError, UntraceableError
from ..registry import find_entry

_TENSOR = object()  # marks a tensor leaf in a recorded pytree


@dataclasses.dataclass
class Call:
    """One call of a registered module, as recorded while exporting."""

    path: str
    module: object
    in_spec: object  # pytree spec of (args, kwargs)
    in_leaves: list  # _TENSOR where a tensor goes, else the constant leaf
    out_spec: object = None
    out_leaves: list | None = None  # _TENSOR where a tensor comes out, else the constant
    fake_outputs: tuple | None = None  # (input signature, outputs) of the last fake run

    def rebuild_inputs(self, tensors: list):
        from torch.utils import _pytree as pytree

        it = iter(tensors)
        leaves = [next(it) if c is _TENSOR else c for c in self.in_leaves]
        return pytree.tree_unflatten(leaves, self.in_spec)

    def rebuild_outputs(self, tensors: list):
        from torch.utils import _pytree as pytree

        it = iter(tensors)
        leaves = [next(it) if c is _TENSOR else c for c in self.out_leaves]
        return pytree.tree_unflatten(leaves, self.out_spec)


_CALLS: dict[str, Call] = {}


def _run_call(key: str, tensors):
    import torch
    from torch.utils import _pytree as pytree

    call = _CALLS[key]
    args, kwargs = call.rebuild_inputs(list(tensors))
    with _unwrapped(call.module):
        out = call.module(*args, **kwargs)
    flat, spec = pytree.tree_flatten(out)
    call.out_spec = spec
    call.out_leaves = [_TENSOR if isinstance(t, torch.Tensor) else t for t in flat]
    # A custom op may not return its input (nn.Identity, Dropout in eval): a copy.
    ids = {id(t) for t in tensors}
    return [t.clone() if id(t) in ids else t for t in flat if isinstance(t, torch.Tensor)]


@functools.cache
def module_call_op():
    """The custom op that stands for a registered module's call in the exported graph."""
    import torch

    @torch.library.custom_op("recreate::module_call", mutates_args=(),
                             schema="(str key, Tensor[] tensors) -> Tensor[]")
    def module_call(key, tensors):
        return _run_call(key, tensors)

    @module_call.register_fake
    def _(key, tensors):
        # The decomposition pass traces the graph again with the same symbolic inputs: the
        # outputs' shapes from the first trace are reused instead of running the module again
        # (half of ResNet-50's capture time).
        call = _CALLS[key]
        sig = tuple((str(t.shape), t.dtype) for t in tensors)
        if call.fake_outputs is not None and call.fake_outputs[0] == sig:
            return [torch.empty_strided(t.shape, t.stride(), dtype=t.dtype) for t in call.fake_outputs[1]]
        outs = _run_call(key, tensors)
        call.fake_outputs = (sig, outs)
        return outs

    return torch.ops.recreate.module_call.default


@contextlib.contextmanager
def _unwrapped(module):
    """Run `module` with its own forward (the wrapper is an instance attribute)."""
    wrapper = module.__dict__.pop("forward", None)
    try:
        yield
    finally:
        if wrapper is not None:
            module.__dict__["forward"] = wrapper


def leaf_paths(model) -> dict[str, object]:
    """The top-most registered modules below the root: path -> module."""
    out: dict[str, object] = {}
    for path, mod in model.named_modules(remove_duplicate=False):
        if not path or any(path.startswith(p + ".") for p in out):
            continue
        if find_entry(type(mod)) is not None:
            out[path] = mod
    return out


@contextlib.contextmanager
def registered_leaves(model):
    """While active, every top-most registered module's call becomes one module_call node.
    The wrappers are instance attributes, removed afterwards (the model is left as it was)."""
    import torch
    from torch.utils import _pytree as pytree

    op = module_call_op()
    leaves = leaf_paths(model)
    counter = [0]
    wrapped = []

    def make(path, mod):
        def forward(*args, **kwargs):
            if torch.compiler.is_dynamo_compiling():
                # Inside torch.cond / torch.while_loop (dynamo traces the subgraphs, and the
                # registry write below would be a side effect it refuses): the module's own
                # forward (the class's: no state may change here), lowered to ATen ops like
                # unregistered code.
                return type(mod).forward(mod, *args, **kwargs)
            flat, spec = pytree.tree_flatten((args, kwargs))
            key = f"{path}#{counter[0]}"
            counter[0] += 1
            _CALLS[key] = Call(path, mod, spec, [_TENSOR if isinstance(t, torch.Tensor) else t for t in flat])
            outs = op(key, [t for t in flat if isinstance(t, torch.Tensor)])
            return _CALLS[key].rebuild_outputs(list(outs))

        return forward

    try:
        for path, mod in leaves.items():
            if "forward" in mod.__dict__:
                continue  # already wrapped (one module at two paths)
            mod.__dict__["forward"] = make(path, mod)
            wrapped.append(mod)
        yield
    finally:
        for mod in wrapped:
            mod.__dict__.pop("forward", None)


def calls() -> dict[str, Call]:
    return _CALLS


@contextlib.contextmanager
def _state_kept(model):
    """Export must leave the model as it was: training flags, attributes (caches filled
    during the trace with fake tensors), parameters and buffers."""
    import copy

    skip = {"_parameters", "_buffers", "_modules", "forward"}
    saved = []
    for mod in model.modules():
        # plain containers only: a subclass may refuse clear()/update() (diffusers' FrozenDict config)
        attrs = {k: (v, copy.copy(v) if type(v) in (dict, list, set) else None)
                 for k, v in vars(mod).items() if k not in skip}
        saved.append((mod, attrs, mod.training, dict(mod._parameters), dict(mod._buffers), dict(mod._modules)))
    try:
        yield
    finally:
        for mod, attrs, training, params, buffers, children in saved:
            for k in [k for k in vars(mod) if k not in skip and k not in attrs]:
                delattr(mod, k)  # attributes made during the trace
            for k, (v, contents) in attrs.items():
                if contents is not None:  # torch may have swapped in a copy: refill the original
                    v.clear()
                    v.update(contents) if isinstance(v, (dict, set)) else v.extend(contents)
                mod.__dict__[k] = v
            mod.training = training
            mod._parameters.clear()
            mod._parameters.update(params)
            mod._buffers.clear()
            mod._buffers.update(buffers)
            mod._modules.clear()  # modules made inside forward (ACT2FN[...]) do not stay
            mod._modules.update(children)


def _batch_size(xs) -> int | None:
    for x in xs:
        if getattr(x, "ndim", 0):
            return int(x.shape[0])
    return None


def export(model, args: tuple, kwargs: dict, *, dynamic_batch: bool = True, decompose: bool | None = None):
    """torch.export the model (non-strict), batch axis dynamic, registered modules whole.

    Inputs whose axis 0 has the example's batch size get a dynamic axis 0 (Dim.AUTO: torch
    finds which of them are equal). An example batch of 1 would be specialized by torch, so
    capture uses the batch repeated to 2.

    `decompose`: True lowers the graph to core ATen (run_decompositions); None (default) does
    so only where the graph cannot be converted as exported (see tracer/direct.py); False
    never. Returns (exported program, the example args and kwargs it was captured with)."""
    torch = require_torch("convert")
    batch = _batch_size(list(args) + [v for v in kwargs.values() if isinstance(v, torch.Tensor)])

    def grow(x):
        if isinstance(x, torch.Tensor) and x.ndim and batch == 1 and x.shape[0] == 1:
            return torch.cat([x, x])
        return x

    if not dynamic_batch:
        batch = None
    if batch == 1:
        args = tuple(grow(a) for a in args)
        kwargs = {k: grow(v) for k, v in kwargs.items()}
        batch = 2

    def dyn(x):
        if isinstance(x, torch.Tensor) and x.ndim and batch is not None and x.shape[0] == batch:
            return {0: torch.export.Dim.AUTO}
        return None

    dynamic = (tuple(dyn(a) for a in args), {k: dyn(v) for k, v in kwargs.items()})
    with _output_types() as known:
        while True:
            _CALLS.clear()
            with _state_kept(model), registered_leaves(model), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    shapes = _dynamic_shapes(model, args, kwargs, dynamic)
                    ep = torch.export.export(model, args, kwargs, strict=False, dynamic_shapes=shapes)
                    if specialized_inputs(ep, batch):
                        ep = _strict_retry(model, args, kwargs, shapes, batch) or ep
                    if decompose or (decompose is None and _blocker(ep) is not None):
                        ep = ep.run_decompositions(decomposition_table())
                    break
                except Exception as e:  # noqa: BLE001 - torch.export raises many types
                    cls = _unknown_output_type(e)
                    if cls is None or cls in known or len(known) >= 8:
                        raise _capture_error(model, e) from e
            known.append(cls)  # an output object torch's pytree does not know: flattened, and again
            _register_output_type(cls)
    return ep, args, kwargs


def specialized_inputs(ep, batch) -> list[str]:
    """The user inputs whose axis 0, asked to be dynamic (it has the example's batch size),
    came out of the export as a fixed size."""
    import torch
    from torch.export.graph_signature import InputKind

    if batch is None:
        return []
    out = []
    nodes = [n for n in ep.graph.nodes if n.op == "placeholder"]
    for node, spec in zip(nodes, ep.graph_signature.input_specs):
        val = node.meta.get("val")
        if spec.kind != InputKind.USER_INPUT or not isinstance(val, torch.Tensor) or not val.ndim:
            continue
        size = val.shape[0]
        if not (isinstance(size, torch.SymInt) and size.node.expr.free_symbols) and int(size) == batch:
            out.append(node.name)
    return out


def _strict_retry(model, args, kwargs, shapes, batch):
    """The export again with torch.export's strict mode (TorchDynamo), where the non-strict one
    fixed the batch size: non-strict export runs the model's Python as it is, so a C function
    that reads a size as a C integer specializes it (torch.Size.numel(): kornia's
    perform_keep_shape_image checks `input.shape.numel() == 0`, which fixes the batch to the
    example's), where Dynamo computes it symbolically. Registered modules are traced through
    in strict mode (registered_leaves), so the graph then has their ATen ops instead. None
    when strict mode fails or fixes the batch too."""
    import torch

    try:
        ep = torch.export.export(model, args, kwargs, strict=True, dynamic_shapes=shapes)
    except Exception:  # noqa: BLE001 - a model Dynamo cannot trace: the non-strict result stands
        return None
    return None if specialized_inputs(ep, batch) else ep


def specialization_site(val) -> str:
    """Where torch.export fixed the size of a captured input's axis 0: the guard that
    specialized it and its source line (' at kornia/image/utils.py:375 in _wrapper (guard
    Eq(s31, 2))'), or ''."""
    env = getattr(getattr(val, "fake_mode", None), "shape_env", None)
    if env is None or not getattr(val, "ndim", 0):
        return ""
    size = int(val.shape[0])
    for sym, value in env.replacements.items():
        if not value.is_number or int(value) != size:
            continue
        if not any(getattr(src, "idx", None) == 0 for src in env.var_to_sources.get(sym, [])):
            continue
        for g in env.guards:
            if sym in g.expr.free_symbols:
                where = str(g.sloc).strip()
                if where.startswith("(") and where.endswith(")"):
                    where = where[1:-1]
                return f" at {where} (guard {g.expr})"
    return ""


def _unknown_output_type(exc):
    """The class of an output object torch.export refused ("Found <class 'a.b.C'> in output,
    which is not a known type"), if it can be imported."""
    import importlib

    m = re.search(r"Found <class '([\w.]+)'> in output", str(exc))
    if m is None:
        return None
    parts = m.group(1).split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj if isinstance(obj, type) else None
    return None


def _register_output_type(cls):
    """Model outputs of `cls` flatten to their tensors in recreate.convert.flatten_outputs's
    order (verify flattens the torch model's outputs the same way)."""
    import torch

    from ..convert import flatten_outputs

    def flatten(obj):
        return [t for t in flatten_outputs(obj) if isinstance(t, torch.Tensor)], None

    def unflatten(children, context):
        return tuple(children)

    torch.utils._pytree.register_pytree_node(cls, flatten, unflatten,
                                             serialized_type_name=f"recreate.output.{cls.__module__}.{cls.__qualname__}")


@contextlib.contextmanager
def _output_types():
    """Output classes registered with torch's pytree during one capture, unregistered after
    (the user's process is left as it was)."""
    import torch

    known: list = []
    try:
        yield known
    finally:
        for cls in known:
            torch.utils._pytree._deregister_pytree_node(cls)


def _blocker(ep) -> str | None:
    from ..ops import find_op, load_all
    from . import direct
    from .build import no_ops, shape_only_ops

    load_all()
    return direct.blocker(ep, find_op, module_call_op(), no_ops(), shape_only_ops())


def _dynamic_shapes(model, args, kwargs, dynamic):
    """dynamic_shapes in the form torch.export wants: by forward()'s parameter names."""
    import inspect

    sig = inspect.signature(model.forward)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise ConversionError(f"{type(model).__name__}.forward{sig}: the example inputs do not fit: {e}") from e
    out = {}
    pos = dict(zip(bound.arguments, dynamic[0]))
    for name, value in bound.arguments.items():
        p = sig.parameters[name]
        if name in kwargs:
            d = dynamic[1][name]
        elif p.kind == p.VAR_POSITIONAL:
            d = tuple(dynamic[0][len(pos) - 1 + i] if len(pos) - 1 + i < len(dynamic[0]) else None
                      for i in range(len(value)))
        elif p.kind == p.VAR_KEYWORD:
            d = {k: dynamic[1].get(k) for k in value}
        else:
            d = pos.get(name)
        out[name] = d
    return out


@functools.cache
def _keep() -> tuple:
    """High-level ops the builder converts whole (faster and closer to torch than their
    decompositions): they stay in the graph."""
    import torch

    aten = torch.ops.aten
    names = ["linear.default", "scaled_dot_product_attention.default", "pixel_shuffle.default",
             "pixel_unshuffle.default", "layer_norm.default", "group_norm.default",
             "upsample_bilinear2d.vec", "upsample_nearest2d.vec", "upsample_bicubic2d.vec",
             "upsample_linear1d.vec", "upsample_nearest1d.vec", "upsample_trilinear3d.vec",
             "upsample_nearest3d.vec", "grid_sampler.default", "grid_sampler_2d.default",
             "grid_sampler_3d.default", "embedding.default", "gelu.default", "silu.default",
             "hardswish.default", "hardsigmoid.default", "mish.default", "softplus.default",
             "elu.default", "leaky_relu.default", "hardtanh.default", "instance_norm.default",
             "matmul.default", "einsum.default", "cosine_similarity.default"]
    out = []
    for n in names:
        name, overload = n.split(".")
        packet = getattr(aten, name, None)
        if packet is not None and hasattr(packet, overload):
            out.append(getattr(packet, overload))
    return tuple(out)


@functools.cache
def _table():
    import torch

    table = torch.export.default_decompositions()
    for op in _keep():
        table.pop(op, None)
    return table


def decomposition_table():
    """Core ATen decompositions minus the ops kept whole. Building torch's table takes about a
    second, so it is built once (and copied: run_decompositions may keep a reference)."""
    return _table().copy()


# ---- errors -------------------------------------------------------------------------------
def user_frame(exc) -> traceback.FrameSummary | None:
    """The innermost frame of `exc`'s traceback (and its causes) outside torch and recreate."""
    from .._frames import is_user_file

    best = None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for f in traceback.extract_tb(exc.__traceback__):
            if is_user_file(f.filename):
                best = f
        exc = exc.__cause__ or exc.__context__
    return best


def module_of_frame(model, frame) -> str:
    """The path of the innermost module whose class defines the function of `frame`."""
    if frame is None:
        return ""
    import inspect

    found = ""
    for path, mod in model.named_modules():
        for klass in type(mod).__mro__:
            fn = klass.__dict__.get(frame.name)
            code = getattr(inspect.unwrap(fn), "__code__", None) if fn is not None else None
            if code is not None and os.path.realpath(code.co_filename) == os.path.realpath(frame.filename):
                if len(path) >= len(found) or not found:
                    found = path or "<root>"
                break
    return found


def _capture_error(model, e: Exception) -> Exception:
    import torch

    if isinstance(e, (ConversionError, UntraceableError)):
        return e
    frame = user_frame(e)
    path = module_of_frame(model, frame)
    where = ""
    if frame is not None:
        where = f" at {frame.filename}:{frame.lineno} ({frame.name}: {frame.line})"
    if path:
        where = f" in module '{'' if path == '<root>' else path}'" + where
    msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    data_dependent = isinstance(e, torch.fx.experimental.symbolic_shapes.GuardOnDataDependentSymNode) or \
        "data-dependent" in str(e) or "data dependent" in str(e)
    hint = ("Python control flow on tensor values cannot be captured: register a converter for the module "
            "that contains it (@recreate.register(ThatModule)) and capture keeps it whole, or express the "
            "branch with torch.cond." if data_dependent else
            "register a converter for the module that contains it (@recreate.register(ThatModule)) and "
            "capture keeps it whole, or recreate that module by hand.")
    err = UntraceableError(f"torch.export could not capture {type(model).__name__}{where}: "
                           f"{type(e).__name__}: {msg}. {hint}")
    err.module_path = "" if path == "<root>" else path
    err.frame = frame
    return err
