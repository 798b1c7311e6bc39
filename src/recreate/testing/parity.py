"""assert_parity: convert a module, run both sides, compare with the project's bar."""

from __future__ import annotations

import numpy as np


def parity_error(keras_out, ref) -> float:
    """max |keras - torch| / max(1, |torch|), elementwise (the project's parity measure)."""
    from ..verify import error_stats

    return error_stats(keras_out, ref)[2]


def assert_parity(module, inputs, *, tolerance: float = 1e-5, io_layout: str = "torch", keras_model=None,
                  kwargs: dict | None = None):
    """Convert `module` (unless `keras_model` is given), run both on `inputs` (PyTorch
    layout) and assert every output agrees within tolerance x max(1, |reference|).
    `kwargs` are forward() keyword arguments (see `recreate.convert`). Returns the Keras model.

    Example::

        assert_parity(torch.nn.Conv2d(3, 4, 3).eval(), np.random.rand(1, 3, 8, 8).astype("float32"))
    """
    import torch

    from .. import convert
    from ..convert import flatten_outputs, is_unbatched
    from ..layout import to_channels_first, to_channels_last
    from ..registry import CHANNELS_LAST, TORCH, lookup
    from ..transfer import to_numpy

    xs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    # A tuple among the inputs is one nested torch argument (LSTM's (h_0, c_0)): torch gets
    # it nested, the Keras model its tensors as further flat inputs, in order.
    txs = [_nested(x, lambda a: torch.tensor(np.asarray(a))) for x in xs]  # copies: in-place modules must not touch xs
    xs = tuple(flatten_outputs(list(xs)))
    flat_txs = flatten_outputs(txs)
    kwargs = dict(kwargs or {})
    tkw = {k: torch.tensor(np.asarray(v)) if isinstance(v, (np.ndarray, torch.Tensor)) else v for k, v in kwargs.items()}
    keras_model_given = keras_model is not None
    if keras_model is None:
        keras_model = convert(module, tuple(flat_txs), io_layout=io_layout, kwargs=tkw)
    with torch.no_grad():
        ref = [to_numpy(t) for t in flatten_outputs(module(*txs, **tkw))]
    unbatched = not keras_model_given and is_unbatched(module, [tuple(x.shape) for x in flat_txs])
    if unbatched:  # the Keras model takes a batch of unbatched samples
        xs = tuple(np.asarray(x)[None] for x in xs)
        ref = [r[None] for r in ref]
    # With io_layout="keras" the model reads/writes channels-last where the layer does.
    in_layout, out_layout = (CHANNELS_LAST, CHANNELS_LAST) if keras_model_given else lookup(module).layout
    feeds = [np.asarray(x) for x in xs]
    if io_layout == "keras" and in_layout != TORCH:
        feeds = [to_channels_last(x) for x in feeds]
    feeds += [np.asarray(v) for v in kwargs.values() if isinstance(v, (np.ndarray, torch.Tensor))]
    out = keras_model(feeds[0] if len(feeds) == 1 else feeds, training=False)
    import keras

    got = [np.asarray(keras.ops.convert_to_numpy(o)) for o in flatten_outputs(out)]
    assert len(got) == len(ref), f"{len(got)} Keras outputs vs {len(ref)} torch outputs"
    out_cl = io_layout == "keras" and out_layout != TORCH
    for i, (k, t) in enumerate(zip(got, ref)):
        if out_cl and k.ndim >= 3:
            k = to_channels_first(k)
        assert k.shape == t.shape, f"output {i}: Keras shape {k.shape} vs torch {t.shape}"
        err = parity_error(k, t)
        assert err <= tolerance, (
            f"output {i} of {module!r}: max error {err:.3g} x max(1,|ref|) exceeds {tolerance:g} "
            f"(|ref| max {np.abs(t).max() if t.size else 0:.3g})"
        )
    return keras_model


def _nested(x, fn):
    return tuple(_nested(a, fn) for a in x) if isinstance(x, tuple) else fn(x)
