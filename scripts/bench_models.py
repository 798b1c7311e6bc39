"""Inference speed of converted models against PyTorch eager, ONNX Runtime and native Keras.

    python scripts/bench_models.py --models resnet50,mobilenet_v2,vit_b_16 --batches 1,8 --repeats 20 --markdown

In one process on the same inputs, for each torchvision model (random weights, batch norm
statistics calibrated on random data, eval mode) and batch (224x224):
  torch       PyTorch eager under torch.inference_mode
  conv-graph  recreate.convert(model, x) (io_layout="torch": takes NCHW like torch) under
              tf.function(jit_compile=False)
  conv-xla    the same under tf.function(jit_compile=True)
  onnxrt      ONNX Runtime (CPU) on torch.onnx.export(..., dynamo=False) of the same model,
              default threads, intra-op spinning off (so it does not starve the runtime timed next)
  keras-graph / keras-xla   keras.applications' ResNet50 / MobileNetV2 (weights=None,
              classifier_activation=None, NHWC input) where Keras ships the architecture.
Timing: --warmup calls each, then --repeats rounds; each round calls every runtime once, in
a fresh random order, so machine noise hits all alike and no runtime always follows the same
other one (torch's OpenMP threads keep spinning after a call and slow whatever runs next);
the median (and min) per runtime is reported with its ratio to native Keras graph mode and
to torch eager. Outputs are checked once: max|y - torch| / max(1, max|torch|) <= 1e-4.
Conversion (measured in a fresh child process per model, after a tiny warm-up conversion pays
TF's one-time start-up): wall and CPU time of the whole recreate.convert call (trace, build,
weight transfer). Memory: the kernel's RSS high-water mark (VmHWM in /proc/self/status, the
counter getrusage's ru_maxrss reads, but resettable), reset before the call by writing 5 to
/proc/self/clear_refs; "peak" = torch weights + (high-water during convert - RSS before it),
compared with torch weights + Keras weights (target < 1.5x).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time

import recreate  # first: imports torch and torchvision before tensorflow
import torch
import torchvision
from recreate._memory import release_free_memory
from recreate.testing import calibrate_batchnorm_, randomize_

import keras
import numpy as np
import tensorflow as tf

NATIVE = {"resnet50": "ResNet50", "mobilenet_v2": "MobileNetV2"}


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1)) * 1024


def torch_model(name: str):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    randomize_(model, 0)
    calibrate_batchnorm_(model, torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    return model.eval()


def measure_convert(name: str):
    """Child process (fresh heap, so freed pages of other models do not hide new ones): print
    wall s, CPU s, extra peak RSS bytes, torch and Keras weight bytes of one convert call."""
    model = torch_model(name)
    # TensorFlow's one-time start-up is paid outside the measurement: a tiny conversion (kernel
    # caches), then one op big enough to run on the intra-op thread pool (its first use grew
    # RSS by 16 MB beyond the 8 MB result, measured); the freed memory goes back to the OS
    # first, so that the conversion cannot reuse it unseen.
    recreate.convert(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval(),
                     torch.randn(1, 3, 4, 4))
    big = tf.random.stateless_uniform((2000, 1000), seed=[1, 2])
    del big
    gc.collect()
    release_free_memory()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    base, t0, c0 = _status("VmRSS"), time.perf_counter(), time.process_time()
    km = recreate.convert(model, torch.randn(1, 3, 224, 224))
    t1, c1, peak = time.perf_counter(), time.process_time(), _status("VmHWM")
    print(json.dumps([t1 - t0, c1 - c0, peak - base, torch_bytes(model), keras_bytes(km)]))


def torch_bytes(m) -> int:
    return sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])


def keras_bytes(km) -> int:
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in km.weights)


def graph_fn(km, xla: bool):
    f = tf.function(lambda x: km(x, training=False), jit_compile=xla)
    return lambda x: f(x).numpy()


def onnx_session(model, x):
    import onnxruntime as ort

    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17)
    opts = ort.SessionOptions()  # idle workers sleep: spinning ones steal a core from the next runtime
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def rel_err(y, ref) -> float:
    return float(np.max(np.abs(y - ref)) / max(1.0, float(np.max(np.abs(ref)))))


def bench(runners: dict, inputs: dict, warmup: int, repeats: int) -> dict:
    for name, fn in runners.items():
        for _ in range(warmup):
            fn(inputs[name])
    times = {name: [] for name in runners}
    names = list(runners)
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(names)  # a fresh order each round: no runtime always runs right after another
        for name in names:
            t0 = time.perf_counter()
            runners[name](inputs[name])
            times[name].append(time.perf_counter() - t0)
    return {name: (1e3 * statistics.median(ts), 1e3 * min(ts)) for name, ts in times.items()}


def run_model(name: str, args, rows: list, conv_rows: list):
    child = subprocess.run([sys.executable, __file__, "--measure-convert", name], capture_output=True, text=True,
                           check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    secs, cpu, extra, wt, wk = json.loads(child.stdout.strip().splitlines()[-1])
    model = torch_model(name)
    x1 = torch.randn(1, 3, 224, 224)
    km = recreate.convert(model, x1)
    transposes = sum(type(lyr).__name__ == "Permute" or getattr(lyr, "fn", None) == "transpose" for lyr in km.layers)
    conv_rows.append((name, secs, cpu, wt, wk, extra, (wt + extra) / (wt + wk), len(km.layers), transposes))
    conv = {"conv-graph": graph_fn(km, False), "conv-xla": graph_fn(km, True)}
    native = {}
    if name in NATIVE:
        nk = getattr(keras.applications, NATIVE[name])(weights=None, input_shape=(224, 224, 3),
                                                        classifier_activation=None)
        native = {"keras-graph": graph_fn(nk, False), "keras-xla": graph_fn(nk, True)}
    ort_fn = None if args.no_onnx else onnx_session(model, x1)
    for b in args.batches:
        xt = torch.randn(b, 3, 224, 224, generator=torch.Generator().manual_seed(10 + b))
        x_nchw = xt.numpy()
        x_nhwc = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))

        def torch_fn(x):
            with torch.inference_mode():
                return model(x).numpy()

        runners = {"torch": torch_fn, **conv}
        inputs = {"torch": xt, "conv-graph": tf.constant(x_nchw), "conv-xla": tf.constant(x_nchw)}
        if ort_fn is not None:
            runners["onnxrt"], inputs["onnxrt"] = ort_fn, x_nchw
        for k, fn in native.items():
            runners[k], inputs[k] = fn, tf.constant(x_nhwc)
        ref = torch_fn(xt)
        try:
            conv["conv-graph"](inputs["conv-graph"])
        except Exception as e:  # noqa: BLE001 - a batch-specific conversion: report it, convert again
            why = next((ln for ln in str(e).splitlines() if "hape" in ln), str(e)[:80])
            why = re.sub(r".\[[0-9;]*m", "", why).strip()[:150]  # Keras' bold escape codes
            print(f"{name}: the model converted at batch 1 fails at batch {b} ({type(e).__name__}: {why}); "
                  f"converting again at batch {b}", flush=True)
            kb = recreate.convert(model, xt)
            conv = {"conv-graph": graph_fn(kb, False), "conv-xla": graph_fn(kb, True)}
            runners.update(conv)
        errs = {k: rel_err(runners[k](inputs[k]), ref) for k in ("conv-graph", "conv-xla", "onnxrt") if k in runners}
        print(f"{name} b={b} rel. max error vs torch: "
              + ", ".join(f"{k} {v:.2e}{'' if v <= 1e-4 else ' FAIL'}" for k, v in errs.items()), flush=True)
        ms = bench(runners, inputs, args.warmup, args.repeats)
        base_k = ms.get("keras-graph", (None,))[0]
        for k, (v, lo) in ms.items():
            rows.append((name, b, k, v, lo, v / base_k if base_k else None, v / ms["torch"][0], errs.get(k)))
            print(f"  {k:12s} {v:9.2f} ms (min {lo:.2f})", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="resnet50,mobilenet_v2,vit_b_16")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--markdown", action="store_true", help="print the results as Markdown tables")
    p.add_argument("--measure-convert", metavar="MODEL", help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    if args.measure_convert:
        return measure_convert(args.measure_convert)
    args.batches = [int(b) for b in args.batches.split(",")]
    import platform

    versions = f"torch {torch.__version__}, torchvision {torchvision.__version__}, tensorflow {tf.__version__}, keras {keras.__version__}"
    if not args.no_onnx:
        import onnx
        import onnxruntime

        versions += f", onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}"
    threads = (f"torch threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}), TF intra/inter "
               f"{tf.config.threading.get_intra_op_parallelism_threads()}/{tf.config.threading.get_inter_op_parallelism_threads()}"
               f" (0 = TF default), cpus {os.cpu_count()}, {platform.processor() or platform.machine()}")
    print(versions, "\n" + threads, flush=True)
    rows, conv_rows = [], []
    for name in args.models.split(","):
        run_model(name, args, rows, conv_rows)
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    if args.markdown:
        print(f"\n{versions}; {threads}; median of {args.repeats} interleaved rounds\n")
        print("| model | batch | runtime | median ms | min ms | / native Keras graph | / torch eager | rel. max error vs torch |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {f(r[5], '.2f')} | {r[6]:.2f} | {f(r[7], '.1e')} |")
        print("\n| model | convert wall s | convert CPU s | torch weights MB | Keras weights MB | extra peak RSS MB | peak / (torch+Keras weights) | Keras layers | transposes |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n, s, cpu, wt, wk, ex, ratio, nl, nt in conv_rows:
            print(f"| {n} | {s:.2f} | {cpu:.2f} | {wt / 2**20:.1f} | {wk / 2**20:.1f} | {ex / 2**20:.1f} | {ratio:.2f} | {nl} | {nt} |")
    else:
        for n, s, cpu, wt, wk, ex, ratio, nl, nt in conv_rows:
            print(f"{n}: convert {s:.2f} s (CPU {cpu:.2f} s), weights torch {wt / 2**20:.1f} MB + keras {wk / 2**20:.1f} MB, extra peak RSS "
                  f"{ex / 2**20:.1f} MB, peak/(weights) {ratio:.2f}, {nl} layers, {nt} transposes")


if __name__ == "__main__":
    main()
