"""`recreate convert` and `recreate scaffold` end to end (subprocesses, as a user runs them)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from recreate.cli import main

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

TINY = textwrap.dedent('''
    import torch
    from torch import nn
    import torch.nn.functional as F


    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.token = nn.Parameter(torch.randn(1, 8))
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            y = F.relu(self.bn(self.conv(x)))
            y = F.layer_norm(y, (8, 6, 6))
            y = y.mean(dim=(2, 3)) + self.token
            return self.fc(y), y


    def tiny():
        return Tiny()


    class Doubler(nn.Module):
        def forward(self, x):
            return 2 * x


    class Sabotaged(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.twice = Doubler()

        def forward(self, x):
            return self.twice(self.lin(x))


    def sabotaged():
        import keras
        import recreate
        from recreate.registry import TORCH

        # a WRONG converter: Doubler becomes the identity
        recreate.register(Doubler, cases=lambda t: None, layout=(TORCH, TORCH))(
            lambda m: keras.layers.Identity())
        return Sabotaged()
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "tinynet.py").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, str(cwd)]), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_versions_still_works(capsys):
    assert main(["versions"]) in (0, 1)
    assert "torch" in capsys.readouterr().out


def test_convert_end_to_end_with_all_exports(project):
    p = _run(["-m", "recreate", "convert", "tinynet:tiny", "--input-shape", "2,3,6,6",
              "--out", "out/tiny.keras", "--saved-model", "out/tiny_sm", "--tflite", "out/tiny.tflite"], project)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    assert (project / "out/tiny.keras").is_file()
    assert (project / "out/tiny_sm/saved_model.pb").is_file()
    assert (project / "out/tiny.tflite").is_file()
    out = p.stdout
    assert "PASS: error" in out and "TFLite: builtin ops only" in out
    for fmt in ("(keras)", "(saved_model)", "(tflite)"):
        section = out.split(fmt, 1)[1]
        assert section.lstrip(" =\n").startswith("PASS"), out


def test_convert_exits_nonzero_when_parity_fails(project):
    p = _run(["-m", "recreate", "convert", "tinynet:sabotaged", "--input-shape", "3,4",
              "--out", "bad.keras"], project)
    assert p.returncode == 1, p.stdout + p.stderr[-3000:]
    assert "FAIL: error" in p.stdout
    assert "'twice' (Doubler)" in p.stdout  # the first diverging layer is named


def test_convert_tolerance_zero_fails_in_process(project, capsys):
    # float32 rounding differs between torch and TF: a zero tolerance cannot pass.
    rc = main(["convert", "tinynet:tiny", "--input-shape", "2,3,6,6", "--out", "t.keras", "--tolerance", "0"])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "FAIL: error" in out


def test_convert_unknown_factory_exits_2(project, capsys):
    assert main(["convert", "tinynet:nope", "--input-shape", "2,3", "--out", "x.keras"]) == 2
    assert "has no attribute 'nope'" in capsys.readouterr().err


def _scaffold_and_run(project, factory, shape, script):
    assert main(["scaffold", factory, "--input-shape", shape, "--out", script]) == 0
    text = (project / script).read_text()
    assert "def build_keras_model():" in text and "recreate.transfer_weights(" in text
    assert "recreate.verify(" in text
    p = _run([script, "--out", "rebuilt.keras"], project)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    assert "PASS: error" in p.stdout
    assert (project / "rebuilt.keras").is_file()
    return text


def test_scaffold_custom_model_script_runs_and_passes(project):
    text = _scaffold_and_run(project, "tinynet:tiny", "2,3,6,6", "recreate_tiny.py")
    # one line per layer, named after the torch module path
    assert "conv = keras.layers.Conv2D(name='conv'" in text
    assert "bn = keras.layers.BatchNormalization(name='bn'" in text
    # the free parameter is a named variable transfer_weights fills, not a constant frozen in a .npz
    assert "FIXED_LAYERS = []" in text
    assert "token = recreate.layers.Parameter(name='token', shape=[1, 8], torch_name='token')" in text
    # so the script passes with a checkpoint of other weights too
    import tinynet
    from safetensors.torch import save_file

    other = tinynet.tiny()
    with torch.no_grad():
        for t in other.parameters():
            t.add_(torch.randn_like(t))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(project / "other.safetensors"))
    p = _run(["recreate_tiny.py", "--weights", "other.safetensors"], project)
    assert p.returncode == 0 and "PASS: error" in p.stdout, p.stdout + p.stderr[-3000:]


def test_scaffold_resnet18_script_runs_and_passes(project):
    pytest.importorskip("torchvision")
    text = _scaffold_and_run(project, "torchvision.models:resnet18", "2,3,32,32", "recreate_resnet18.py")
    assert "layer4_1_conv2 = keras.layers.Conv2D(name='layer4.1.conv2'" in text


SHARED = '''
import torch
from torch import nn


class Refine(nn.Module):
    """One module with weights applied three times (an iterative refinement, as RAFT's
    update block): its Keras layer is shared, called three times."""

    def __init__(self):
        super().__init__()
        self.step = nn.Linear(6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        for _ in range(3):
            x = x + torch.tanh(self.step(x))
        return self.out(x)


def refine():
    return Refine().eval()
'''


def test_scaffold_shared_layer_script_runs_and_passes(project):
    (project / "sharednet.py").write_text(SHARED)
    text = _scaffold_and_run(project, "sharednet:refine", "2,6", "recreate_shared.py")
    assert "step_layer = keras.layers.Dense(" in text and text.count("step_layer(") == 3
