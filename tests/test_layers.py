"""recreate.layers: config round trip and .keras save/load with safe_mode=True."""

import subprocess
import sys

import recreate
import torch
from recreate import layers as rl
from torch import nn

import keras
import numpy as np
import pytest

LAYERS = [
    rl.Flatten(2, -1),
    rl.Pad((1, 2, 0, -1), mode="reflect"),
    rl.Pad((1, 1), mode="constant", value=float("-inf")),
    rl.BatchStatNormalization(epsilon=1e-3, center=False),
    rl.Subsample((2, 3)),
    rl.AdaptivePooling((3, None), mode="avg"),
    rl.ConvTranspose(4, (3, 2), strides=(2, 1), padding=(1, 0), output_padding=(1, 0), dilation_rate=(1, 2),
                     groups=2, use_bias=False),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda lyr: type(lyr).__name__)
def test_config_round_trip(layer):
    cfg = layer.get_config()
    again = type(layer).from_config(cfg)
    assert again.get_config() == cfg
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == cfg


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_matches_torch_including_negative(mode):
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6)).astype("float32")
    pad = (2, -1, 1, 3) if mode != "circular" else (2, -1, 1, 3)
    ref = torch.nn.functional.pad(torch.from_numpy(x), pad, mode=mode, value=0.5 if mode == "constant" else None)
    got = rl.Pad(pad, mode=mode, value=0.5)(np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(np.moveaxis(keras.ops.convert_to_numpy(got), -1, 1), ref.numpy())


def test_keras_file_loads_safe_mode_without_torch(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=2, padding_mode="reflect"), nn.BatchNorm2d(4),
                          nn.AdaptiveMaxPool2d(2), nn.Flatten())
    model = recreate.testing.randomize_(model, 0)
    x = torch.randn(2, 3, 8, 8)
    inp = keras.Input((3, 8, 8))
    # Chain converted single modules into one model with recreate's layers inside.
    y = keras.layers.Permute((2, 3, 1))(inp)
    for name, mod in model.named_children():
        entry = recreate.registry.lookup(mod, name)
        for lyr in entry.make_layers(mod, [(2, 3, 8, 8)], name):
            y = lyr(y)
    km = keras.Model(inp, y)
    recreate.transfer_weights(model, km)
    ref = model(x).detach().numpy()
    np.testing.assert_allclose(km(x.numpy()).numpy(), ref, atol=1e-5)
    path = tmp_path / "m.keras"
    km.save(path)
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "ref.npy", ref)
    code = f"""
import sys
sys.modules['torch'] = None  # a serving image: torch cannot be imported
import numpy as np, keras, recreate
assert not recreate._backend.HAVE_TORCH
m = keras.saving.load_model({str(path)!r}, safe_mode=True)
y = np.asarray(m(np.load({str(tmp_path / 'x.npy')!r})))
np.testing.assert_allclose(y, np.load({str(tmp_path / 'ref.npy')!r}), atol=1e-5)
try:
    recreate.convert(None, None)
except recreate.TorchNotAvailableError as e:
    assert 'needs PyTorch' in str(e)
else:
    raise SystemExit('convert without torch did not raise')
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_import_recreate_registers_every_layer_module():
    """A served .keras file can only hold layers `import recreate` registers (no torch)."""
    import pkgutil

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import recreate, recreate.layers as L, pkgutil\n"
        "missing = [m.name for m in pkgutil.iter_modules(L.__path__) if not m.name.startswith('_') "
        "and f'recreate.layers.{m.name}' not in sys.modules]\n"
        "print(missing); raise SystemExit(1 if missing else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert pkgutil  # the module list comes from the package itself
