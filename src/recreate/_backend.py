"""Import order and optional-dependency access.

torchvision's C extension segfaults when it is imported after tensorflow (torch 2.14.1 /
torchvision 0.29.1 / tensorflow 2.21.0). Importing recreate first therefore imports torch and,
when present, torchvision before keras pulls in tensorflow. Where torch is not installed (a
serving image) nothing here fails: only the conversion entry points need torch.
"""

from __future__ import annotations

import importlib
import os
import sys

from .errors import TorchNotAvailableError

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow prints INFO lines (oneDNN notices) at import; keep warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

_TENSORFLOW_LOADED_FIRST = "tensorflow" in sys.modules and "torchvision" not in sys.modules
_TENSORFLOW_BEFORE_TORCH = "tensorflow" in sys.modules and "torch" not in sys.modules

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # serving image without torch
    torch = None
    HAVE_TORCH = False

HAVE_TORCHVISION = False
if HAVE_TORCH and not _TENSORFLOW_LOADED_FIRST:
    try:
        import torchvision  # noqa: F401

        HAVE_TORCHVISION = True
    except Exception:  # noqa: BLE001 - a broken torchvision must not break recreate
        HAVE_TORCHVISION = False

import keras  # noqa: E402  (after torch on purpose)


def require_torch(what: str):
    """Return the torch module, or raise a clear error naming the entry point that needs it."""
    if not HAVE_TORCH:
        raise TorchNotAvailableError(
            f"{what} needs PyTorch, which is not installed here. Converted .keras models load "
            "without torch; install torch (pip install 'recreate[torch]') to convert."
        )
    return torch


def tensorflow_loaded_before_torch() -> bool:
    """True when tensorflow was imported before torch (torch's lazily imported parts, such as
    triton, may then crash): recreate avoids the paths that import them."""
    return _TENSORFLOW_BEFORE_TORCH


def tensorflow_loaded_before_torchvision() -> bool:
    """True when tensorflow was imported before recreate could import torchvision first."""
    return _TENSORFLOW_LOADED_FIRST


def optional(name: str):
    """Import an optional module or return None."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


__all__ = ["keras", "torch", "HAVE_TORCH", "HAVE_TORCHVISION", "require_torch", "optional"]
