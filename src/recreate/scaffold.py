"""`recreate scaffold`: write an EDITABLE Python recreation script for a torch model.

The script holds the Keras functional code of the converted model, one line per layer, the
layers named after the torch module paths and built with the same Keras layers the
converter builds (constructor arguments from each layer's get_config(), defaults left out),
then `recreate.transfer_weights(torch_model, keras_model)` and `recreate.verify(...)`.
Tensors that transfer_weights cannot fill (model constants such as a class token, and
layers made up for a functional call like F.layer_norm) go to a .npz file next to the
script, which the script loads.

    recreate scaffold torchvision.models:resnet18 --input-shape 1,3,224,224 --out recreate_resnet18.py
    python recreate_resnet18.py            # rebuilds, transfers, verifies; exit 1 on failure
"""

from __future__ import annotations

import inspect
import keyword
import re
from pathlib import Path

import numpy as np

from ._backend import keras

KERAS_TENSOR = "__keras_tensor__"


def _ident(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name).strip("_") or "t"
    if base[0].isdigit():
        base = "t_" + base
    if keyword.iskeyword(base) or base in {"keras", "recreate", "np", "torch", "inputs", "outputs", "model"}:
        base += "_"
    v, i = base, 1
    while v in taken:
        v, i = f"{base}_{i}", i + 1
    taken.add(v)
    return v


def _norm(v):
    if isinstance(v, tuple):
        return [_norm(e) for e in v]
    if isinstance(v, list):
        return [_norm(e) for e in v]
    if isinstance(v, dict):
        return {k: _norm(e) for k, e in v.items()}
    return v


def _dtype_name(v):
    if isinstance(v, dict) and v.get("class_name") == "DTypePolicy":
        return v.get("config", {}).get("name")
    return v


def _comparable(cfg: dict) -> dict:
    out = {}
    for k, v in cfg.items():
        if k.endswith("_initializer"):
            continue  # weights are transferred, initializers do not matter
        out[k] = _dtype_name(v) if k == "dtype" else _norm(v)
    return out


