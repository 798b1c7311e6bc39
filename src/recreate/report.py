"""The end of every recreation script: prove parity on several inputs and write the result.

    report_code = recreate.report.prove_and_save("resnet18", torch_model, keras_model,
                                                 transfer, batches, out=Path("out"))
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(ap: argparse.ArgumentParser, *, tolerance: float = 1e-4, batches: int = 3) -> None:
    """The options every zoo script shares: --weights, --batches, --tolerance, --out."""
    ap.add_argument("--weights", help="checkpoint (.safetensors / .pt / .bin / index.json) with the torch model's names")
    ap.add_argument("--batches", type=int, default=batches, help="random input batches to verify on (>= 2)")
    ap.add_argument("--tolerance", type=float, default=tolerance,
                    help="max|keras - torch| / max(1, max|torch|) allowed per output")
    ap.add_argument("--out", type=Path, help="directory for <name>.keras, parity.md and parity.png")


def prove_and_save(name: str, torch_model, keras_model, transfer, batches, *, out: Path | None = None,
                   tolerance: float = 1e-4, layers="auto", informative: bool = True) -> int:
    """Check the reference is informative, verify on `batches`, print the reports, write
    `<out>/<name>.keras`, `parity.md` and `parity.png`; return the exit code (0 = parity)."""
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
    return 0 if report.passed else 1
