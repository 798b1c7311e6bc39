"""The weight-transfer engine: every tensor passes through one choke point.

Phase 1 plans and checks (names, shapes, dtypes, configuration) without copying anything.
Phase 2 converts and assigns one tensor at a time, so peak extra memory is one tensor and a
failed transfer (any problem found in phase 1) leaves every Keras variable untouched.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._backend import keras, require_torch
from ._memory import Releaser, release_free_memory
from .errors import TransferError
from .registry import WeightRules, rules_for
from .transforms import IDENTITY, Transform, flatten_rows_chw_to_hwc, then

#: torch tensors that never carry inference state, ignored everywhere.
ALWAYS_IGNORED = ("num_batches_tracked",)
_FLOAT_KINDS = ("f",)


@dataclass
class LayerRow:
    keras: str
    torch: str
    rule: str
    tensors: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class TransferReport:
    """What `transfer_weights` did: one row per Keras layer, totals, casts and leftovers."""

    rows: list[LayerRow] = field(default_factory=list)
    tensors: int = 0
    bytes: int = 0
    seconds: float = 0.0
    casts: list[str] = field(default_factory=list)
    unused_torch: list[str] = field(default_factory=list)
    unassigned_keras: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unused_torch and not self.unassigned_keras

    def _table(self) -> tuple[list[str], list[list[str]]]:
        head = ["keras layer", "torch module", "rule", "tensors", "bytes", "notes"]
        body = [
            [r.keras, r.torch or "<root>", r.rule, str(r.tensors), _fmt_bytes(r.bytes), "; ".join(r.notes)]
            for r in self.rows
        ]
        return head, body

    def summary(self) -> str:
        rate = self.bytes / self.seconds / 1e9 if self.seconds > 0 else float("inf")
        s = (
            f"transferred {self.tensors} tensors ({_fmt_bytes(self.bytes)}) into "
            f"{len(self.rows)} layers in {self.seconds:.3f}s ({rate:.2f} GB/s)"
        )
        if self.casts:
            s += f"; {len(self.casts)} cast(s)"
        if self.unused_torch:
            s += f"; {len(self.unused_torch)} torch tensor(s) unused"
        if self.unassigned_keras:
            s += f"; {len(self.unassigned_keras)} Keras variable(s) unassigned"
        return s

    def __str__(self) -> str:
        head, body = self._table()
        return _text_table(head, body) + "\n" + self.summary()

    def to_markdown(self) -> str:
        head, body = self._table()
        return _md_table(head, body) + "\n\n" + self.summary() + "\n"


@dataclass
class _Plan:
    var: Any
    sources: tuple[str, ...]  # full torch keys
    transform: Transform | None  # None -> fill
    fill: float | None
    shape: tuple[int, ...]
    row: LayerRow


def transfer_weights(
    source,
    keras_model,
    *,
    strict: bool = True,
    mapping: Mapping[str, str] | Callable[[str], str | None] | None = None,
    flatten_rows: str = "auto",
    progress: bool | None = None,
) -> TransferReport:
    """Fill `keras_model` with the weights of a torch model, state dict or checkpoint path.

    Keras layers are matched to torch modules by name (Keras layer name == torch qualified
    module name, e.g. "layer1.0.conv1"); `mapping` maps Keras layer names to torch module
    names where they differ (a dict, or a function returning None to skip a layer). Each
    pair is filled by the registered weight rules of (torch type, Keras type).

    Strict (default): every torch tensor used and every Keras variable assigned. Shape,
    dtype and configuration (epsilon) mismatches are always errors. Atomic: on any error a
    TransferError lists every problem and no Keras variable has changed.

    `flatten_rows="auto"` permutes the input rows of a Dense that reads a channels-last
    keras.layers.Flatten of a feature map, so that it matches torch's C,H,W flatten order
    (reported per layer); "off" disables that.

    Example::

        report = recreate.transfer_weights(torch_model, keras_model)
        print(report)
    """
    t0 = time.perf_counter()
    modules, flat = _torch_side(source)
    if not keras_model.built:
        raise TransferError(
            [f"Keras model '{keras_model.name}' is not built: create it with keras.Input(...) "
             "or call it once on an input before transferring weights"]
        )
    row_perms = _flatten_row_permutations(keras_model) if flatten_rows == "auto" else {}
    problems: list[str] = []
    coverage: list[str] = []
    plans: list[_Plan] = []
    used: set[str] = set()
    report = TransferReport()
    prefixes = _module_prefixes(flat, modules)

    def torch_name_for(layer, parent_torch: str | None) -> str | None:
        if mapping is not None:
            if callable(mapping):
                mapped = mapping(layer.name)
                if mapped is not None:
                    return mapped
            elif layer.name in mapping:
                return mapping[layer.name]
        candidates = [layer.name]
        if parent_torch:
            candidates.append(f"{parent_torch}.{layer.name}")
        for c in candidates:
            if c in prefixes:
                return c
        return None

    def visit(layer, parent_torch: str | None) -> None:
        if getattr(layer, "transfer_skip", False):
            return  # constants and ad-hoc layers filled at conversion
        if getattr(layer, "torch_name", None):
            # recreate.layers.Parameter: one torch tensor, by its state-dict name.
            _plan_tensor(layer, flat, plans, used, problems, report)
            return
        tname = torch_name_for(layer, parent_torch)
        if tname is not None:
            _plan_layer(layer, tname, modules, flat, row_perms.get(id(layer)), plans, used,
                        problems, coverage, report)
            return
        children = _sublayers(layer)
        if children:
            for child in children:
                visit(child, parent_torch)
            return
        own = _variables(layer)
        if own:
            coverage.append(
                f"Keras layer '{layer.name}' ({type(layer).__name__}) has variables "
                f"{sorted(own)} but no torch module is named '{layer.name}': rename the layer "
                "to the torch module path or pass mapping={...}"
            )
            report.unassigned_keras.extend(f"{layer.name}/{k}" for k in own)

    for child in _sublayers(keras_model) or [keras_model]:
        visit(child, None)

    unused = [k for k in flat if k not in used and k.rsplit(".", 1)[-1] not in ALWAYS_IGNORED]
    if unused:
        report.unused_torch = unused
        shown = ", ".join(unused[:20]) + (f" ... (+{len(unused) - 20})" if len(unused) > 20 else "")
        coverage.append(
            f"{len(unused)} torch tensor(s) not used by any Keras layer: {shown}. Name a Keras "
            "layer after each module, pass mapping={...}, or strict=False to skip them"
        )
    if problems or (strict and coverage):
        raise TransferError(problems + (coverage if strict else []))

    _commit(plans, flat, report, progress)
    report.seconds = time.perf_counter() - t0
    return report


def fill_layer(module, layer) -> None:
    """Fill one built Keras layer from one torch module (strict, atomic)."""
    flat = dict(module.state_dict())
    problems, coverage, plans, used = [], [], [], set()
    report = TransferReport()
    _plan_layer(layer, "", {"": module}, flat, None, plans, used, problems, coverage, report)
    if problems or coverage:
        raise TransferError(problems + coverage)
    _commit(plans, flat, report, False)


# ---- torch side ---------------------------------------------------------------------------
def _torch_side(source) -> tuple[dict | None, dict]:
    if isinstance(source, (str, os.PathLike)):
        from .checkpoint import load_state_dict

        return None, dict(load_state_dict(source, lazy=True))
    torch = require_torch("transfer_weights")
    if isinstance(source, torch.nn.Module):
        lazy = [n for n, p in source.named_parameters() if isinstance(p, torch.nn.parameter.UninitializedParameter)]
        if lazy:
            raise TransferError([
                f"torch parameter(s) {lazy[:5]} are uninitialized (a Lazy module): run one forward "
                "pass of the torch model first, then transfer"
            ])
        modules = dict(source.named_modules())
        return modules, _with_reparametrized_weights(modules, dict(source.state_dict()))
    if isinstance(source, Mapping):
        return None, dict(source)
    raise TypeError(
        f"transfer_weights takes a torch.nn.Module, a state dict or a checkpoint path, got {type(source).__name__}"
    )


def _with_reparametrized_weights(modules: dict, state: dict) -> dict:
    """A state dict where reparametrized tensors appear as the module uses them: weight norm
    (`nn.utils.parametrizations.weight_norm`, Wav2Vec2's positional conv; and the older
    hook-based `nn.utils.weight_norm`) and any other `torch.nn.utils.parametrize` keep the
    parts (`parametrizations.weight.original0/1`, `weight_g`/`weight_v`) in the state dict;
    the Keras layer takes the weight they compute, in their place."""
    import torch
    from torch.nn.utils import parametrize

    for name, mod in modules.items():
        pre = f"{name}." if name else ""
        if parametrize.is_parametrized(mod):
            for pname in list(mod.parametrizations.keys()):
                with torch.no_grad():
                    value = getattr(mod, pname).detach()
                for k in [k for k in state if k.startswith(f"{pre}parametrizations.{pname}.")]:
                    del state[k]
                state[f"{pre}{pname}"] = value
        for hook in getattr(mod, "_forward_pre_hooks", {}).values():
            if type(hook).__name__ == "WeightNorm" and hasattr(hook, "compute_weight"):
                with torch.no_grad():
                    value = hook.compute_weight(mod).detach()
                for suffix in ("_g", "_v"):
                    state.pop(f"{pre}{hook.name}{suffix}", None)
                state[f"{pre}{hook.name}"] = value
    return state


def _module_prefixes(flat: dict, modules: dict | None) -> set[str]:
    if modules is not None:
        return set(modules)
    out = {""}
    for k in flat:
        parts = k.split(".")
        for i in range(1, len(parts)):
            out.add(".".join(parts[:i]))
    return out


def _sub_state(flat: dict, tname: str) -> dict[str, str]:
    """relative name -> full key, for the tensors under module `tname`."""
    if tname == "":
        return {k: k for k in flat}
    pre = tname + "."
    return {k[len(pre):]: k for k in flat if k.startswith(pre)}


# ---- keras side ---------------------------------------------------------------------------
def _sublayers(layer) -> list:
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    own = getattr(layer, "sublayers_for_transfer", None)  # recreate.layers.Cond's branch models
    return list(own()) if callable(own) else []


def _variables(layer) -> dict[str, Any]:
    out = {}
    base = (getattr(layer, "path", None) or layer.name) + "/"
    for v in layer.weights:
        if "seed_generator" in v.path:
            continue
        rel = v.path[len(base):] if v.path.startswith(base) else v.name
        out[rel] = v
    return out


def _flatten_row_permutations(model) -> dict[int, Transform]:
    """Dense layers fed by a channels-last Flatten of a rank>=3 tensor -> row permutation."""
    out: dict[int, Transform] = {}

    def producer(layer):
        nodes = getattr(layer, "_inbound_nodes", [])
        if len(nodes) != 1 or not nodes[0].input_tensors:
            return None, None
        t = nodes[0].input_tensors[0]
        hist = getattr(t, "_keras_history", None)
        return (hist[0] if hist else None), t

    def walk(m):
        for lyr in _sublayers(m):
            walk(lyr)
            if not isinstance(lyr, keras.layers.Dense):
                continue
            flat_layer, _ = producer(lyr)
            if not isinstance(flat_layer, keras.layers.Flatten):
                continue
            if getattr(flat_layer, "data_format", "channels_last") != "channels_last":
                continue
            _, fin = producer(flat_layer)
            if fin is None or len(fin.shape) < 3 or any(d is None for d in fin.shape[1:]):
                continue
            out[id(lyr)] = flatten_rows_chw_to_hwc(tuple(fin.shape[1:]))

    walk(model)
    return out


# ---- planning -----------------------------------------------------------------------------
def _plan_layer(layer, tname, modules, flat, row_perm, plans, used, problems, coverage, report):
    module = modules.get(tname) if modules is not None else None
    if modules is not None and module is None:
        problems.append(f"torch model has no module '{tname}' (wanted by Keras layer '{layer.name}')")
        return
    kvars = _variables(layer)
    sub = _sub_state(flat, tname)
    if not kvars:
        if sub:
            # A weightless Keras layer (Flatten, ReLU) matched to a module that has tensors.
            coverage.append(
                f"Keras layer '{layer.name}' ({type(layer).__name__}) has no variables but torch "
                f"module '{tname}' has {sorted(sub)}"
            )
        return
    found = rules_for(type(module) if module is not None else None, layer, module)
    if found is None:
        ttype = type(module).__name__ if module is not None else "state-dict tensors"
        problems.append(
            f"no weight rule for torch {ttype} '{tname}' -> Keras {type(layer).__name__} "
            f"'{layer.name}': register one with recreate.register_rules(...)"
        )
        return
    rules, label = found
    row = LayerRow(keras=layer.name, torch=tname, rule=label)
    report.rows.append(row)
    if module is not None:
        _check_config(rules, module, layer, tname, problems)
    for name in rules.ignore:
        if name in sub:
            used.add(sub[name])
    assigned: set[str] = set()
    for m in rules.maps:
        var = kvars.get(m.keras)
        if var is None:
            continue
        target = tuple(int(d) for d in var.shape)
        keys = [sub.get(s) for s in m.sources]
        where = f"Keras '{layer.name}/{m.keras}' {target}"
        if any(k is None for k in keys):
            if m.fill is None:
                missing = [f"{tname}.{s}" if tname else s for s, k in zip(m.sources, keys) if k is None]
                problems.append(f"{where} needs torch tensor(s) {missing}, which do not exist")
                continue
            plans.append(_Plan(var, (), None, m.fill, target, row))
            row.notes.append(f"{m.keras}={m.fill:g} (no torch {m.sources[0]})")
            assigned.add(m.keras)
            continue
        transform = m.transform
        if row_perm is not None and m.keras == "kernel":
            transform = then(transform, row_perm)
            row.notes.append("kernel rows permuted CHW->HWC (reads a channels-last Flatten)")
        src_shapes = [tuple(flat[k].shape) for k in keys]
        desc = f"torch {[k for k in keys]} {src_shapes if len(src_shapes) > 1 else src_shapes[0]}"
        try:
            got = tuple(transform.shape(src_shapes, target))
        except ValueError as e:
            problems.append(f"{where} <- {desc}: {e}")
            continue
        if got != target:
            problems.append(
                f"shape mismatch: {where} <- {desc} gives {got} after {transform.name}; "
                "check the layer's configuration (channels, kernel size, units, bias)"
            )
            continue
        bad = [k for k in keys if _dtype_kind(flat[k]) not in _FLOAT_KINDS and var.dtype.startswith("float")]
        if bad:
            problems.append(f"{where} is {var.dtype} but torch {bad} is {_dtype_name(flat[bad[0]])}")
            continue
        for k in keys:
            src_dt = _dtype_name(flat[k])
            if src_dt != str(var.dtype):
                report.casts.append(f"{k}: {src_dt} -> {var.dtype}")
                row.notes.append(f"cast {src_dt}->{var.dtype}")
        plans.append(_Plan(var, tuple(keys), transform, None, target, row))
        used.update(keys)
        assigned.add(m.keras)
    left = sorted(set(kvars) - assigned)
    if left:
        report.unassigned_keras.extend(f"{layer.name}/{k}" for k in left)
        coverage.append(
            f"Keras '{layer.name}' variables {left} have no torch source (rule {label}, torch "
            f"tensors under '{tname}': {sorted(sub)})"
        )


def _plan_tensor(layer, flat, plans, used, problems, report) -> None:
    """A Parameter layer <- the torch tensor of its `torch_name`, as it is."""
    key = layer.torch_name
    var = layer.weights[0] if layer.weights else None
    if var is None:
        return
    target = tuple(int(d) for d in var.shape)
    where = f"Keras '{layer.name}/value' {target}"
    if key not in flat:
        problems.append(f"{where} needs torch tensor '{key}', which does not exist")
        return
    got = tuple(flat[key].shape)
    if got != target:
        problems.append(f"shape mismatch: {where} <- torch '{key}' {got}")
        return
    row = LayerRow(keras=layer.name, torch=key, rule="Parameter <- tensor")
    report.rows.append(row)
    src_dt = _dtype_name(flat[key])
    if src_dt != str(var.dtype):
        if _dtype_kind(flat[key]) not in _FLOAT_KINDS and str(var.dtype).startswith("float"):
            problems.append(f"{where} is {var.dtype} but torch '{key}' is {src_dt}")
            return
        report.casts.append(f"{key}: {src_dt} -> {var.dtype}")
        row.notes.append(f"cast {src_dt}->{var.dtype}")
    plans.append(_Plan(var, (key,), IDENTITY, None, target, row))
    used.add(key)


def _check_config(rules: WeightRules, module, layer, tname, problems) -> None:
    for c in rules.checks:
        if not hasattr(layer, c.keras_attr):
            continue
        kv, tv = getattr(layer, c.keras_attr), c.torch_value(module)
        if tv is None:
            continue
        same = np.allclose(kv, tv, rtol=1e-6, atol=0) if isinstance(tv, float) else kv == tv
        if not same:
            problems.append(
                f"Keras '{layer.name}'.{c.keras_attr}={kv!r} but torch '{tname}' has {tv!r}: "
                f"{c.hint or f'build the Keras layer with {c.keras_attr}={tv!r}'}"
            )


def _dtype_name(t) -> str:
    return str(t.dtype).replace("torch.", "")


def _dtype_kind(t) -> str:
    name = _dtype_name(t)
    return "f" if name.startswith(("float", "bfloat", "half", "double")) else "i"


def to_numpy(t) -> np.ndarray:
    """A torch tensor (any dtype, any device) or array as numpy, without copying when possible."""
    if isinstance(t, np.ndarray):
        return t
    if hasattr(t, "materialize"):  # checkpoint.LazyTensor: read now, one tensor at a time
        t = t.materialize()
    t = t.detach()
    if str(t.dtype) == "torch.bfloat16":
        t = t.float()
    return t.cpu().numpy()


# ---- commit -------------------------------------------------------------------------------
def _commit(plans: list[_Plan], flat: dict, report: TransferReport, progress) -> None:
    nbytes = [int(np.prod(p.shape)) * np.dtype(p.var.dtype).itemsize for p in plans]
    total = sum(nbytes)
    bar = None
    if progress or (progress is None and total > 200e6):
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc="transfer")
        except ImportError:
            bar = None
    releaser = Releaser()
    try:
        for p, nb in zip(plans, nbytes):
            if p.transform is None:
                value = np.full(p.shape, p.fill, dtype=p.var.dtype)
            else:
                value = p.transform([to_numpy(flat[k]) for k in p.sources], p.shape)
                value = np.asarray(value, dtype=p.var.dtype, order="C")  # keeps 0-d values 0-d
            p.var.assign(value)
            del value
            releaser.add(2 * nb)  # the transformed copy and TensorFlow's copy of it (see _memory)
            p.row.tensors += 1
            p.row.bytes += nb
            report.tensors += 1
            report.bytes += nb
            if bar is not None:
                bar.update(nb)
    finally:
        release_free_memory()
        if bar is not None:
            bar.close()


# ---- tables -------------------------------------------------------------------------------
def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _text_table(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    sep = "  ".join("-" * w for w in widths)
    rows = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join([line, sep, *rows])


def _md_table(head: list[str], body: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in body]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)
