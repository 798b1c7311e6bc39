"""Exports of a converted model, each re-verified against the TORCH model after loading back.

    save_keras(km, "m.keras")                  # + reload check in a fresh process, safe_mode=True
    save_saved_model(km, "m_savedmodel/")      # TensorFlow SavedModel, `serving_default`
    save_tflite(km, "m.tflite")                # builtin ops first, SELECT_TF_OPS only if needed
    report = verify_export(torch_model, "m.tflite", inputs)

Exported files are loaded back in a fresh Python process (no state shared with the
conversion: custom layers must come from `import recreate`), run on the given inputs, and
the outputs are compared with the torch model's with recreate.verify's error measure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._backend import keras
from .errors import RecreateError


class ExportError(RecreateError, RuntimeError):
    """An export could not be written or did not load back."""


@dataclass
class TFLiteResult:
    path: str
    select_tf_ops: bool  # True when builtin ops alone failed and TF ops were allowed
    builtin_error: str = ""  # why builtin ops alone failed
    size_bytes: int = 0


@dataclass
class ExportResult:
    path: str
    format: str
    notes: list[str] = field(default_factory=list)


# -- formats ---------------------------------------------------------------------------------

def export_format(path) -> str:
    """"keras", "saved_model" or "tflite", from the path."""
    p = Path(path)
    if p.suffix == ".keras":
        return "keras"
    if p.suffix == ".tflite":
        return "tflite"
    if p.is_dir() or p.suffix == "":
        return "saved_model"
    raise ExportError(f"cannot tell the export format of {str(p)!r}: use .keras, .tflite or a directory (SavedModel)")


def save_keras(km, path, *, check: bool = True, inputs=None) -> str:
    """Save `km` as a .keras file; with `check`, load it back in a fresh process with
    safe_mode=True after `import recreate` and make sure it computes what `km` does
    (on `inputs`, PyTorch-layout tensors/arrays as km takes them, or random ones)."""
    path = str(path)
    if not path.endswith(".keras"):
        raise ExportError(f"a Keras model file must end with .keras, got {path!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    km.save(path)
    if check:
        xs = _as_numpy_list(inputs) if inputs is not None else _random_inputs(km)
        want = _run_keras_model(km, xs)
        got = run_exported([path], xs)[path]
        _compare_same(want, got, path)
    return path


def save_saved_model(km, directory, input_signature=None) -> str:
    """Write a TensorFlow SavedModel with a `serving_default` signature (batch dimension
    dynamic). `input_signature`: a list of tf.TensorSpec, or None to take the model's input
    shapes and dtypes (with the batch axis left free)."""
    import tensorflow as tf

    directory = str(directory)
    if input_signature is None:
        input_signature = [tf.TensorSpec(shape=(None, *t.shape[1:]), dtype=t.dtype, name=f"input_{i}")
                           for i, t in enumerate(km.inputs)]
    if len(input_signature) == 1 and len(km.inputs) == 1:
        sig = input_signature
    else:
        sig = [list(input_signature)]  # keras.Model.export: one structure per call argument
    km.export(directory, format="tf_saved_model", input_signature=sig, verbose=False)
    loaded = tf.saved_model.load(directory)
    if "serving_default" not in loaded.signatures:
        raise ExportError(f"{directory}: SavedModel without a serving_default signature")
    return directory


def save_tflite(km, path, *, allow_select_tf_ops: bool = True) -> TFLiteResult:
    """Convert to TensorFlow Lite with builtin ops; only when that fails (and
    `allow_select_tf_ops`) retry with SELECT_TF_OPS, which the result reports (the runtime
    then needs the Flex delegate)."""
    import tensorflow as tf

    path = str(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sm = os.path.join(tmp, "saved_model")
        save_saved_model(km, sm)

        def convert(ops):
            conv = tf.lite.TFLiteConverter.from_saved_model(sm)
            conv.target_spec.supported_ops = ops
            return conv.convert()

        builtin_error = ""
        try:
            blob = convert([tf.lite.OpsSet.TFLITE_BUILTINS])
            select = False
        except Exception as e:  # noqa: BLE001 - the converter raises ConverterError and others
            builtin_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:500] if str(e).strip() else ''}"
            if not allow_select_tf_ops:
                raise ExportError(f"TFLite conversion with builtin ops failed: {builtin_error}") from e
            blob = convert([tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS])
            select = True
    Path(path).write_bytes(blob)
    return TFLiteResult(path, select, builtin_error, len(blob))


# -- running exported files ------------------------------------------------------------------

def _input_name(t, i: int) -> str:
    name = getattr(t, "name", None) or f"input_{i}"
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name.split(":")[0])


def _as_numpy_list(inputs) -> list[np.ndarray]:
    if isinstance(inputs, (list, tuple)):
        items = list(inputs)
    else:
        items = [inputs]
    out = []
    for x in items:
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        out.append(np.asarray(x))
    return out


def _random_inputs(km, batch: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    xs = []
    for t in km.inputs:
        shape = (batch, *t.shape[1:])
        if "int" in str(t.dtype):
            xs.append(rng.integers(0, 2, size=shape).astype(str(t.dtype)))
        else:
            xs.append(rng.standard_normal(shape).astype(str(t.dtype)))
    return xs


def _run_keras_model(km, xs: list[np.ndarray]) -> list[np.ndarray]:
    from .convert import flatten_outputs

    y = km(xs[0] if len(xs) == 1 else xs, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in flatten_outputs(y)]


def _compare_same(want, got, path) -> None:
    from .verify import error_stats

    if len(want) != len(got):
        raise ExportError(f"{path}: reloaded model returns {len(got)} outputs, the original {len(want)}")
    for i, (w, g) in enumerate(zip(want, got)):
        if w.shape != g.shape:
            raise ExportError(f"{path}: output {i} shape {g.shape} after reload, {w.shape} before")
        _, mab, _ = error_stats(g, w)
        if mab / max(1.0, float(np.abs(w).max()) if w.size else 0.0) > 1e-6:
            raise ExportError(f"{path}: reloaded model differs from the saved one (output {i}, max abs {mab:.3g})")


def load_and_run(path, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Load an exported model (.keras, SavedModel directory, .tflite) in THIS process and run
    it on `xs` (numpy arrays as the Keras model takes them); outputs in the model's order."""
    fmt = export_format(path)
    path = str(path)
    if fmt == "keras":
        import recreate  # noqa: F401  (registers recreate's layers for deserialization)

        from .trace import recursion_room

        with recursion_room(20_000):  # Keras rebuilds the graph recursively (see convert_traced)
            km = keras.saving.load_model(path, safe_mode=True)
        return _run_keras_model(km, xs)
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        fn = loaded.signatures["serving_default"]
        _, kw_spec = fn.structured_input_signature
        names = sorted(kw_spec, key=lambda k: _arg_index(kw_spec[k].name if kw_spec[k].name else k, k))
        if len(names) != len(xs):
            raise ExportError(f"{path}: serving_default takes {len(names)} inputs, {len(xs)} given")
        feeds = {n: tf.constant(x, dtype=kw_spec[n].dtype) for n, x in zip(names, xs)}
        out = fn(**feeds)
        return [np.asarray(out[k]) for k in sorted(out, key=_natural)]
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=path)
    ins = sorted(interp.get_input_details(), key=lambda d: d["index"])
    if len(ins) != len(xs):
        raise ExportError(f"{path}: TFLite model takes {len(ins)} inputs, {len(xs)} given")
    ins = _order_tflite_inputs(interp, ins)
    for d, x in zip(ins, xs):
        interp.resize_tensor_input(d["index"], list(x.shape), strict=False)
    interp.allocate_tensors()
    for d, x in zip(ins, xs):
        interp.set_tensor(d["index"], x.astype(d["dtype"]))
    interp.invoke()
    runner_outs = _order_tflite_outputs(interp)
    return [np.asarray(interp.get_tensor(d["index"])) for d in runner_outs]


