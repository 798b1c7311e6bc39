"""The torch side of a recreation script: a reference model worth comparing against, and
the random input batches it is compared on.

    tm = reference_model(torchvision.models.resnet18(weights=None), weights, calibrate=(8, 3, 224, 224))
    batches = random_batches((2, 3, 224, 224), count=3)
"""

from __future__ import annotations

from collections.abc import Mapping


def reference_model(model, weights=None, *, calibrate=None, seed: int = 0):
    """Make `model` (a torch.nn.Module, changed in place) a parity reference and return it in
    eval mode.

    With `weights` (a checkpoint path for recreate.load_state_dict, or a state dict) they are
    loaded strictly. Without, every parameter and floating buffer gets random values
    (`randomize_(model, seed)`: default initialisations such as zero heads or unit batch-norm
    statistics hide mistakes) and, when `calibrate` gives an input shape (or a list of
    shapes, one per forward() argument), batch norm takes its running statistics from one
    standard-normal batch of that shape drawn with seed + 1, which keeps a deep network's
    activations O(1) where independent random statistics would not.

    Example::

        tm = reference_model(torchvision.models.resnet18(weights=None), calibrate=(8, 3, 64, 64))
    """
    import torch

    from .cases import calibrate_batchnorm_, randomize_

    if weights is not None:
        if not isinstance(weights, Mapping):
            from ..checkpoint import load_state_dict

            weights = load_state_dict(weights)
        model.load_state_dict(dict(weights))
        return model.eval()
    randomize_(model, seed)
    if calibrate is not None:
        shapes = [calibrate] if isinstance(calibrate[0], int) else list(calibrate)
        g = torch.Generator().manual_seed(seed + 1)
        calibrate_batchnorm_(model, *(torch.randn(tuple(s), generator=g) for s in shapes))
    return model.eval()


def random_batches(shape, count: int = 3, *, seed: int = 1234) -> list:
    """`count` (at least 2, as recreate.report.prove_and_save's informativeness check needs
    two) standard-normal float32 torch tensors of `shape`, from a generator seeded with `seed`.

    Example::

        batches = random_batches((2, 3, 64, 64), count=3)   # three different (2, 3, 64, 64) batches
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randn(tuple(shape), generator=g) for _ in range(max(2, int(count)))]
