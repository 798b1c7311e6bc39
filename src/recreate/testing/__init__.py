"""Public test helpers: Hypothesis building blocks for converter cases, assert_parity, and
the torch reference side of a recreation script (reference_model, random_batches).

Users property-test the converters they register for their own modules with these::

    from hypothesis import given
    from recreate.testing import assert_parity, cases

    @given(cases.module_case(lambda draw: MyBlock(draw(st.integers(1, 8))), input_shape=...))
    def test_my_block(case):
        assert_parity(case.module, case.inputs)
"""

from .cases import Case, assert_informative, calibrate_batchnorm_, make_case, randomize_
from .parity import assert_parity, parity_error
from .reference import random_batches, reference_model

__all__ = ["Case", "assert_informative", "assert_parity", "calibrate_batchnorm_", "make_case", "parity_error",
           "random_batches", "randomize_", "reference_model"]
