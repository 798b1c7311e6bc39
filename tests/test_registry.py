import keras
import pytest
import torch
from torch import nn

import recreate
from recreate import registry


def test_lookup_exact_then_mro():
    class MyConv(nn.Conv2d):
        pass

    assert registry.lookup(nn.Conv2d(1, 1, 1)) is registry.lookup(MyConv(1, 1, 1))
    km = recreate.convert(recreate.testing.randomize_(MyConv(2, 3, 3, padding=1)), torch.randn(1, 2, 5, 5))
    assert km.count_params() == 3 * 2 * 9 + 3


def test_duplicate_registration_is_an_error():
    with pytest.raises(recreate.RegistryError, match="Conv2d already registered"):
        @recreate.register(nn.Conv2d)
        def again(m):
            return keras.layers.Identity()


def test_unregistered_module_names_path_type_and_fix():
    class Mystery(nn.Module):
        def forward(self, x):
            return x * 2

    with pytest.raises(recreate.UnsupportedModuleError) as e:
        registry.lookup(Mystery(), "encoder.block.3")
    msg = str(e.value)
    assert "encoder.block.3" in msg and "Mystery" in msg and "@recreate.register(" in msg
    with pytest.raises(recreate.UnsupportedModuleError, match="root module"):
        registry.lookup(Mystery())
    # convert() traces what is not registered: x * 2 needs no converter of its own.
    km = recreate.convert(Mystery().eval(), torch.randn(1, 3))
    assert km(torch.ones(1, 3).numpy()).numpy().tolist() == [[2.0, 2.0, 2.0]]


def test_user_registration_with_weight_rules_end_to_end():
    class Scale(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.gain = nn.Parameter(torch.randn(c))

        def forward(self, x):
            return x * self.gain.view(1, -1, 1, 1)

    @keras.saving.register_keras_serializable(package="tests")
    class KScale(keras.layers.Layer):
        def build(self, shape):
            self.gain = self.add_weight(shape=(shape[-1],), name="gain")

        def call(self, x):
            return x * self.gain

    def cases(t):
        from hypothesis import strategies as st

        from recreate.testing import make_case

        @st.composite
        def case(draw):
            c = draw(st.integers(1, 4))
            return make_case(draw, Scale(c), (1, c, 3, 3))

        return case()

    @recreate.register(Scale, cases=cases, rules={KScale: recreate.WeightRules((recreate.Map("gain", "gain"),))})
    def scale(m):
        return KScale()

    try:
        m = recreate.testing.randomize_(Scale(4), 3)
        recreate.testing.assert_parity(m, torch.randn(2, 4, 5, 5).numpy())
    finally:
        registry.unregister(Scale)
