"""torch.nn.PixelShuffle / PixelUnshuffle with PyTorch's channel order.

torch's PixelShuffle reads input channel c*r*r + i*r + j into output pixel (h*r+i, w*r+j) of
channel c. TensorFlow's depth_to_space reads channel (i*r + j)*C + c instead (channel
fastest), so it is not torch's op; these layers reshape and transpose instead.
"""

from __future__ import annotations

import keras
from keras import ops

from ._common import serializable


def _to_torch(x):
    r = len(x.shape)
    return ops.transpose(x, (0, r - 1, *range(1, r - 1)))


def _to_channels_last(x):
    r = len(x.shape)
    return ops.transpose(x, (0, *range(2, r), 1))


class _PixelRearrange(keras.layers.Layer):
    """Shared plumbing: `channels_last=True` means the Keras tensor is the channels-last form
    of torch's (*, C, H, W) input (rank 4 is (N, H, W, C)); other ranks are moved to
    torch's order, rearranged and moved back."""

    def __init__(self, factor: int, channels_last: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)
        self.channels_last = bool(channels_last)

    def _torch_shape(self, shape):
        shape = list(shape)
        if self.channels_last:
            shape = [shape[0], shape[-1], *shape[1:-1]]
        return shape

    def _from_torch_shape(self, shape):
        return tuple(shape[0:1] + shape[2:] + shape[1:2]) if self.channels_last else tuple(shape)

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"{type(self).__name__} needs a (*, C, H, W) tensor, got shape {tuple(input_shape)}")
        s = self._torch_shape(input_shape)
        c, h, w = s[-3:]
        c, h, w = self._map_sizes(c, h, w)
        return self._from_torch_shape(s[:-3] + [c, h, w])

    def call(self, x):
        rank = len(x.shape)
        if rank < 3:
            raise ValueError(f"{type(self).__name__} needs a (*, C, H, W) tensor, got shape {x.shape}")
        if self.channels_last and rank == 4:
            return self._nhwc(x)
        if self.channels_last:
            x = _to_torch(x)
        y = self._torch_order(x)
        return _to_channels_last(y) if self.channels_last else y

    def get_config(self):
        return {**super().get_config(), "channels_last": self.channels_last}


@serializable
class PixelShuffle(_PixelRearrange):
    """`torch.nn.PixelShuffle(upscale_factor)`: (*, C*r*r, H, W) -> (*, C, H*r, W*r)."""

    def __init__(self, upscale_factor: int, channels_last: bool = True, **kwargs):
        super().__init__(upscale_factor, channels_last, **kwargs)

    def _map_sizes(self, c, h, w):
        r = self.factor
        return (None if c is None else c // (r * r), None if h is None else h * r, None if w is None else w * r)

    def _nhwc(self, x):
        r = self.factor
        n, h, w, c = ops.shape(x)
        y = ops.reshape(x, (n, h, w, c // (r * r), r, r))
        y = ops.transpose(y, (0, 1, 4, 2, 5, 3))
        return ops.reshape(y, (n, h * r, w * r, c // (r * r)))

    def _torch_order(self, x):
        r = self.factor
        *lead, c, h, w = ops.shape(x)
        # The leading axes are merged into one: TFLite's TRANSPOSE takes rank <= 6.
        y = ops.reshape(x, (-1, c // (r * r), r, r, h, w))
        y = ops.transpose(y, (0, 1, 4, 2, 5, 3))
        return ops.reshape(y, (*lead, c // (r * r), h * r, w * r))

    def get_config(self):
        return {**super().get_config(), "upscale_factor": self.factor}


@serializable
class PixelUnshuffle(_PixelRearrange):
    """`torch.nn.PixelUnshuffle(downscale_factor)`: (*, C, H*r, W*r) -> (*, C*r*r, H, W),
    output channel c*r*r + i*r + j holding input pixel (h*r+i, w*r+j) of channel c."""

    def __init__(self, downscale_factor: int, channels_last: bool = True, **kwargs):
        super().__init__(downscale_factor, channels_last, **kwargs)

    def _map_sizes(self, c, h, w):
        r = self.factor
        return (None if c is None else c * r * r, None if h is None else h // r, None if w is None else w // r)

    def _nhwc(self, x):
        r = self.factor
        n, h, w, c = ops.shape(x)
        y = ops.reshape(x, (n, h // r, r, w // r, r, c))
        y = ops.transpose(y, (0, 1, 3, 5, 2, 4))
        return ops.reshape(y, (n, h // r, w // r, c * r * r))

    def _torch_order(self, x):
        r = self.factor
        *lead, c, h, w = ops.shape(x)
        # The leading axes are merged into one: TFLite's TRANSPOSE takes rank <= 6.
        y = ops.reshape(x, (-1, c, h // r, r, w // r, r))
        y = ops.transpose(y, (0, 1, 3, 5, 2, 4))
        return ops.reshape(y, (*lead, c * r * r, h // r, w // r))

    def get_config(self):
        return {**super().get_config(), "downscale_factor": self.factor}