def _natural(k: str):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)]


def _arg_index(spec_name: str, key: str):
    # Keras export names inputs after the Keras inputs; keep the model's order via the
    # structured signature where possible, else natural order of the names.
    return _natural(key)


def _order_tflite_inputs(interp, ins):
    try:
        runner = interp.get_signature_runner()
        sig = interp.get_signature_list()
        key = next(iter(sig))
        names = sig[key]["inputs"]
        details = runner.get_input_details()
        by_index = {d["index"]: d for d in ins}
        ordered = [by_index[details[n]["index"]] for n in sorted(names, key=_natural)]
        return ordered
    except Exception:  # noqa: BLE001 - no signature: tensor order
        return ins


def _order_tflite_outputs(interp):
    outs = interp.get_output_details()
    try:
        sig = interp.get_signature_list()
        key = next(iter(sig))
        runner = interp.get_signature_runner(key)
        details = runner.get_output_details()
        by_index = {d["index"]: d for d in outs}
        return [by_index[details[n]["index"]] for n in sorted(details, key=_natural)]
    except Exception:  # noqa: BLE001
        return sorted(outs, key=lambda d: d["index"])


def run_exported(paths, xs: list[np.ndarray], *, fresh_process: bool = True) -> dict[str, list[np.ndarray]]:
    """Load each exported file and run it on `xs`; by default in ONE fresh Python process
    that imports only recreate (then TensorFlow), as a serving process would."""
    paths = [str(p) for p in paths]
    if not fresh_process:
        return {p: load_and_run(p, xs) for p in paths}
    with tempfile.TemporaryDirectory() as tmp:
        fin = os.path.join(tmp, "in.npz")
        np.savez(fin, *xs)
        outs = {p: os.path.join(tmp, f"out{i}.npz") for i, p in enumerate(paths)}
        job = os.path.join(tmp, "job.json")
        Path(job).write_text(json.dumps({"inputs": fin, "outputs": outs}))
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        src = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.run([sys.executable, "-m", "recreate.export", job], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise ExportError(f"loading {paths} in a fresh process failed:\n{proc.stderr[-3000:]}")
        result = {}
        for p, f in outs.items():
            with np.load(f) as z:
                result[p] = [z[f"arr_{i}"] for i in range(len(z.files))]
        return result


def verify_export(torch_model, path, inputs, *, tolerance: float = 1e-4, fresh_process: bool = True):
    """Load the exported model at `path` back (fresh process by default), run it on `inputs`
    (PyTorch layout, as for recreate.verify) and compare with the TORCH model: a
    recreate.ParityReport, the same error measure and verdict as recreate.verify."""
    return verify_exports(torch_model, [path], inputs, tolerance=tolerance, fresh_process=fresh_process)[str(path)]


def verify_exports(torch_model, paths, inputs, *, tolerance: float = 1e-4, fresh_process: bool = True) -> dict:
    """verify_export for several files with one fresh process: {path: ParityReport}."""
    from .verify import verify

    xs = _as_numpy_list(inputs)
    outs = run_exported(paths, xs, fresh_process=fresh_process)
    feed = tuple(xs) if len(xs) > 1 else xs[0]
    return {p: verify(torch_model, _Replay(o), feed, tolerance=tolerance, input_layout="torch", layers=False)
            for p, o in outs.items()}


class _Replay:
    """Stands in for a Keras model in recreate.verify: returns outputs computed elsewhere."""

    def __init__(self, outputs):
        self.outputs = outputs

    def __call__(self, *args, **kwargs):
        return list(self.outputs)


def parse_shape(text: str) -> tuple[int, ...]:
    """"1,3,224,224" -> (1, 3, 224, 224)."""
    try:
        shape = tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError as e:
        raise ValueError(f"--input-shape must be comma-separated integers like 1,3,224,224, got {text!r}") from e
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"--input-shape must be positive integers, got {text!r}")
    return shape


