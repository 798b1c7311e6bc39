"""Every core ATen op (the ops tagged torch.Tag.core) has a converter, or is listed here with
the reason it has none. A new torch with new core ops fails this test until each is
converted or listed."""

import recreate  # noqa: I001 - first: torch before tensorflow
import torch

from recreate.ops import find_op, load_all

# op -> why there is no converter (the builder may still handle it without one)
EXCLUDED = {
    **{op: "backward op: training graphs only, never in an inference export" for op in (
        "_adaptive_avg_pool2d_backward.default", "avg_pool2d_backward.default", "convolution_backward.default",
        "embedding_dense_backward.default", "max_pool2d_with_indices_backward.default",
        "native_group_norm_backward.default", "native_layer_norm_backward.default")},
    "_fft_c2r.default": "complex dtypes: Keras has no complex tensors",
    "_fft_r2c.default": "complex dtypes: Keras has no complex tensors",
    "_local_scalar_dense.default": "tensor.item(): a data-dependent Python value, refused at capture",
    "atan2.out": "out= variant: export graphs are functional",
    **{op: "random: a converted model is deterministic (refused with the op named)" for op in (
        "rand.default", "randn.default", "randperm.default")},
    **{op: "made from Python values: the builder computes it at conversion (batch-sized ones follow the batch)"
       for op in ("arange.start_step", "empty.memory_format", "empty_strided.default", "full.default")},
    **{op: "a Python size: the builder reads it off the symbolic shape" for op in (
        "sym_numel.default", "sym_size.int", "sym_storage_offset.default", "sym_stride.int")},
}


def _core_ops() -> dict:
    out = {}
    for name in dir(torch.ops.aten):
        packet = getattr(torch.ops.aten, name, None)
        if not hasattr(packet, "overloads"):
            continue
        for overload in packet.overloads():
            op = getattr(packet, overload)
            if torch.Tag.core in op.tags:
                out[f"{name}.{overload}"] = op
    return out


def test_every_core_aten_op_has_a_converter_or_a_reason():
    load_all()
    core = _core_ops()
    assert len(core) > 150, "torch.Tag.core lists fewer ops than expected: check the torch version"
    missing = sorted(n for n, op in core.items() if find_op(op) is None and n not in EXCLUDED)
    assert not missing, f"core ATen ops without a converter or a listed reason: {missing}"
    stale = sorted(n for n in EXCLUDED if n in core and find_op(core[n]) is not None)
    assert not stale, f"listed as excluded but converted now (drop them from EXCLUDED): {stale}"
    assert not [n for n in EXCLUDED if n not in core], "EXCLUDED names an op that is not core ATen"
