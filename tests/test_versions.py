import subprocess
import sys

from recreate import versions


def test_versions_command_prints_and_flags():
    out = subprocess.run([sys.executable, "-m", "recreate", "versions"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "torch" in out.stdout and "keras" in out.stdout
    assert "AFTER tensorflow segfaults" in out.stdout


def test_known_bad_combinations():
    bad = versions.problems({"torch": "2.13.0", "torchvision": "0.29.1", "keras": "3.10.0",
                             "tensorflow": "2.17.0", "numpy": "2.1.0"})
    text = "\n".join(bad)
    assert "not a matching pair" in text and "keras >= 3.13" in text and "numpy < 2" in text


def test_import_order_protects_torchvision():
    code = "import recreate, tensorflow, torchvision; print(torchvision.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
