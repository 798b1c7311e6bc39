"""`recreate.convert`: a registered torch module -> keras.Model with its weights.

Whole-model tracing builds on the same pieces: registry entries build the layers (named after
the module path), `transfer_weights` fills them, and layout tags say where a transpose is due.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from ._backend import keras, require_torch
from .layout import keras_permute_dims
from .registry import ANY, CHANNELS_LAST, TORCH, BuildContext, find_entry, lookup
from .transfer import transfer_weights


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def flatten_outputs(out, _seen: frozenset = frozenset()) -> list:
    """Flatten nested tuples/lists/dicts/dataclass-like outputs into a list, in order. Any
    other object that holds tensors in its attributes (a Hugging Face DynamicCache and its
    layers' keys and values) is flattened over its attributes in definition order; an
    object that holds none is one leaf."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flatten_outputs(o, _seen)]
    if isinstance(out, dict):
        return [t for v in out.values() for t in flatten_outputs(v, _seen)]
    if out is None:
        return []
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return [t for f in dataclasses.fields(out) for t in flatten_outputs(getattr(out, f.name), _seen)]
    fields = _object_fields(out, _seen)
    if fields is not None:
        inner = _seen | {id(out)}
        return [t for v in fields for t in flatten_outputs(v, inner)]
    return [out]


def _object_fields(obj, seen: frozenset) -> list | None:
    """The attribute values of a plain Python object that holds tensors, else None."""
    if id(obj) in seen or isinstance(obj, (type, str, bytes, int, float, complex, bool, np.ndarray)):
        return None
    cls = type(obj)
    if cls.__module__.split(".")[0] in ("torch", "builtins", "numpy", "keras", "tensorflow") or callable(obj):
        return None  # tensors, dtypes, devices, modules, functions
    fields = list(getattr(obj, "__dict__", {}).values())
    if not fields:
        return None
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    inner = seen | {id(obj)}
    if not any(isinstance(t, torch.Tensor) for t in flatten_outputs(fields, inner)):
        return None
    return fields


def _spatial_dims(torch_type: type) -> int | None:
    m = re.search(r"([123])d$", torch_type.__name__)
    return int(m.group(1)) if m else None


def is_unbatched(module, shapes) -> bool:
    """True when a module is given an input without the batch axis, as torch allows: a
    channels-first module (Conv2d, MaxPool1d, ReflectionPad3d, ...) an input of rank =
    spatial dims + 1, Linear/Bilinear/RNNCell/LSTMCell/GRUCell one feature vector (rank 1),
    an elementwise module (and PReLU) a scalar (rank 0). Batch norm reads (N, C) as batched
    and is never unbatched. (nn.RNN/LSTM/GRU take their unbatched (L, H_in) form as it is:
    recreate.layers.Recurrent handles it like torch.)"""
    torch = require_torch("convert")
    if not shapes:
        return False
    # A scalar has no axis for Keras's batch: the Keras model of an elementwise module takes
    # a batch of scalars. (A module that names an axis, such as Softmax(dim=0), must not
    # see the added axis as its own: it keeps the scalar and refuses it.)
    if len(shapes[0]) == 0:
        return lookup(module).layout[0] == ANY or isinstance(module, torch.nn.PReLU)
    # Modules on feature vectors take one vector as torch's unbatched form.
    if isinstance(module, (torch.nn.Linear, torch.nn.Bilinear, torch.nn.RNNCellBase)):
        return len(shapes[0]) == 1
    n = _spatial_dims(type(module))
    entry = lookup(module)
    if n is None or entry.layout[0] == TORCH:
        return False
    # Batch norm reads (N, C) as batched; Upsampling*2d passes a 3-D tensor to F.interpolate,
    # which reads it as (N, C, L) (1-D nearest) or rejects it (bilinear): never unbatched.
    if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Upsample)):
        return False
    # torchvision's FrozenBatchNorm2d broadcasts a (C, H, W) input against (1, C, 1, 1)
    # statistics and returns (1, C, H, W): it has no unbatched form.
    if type(module).__name__ == "FrozenBatchNorm2d":
        return False
    return len(shapes[0]) == n + 1


