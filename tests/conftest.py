"""Test set-up. torch (and torchvision) are imported before anything imports tensorflow:
importing torchvision after tensorflow segfaults with the pinned versions."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import torch  # noqa: E402,F401

# torch's multi-threaded LSTM kernel is pathologically slow on a loaded 2-core machine
# (0.5-2.4 s for a tiny 3-layer LSTM, 0.3 ms single-threaded); results do not change.
torch.set_num_threads(1)

try:
    import torchvision  # noqa: F401
except ImportError:
    pass

from hypothesis import HealthCheck, settings  # noqa: E402

import recreate  # noqa: E402,F401

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=25,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