def clean_config(cls, cfg: dict) -> tuple[dict, bool]:
    """Constructor arguments for `cls` from its get_config(): the name first, defaults,
    initializers (overwritten by the weight transfer), trainable=True and dtype float32 left
    out. Returns (kwargs, exact): exact is False when rebuilding from the short form does not
    reproduce the config, in which case the full config is returned."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        params = {}
    short = {"name": cfg["name"]}
    for k, v in cfg.items():
        if k == "name" or k.endswith("_initializer"):
            continue
        if k == "trainable" and v is True:
            continue
        if k == "dtype":
            v = _dtype_name(v)
            if v in (None, "float32"):
                continue
        p = params.get(k)
        if p is not None and p.default is not inspect.Parameter.empty and _norm(p.default) == _norm(v):
            continue
        short[k] = v
    try:
        rebuilt = cls(**short).get_config()
        exact = _comparable(rebuilt) == _comparable(cfg)
    except Exception:  # noqa: BLE001 - any failure: emit the full config
        exact = False
    if not exact:
        full = dict(cfg)
        full["dtype"] = _dtype_name(full.get("dtype"))
        return full, False
    return short, True


def _class_ref(cls, imports: set[str]) -> str:
    mod = cls.__module__
    if mod.startswith("keras"):
        if getattr(keras.layers, cls.__name__, None) is cls:
            return f"keras.layers.{cls.__name__}"
        imports.add(f"from {mod} import {cls.__name__}")
        return cls.__name__
    if mod.startswith("recreate.layers"):
        import recreate.layers as rl

        if getattr(rl, cls.__name__, None) is cls:
            return f"recreate.layers.{cls.__name__}"
    imports.add(f"from {mod} import {cls.__name__}")
    return cls.__name__


def _fmt(v) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {_fmt(e)}" for k, e in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        inner = ", ".join(_fmt(e) for e in v)
        return f"({inner},)" if isinstance(v, tuple) and len(v) == 1 else (f"({inner})" if isinstance(v, tuple) else f"[{inner}]")
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return f"float({str(v)!r})"
    return repr(v)


def keras_model_source(km, func_name: str = "build_keras_model") -> tuple[str, set[str], dict[str, np.ndarray], list[str]]:
    """Python source of a function rebuilding `km` (functional) layer by layer.

    Returns (source, import lines, {"layer/variable": value} for layers transfer_weights
    does not fill, names of those layers)."""
    cfg = km.get_config()
    imports: set[str] = set()
    taken: set[str] = set()
    out_var: dict[tuple[str, int], str] = {}
    multi: dict[tuple[str, int], bool] = {}
    lines: list[str] = []
    constants: dict[str, np.ndarray] = {}
    skip: list[str] = []

    def ref(obj):
        if isinstance(obj, dict) and obj.get("class_name") == KERAS_TENSOR:
            name, node, idx = obj["config"]["keras_history"]
            v = out_var[(name, node)]
            return f"{v}[{idx}]" if multi[(name, node)] else v
        if isinstance(obj, list):
            return "[" + ", ".join(ref(e) for e in obj) + "]"
        if isinstance(obj, tuple):
            return "(" + ", ".join(ref(e) for e in obj) + ",)"
        if isinstance(obj, dict):
            if "class_name" in obj and "config" in obj:
                return f"keras.saving.deserialize_keras_object({_fmt(obj)})"
            return "{" + ", ".join(f"{k!r}: {ref(e)}" for k, e in obj.items()) + "}"
        return _fmt(obj)

    pending: list = []  # layer calls waiting for their inputs (a shared layer's later calls)

    def history(obj):
        if isinstance(obj, dict) and obj.get("class_name") == KERAS_TENSOR:
            yield tuple(obj["config"]["keras_history"][:2])
        elif isinstance(obj, (list, tuple)):
            for e in obj:
                yield from history(e)
        elif isinstance(obj, dict):
            for e in obj.values():
                yield from history(e)

    def emit_ready():
        progress = True
        while progress:
            progress = False
            for item in list(pending):
                name, i, node, callee, n_nodes, n_out = item
                if all(h in out_var for h in history((node.get("args", []), node.get("kwargs", {})))):
                    pending.remove(item)
                    call_args = ", ".join([ref(a) for a in node.get("args", [])]
                                          + [f"{k}={ref(v)}" for k, v in node.get("kwargs", {}).items()])
                    var = _ident(name if n_nodes == 1 else f"{name}_{i}", taken)
                    out_var[(name, i)] = var
                    multi[(name, i)] = n_out > 1
                    lines.append(f"{var} = {callee}({call_args})")
                    progress = True

    for lcfg in cfg["layers"]:
        name = lcfg["name"]
        layer = km.get_layer(name)
        if lcfg["class_name"] == "InputLayer":
            c = lcfg["config"]
            var = _ident(name, taken)
            out_var[(name, 0)] = var
            multi[(name, 0)] = False
            lines.append(f"{var} = keras.Input(shape={_fmt(tuple(c['batch_shape'][1:]))}, "
                         f"dtype={_fmt(_dtype_name(c.get('dtype', 'float32')))}, name={name!r})")
            continue
        kwargs, exact = clean_config(type(layer), layer.get_config())
        cref = _class_ref(type(layer), imports)
        if exact:
            args = ", ".join(f"{k}={_fmt(v)}" for k, v in kwargs.items())
            ctor = f"{cref}({args})"
        else:
            ctor = f"{cref}.from_config({_fmt(kwargs)})"
        if getattr(layer, "transfer_skip", False) and layer.weights:
            skip.append(name)
            for j, w in enumerate(layer.weights):
                constants[f"{name}/{j}"] = np.asarray(keras.ops.convert_to_numpy(w.value))
        nodes = lcfg.get("inbound_nodes", [])
        kernel_nodes = [n for n in layer._inbound_nodes]
        lvar = None
        if len(nodes) != 1:
            lvar = _ident(name + "_layer", taken)
            lines.append(f"{lvar} = {ctor}")
        for i, node in enumerate(nodes):
            try:
                n_out = len(kernel_nodes[i].outputs) if i < len(kernel_nodes) else 1
            except Exception:  # noqa: BLE001
                n_out = 1
            pending.append((name, i, node, lvar or ctor, len(nodes), n_out))
        emit_ready()

    def io(spec):
        if spec and not isinstance(spec[0], list):
            spec = [spec]
        vs = []
        for name, node, idx in spec:
            v = out_var[(name, node)]
            vs.append(f"{v}[{idx}]" if multi[(name, node)] else v)
        return vs

    ins, outs = io(cfg["input_layers"]), io(cfg["output_layers"])
    in_s = ins[0] if len(ins) == 1 else "[" + ", ".join(ins) + "]"
    out_s = outs[0] if len(outs) == 1 else "[" + ", ".join(outs) + "]"
    body = "\n".join("    " + ln for ln in lines)
    src = (f"def {func_name}():\n"
           f"    \"\"\"The Keras recreation, one line per layer (named after the torch module path).\"\"\"\n"
           f"{body}\n"
           f"    return keras.Model({in_s}, {out_s}, name={km.name!r})\n")
    return src, imports, constants, skip


TEMPLATE = '''"""Keras recreation of {factory}, generated by `recreate scaffold`. Edit freely.

