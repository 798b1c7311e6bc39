"""recreate._memory: freed conversion temporaries go back to the OS in batches."""

import recreate  # noqa: F401  (import order: torch before tensorflow)
from recreate import _memory

import numpy as np


def test_releaser_trims_once_per_threshold(monkeypatch):
    calls = []
    monkeypatch.setattr(_memory, "release_free_memory", lambda: calls.append(1))
    r = _memory.Releaser(every=10)
    for nbytes in (3, 3, 3):
        r.add(nbytes)
    assert calls == []  # 9 bytes pending: below the threshold
    r.add(3)
    assert calls == [1]  # 12 >= 10: trimmed, pending reset
    r.add(9)
    assert calls == [1]
    r.add(25)
    assert calls == [1, 1]


def test_release_free_memory_is_safe_anywhere():
    _memory.release_free_memory()  # a no-op where glibc is not the allocator
    if _memory._trim is not None:
        assert _memory._trim(0) in (0, 1)


def test_layers_are_built_with_zeros_and_keep_their_initializer_config():
    """convert builds layers with zero initial weights (the transfer overwrites them all) and
    restores each layer's initializer settings, so the saved config is Keras's default."""
    import torch

    import keras

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                            torch.nn.Linear(16, 2)).eval()
    km = recreate.convert(m, torch.randn(1, 3, 4, 4))
    conv = km.get_layer("0")
    assert type(conv.kernel_initializer).__name__ == "GlorotUniform"
    assert type(km.get_layer("1").moving_variance_initializer).__name__ == "Ones"
    assert keras.layers.deserialize(keras.layers.serialize(conv)).get_config()["kernel_initializer"][
        "class_name"] == "GlorotUniform"
    assert np.allclose(km.get_layer("1").moving_variance.numpy(), m[1].running_var.numpy())
