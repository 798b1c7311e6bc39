"""Typed errors. Each names the module path, what was expected and found, and what to do."""

from __future__ import annotations


class RecreateError(Exception):
    """Base class of every error recreate raises on purpose."""


class TorchNotAvailableError(RecreateError, ImportError):
    """A conversion entry point was called where torch is not installed."""


class RegistryError(RecreateError):
    """Misuse of the registry (duplicate registration, bad arguments)."""


class UnsupportedModuleError(RecreateError, NotImplementedError):
    """No converter is registered for a torch module type."""

    def __init__(self, path: str, module_type: type, detail: str = ""):
        self.path = path
        self.module_type = module_type
        qual = f"{module_type.__module__}.{module_type.__qualname__}"
        where = f"module '{path}'" if path else "the root module"
        msg = (
            f"{where} of type {qual} has no registered converter. Register one with "
            f"@recreate.register({module_type.__qualname__}) returning a keras.Layer "
            "(see README 'recreate your own model'), or recreate it by hand and fill it "
            "with recreate.transfer_weights()."
        )
        if detail:
            msg += f" {detail}"
        super().__init__(msg)


class TransferError(RecreateError, ValueError):
    """Weights could not be transferred; no Keras variable was changed."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        head = f"weight transfer refused ({len(self.problems)} problem(s)); no Keras variable was changed:"
        super().__init__("\n  - ".join([head, *self.problems]))


class TrainingModeError(RecreateError, RuntimeError):
    """A torch model in training mode was given where eval semantics are needed."""


class ParityError(RecreateError, AssertionError):
    """Outputs differ beyond tolerance."""


class CheckpointError(RecreateError, ValueError):
    """A checkpoint file could not be read safely."""


class ConversionError(RecreateError, ValueError):
    """A module's configuration cannot be represented by the converter."""


class UntraceableError(RecreateError, RuntimeError):
    """Part of the model could not be captured (data-dependent Python control flow, an
    unsupported construct): the message names the module path and the user's source line."""


class UnsupportedOpError(RecreateError, NotImplementedError):
    """An operation between registered modules has no op converter."""
