import keras
import numpy as np
import pytest
import torch

import recreate
from tests.test_transfer import keras_small, torch_small


def test_training_mode_is_refused_with_eval_hint():
    tm, km = torch_small(), keras_small()
    recreate.transfer_weights(tm, km)
    tm.train()
    with pytest.raises(recreate.TrainingModeError, match=r"model\.eval\(\)"):
        recreate.verify(tm, km, torch.randn(1, 3, 8, 8))
    tm.eval()
    tm.bn2.train()  # one submodule left in training mode is caught too
    with pytest.raises(recreate.TrainingModeError, match="bn2"):
        recreate.verify(tm, km, torch.randn(1, 3, 8, 8))


def test_divergent_layer_is_located():
    tm, km = torch_small(), keras_small()
    recreate.transfer_weights(tm, km)
    v = km.get_layer("bn2").moving_mean
    v.assign(v.numpy() + 0.5)
    report = recreate.verify(tm, km, torch.randn(2, 3, 8, 8))
    assert not report.passed
    fd = report.first_divergent
    assert fd is not None and fd.name == "bn2" and fd.max_abs > 0.1
    names = [s.name for s in report.layers]
    assert names[: names.index("bn2")] == ["conv1", "bn1", "conv2"]
    assert all(s.passed for s in report.layers[: names.index("bn2")])
    text = str(report)
    assert "FAIL" in text and "first diverging layer: 'bn2'" in text
    with pytest.raises(recreate.ParityError):
        report.raise_for_failure()


def test_batches_aggregate_and_report_formats(tmp_path):
    tm, km = torch_small(), keras_small()
    recreate.transfer_weights(tm, km)
    batches = [torch.randn(2, 3, 8, 8) for _ in range(3)]
    report = recreate.verify(tm, km, iter(batches), layers=True)
    assert report.passed and report.batches == 3
    assert report.outputs[0].elements == 3 * 2 * 5
    assert report.outputs[0].grade == "excellent"
    assert len(report.layers) == 5 and all(s.passed for s in report.layers)
    md = report.to_markdown()
    assert "| output |" in md and "#### Per layer" in md
    png = report.plot(tmp_path / "p.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_torch_layout_model_from_convert_and_keras_layout_inputs():
    conv = recreate.testing.randomize_(torch.nn.Conv2d(3, 3, 3, padding=1), 0)
    x = torch.randn(2, 3, 3, 3)  # square and C == H == W: layout must not be guessed wrong
    km_t = recreate.convert(conv, x)
    km_k = recreate.convert(conv, x, io_layout="keras")
    assert recreate.verify(conv, km_t, x, tolerance=1e-5).passed
    assert recreate.verify(conv, km_k, x, tolerance=1e-5, input_layout="keras").passed
    assert recreate.verify(conv, km_k, torch.randn(4, 3, 3, 3), tolerance=1e-5).passed


def test_output_count_mismatch_is_an_error():
    lin = torch.nn.Linear(3, 2).eval()
    inp = keras.Input((3,))
    km = keras.Model(inp, [keras.layers.Dense(2)(inp), keras.layers.Dense(2)(inp)])
    with pytest.raises(recreate.ParityError, match="1 output"):
        recreate.verify(lin, km, torch.randn(1, 3))


def test_error_stats_relative_to_max_one_and_nan():
    from recreate.verify import error_stats

    mse, mab, mrel = error_stats(np.array([1.0, 101.0, np.nan]), np.array([1.0, 100.0, np.nan]))
    assert mab == pytest.approx(1.0) and mrel == pytest.approx(0.01)


class _MixedOutputs(torch.nn.Module):
    """Tensors mixed with Python ints and tuples of ints (as MaskFormer-Swin's
    hidden_states_spatial_dimensions): the Keras model returns the tensor leaves only."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)

    def forward(self, x):
        y = self.lin(x)
        return y, x.shape[-1], ((2, 3), (4, 5)), {"double": y * 2, "sizes": (6,)}, torch.tanh(y) - 1


def test_non_tensor_outputs_are_skipped_and_tensor_order_kept():
    tm = recreate.testing.randomize_(_MixedOutputs(), 0).eval()
    x = torch.randn(2, 3)
    km = recreate.convert(tm, x)
    assert len(km.outputs) == 3
    report = recreate.verify(tm, km, [x, torch.randn(3, 3)], tolerance=1e-5)
    assert report.passed, report
    assert [o.index for o in report.outputs] == [0, 1, 2] and report.non_tensor == 6
    assert "6 non-tensor leaf/leaves" in str(report)
    # The tensor leaves are compared in order: the same outputs permuted do not pass.
    swapped = keras.Model(km.inputs[0], [km.outputs[1], km.outputs[0], km.outputs[2]])
    assert not recreate.verify(tm, swapped, x, layers=False).passed
    # A count that differs is an error, never a pass on the common prefix.
    fewer = keras.Model(km.inputs[0], km.outputs[:2])
    with pytest.raises(recreate.ParityError, match=r"3 output\(s\) \(tensors; besides, 6 non-tensor .*6 int\), Keras model 2"):
        recreate.verify(tm, fewer, x)
    more = keras.Model(km.inputs[0], [*km.outputs, km.outputs[0]])
    with pytest.raises(recreate.ParityError, match="Keras model 4"):
        recreate.verify(tm, more, x)
