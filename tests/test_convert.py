import numpy as np
import pytest
import torch
from torch import nn

import recreate


def test_convert_torch_layout_round_trip_names_and_weights():
    m = recreate.testing.randomize_(nn.Conv2d(3, 5, 3, stride=2, padding=1), 0)
    km = recreate.convert(m, torch.randn(1, 3, 9, 9))
    assert [lyr.name for lyr in km.layers] == [
        "input_0", "input_0.to_channels_last", "conv2d.pre0", "conv2d", "output_0.to_channels_first"
    ]
    x = torch.randn(2, 3, 9, 9)
    np.testing.assert_allclose(km(x.numpy()).numpy(), m(x).detach().numpy(), atol=1e-5)


def test_convert_keras_layout_has_no_boundary_transposes():
    m = recreate.testing.randomize_(nn.BatchNorm2d(4), 0)
    km = recreate.convert(m, torch.randn(1, 4, 6, 6), io_layout="keras")
    assert not any(type(lyr).__name__ == "Permute" for lyr in km.layers)
    assert tuple(km.inputs[0].shape) == (None, 6, 6, 4)


def test_convert_refuses_training_mode_only_in_verify_but_converts_eval_semantics():
    # Conversion always produces inference semantics; verify insists on eval().
    m = nn.Dropout(0.5)
    km = recreate.convert(m, torch.randn(2, 3))
    x = np.random.rand(2, 3).astype("float32")
    np.testing.assert_array_equal(km(x).numpy(), x)


def test_bad_io_layout():
    with pytest.raises(ValueError, match="io_layout"):
        recreate.convert(nn.ReLU(), torch.randn(1, 2), io_layout="nchw")


@pytest.mark.parametrize("stride,multiplier", [((2, 1), 1), ((1, 3), 2)])
def test_depthwise_conv_with_unequal_strides(stride, multiplier):
    """TensorFlow's CPU depthwise conv refuses unequal strides (Hypothesis found stride (2, 1)):
    the converter convolves at stride 1 and subsamples."""
    m = recreate.testing.randomize_(nn.Conv2d(4, 4 * multiplier, 3, stride=stride, padding=1, groups=4), 0).eval()
    x = torch.randn(2, 4, 7, 9)
    km = recreate.convert(m, x)
    ref = m(x).detach().numpy()
    np.testing.assert_allclose(np.asarray(km(x.numpy())), ref, atol=1e-5)
