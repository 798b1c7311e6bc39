"""Zoo scripts run end to end with random weights and must match their torch reference."""

import importlib.util
import sys
from pathlib import Path

import pytest

ZOO = Path(__file__).resolve().parents[1] / "zoo"


def load(name):
    spec = importlib.util.spec_from_file_location(f"zoo_{name}", ZOO / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_resnet18_small_input(tmp_path):
    resnet = load("resnet")
    assert resnet.main(["--variant", "resnet18", "--size", "64", "--batches", "2", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "resnet18.keras").exists() and (tmp_path / "parity.png").exists()
    assert "PASS" in (tmp_path / "parity.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["resnet34", "resnet50", "resnext50_32x4d", "resnet101"])
def test_resnet_variants(variant):
    assert load("resnet").main(["--variant", variant, "--size", "96", "--batches", "2"]) == 0


def test_script_runs_as_a_plain_process(tmp_path):
    """Run as users run it (no conftest importing torch first): guards the import order."""
    import subprocess

    out = subprocess.run([sys.executable, str(ZOO / "resnet.py"), "--size", "32", "--batches", "2"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "PASS" in out.stdout


def test_weights_from_a_safetensors_checkpoint(tmp_path):
    import recreate.testing
    import torch
    import torchvision

    from safetensors.torch import save_file

    tm = recreate.testing.randomize_(torchvision.models.resnet18(), 5)
    ckpt = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(ckpt))
    resnet = load("resnet")
    t2, km, _ = resnet.build("resnet18", str(ckpt), 32)
    for k, v in tm.state_dict().items():
        assert torch.equal(t2.state_dict()[k], v)
    assert resnet.main(["--size", "32", "--batches", "2", "--weights", str(ckpt)]) == 0
