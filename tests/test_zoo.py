"""Zoo scripts run end to end with random weights and must match their torch reference."""

import sys
from pathlib import Path

from recreate.zoo import load_script as load

import pytest

ZOO = Path(__file__).resolve().parents[1] / "zoo"


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


def test_reference_model_and_batches():
    """reference_model: strict loading, or random weights with batch norm calibrated on
    one batch; random_batches: reproducible, distinct, at least two."""
    import recreate
    import torch

    def net():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))

    tm = recreate.testing.reference_model(net(), calibrate=(8, 3, 6, 6), seed=3)
    assert not tm.training
    x = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(4))  # the calibration batch
    with torch.no_grad():
        feat = tm[0](x)
    torch.testing.assert_close(tm[1].running_mean, feat.mean((0, 2, 3)))
    again = recreate.testing.reference_model(net(), dict(tm.state_dict()))
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), tm.state_dict().values()))
    with pytest.raises(RuntimeError, match="Unexpected key"):
        recreate.testing.reference_model(net(), {**tm.state_dict(), "extra": torch.zeros(1)})
    a, b = recreate.testing.random_batches((2, 3), 1), recreate.testing.random_batches((2, 3), 1)
    assert len(a) == 2 and torch.equal(a[1], b[1]) and not torch.equal(a[0], a[1])
