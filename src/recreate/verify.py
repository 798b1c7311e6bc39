"""`recreate.verify`: numeric proof that a Keras model computes what the torch model does,
and, when it does not, the first layer (by name) where they part."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ._backend import keras, require_torch
from .convert import flatten_outputs
from .errors import ParityError, TrainingModeError
from .layout import to_channels_first, to_channels_last
from .transfer import _md_table, _text_table, to_numpy

#: MSE grades carried over from the hand-conversion checklist this project grew from.
GRADES = ((1e-5, "excellent"), (1e-3, "acceptable"))


def grade(mse: float) -> str:
    for bound, name in GRADES:
        if mse < bound:
            return name
    return "investigate (batch norm? preprocessing? eval mode?)"


def error_stats(keras_out: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """(mse, max abs error, max error relative to max(1, |reference|)), elementwise."""
    k = np.asarray(keras_out, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if k.size == 0:
        return 0.0, 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        same = (k == r) | (np.isnan(k) & np.isnan(r))  # equal infinities and NaN-for-NaN agree
        d = np.where(same, 0.0, np.abs(k - r))
        d = np.where(np.isnan(d), np.inf, d)
        denom = np.maximum(1.0, np.where(np.isfinite(r), np.abs(r), 1.0))
        return float(np.mean(d**2)), float(d.max()), float((d / denom).max())


@dataclass
class OutputStats:
    index: int
    shape: tuple
    mse: float = 0.0
    max_abs: float = 0.0
    max_rel: float = 0.0
    ref_max_abs: float = 0.0
    elements: int = 0

    @property
    def grade(self) -> str:
        return grade(self.mse)

    @property
    def error(self) -> float:
        """The verdict's measure: max abs error relative to the output's scale,
        max|k - t| / max(1, max|t|) (DESIGN: whole models 1e-4 relative)."""
        return self.max_abs / max(1.0, self.ref_max_abs)


@dataclass
class LayerStats:
    name: str
    torch_type: str
    shape: tuple
    max_abs: float
    max_rel: float
    passed: bool


@dataclass
class ParityReport:
    """Per-output errors over all batches, per-layer errors where computed, and the verdict."""

    outputs: list[OutputStats]
    tolerance: float
    batches: int = 0
    layers: list[LayerStats] = field(default_factory=list)
    layer_note: str = ""
    non_tensor: int = 0  # non-tensor leaves of torch's output (Python ints, ...): not compared

    @property
    def passed(self) -> bool:
        return all(o.error <= self.tolerance for o in self.outputs)

    @property
    def error(self) -> float:
        return max((o.error for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)

    @property
    def first_divergent(self) -> LayerStats | None:
        return next((s for s in self.layers if not s.passed), None)

    def raise_for_failure(self) -> ParityReport:
        if not self.passed:
            raise ParityError(str(self))
        return self

    def _verdict(self) -> str:
        v = "PASS" if self.passed else "FAIL"
        s = (f"{v}: error {self.error:.3g} = max|keras - torch| / max(1, max|torch|) (tolerance "
             f"{self.tolerance:g}) over {self.batches} batch(es); elementwise max rel {self.max_rel:.3g}")
        if self.non_tensor:
            s += f"; {self.non_tensor} non-tensor leaf/leaves of torch's output (Python ints, ...) not compared"
        fd = self.first_divergent
        if fd is not None and not self.passed:
            s += (
                f"\nfirst diverging layer: '{fd.name}' ({fd.torch_type}) max abs {fd.max_abs:.3g}, "
                f"max rel {fd.max_rel:.3g}: check its converter / weights / configuration"
            )
        elif not self.passed and self.layer_note:
            s += f"\n{self.layer_note}"
        return s

    def _tables(self):
        oh = ["output", "shape", "mse", "max abs", "max rel", "|ref| max", "error", "grade"]
        ob = [
            [str(o.index), "x".join(map(str, o.shape)), f"{o.mse:.3g}", f"{o.max_abs:.3g}",
             f"{o.max_rel:.3g}", f"{o.ref_max_abs:.3g}", f"{o.error:.3g}", o.grade]
            for o in self.outputs
        ]
        lh = ["layer", "torch type", "shape", "max abs", "max rel", "ok"]
        lb = [
            [s.name, s.torch_type, "x".join(map(str, s.shape)), f"{s.max_abs:.3g}", f"{s.max_rel:.3g}",
             "yes" if s.passed else "NO"]
            for s in self.layers
        ]
        return (oh, ob), (lh, lb)

    def __str__(self) -> str:
        (oh, ob), (lh, lb) = self._tables()
        parts = [_text_table(oh, ob)]
        if lb:
            parts.append(_text_table(lh, lb))
        parts.append(self._verdict())
        return "\n\n".join(parts)

    def to_markdown(self) -> str:
        (oh, ob), (lh, lb) = self._tables()
        parts = ["### Parity", _md_table(oh, ob)]
        if lb:
            parts += ["#### Per layer", _md_table(lh, lb)]
        parts.append("**" + self._verdict().replace("\n", "**\n\n**") + "**")
        return "\n\n".join(parts) + "\n"

    def plot(self, path) -> str:
        """Write a PNG of per-layer relative error along the network's depth."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(self.layers)), 4))
        if self.layers:
            ys = [max(s.max_rel, 1e-12) for s in self.layers]
            ax.semilogy(range(len(ys)), ys, marker="o", ms=3)
            ax.set_xticks(range(len(ys)))
            ax.set_xticklabels([s.name for s in self.layers], rotation=90, fontsize=6)
            fd = self.first_divergent
            if fd is not None:
                i = self.layers.index(fd)
                ax.axvline(i, color="red", ls=":", label=f"first divergence: {fd.name}")
        ax.axhline(self.tolerance, color="gray", ls="--", label=f"tolerance {self.tolerance:g}")
        ax.set_ylabel("max relative error")
        ax.set_title("recreate: per-layer parity")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return str(path)


