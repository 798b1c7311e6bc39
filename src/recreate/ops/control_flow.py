"""torch.cond -> recreate.layers.Cond (keras.ops.cond over two converted branch models).

While tracing, `torch.cond` with a traced predicate or operands is recorded as one call of
`cond_call` (recreate.trace patches it); its branch functions are traced here, each into its
own Keras model that shares the model's converted layers (a module used in a branch keeps
its path as layer name, so transfer_weights fills it).
"""

from __future__ import annotations

import numpy as np

from .._backend import keras
from ..errors import ConversionError
from ..trace import Value, cond_call, convert_branch, identity
from . import cases as C
from . import register_op


def _cond_cases(draw):
    import torch

    from hypothesis import strategies as st

    shape = C.draw_shape(draw, min_rank=1, max_rank=4)
    (x,) = C.draw_inputs(draw, shape)
    offset = float(draw(st.sampled_from([-2.0, 0.0, 2.0])))  # both branches get taken
    x = x + np.float32(offset)
    kind = draw(st.sampled_from(["sum", "max"]))

    def fn(t):
        pred = (t.sum() > 0) if kind == "sum" else (t.amax() > 1.0)
        return torch.cond(pred, lambda u: torch.relu(u) * 2.0 + 1.0, lambda u: torch.tanh(u) - u.mean(), (t,))

    return fn, f"torch.cond on {kind}", [x]


@register_op(cond_call, cases=C.custom(_cond_cases))
def cond(cx, pred, key, operands):
    operands = list(operands)
    if not isinstance(pred, Value):
        raise ConversionError("torch.cond with a Python predicate should not reach the converter")
    if any(not isinstance(v, Value) for v in operands):
        raise ConversionError("torch.cond operands must be tensors")
    feeds = [cx.torch(v) for v in operands]
    models = [convert_branch(cx.conv, key, i, feeds, f"{cx.node.name}.{label}")
              for i, label in enumerate(("true", "false"))]
    from ..layers.cond import Cond

    layer = Cond(models[0], models[1], name=cx.conv.fresh(cx.node.name))
    out = layer(cx.torch(pred).t, *[v.t for v in feeds])
    meta = cx.out_meta
    if isinstance(out, (list, tuple)):
        metas = meta if isinstance(meta, (list, tuple)) else [meta]
        return tuple(Value(o, identity(len(m.shape)), tuple(m.shape), m.dtype) for o, m in zip(out, metas))
    return Value(out, identity(len(meta.shape)), tuple(meta.shape), meta.dtype)


__all__ = ["cond", "keras"]