Run it to rebuild the Keras model, transfer the torch weights and verify parity:

    python {script} [--weights FILE] [--out model.keras]

Exit status 1 when parity fails.
"""

import argparse
import sys
from pathlib import Path

import recreate  # first: imports torch (and torchvision) before keras/tensorflow
import keras
import numpy as np
{imports}
from recreate.export import prepare_model

FACTORY = {factory!r}
INPUT_SHAPES = {shapes!r}
TOLERANCE = {tolerance!r}
# Layers whose tensors transfer_weights does not fill (model constants, layers made up for a
# functional call): their values are in the .npz file next to this script.
FIXED_LAYERS = {skip!r}
FIXED_VALUES = Path(__file__).with_suffix(".npz")


{model_src}

def fill_fixed_layers(km, torch_model):
    """Model constants ("const.<torch name>") come from the torch model itself; the rest from
    the .npz written with this script."""
    if not FIXED_LAYERS:
        return
    tensors = {{**dict(torch_model.named_parameters()), **dict(torch_model.named_buffers())}}
    with np.load(FIXED_VALUES) as values:
        for name in FIXED_LAYERS:
            layer = km.get_layer(name)
            layer.transfer_skip = True
            own = tensors.get(name[len("const."):]) if name.startswith("const.") else None
            for j, w in enumerate(layer.weights):
                if own is not None and len(layer.weights) == 1 and tuple(own.shape) == tuple(w.shape):
                    w.assign(own.detach().cpu().numpy().astype(w.dtype))
                else:
                    w.assign(values[f"{{name}}/{{j}}"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default={weights!r}, help="state dict (.safetensors/.pt); default: random weights, calibrated batch norm")
    ap.add_argument("--seed", type=int, default={seed!r})
    ap.add_argument("--tolerance", type=float, default=TOLERANCE)
    ap.add_argument("--out", help="save the Keras model here (.keras)")
    args = ap.parse_args(argv)

    torch_model, example, check = prepare_model(FACTORY, INPUT_SHAPES, args.weights, args.seed)
    km = build_keras_model()
    fill_fixed_layers(km, torch_model)
    transfer = recreate.transfer_weights(torch_model, km, strict=False)
    if transfer.unassigned_keras:
        raise SystemExit(f"Keras layers left without weights: {{transfer.unassigned_keras}}")
    report = recreate.verify(torch_model, km, check if len(check) > 1 else check[0], tolerance=args.tolerance)
    print(report)
    if args.out:
        km.save(args.out)
        print(f"saved {{args.out}}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
'''


def generate_script(factory: str, shapes: list[tuple], km, out_path, *, weights: str | None = None,
                    seed: int = 0, tolerance: float = 1e-4) -> list[str]:
    """Write the recreation script for the converted `km` of `factory`'s model to `out_path`
    (and its .npz of fixed tensors when needed). Returns the files written."""
    out_path = Path(out_path)
    model_src, imports, constants, skip = keras_model_source(km)
    text = TEMPLATE.format(
        factory=factory, script=out_path.name, imports="\n".join(sorted(imports)),
        shapes=[tuple(s) for s in shapes], tolerance=tolerance, skip=skip, model_src=model_src,
        weights=weights, seed=seed,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)
    written = [str(out_path)]
    if constants:
        np.savez(out_path.with_suffix(".npz"), **constants)
        written.append(str(out_path.with_suffix(".npz")))
    return written


def scaffold_command(args) -> int:
    """`recreate scaffold`: see `recreate scaffold --help`."""
    from .convert import convert
    from .export import parse_shape, prepare_model

    shapes = [parse_shape(s) for s in args.input_shape]
    print(f"[recreate] building and tracing {args.factory}", flush=True)
    model, example, _ = prepare_model(args.factory, shapes, args.weights, args.seed)
    km = convert(model, example if len(example) > 1 else example[0])
    files = generate_script(args.factory, shapes, km, args.out, weights=args.weights, seed=args.seed,
                            tolerance=args.tolerance)
    n = len(km.layers)
    print(f"[recreate] wrote {', '.join(files)} ({n} layers); run: python {args.out}", flush=True)
    return 0


def add_scaffold_parser(sub) -> None:
    from .export import _common_args

    p = sub.add_parser("scaffold", help="write an editable Keras recreation script for a torch model")
    _common_args(p)
    p.add_argument("--weights", help="state dict the generated script loads by default")
    p.add_argument("--out", required=True, help="the script to write (e.g. recreate_mymodel.py)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="the script's default parity tolerance")
