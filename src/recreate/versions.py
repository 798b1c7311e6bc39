"""`recreate versions`: what is running, and known-bad combinations."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import sys

#: The combination CI tests (constraints.txt holds the full lock).
TESTED = {"torch": "2.14.1", "torchvision": "0.29.1", "tensorflow-cpu": "2.21.0", "keras": "3.15.1"}
PACKAGES = ("torch", "torchvision", "tensorflow-cpu", "tensorflow", "keras", "numpy", "safetensors",
            "hypothesis", "timm", "h5py")


def installed() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _v(s: str | None) -> tuple[int, ...]:
    if not s:
        return ()
    parts = []
    for p in s.split("+")[0].split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def problems(v: dict[str, str | None] | None = None) -> list[str]:
    """Known-bad or risky combinations among the installed versions."""
    v = installed() if v is None else v
    out = []
    tf = v.get("tensorflow-cpu") or v.get("tensorflow")
    if v.get("torch") and v.get("torchvision") and tf:
        out.append(
            "torchvision + tensorflow: importing torchvision AFTER tensorflow segfaults (seen with "
            "torch 2.14.1 / torchvision 0.29.1 / tensorflow 2.21.0). `import recreate` first (it "
            "imports torch and torchvision before keras), or import torchvision before tensorflow."
        )
    from . import _backend

    if _backend.tensorflow_loaded_before_torchvision() and v.get("torchvision"):
        out.append("tensorflow was imported before recreate in this process: recreate did NOT import "
                   "torchvision, and importing it now would crash")
    if v.get("torch") and v.get("torchvision"):
        t, tv = _v(v["torch"]), _v(v["torchvision"])
        # torchvision 0.N pairs with torch 2.(N-15).
        if len(t) >= 2 and len(tv) >= 2 and t[0] == 2 and tv[1] != t[1] + 15:
            out.append(f"torch {v['torch']} with torchvision {v['torchvision']}: not a matching pair "
                       "(torchvision 0.N goes with torch 2.(N-15)); torchvision's ops will fail to load")
    if tf and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0" and _v(tf) >= (2, 21):
        out.append(
            f"tensorflow {tf} with oneDNN on: its CPU convolution returns zeros for some strided "
            "convs with one output position along a strided axis (measured: 1 input channel, "
            "stride (1, 2), output width 1). recreate's converters avoid that case; hand-written "
            "models can set TF_ENABLE_ONEDNN_OPTS=0"
        )
    if v.get("keras") and _v(v["keras"]) < (3, 13):
        out.append(f"keras {v['keras']}: recreate needs keras >= 3.13 (adaptive pooling with torch's bins)")
    if tf and v.get("numpy") and _v(v["numpy"]) >= (2,) and _v(tf) < (2, 18):
        out.append(f"numpy {v['numpy']} with tensorflow {tf}: tensorflow < 2.18 needs numpy < 2")
    if v.get("torch") and _v(v["torch"]) < (2, 4):
        out.append(f"torch {v['torch']}: torch.load(weights_only=True) and torch.export are too old; use torch >= 2.4")
    return out


def report() -> str:
    v = installed()
    lines = [f"python          {sys.version.split()[0]} ({platform.machine()}, {platform.system()})"]
    from . import __version__

    lines.append(f"recreate        {__version__}")
    for name in PACKAGES:
        if v[name] is None and name in ("tensorflow", "tensorflow-cpu"):
            continue
        tested = TESTED.get(name)
        mark = "" if tested is None or v[name] is None else (" (tested)" if v[name].split("+")[0] == tested else f" (tested: {tested})")
        lines.append(f"{name:<16}{v[name] or 'not installed'}{mark}")
    probs = problems(v)
    lines.append("")
    lines += [f"WARNING: {p}" for p in probs] if probs else ["no known-bad combination"]
    return "\n".join(lines)
