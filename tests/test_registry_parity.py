"""The registry-wide property test: every registered torch type, converted, on inputs and
constructor arguments Hypothesis chooses, matches torch within tolerance x max(1, |ref|).

A new converter is picked up here automatically; one without a strategy fails
`test_every_entry_has_a_strategy`."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recreate import registry
from recreate.convert import _spatial_dims, is_unbatched
from recreate.testing import assert_parity

EXAMPLES = int(os.environ.get("RECREATE_EXAMPLES", "25"))
#: Entries excluded from the parity test, with the reason (data, not ifs).
EXCLUDED: dict[type, str] = {}

TYPES = [t for t, _ in registry.entries() if t not in EXCLUDED]


@pytest.mark.parametrize("torch_type", TYPES, ids=lambda t: t.__name__)
def test_entry_parity(torch_type):
    entry = registry.find_entry(torch_type)
    assert entry.cases is not None, f"{torch_type.__name__} has no Hypothesis strategy"

    @settings(max_examples=EXAMPLES)
    @given(case=entry.cases(torch_type), io_layout=st.sampled_from(["torch", "keras"]))
    def check(case, io_layout):
        assert_parity(case.module, case.inputs, tolerance=entry.tolerance, io_layout=io_layout,
                      kwargs=case.kwargs)

    check()


UNBATCHED_EXAMPLES = max(5, EXAMPLES // 3)


@pytest.mark.parametrize("torch_type", TYPES, ids=lambda t: t.__name__)
def test_entry_parity_unbatched(torch_type):
    """Where torch accepts an input without the batch axis, so does the conversion."""
    entry = registry.find_entry(torch_type)
    @settings(max_examples=UNBATCHED_EXAMPLES)
    @given(case=entry.cases(torch_type))
    def check(case):
        if any(isinstance(x, tuple) for x in case.inputs):
            return  # a nested argument (LSTM's (h_0, c_0)): no generic unbatched form
        shapes = [tuple(x.shape) for x in case.inputs]
        single = tuple(np.asarray(x)[0] for x in case.inputs)
        if not is_unbatched(case.module, [s[1:] for s in shapes]):
            return
        try:
            with torch.no_grad():
                case.module(*[torch.tensor(x) for x in single], **case.kwargs)
        except (RuntimeError, ValueError, IndexError):
            return  # torch itself refuses this unbatched input
        assert_parity(case.module, single, tolerance=entry.tolerance, kwargs=case.kwargs)

    if _spatial_dims(torch_type) is None:
        pytest.skip("not a channels-first module with an unbatched form")
    check()


def entries_without_strategy() -> list[str]:
    return sorted(t.__name__ for t, e in registry.entries() if e.cases is None)


def test_every_entry_has_a_strategy():
    assert entries_without_strategy() == []


def test_entry_without_strategy_is_caught():
    import keras
    from torch import nn

    class Unproven(nn.Module):
        def forward(self, x):
            return x

    @registry.register(Unproven)
    def unproven(m):
        return keras.layers.Identity()

    try:
        assert entries_without_strategy() == ["Unproven"]
    finally:
        registry.unregister(Unproven)
    assert entries_without_strategy() == []
