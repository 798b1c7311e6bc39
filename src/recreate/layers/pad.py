"""torch.nn.functional.pad on a channels-last tensor: every mode, negative pads crop."""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable, torch_axis_to_keras

MODES = ("constant", "reflect", "replicate", "circular")


@serializable
class Pad(keras.layers.Layer):
    """`F.pad(x, pad, mode, value)` with PyTorch's `pad` tuple (last torch axis first).

    `channels_last=True` means the Keras tensor is channels-last while `pad` names torch's
    axes (the usual case inside a converted model). Negative entries crop, as in torch.
    """

    def __init__(self, pad, mode: str = "constant", value: float = 0.0, channels_last: bool = True, **kwargs):
        super().__init__(**kwargs)
        pad = tuple(int(p) for p in pad)
        if len(pad) % 2:
            raise ValueError(f"pad must have an even number of entries, got {pad}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.pad = pad
        self.mode = mode
        self.value = float(value)
        self.channels_last = bool(channels_last)

    def _per_axis(self, rank: int) -> dict[int, tuple[int, int]]:
        if len(self.pad) // 2 > rank:
            raise ValueError(f"pad {self.pad} names more axes than the input has ({rank})")
        out = {}
        for i in range(len(self.pad) // 2):
            torch_axis = rank - 1 - i
            out[torch_axis_to_keras(torch_axis, rank, self.channels_last)] = (self.pad[2 * i], self.pad[2 * i + 1])
        return out

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for ax, (lo, hi) in self._per_axis(len(shape)).items():
            if shape[ax] is not None:
                shape[ax] = shape[ax] + lo + hi
        return tuple(shape)

    def call(self, x):
        for ax, (lo, hi) in sorted(self._per_axis(len(x.shape)).items()):
            x = self._pad_axis(x, ax, lo, hi)
        return x

    def _pad_axis(self, x, ax, lo, hi):
        if lo == 0 and hi == 0:
            return x
        n = x.shape[ax]
        if n + lo + hi < 0:
            raise ValueError(f"padding ({lo}, {hi}) leaves a negative size on an axis of {n}")
        if self.mode in ("constant", "circular"):
            # torch crops first, then pads what is left (circular wraps around the cropped axis).
            if lo < 0 or hi < 0:
                start, stop = max(0, -lo), n - max(0, -hi)
                x = ops.take(x, ops.arange(start, stop), axis=ax)
                n, lo, hi = stop - start, max(lo, 0), max(hi, 0)
                if lo == 0 and hi == 0:
                    return x
            if self.mode == "constant":
                widths = [(0, 0)] * len(x.shape)
                widths[ax] = (lo, hi)
                return ops.pad(x, widths, mode="constant", constant_values=self.value)
            if lo > n or hi > n:
                raise ValueError(f"circular padding ({lo}, {hi}) must not exceed the axis size {n} (after cropping)")
            idx = [u % n for u in range(-lo, n + hi)]
        elif self.mode == "reflect":
            # torch reflects about the uncropped edges, then crops: F.pad(x, (-3, 4), "reflect")
            # on 5 elements is x[3, 4, 3, 2, 1, 0].
            if lo >= n or hi >= n:
                raise ValueError(f"reflect padding ({lo}, {hi}) must be smaller than the axis size {n}")
            idx = [abs(u) if abs(u) < n else 2 * (n - 1) - abs(u) for u in range(-lo, n + hi)]
        else:  # replicate: clamp to the uncropped edges, then crop
            idx = [min(max(u, 0), n - 1) for u in range(-lo, n + hi)]
        return ops.take(x, ops.convert_to_tensor(idx, dtype="int32"), axis=ax)

    def get_config(self):
        return {**super().get_config(), "pad": list(self.pad), "mode": self.mode, "value": self.value,
                "channels_last": self.channels_last}