def verify(
    torch_model,
    keras_model,
    inputs,
    *,
    tolerance: float = 1e-4,
    input_layout: str = "auto",
    layers: bool | str = "auto",
    progress: bool | None = None,
    kwargs: dict | None = None,
) -> ParityReport:
    """Run both models on the same inputs (PyTorch layout) and report the difference.

    `inputs` is one batch (a tensor/array, or a tuple of them for several model inputs) or
    an iterable of such batches (a list, generator or DataLoader yielding inputs), which is
    aggregated. `input_layout` is "torch", "keras" (channels-last Keras model inputs and
    outputs, adapted automatically) or "auto" (decided from the shapes). With
    `layers="auto"` a failing comparison also compares same-named intermediate layers and
    names the first that diverges; `layers=True` always does.

    `kwargs` are the forward() keyword arguments the model was converted with (see
    `recreate.convert`): all go to the torch model; tensor values are also the Keras model's
    further inputs, after the positional ones, in the order given.

    The verdict: for every output, max|keras - torch| / max(1, max|torch|) <= tolerance
    (per layer likewise, for localisation). MSE, max abs and elementwise max relative error
    max(|k - t| / max(1, |t|)) are reported too.

    Example::

        report = recreate.verify(model.eval(), keras_model, torch.randn(2, 3, 224, 224))
        assert report.passed, report
    """
    torch = require_torch("verify")
    _refuse_training(torch_model)
    batches = _batches(inputs, torch)
    kwargs = dict(kwargs or {})
    tensor_kw = [v if isinstance(v, torch.Tensor) else torch.as_tensor(v) for v in kwargs.values()
                 if isinstance(v, (torch.Tensor, np.ndarray))]
    if progress or (progress is None and len(batches) > 4):
        try:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="verify")
        except ImportError:
            pass
    stats: list[OutputStats] = []
    first_batch = None
    n = 0
    non_tensor = 0
    for batch in batches:
        xs = [x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x)) for x in batch]
        if first_batch is None:
            first_batch = [x.clone() for x in xs]
        # Keras first: an in-place op in the torch model may rewrite the input tensors.
        k_outs = _run_keras(keras_model, [to_numpy(x).copy() for x in [*xs, *tensor_kw]], input_layout)
        with torch.no_grad():
            t_outs, skipped = _torch_outputs(torch_model(*xs, **kwargs), torch)
        non_tensor = max(non_tensor, len(skipped))
        if len(k_outs) != len(t_outs):
            extra = (f" (tensors; besides, {len(skipped)} non-tensor leaf/leaves not compared: "
                     f"{_describe(skipped)})" if skipped else "")
            raise ParityError(
                f"torch model returned {len(t_outs)} output(s){extra}, Keras model {len(k_outs)}: "
                "a converted model returns torch's tensor outputs flattened in order"
            )
        for i, (k, t) in enumerate(zip(k_outs, t_outs)):
            k = _match_layout(k, t)
            if i == len(stats):
                stats.append(OutputStats(i, tuple(t.shape)))
            mse, mab, mrel = error_stats(k, t)
            s = stats[i]
            s.mse = (s.mse * s.elements + mse * t.size) / max(1, s.elements + t.size)
            s.elements += t.size
            s.max_abs = max(s.max_abs, mab)
            s.max_rel = max(s.max_rel, mrel)
            s.ref_max_abs = max(s.ref_max_abs, float(np.abs(t).max()) if t.size else 0.0)
        n += 1
    report = ParityReport(stats, tolerance, batches=n, non_tensor=non_tensor)
    if first_batch is not None and (layers is True or (layers == "auto" and not report.passed)):
        report.layers, report.layer_note = _per_layer(torch_model, keras_model, first_batch, input_layout, tolerance,
                                                        kwargs, tensor_kw)
    return report