def bind_leading_input(module, args: tuple, kwargs: dict | None) -> tuple[tuple, dict | None]:
    """A module called with its first input by keyword (`linear(input=x)`, as
    PyTorch's own module samples do) gets it positionally: a Keras layer's first input is
    positional. The other keyword arguments stay keyword arguments."""
    if args or not kwargs:
        return args, kwargs
    import inspect

    params = [p for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not params or params[0].name not in kwargs:
        return args, kwargs
    kwargs = dict(kwargs)
    return (kwargs.pop(params[0].name),), kwargs


def convert(module, example_inputs, io_layout: str = "torch", *, kwargs: dict | None = None,
            name: str | None = None):
    """Convert a torch module into a keras.Model with its weights transferred.

    A registered module type becomes its Keras layer; any other model is traced
    (recreate.trace): registered submodules stay whole, the operations between them go
    through the op registry.

    `example_inputs` (a tensor or a tuple of tensors, PyTorch layout, batch first) fixes the
    input shapes (batch left free). With io_layout="torch" the Keras model takes and returns
    tensors in PyTorch's layout, exactly like the module (one transpose at each boundary);
    with io_layout="keras" it takes and returns channels-last tensors.

    An input without a batch axis, where torch accepts one (a (C, H, W) tensor for Conv2d,
    a feature vector for Linear or an RNN cell, a scalar for an activation), gives a model
    that takes a batch of such samples: `km(x[None])[0]` is `module(x)`.

    `kwargs` are forward() keyword arguments: non-tensor values (need_weights=False) are
    fixed in the converted layer; tensor values (attn_mask=...) become further Keras model
    inputs, after the positional ones and in the order given, in PyTorch layout. A module's
    first input given by keyword (`kwargs={"input": x}` with no positional input) is taken
    as its positional input.

    Example::

        km = recreate.convert(torch.nn.Conv2d(3, 8, 3).eval(), torch.randn(1, 3, 32, 32))
        y = km(x.numpy())
    """
    torch = require_torch("convert")
    if io_layout not in ("torch", "keras"):
        raise ValueError(f"io_layout must be 'torch' or 'keras', got {io_layout!r}")
    if find_entry(type(module)) is None:
        xs = [x if isinstance(x, torch.Tensor) else torch.as_tensor(x) for x in _as_tuple(example_inputs)]
        return _convert_whole(module, xs, io_layout, kwargs, name)
    example_inputs, kwargs = bind_leading_input(module, _as_tuple(example_inputs), kwargs)
    # A tuple argument of a registered module (LSTM's (h_0, c_0)) becomes further positional
    # Keras inputs, flattened in order.
    xs = [x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
          for x in flatten_outputs(list(_as_tuple(example_inputs)))]
    entry = lookup(module, "")
    shapes = [tuple(x.shape) for x in xs]
    if is_unbatched(module, shapes):
        shapes = [(1, *s) for s in shapes]  # the Keras model's batch axis is the one torch lacks
    kwargs = dict(kwargs or {})
    tensor_kw = [k for k, v in kwargs.items() if isinstance(v, (torch.Tensor, np.ndarray))]
    ctx = BuildContext(
        tuple(shapes),
        {k: (tuple(v.shape) if k in tensor_kw else v) for k, v in kwargs.items()},
        tuple(tensor_kw),
    )
    layer_name = name or type(module).__name__.lower()
    layers = entry.make_layers(module, ctx, layer_name)
    in_cl, out_cl = (lay in (CHANNELS_LAST, ANY) for lay in entry.layout)

    inputs, feeds = [], []
    for i, (x, shape) in enumerate(zip(xs, shapes)):
        rank = len(shape)
        permute = in_cl and rank >= 3
        if permute and io_layout == "keras":
            kshape = tuple(shape[j] for j in (*range(2, rank), 1))
        else:
            kshape = shape[1:]
        inp = keras.Input(shape=kshape, batch_size=None, dtype=_keras_dtype(x), name=f"input_{i}")
        inputs.append(inp)
        if permute and io_layout == "torch":
            feeds.append(keras.layers.Permute(keras_permute_dims(rank, True), name=f"input_{i}.to_channels_last")(inp))
        else:
            feeds.append(inp)

    kw_inputs = {}
    for k in tensor_kw:
        v = torch.as_tensor(kwargs[k])
        kw_inputs[k] = keras.Input(shape=tuple(v.shape[1:]), dtype=_keras_dtype(v), name=k)
        inputs.append(kw_inputs[k])
    y = None
    for i, lyr in enumerate(layers):
        y = lyr(*feeds, **kw_inputs) if i == 0 else lyr(y)
    outs = flatten_outputs(y)
    final = []
    for j, o in enumerate(outs):
        if out_cl and io_layout == "torch" and len(o.shape) >= 3:
            o = keras.layers.Permute(keras_permute_dims(len(o.shape), False), name=f"output_{j}.to_channels_first")(o)
        final.append(o)
    model = keras.Model(inputs[0] if len(inputs) == 1 else inputs, final[0] if len(final) == 1 else final,
                        name=type(module).__name__)
    transfer_weights(module, model, mapping={layer_name: ""})
    return model


def _convert_whole(module, xs, io_layout, kwargs, name):
    """Capture with torch.export (recreate.tracer); where that capture or one of its ops is
    not supported yet, the torch.fx tracer (recreate.trace) is tried before giving up, and
    the torch.export error is the one raised. RECREATE_CAPTURE=export|fx picks one."""
    from .errors import RecreateError
    from .trace import convert_traced
    from .tracer import convert_exported

    mode = os.environ.get("RECREATE_CAPTURE", "auto")
    if mode not in ("auto", "export", "fx"):
        raise ValueError(f"RECREATE_CAPTURE must be auto, export or fx, got {mode!r}")
    if mode == "fx":
        return convert_traced(module, xs, io_layout, kwargs=kwargs, name=name)
    try:
        return convert_exported(module, xs, io_layout, kwargs=kwargs, name=name)
    except RecreateError as first:
        if mode == "export":
            raise
        try:
            return convert_traced(module, xs, io_layout, kwargs=kwargs, name=name)
        except RecreateError:
            raise first from None


def _keras_dtype(x) -> str:
    name = str(x.dtype).replace("torch.", "")
    return "float32" if name == "bfloat16" else name