def load_factory(spec: str):
    """"package.module:factory" -> the callable (the current directory is importable, as
    with `python -m`)."""
    import importlib

    if ":" not in spec:
        raise ValueError(f"expected package.module:factory, got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj = importlib.import_module(mod_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{spec}: {getattr(obj, '__name__', obj)!s} has no attribute {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj


def prepare_model(spec: str, shapes: list[tuple], weights: str | None = None, seed: int = 0):
    """Build the torch model from its factory; load `weights` (strict) or randomise the
    weights and calibrate batch norm so parity is meaningful; eval mode. Returns
    (model, example inputs, verification inputs)."""
    import torch

    from .checkpoint import load_state_dict
    from .testing import calibrate_batchnorm_, randomize_

    torch.manual_seed(seed)
    model = load_factory(spec)()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module")
    g = torch.Generator().manual_seed(seed)
    calib = tuple(torch.randn(s, generator=g) for s in shapes)
    check = tuple(torch.randn(s, generator=g) for s in shapes)
    if weights:
        sd = load_state_dict(weights)
        sd = {k: (v.materialize() if hasattr(v, "materialize") else v) for k, v in sd.items()}
        sd = {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))) for k, v in sd.items()}
        model.load_state_dict(sd, strict=True)
        model.eval()
    else:
        randomize_(model, seed)
        calibrate_batchnorm_(model, *calib)
    return model.eval(), calib, check


