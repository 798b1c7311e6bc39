"""Safe checkpoint loading: safetensors (memory-mapped, lazy), .pt/.pth/.bin with
weights_only=True (never arbitrary pickles), and Hugging Face sharded index files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from .errors import CheckpointError

_ST_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}


class LazyTensor:
    """Shape and dtype known without reading the data; `materialize()` reads it."""

    __slots__ = ("shape", "dtype", "_load")

    def __init__(self, shape, dtype: str, load):
        self.shape = tuple(shape)
        self.dtype = dtype
        self._load = load

    def materialize(self):
        return self._load()

    def __repr__(self) -> str:
        return f"LazyTensor(shape={self.shape}, dtype={self.dtype})"


class LazyStateDict(Mapping):
    """A read-only state dict over one or more safetensors files, read tensor by tensor."""

    def __init__(self, files: dict[str, str]):
        self._key_to_file = files  # key -> path
        self._handles: dict[str, object] = {}

    def _handle(self, path: str):
        if path not in self._handles:
            from safetensors import safe_open

            try:
                self._handles[path] = safe_open(path, framework="pt")
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(f"{path}: not a readable safetensors file ({e}); re-download or re-save it") from e
        return self._handles[path]

    def __getitem__(self, key: str) -> LazyTensor:
        path = self._key_to_file[key]
        h = self._handle(path)
        sl = h.get_slice(key)
        return LazyTensor(sl.get_shape(), _ST_DTYPES.get(sl.get_dtype(), sl.get_dtype().lower()),
                          lambda: h.get_tensor(key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._key_to_file)

    def __len__(self) -> int:
        return len(self._key_to_file)


def load_state_dict(path: str | os.PathLike, *, lazy: bool = False) -> Mapping:
    """Load a checkpoint's tensors safely, without running any pickled code.

    `.safetensors` files (and `.safetensors.index.json` Hugging Face shards) are memory-mapped;
    `.pt`/`.pth`/`.bin` go through torch.load(weights_only=True) and a checkpoint that needs
    pickled code is refused. A {"state_dict": {...}} or {"model": {...}} wrapper is unwrapped.
    Returns name -> torch.Tensor, ready for `torch_model.load_state_dict(...)`; with
    `lazy=True`, safetensors entries are `LazyTensor`s (shape and dtype known, data read on
    `materialize()`), which is how `transfer_weights` reads a path one tensor at a time.

    Example::

        state = recreate.load_state_dict("resnet18.safetensors")
        recreate.transfer_weights(state, keras_model)
    """
    out = _load(path)
    if lazy or not isinstance(out, LazyStateDict):
        return out
    return {k: out[k].materialize() for k in out}


def _load(path) -> Mapping:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    name = p.name.lower()
    if name.endswith(".index.json"):
        try:
            index = json.loads(p.read_text())
            weight_map = index["weight_map"]
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{p}: not a sharded-checkpoint index (expected a 'weight_map'): {e}") from e
        files = {k: str(p.parent / f) for k, f in weight_map.items()}
        missing = sorted({f for f in files.values() if not Path(f).exists()})
        if missing:
            raise CheckpointError(f"{p}: shard file(s) missing: {missing}")
        if all(f.endswith(".safetensors") for f in files.values()):
            return LazyStateDict(files)
        out = {}
        for f in sorted(set(files.values())):
            out.update(_load(f))
        return out
    if name.endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                keys = list(f.keys())
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{p}: not a readable safetensors file ({e}); it may be truncated") from e
        return LazyStateDict({k: str(p) for k in keys})
    return _load_torch(p)


def _load_torch(p: Path) -> dict:
    from ._backend import require_torch

    torch = require_torch("load_state_dict for .pt/.pth/.bin")
    import pickle

    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True, mmap=_is_zip(p))
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{p}: refused to load: the checkpoint needs pickled code to load (weights_only=True "
            f"rejected it: {str(e).splitlines()[0][:200]}). Never unpickle an untrusted file. If you "
            "trust its source, load it in a separate process and re-save only the tensors: "
            "torch.save(model.state_dict(), 'clean.pt') or safetensors.torch.save_file(...)."
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{p}: unreadable checkpoint ({type(e).__name__}: {str(e)[:200]}); it may be truncated or corrupt") from e
    return _unwrap(obj, p)


def _is_zip(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _unwrap(obj, p: Path) -> dict:
    import torch

    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict", "module"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
    raise CheckpointError(
        f"{p}: holds a {type(obj).__name__}, not a state dict of tensors; save model.state_dict()"
    )
