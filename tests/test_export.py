"""Exports (.keras, SavedModel, TFLite): each loaded back and re-verified against the TORCH
model with recreate's error measure, not assumed."""

import recreate
import torch
from recreate.export import (
    export_format,
    save_keras,
    save_saved_model,
    save_tflite,
    verify_export,
)
from recreate.testing import calibrate_batchnorm_, randomize_
from torch import nn

import pytest


class TwoInTwoOut(nn.Module):
    """Two inputs (image, vector), two outputs; conv + batch norm + linear + a constant."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(5 + 4, 6)
        self.bias = nn.Parameter(torch.randn(4))

    def forward(self, img, vec):
        y = torch.relu(self.bn(self.conv(img)))
        pooled = y.mean(dim=(2, 3)) + self.bias
        return y, self.fc(torch.cat([vec, pooled], dim=1))


@pytest.fixture(scope="module")
def converted():
    torch.manual_seed(0)
    m = TwoInTwoOut()
    example = (torch.randn(2, 3, 6, 6), torch.randn(2, 5))
    randomize_(m, 1)
    calibrate_batchnorm_(m, *example)
    km = recreate.convert(m, example)
    # a different batch size than the example: the batch axis must stay dynamic
    check = (torch.randn(3, 3, 6, 6), torch.randn(3, 5))
    return m, km, check


def _assert_pass(report):
    assert report.passed, report
    assert [o.shape for o in report.outputs] == [(3, 4, 6, 6), (3, 6)]
    assert report.error < 1e-5, report


def test_keras_file_reloads_in_fresh_process_and_verifies(converted, tmp_path):
    m, km, check = converted
    path = save_keras(km, tmp_path / "m.keras", inputs=check)  # fresh process, safe_mode=True
    assert export_format(path) == "keras"
    _assert_pass(verify_export(m, path, check, fresh_process=False))


def test_saved_model_serving_default_verifies(converted, tmp_path):
    import tensorflow as tf

    m, km, check = converted
    d = save_saved_model(km, tmp_path / "sm")
    fn = tf.saved_model.load(d).signatures["serving_default"]
    _, spec = fn.structured_input_signature
    assert all(s.shape[0] is None for s in spec.values())  # dynamic batch
    assert export_format(d) == "saved_model"
    _assert_pass(verify_export(m, d, check, fresh_process=False))


def test_tflite_builtin_ops_verifies(converted, tmp_path):
    m, km, check = converted
    res = save_tflite(km, tmp_path / "m.tflite")
    assert not res.select_tf_ops, res.builtin_error  # this model needs no TF ops
    assert res.size_bytes > 0
    _assert_pass(verify_export(m, res.path, check, fresh_process=False))


def test_verification_is_real_a_different_torch_model_fails(converted, tmp_path):
    m, km, check = converted
    path = save_keras(km, tmp_path / "m.keras", check=False)
    other = TwoInTwoOut()
    randomize_(other, 99)
    report = verify_export(other.eval(), path, check, fresh_process=False)
    assert not report.passed


def test_save_keras_rejects_wrong_suffix(converted, tmp_path):
    from recreate.export import ExportError

    with pytest.raises(ExportError, match=".keras"):
        save_keras(converted[1], tmp_path / "m.h5")
