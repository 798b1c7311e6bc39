"""The end of every recreation script: prove parity on several inputs and write the result.

    report_code = recreate.report.prove_and_save("resnet18", torch_model, keras_model,
                                                 transfer, batches, out=Path("out"))

A SavedModel and a TFLite file are written too when asked, by the caller
(`prove_and_save(..., saved_model=..., tflite=...)`) or around it (`with exports(...)`,
which is how `recreate zoo run --saved-model/--tflite` reaches scripts that do not know
the options); each is loaded back in a fresh process and verified against torch.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
from pathlib import Path

_EXPORTS = contextvars.ContextVar("recreate_report_exports", default=None)


def add_arguments(ap: argparse.ArgumentParser, *, tolerance: float = 1e-4, batches: int = 3) -> None:
    """The options every zoo script shares: --weights, --batches, --tolerance, --out."""
    ap.add_argument("--weights", help="checkpoint (.safetensors / .pt / .bin / index.json) with the torch model's names")
    ap.add_argument("--batches", type=int, default=batches, help="random input batches to verify on (>= 2)")
    ap.add_argument("--tolerance", type=float, default=tolerance,
                    help="max|keras - torch| / max(1, max|torch|) allowed per output")
    ap.add_argument("--out", type=Path, help="directory for <name>.keras, parity.md and parity.png")


@contextlib.contextmanager
def exports(*, saved_model=None, tflite=None):
    """Within the block, every prove_and_save call that passes parity also writes a
    SavedModel to `saved_model` and/or a TFLite file to `tflite` (unless it names its own)
    and re-verifies them against torch. Yields a list that records the files written.

    Example::

        with recreate.report.exports(tflite="out/m.tflite") as written:
            resnet.main(["--size", "64"])   # written == ["out/m.tflite"] when parity held
    """
    written: list[str] = []
    token = _EXPORTS.set({"saved_model": saved_model, "tflite": tflite, "written": written})
    try:
        yield written
    finally:
        _EXPORTS.reset(token)


def prove_and_save(name: str, torch_model, keras_model, transfer, batches, *, out: Path | None = None,
                   tolerance: float = 1e-4, layers="auto", informative: bool = True,
                   saved_model=None, tflite=None) -> int:
    """Check the reference is informative, verify on `batches`, print the reports, write
    `<out>/<name>.keras`, `parity.md` and `parity.png`, and when parity holds the SavedModel /
    TFLite exports asked for (here or by an enclosing `exports`), each verified against torch
    on the first batch; return the exit code (0 = parity, exports included)."""
    import recreate
    from recreate.testing import assert_informative

    if transfer is not None:
        print(transfer.summary())
    batches = list(batches)
    if informative and len(batches) >= 2:
        assert_informative(torch_model, *batches[:2])
    report = recreate.verify(torch_model, keras_model, batches, tolerance=tolerance, layers=layers)
    print(report)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        keras_model.save(out / f"{name}.keras")
        md = (transfer.to_markdown() + "\n" if transfer is not None else "") + report.to_markdown()
        (out / "parity.md").write_text(md)
        report.plot(out / "parity.png")
        print(f"wrote {out / f'{name}.keras'}, parity.md, parity.png")
    requested = _EXPORTS.get() or {}
    saved_model = saved_model or requested.get("saved_model")
    tflite = tflite or requested.get("tflite")
    if not report.passed:
        if saved_model or tflite:
            print("parity failed: SavedModel/TFLite not written")
        return 1
    if not (saved_model or tflite):
        return 0
    reports = export_and_verify(torch_model, keras_model, batches[0], saved_model=saved_model, tflite=tflite,
                                tolerance=tolerance)
    requested.get("written", []).extend(reports)
    return 0 if all(r.passed for r in reports.values()) else 1


def export_and_verify(torch_model, keras_model, batch, *, saved_model=None, tflite=None, tolerance: float = 1e-4):
    """Write `keras_model` as a SavedModel directory and/or a TFLite file (recreate.export's
    writers, as `recreate convert` uses them), load both back in one fresh process, run them
    on `batch` (torch layout; given to the exports in the Keras model's layout) and compare
    with `torch_model`. Prints a verdict per file; returns {path: ParityReport}.

    Example::

        export_and_verify(tm, km, torch.randn(2, 3, 64, 64), tflite="out/resnet18.tflite")
    """
    from .export import _Replay, run_exported, save_saved_model, save_tflite
    from .transfer import to_numpy
    from .verify import _adapt_inputs, verify

    paths = []
    if saved_model:
        paths.append(save_saved_model(keras_model, saved_model))
    if tflite:
        res = save_tflite(keras_model, tflite)
        ops = ("WITH SELECT_TF_OPS (needs the Flex delegate at run time): " + res.builtin_error
               if res.select_tf_ops else "builtin ops only")
        print(f"TFLite: {ops} ({res.size_bytes} bytes)")
        paths.append(res.path)
    batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    feeds = _adapt_inputs(keras_model, [to_numpy(x) for x in batch], "auto")
    reports = {}
    for path, outs in run_exported(paths, feeds).items():
        reports[path] = verify(torch_model, _Replay(outs), batch, tolerance=tolerance, input_layout="torch",
                               layers=False)
        print(f"{path}: {reports[path]._verdict()}")
    return reports
