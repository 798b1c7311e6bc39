"""Checkpoints through the public API: every format gives the same Keras weights; pickled
code is refused without running; corrupt files give clear errors."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import recreate
from tests.test_transfer import keras_small, torch_small


def _weights(km):
    return [np.array(v.numpy()) for v in km.weights]


@pytest.fixture(scope="module")
def reference():
    tm = torch_small()
    km = keras_small()
    recreate.transfer_weights(tm, km)
    return tm, _weights(km)


def _check(path, reference):
    tm, want = reference
    km = keras_small()
    recreate.transfer_weights(path, km)  # a path goes straight in
    for a, b in zip(_weights(km), want):
        np.testing.assert_array_equal(a, b)
    assert set(recreate.load_state_dict(path)) == set(tm.state_dict())


def test_safetensors(tmp_path, reference):
    p = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in reference[0].state_dict().items()}, str(p))
    _check(p, reference)
    lazy = recreate.load_state_dict(p, lazy=True)["conv1.weight"]
    assert lazy.shape == (8, 3, 3, 3) and lazy.dtype == "float32"
    # The default gives real tensors a torch model accepts.
    tm = torch_small()
    tm.load_state_dict(recreate.load_state_dict(p))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_torch_formats_and_wrapped(tmp_path, reference, suffix):
    p = tmp_path / f"m{suffix}"
    torch.save(reference[0].state_dict(), p)
    _check(p, reference)
    w = tmp_path / f"wrapped{suffix}"
    torch.save({"state_dict": reference[0].state_dict(), "epoch": 3}, w)
    _check(w, reference)


def test_sharded_index(tmp_path, reference):
    sd = reference[0].state_dict()
    keys = sorted(sd)
    shards = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2 :]}
    for name, ks in shards.items():
        save_file({k: sd[k].contiguous() for k in ks}, str(tmp_path / name))
    index = {"metadata": {}, "weight_map": {k: n for n, ks in shards.items() for k in ks}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    _check(tmp_path / "model.safetensors.index.json", reference)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    _Evil.marker = str(tmp_path / "pwned")
    p = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "payload": _Evil()}, p)
    with pytest.raises(recreate.CheckpointError, match="pickled code") as e:
        recreate.load_state_dict(p)
    assert "re-save" in str(e.value)
    assert not os.path.exists(_Evil.marker)
    raw = tmp_path / "evil.pkl.bin"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(recreate.CheckpointError):
        recreate.load_state_dict(raw)
    assert not os.path.exists(_Evil.marker)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_files(tmp_path, reference, suffix):
    p = tmp_path / f"m{suffix}"
    if suffix == ".pt":
        torch.save(reference[0].state_dict(), p)
    else:
        save_file({k: v.contiguous() for k, v in reference[0].state_dict().items()}, str(p))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(recreate.CheckpointError, match="truncated|corrupt|unreadable|readable"):
        dict(recreate.load_state_dict(p))
    with pytest.raises(recreate.CheckpointError, match="no such file"):
        recreate.load_state_dict(tmp_path / "missing.pt")