def _torch_outputs(out, torch) -> tuple[list[np.ndarray], list]:
    """The torch model's tensor leaves as arrays, in flattened order (the converted model's
    outputs), and the other leaves (Python ints and sizes such as MaskFormer-Swin's
    hidden_states_spatial_dimensions, strings): a Keras model returns tensors only, so
    these are not compared."""
    tensors, other = [], []
    for leaf in flatten_outputs(out):
        if isinstance(leaf, torch.Tensor):
            tensors.append(to_numpy(leaf))
        else:
            other.append(leaf)
    return tensors, other


def _describe(leaves: list) -> str:
    counts: dict[str, int] = {}
    for v in leaves:
        counts[type(v).__name__] = counts.get(type(v).__name__, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def _refuse_training(model) -> None:
    training = [name or "<root>" for name, m in model.named_modules() if m.training]
    if training:
        shown = ", ".join(training[:5]) + (" ..." if len(training) > 5 else "")
        raise TrainingModeError(
            f"torch model is in training mode ({len(training)} module(s): {shown}). Call "
            "model.eval() before verify/convert: training mode uses batch statistics and "
            "dropout, the most common silent accuracy loss in hand conversions."
        )


def _batches(inputs, torch) -> list[tuple]:
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        return [(inputs,)]
    if isinstance(inputs, tuple):
        return [inputs]
    if isinstance(inputs, Iterable):
        out = []
        for b in inputs:
            out.append(tuple(b) if isinstance(b, (tuple, list)) else (b,))
        return out
    raise TypeError(f"inputs must be a tensor, a tuple of tensors or an iterable of batches, got {type(inputs).__name__}")


def _keras_input_shapes(model) -> list[tuple]:
    try:
        return [tuple(t.shape) for t in model.inputs]
    except (AttributeError, ValueError):
        return []


def _adapt_inputs(model, xs: list[np.ndarray], layout: str) -> list[np.ndarray]:
    specs = _keras_input_shapes(model)
    out = []
    for i, x in enumerate(xs):
        if layout == "torch" or x.ndim < 3:
            out.append(x)
            continue
        if layout == "keras":
            out.append(to_channels_last(x))
            continue
        spec = specs[i] if i < len(specs) else None
        cl = to_channels_last(x)
        fits_t = spec is not None and _fits(spec, x.shape)
        fits_k = spec is not None and _fits(spec, cl.shape)
        if fits_k and not fits_t:
            out.append(cl)
        elif fits_t and fits_k:
            first = model.layers[1] if len(getattr(model, "layers", [])) > 1 else None
            boundary = first is not None and first.name.endswith(".to_channels_last")
            out.append(x if boundary else cl)
        else:
            out.append(x)
    return out


def _fits(spec: tuple, shape: tuple) -> bool:
    return len(spec) == len(shape) and all(s is None or s == d for s, d in zip(spec, shape))


def _run_keras(model, xs: list[np.ndarray], layout: str) -> list[np.ndarray]:
    feeds = _adapt_inputs(model, xs, layout)
    y = model(feeds[0] if len(feeds) == 1 else feeds, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in flatten_outputs(y)]


def _match_layout(k: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Bring a Keras tensor into the torch tensor's layout when it is channels-last.

    Where both readings fit the shape (C == H == W, or tokens (N, L, C)) the closer one is
    taken: a channels-last tensor read as channels-first differs by O(1), not by rounding."""
    candidates = []
    if k.shape == t.shape:
        candidates.append(k)
    if k.ndim >= 3 and to_channels_first(k).shape == t.shape:
        candidates.append(to_channels_first(k))
    if not candidates:
        raise ParityError(f"Keras output shape {k.shape} does not match torch's {t.shape} in either layout")
    if len(candidates) == 1:
        return candidates[0]
    return min(candidates, key=lambda c: error_stats(c, t)[1])


def _per_layer(torch_model, keras_model, xs, layout, tolerance, kwargs=None,
               tensor_kw=()) -> tuple[list[LayerStats], str]:
    torch = require_torch("verify")
    if not hasattr(keras_model, "inputs") or not isinstance(keras_model, keras.Model):
        return [], "per-layer localisation needs a functional Keras model"
    try:
        kin = keras_model.inputs
    except (AttributeError, ValueError):
        return [], "per-layer localisation needs a functional Keras model (no symbolic inputs)"
    modules = dict(torch_model.named_modules())
    klayers = [
        lyr for lyr in keras_model.layers
        if lyr.name in modules and len(getattr(lyr, "_inbound_nodes", [])) == 1
    ]
    if not klayers:
        return [], "no Keras layer is named after a torch module, so no per-layer comparison"
    captured: dict[str, np.ndarray] = {}
    order: list[str] = []
    hooks = []
    for lyr in klayers:
        def hook(mod, args, out, _name=lyr.name):
            if _name not in captured:
                # the first tensor leaf: the Keras layer's outputs are its tensors only
                first = next((o for o in flatten_outputs(out) if isinstance(o, torch.Tensor)), None)
                if first is not None:
                    # copy: a later in-place op (ReLU(inplace=True)) would rewrite it
                    captured[_name] = to_numpy(first).copy()
                    order.append(_name)
        hooks.append(modules[lyr.name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            torch_model(*xs, **(kwargs or {}))
    finally:
        for h in hooks:
            h.remove()
    probe = keras.Model(kin[0] if len(kin) == 1 else kin, [flatten_outputs(lyr.output)[0] for lyr in klayers])
    feeds = _adapt_inputs(keras_model, [to_numpy(x) for x in [*xs, *tensor_kw]], layout)
    kouts = probe(feeds[0] if len(feeds) == 1 else feeds, training=False)
    kouts = kouts if isinstance(kouts, (list, tuple)) else [kouts]
    by_name = {lyr.name: np.asarray(keras.ops.convert_to_numpy(o)) for lyr, o in zip(klayers, kouts)}
    rows = []
    for name in order:
        t, k = captured[name], by_name[name]
        try:
            k = _match_layout(k, t)
        except ParityError:
            rows.append(LayerStats(name, type(modules[name]).__name__, tuple(t.shape), float("inf"), float("inf"), False))
            continue
        _, mab, mrel = error_stats(k, t)
        peak = float(np.abs(t).max()) if t.size else 0.0
        ok = mab / max(1.0, peak) <= tolerance
        rows.append(LayerStats(name, type(modules[name]).__name__, tuple(t.shape), mab, mrel, ok))
    return rows, ""
