"""Non-maximum suppression with torchvision's semantics, as a fixed-size layer.

torchvision.ops.nms returns a data-dependent number of indices; a Keras/TFLite graph needs a
static output size. `NonMaxSuppression` returns `[indices, count]`: `indices` has
`max_output_size` entries (default: as many as there are boxes), the kept box indices in
torchvision's order (descending score, ties broken by the lower index: torchvision sorts with
a stable sort) followed by -1 padding; `count` (shape (1,)) is how many are valid. torch's
result is `indices[:count]` (or its first `max_output_size` entries when more are kept).

IoU is torchvision's: area = (x2 - x1) * (y2 - y1) (no +1), inter = max(0, min(x2) - max(x1))
* max(0, min(y2) - max(y1)), iou = inter / (area_i + area_j - inter); box j is suppressed by a
kept higher-ranked box i when iou > iou_threshold. With `batched=True` the layer takes a third
input, the category of each box, and runs torchvision's batched_nms: boxes are shifted by
category * (max coordinate + 1) (torchvision's coordinate trick, which it uses for up to
4000 box coordinates on CPU) so boxes of different categories never overlap.

The greedy pass is a loop over the sorted boxes (keras.ops.fori_loop: TFLite's WHILE); memory is
O(K^2) for K boxes.
"""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


def _iou_matrix(boxes):
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = (x2 - x1) * (y2 - y1)
    w = ops.maximum(ops.minimum(x2[:, None], x2[None, :]) - ops.maximum(x1[:, None], x1[None, :]), 0.0)
    h = ops.maximum(ops.minimum(y2[:, None], y2[None, :]) - ops.maximum(y1[:, None], y1[None, :]), 0.0)
    inter = w * h
    return inter / (area[:, None] + area[None, :] - inter)


@serializable
class NonMaxSuppression(keras.layers.Layer):
    """`NonMaxSuppression(0.5)(boxes, scores)` -> [indices (padded with -1), count].

    Boxes (K, 4) as (x1, y1, x2, y2), scores (K,); with batched=True also idxs (K,).
    """

    def __init__(self, iou_threshold: float, max_output_size: int | None = None, batched: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.iou_threshold = float(iou_threshold)
        self.max_output_size = None if max_output_size is None else int(max_output_size)
        self.batched = bool(batched)

    def compute_output_shape(self, boxes_shape, scores_shape=None, idxs_shape=None):
        return [(self.max_output_size if self.max_output_size is not None else boxes_shape[0],), (1,)]

    def compute_output_spec(self, boxes, scores, idxs=None):
        shape = self.compute_output_shape(boxes.shape)
        return [keras.KerasTensor(shape[0], dtype="int32"), keras.KerasTensor(shape[1], dtype="int32")]

    def call(self, boxes, scores, idxs=None):
        if self.batched != (idxs is not None):
            raise ValueError(f"NonMaxSuppression(batched={self.batched}) needs {'3' if self.batched else '2'} inputs")
        boxes = ops.cast(boxes, scores.dtype)
        k = ops.shape(boxes)[0]
        if idxs is not None:
            top = ops.max(ops.concatenate([ops.reshape(boxes, (-1,)), ops.zeros((1,), boxes.dtype) - 3.0e38]))
            boxes = boxes + (ops.cast(idxs, boxes.dtype) * (top + 1.0))[:, None]
        pos = ops.arange(k, dtype="int32")
        # Rank of each box in a stable descending sort, and the sorted order (no sort op needed).
        before = ops.logical_or(scores[:, None] > scores[None, :],
                                ops.logical_and(scores[:, None] == scores[None, :], pos[:, None] < pos[None, :]))
        rank = ops.sum(ops.cast(before, "int32"), axis=0)
        onehot = ops.cast(rank[None, :] == pos[:, None], "int32")  # [r, j]: box j has rank r
        order = ops.sum(onehot * pos[None, :], axis=1)
        sboxes = ops.take(boxes, order, axis=0)
        over = ops.cast(_iou_matrix(sboxes) > self.iou_threshold, "int32")
        later = ops.cast(pos[None, :] > pos[:, None], "int32")
        over = over * later

        def body(i, suppressed):
            keep_i = 1 - ops.take(suppressed, i)
            return ops.maximum(suppressed, keep_i * ops.take(over, i, axis=0))

        suppressed = ops.fori_loop(0, k, body, ops.zeros((k,), "int32"))
        keep = 1 - suppressed
        count = ops.sum(keep)
        slot = ops.cumsum(keep) - 1
        m = self.max_output_size if self.max_output_size is not None else k
        out_pos = ops.arange(m, dtype="int32")
        hit = ops.cast(ops.logical_and(slot[None, :] == out_pos[:, None], keep[None, :] > 0), "int32")  # (M, K)
        idx = ops.sum(hit * order[None, :], axis=1)
        idx = ops.where(out_pos < count, idx, -1)
        return [idx, ops.reshape(ops.minimum(count, m), (1,))]

    def get_config(self):
        return {**super().get_config(), "iou_threshold": self.iou_threshold,
                "max_output_size": self.max_output_size, "batched": self.batched}
