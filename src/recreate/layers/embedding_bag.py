"""torch.nn.EmbeddingBag: sums, means or maxima of bags of embeddings."""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable
from .embedding import renorm_rows

MODES = ("sum", "mean", "max")


@serializable
class EmbeddingBag(keras.layers.Layer):
    """`torch.nn.EmbeddingBag` with every mode and option.

    Called as `layer(inputs)` with 2-D indices (B, L) (each row a bag of L), or
    `layer(indices, offsets)` with 1-D indices and 1-D offsets (bag i is
    indices[offsets[i]:offsets[i+1]], the last bag runs to the end; with
    `include_last_offset=True` offsets has one more entry, the end of the last bag).
    `per_sample_weights` (same shape as the indices, mode "sum" only) scales each row.
    Entries equal to `padding_idx` are left out of their bag (and of a mean's count); an
    empty bag gives zeros in every mode. `max_norm` renormalises looked-up rows as
    torch does (see MaxNormEmbedding). The weight is `embeddings` (input_dim, output_dim).

    With include_last_offset=True torch expects offsets[-1] == len(indices) (CSR). Where
    it is smaller, torch's CPU kernel is inconsistent across modes (sum stops at
    offsets[-1], max and padded bags run to the end, mean divides a stopped sum by the
    count to the end); this layer always stops at offsets[-1].
    """

    def __init__(self, input_dim: int, output_dim: int, mode: str = "mean", padding_idx: int | None = None,
                 include_last_offset: bool = False, max_norm: float | None = None, norm_type: float = 2.0,
                 embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.mode = mode
        if padding_idx is not None:
            padding_idx = int(padding_idx)
            if not -self.input_dim <= padding_idx < self.input_dim:
                raise ValueError(f"padding_idx {padding_idx} out of range for input_dim {self.input_dim}")
            padding_idx %= self.input_dim
        self.padding_idx = padding_idx
        self.include_last_offset = bool(include_last_offset)
        self.max_norm = None if max_norm is None else float(max_norm)
        self.norm_type = float(norm_type)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(name="embeddings", shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer)

    def compute_output_shape(self, inputs_shape, offsets_shape=None, per_sample_weights_shape=None):
        if len(inputs_shape) == 2:
            return (inputs_shape[0], self.output_dim)
        bags = None if offsets_shape is None else offsets_shape[0]
        if bags is not None and self.include_last_offset:
            bags -= 1
        return (bags, self.output_dim)

    def call(self, inputs, offsets=None, per_sample_weights=None):
        idx = inputs if inputs.dtype in ("int32", "int64") else ops.cast(inputs, "int32")
        rows = ops.take(self.embeddings, idx, axis=0)
        if self.max_norm is not None:
            rows = renorm_rows(rows, self.max_norm, self.norm_type)
        if per_sample_weights is not None:
            if self.mode != "sum":
                raise ValueError(f"per_sample_weights is only supported for mode='sum' (torch), not {self.mode!r}")
            rows = rows * ops.expand_dims(ops.cast(per_sample_weights, rows.dtype), -1)
        valid = None if self.padding_idx is None else ops.not_equal(idx, self.padding_idx)
        if len(idx.shape) == 2:
            if offsets is not None:
                raise ValueError("with 2-D indices offsets must be None (each row is a bag), as in torch")
            return self._fixed_bags(rows, valid)
        if len(idx.shape) != 1 or offsets is None:
            raise ValueError("EmbeddingBag takes 2-D indices, or 1-D indices with 1-D offsets")
        return self._offset_bags(rows, idx, offsets, valid)

    def _fixed_bags(self, rows, valid):
        if valid is not None:
            count = ops.sum(ops.cast(valid, rows.dtype), axis=1)[:, None]
            keep = ops.expand_dims(valid, -1)
        if self.mode == "max":
            # initial=-inf never changes a max; it only stops keras's eager check that
            # refuses an empty tensor (an empty batch).
            if valid is None:
                return ops.max(rows, axis=1, initial=float("-inf"))
            out = ops.max(ops.where(keep, rows, float("-inf")), axis=1, initial=float("-inf"))
            return ops.where(count > 0, out, ops.zeros_like(out))
        if valid is not None:
            rows = ops.where(keep, rows, ops.zeros_like(rows))
        out = ops.sum(rows, axis=1)
        if self.mode == "mean":
            out = out / (ops.maximum(count, 1.0) if valid is not None else ops.cast(ops.shape(rows)[1], rows.dtype))
        return out

    def _offset_bags(self, rows, idx, offsets, valid):
        n_offsets = ops.shape(offsets)[0]
        positions = ops.arange(ops.shape(idx)[0], dtype=offsets.dtype)
        # Bag of each entry: the number of offsets <= its position, minus one (empty bags
        # repeat an offset). With include_last_offset the entries past the last offset
        # land in bag n_offsets - 1, which is dropped.
        seg = ops.searchsorted(offsets, positions, side="right") - 1
        if valid is not None:  # padding entries go to a spare segment, dropped too
            seg = ops.where(valid, seg, ops.cast(n_offsets, seg.dtype))
        n_seg = n_offsets + 1
        if self.mode == "max":
            out = ops.segment_max(rows, seg, num_segments=n_seg)
        else:
            out = ops.segment_sum(rows, seg, num_segments=n_seg)
        if self.mode != "sum":
            count = ops.segment_sum(ops.ones_like(rows[:, :1]), seg, num_segments=n_seg)
            if self.mode == "mean":
                out = out / ops.maximum(count, 1.0)
            else:  # an empty bag's max is the lowest float: torch gives zeros
                out = ops.where(count > 0, out, ops.zeros_like(out))
        return out[: n_offsets - 1] if self.include_last_offset else out[:n_offsets]

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "mode": self.mode, "padding_idx": self.padding_idx,
                "include_last_offset": self.include_last_offset, "max_norm": self.max_norm,
                "norm_type": self.norm_type,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)}