def convert_command(args) -> int:
    """`recreate convert`: see `recreate convert --help`. Exit status 0 when the model and
    every export pass, 1 when parity fails, 2 when conversion or export raises."""
    from .errors import RecreateError

    try:
        return _convert_command(args)
    except (RecreateError, ImportError, ValueError, TypeError) as e:
        print(f"[recreate] ERROR: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 2


def _convert_command(args) -> int:
    import time

    from .convert import convert
    from .verify import verify

    def step(msg):
        print(f"[recreate] {msg}", flush=True)

    shapes = [parse_shape(s) for s in args.input_shape]
    t0 = time.time()
    step(f"building {args.factory} ({'weights ' + args.weights if args.weights else 'random weights, calibrated batch norm'})")
    model, example, check = prepare_model(args.factory, shapes, args.weights, args.seed)
    bar = _progress(2)
    bar.set_description("convert")
    km = convert(model, example if len(example) > 1 else example[0])
    bar.update(1)
    bar.set_description("verify")
    report = verify(model, km, check if len(check) > 1 else check[0], tolerance=args.tolerance)
    bar.update(1)
    bar.close()
    print(report, flush=True)
    ok = report.passed
    paths = []
    if args.out:
        step(f"writing {args.out}")
        save_keras(km, args.out, check=False)  # reloaded and verified in a fresh process below
        paths.append(args.out)
    if args.saved_model:
        step(f"writing SavedModel {args.saved_model}")
        save_saved_model(km, args.saved_model)
        paths.append(args.saved_model)
    if args.tflite:
        step(f"writing {args.tflite}")
        res = save_tflite(km, args.tflite)
        if res.select_tf_ops:
            step(f"TFLite: builtin ops were not enough ({res.builtin_error}); "
                 "converted WITH SELECT_TF_OPS (needs the Flex delegate at run time)")
        else:
            step(f"TFLite: builtin ops only ({res.size_bytes} bytes)")
        paths.append(args.tflite)
    if paths and not ok:
        step("parity failed: exports written but not re-verified")
    elif paths:
        step("loading the exports back in a fresh process and verifying against torch")
        for p, rep in verify_exports(model, paths, check if len(check) > 1 else check[0],
                                     tolerance=args.tolerance).items():
            print(f"\n== {p} ({export_format(p)}) ==\n{rep._verdict()}", flush=True)
            ok = ok and rep.passed
    step(f"{'PASS' if ok else 'FAIL'} in {time.time() - t0:.1f} s")
    return 0 if ok else 1


def _progress(total: int):
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, file=sys.stderr, leave=False)
    except ImportError:  # pragma: no cover
        class _Null:
            def update(self, n=1): pass
            def set_description(self, s): print(f"[recreate] {s}", file=sys.stderr)
            def close(self): pass
        return _Null()


def add_convert_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert a torch model (package.module:factory) to Keras, verify, export")
    _common_args(p)
    p.add_argument("--weights", help="a .safetensors / .pt / .bin state dict to load (strict); "
                   "without it weights are randomised and batch norm calibrated so parity means something")
    p.add_argument("--out", required=True, help="write the Keras model here (.keras)")
    p.add_argument("--saved-model", help="also write a TensorFlow SavedModel to this directory")
    p.add_argument("--tflite", help="also write a TensorFlow Lite file")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="max |keras - torch| / max(1, max|torch|) per output (default 1e-4)")


def _common_args(p) -> None:
    p.add_argument("factory", help="package.module:factory, a callable returning a torch.nn.Module "
                   "(e.g. torchvision.models:resnet18)")
    p.add_argument("--input-shape", action="append", required=True,
                   help="input shape in PyTorch layout with batch, e.g. 1,3,224,224; repeat for several inputs")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights and inputs")


def _main(job_file: str) -> int:
    import recreate  # noqa: F401  (torch first, then keras; registers recreate's layers)

    job = json.loads(Path(job_file).read_text())
    with np.load(job["inputs"]) as z:
        xs = [z[f"arr_{i}"] for i in range(len(z.files))]
    for path, out in job["outputs"].items():
        np.savez(out, *load_and_run(path, xs))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
