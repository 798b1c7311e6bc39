"""recreate: PyTorch models recreated in Keras 3, weights carried over exactly, parity proven.

    import recreate
    km = recreate.convert(torch_module, example_inputs)
    report = recreate.transfer_weights(torch_model, keras_model)
    result = recreate.verify(torch_model, keras_model, inputs)

`import recreate` imports torch (and torchvision when installed) before keras/tensorflow,
because importing torchvision after tensorflow crashes. Without torch installed, `recreate`
and `recreate.layers` still import, so converted models load and serve.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import (
    _backend,  # noqa: F401  (import order: torch before keras)
    layers,  # noqa: F401
)
from .checkpoint import load_state_dict
from .errors import (
    CheckpointError,
    ConversionError,
    ParityError,
    RecreateError,
    RegistryError,
    TorchNotAvailableError,
    TrainingModeError,
    TransferError,
    UnsupportedModuleError,
)
from .registry import Layers, Map, WeightRules, register, register_rules
from .transfer import TransferReport, transfer_weights

if _backend.HAVE_TORCH:
    from . import converters  # noqa: F401  (registers the built-in converters)

from .convert import convert
from .verify import ParityReport, verify

__all__ = [
    "CheckpointError", "ConversionError", "Layers", "Map", "ParityError", "ParityReport",
    "RecreateError", "RegistryError", "TorchNotAvailableError", "TrainingModeError",
    "TransferError", "TransferReport", "UnsupportedModuleError", "WeightRules", "convert",
    "layers", "load_state_dict", "register", "register_rules", "transfer_weights", "verify",
]
