"""Shape modules: Flatten (PyTorch's element order, read from a channels-last tensor),
Unflatten, PixelShuffle / PixelUnshuffle and ChannelShuffle (PyTorch's channel order),
Fold / Unfold (torch's block layout)."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st
from torch import nn

from .. import layers as rl
from ..errors import ConversionError
from ..layers.channel_shuffle import ChannelShuffle
from ..layers.fold import Fold, Unfold, blocks, pair
from ..layers.pixel_shuffle import PixelShuffle, PixelUnshuffle
from ..layers.unflatten import Unflatten
from ..registry import CHANNELS_LAST, TORCH, register
from ..testing.cases import make_case


def _flatten_cases(torch_type):
    @st.composite
    def case(draw):
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=5)))
        r = len(shape)
        start = draw(st.integers(-r, r - 1))
        end = draw(st.integers((start % r) - r, -1))
        return make_case(draw, nn.Flatten(start, end), shape)

    return case()


@register(nn.Flatten, cases=_flatten_cases, layout=(CHANNELS_LAST, TORCH))
def flatten(m):
    return rl.Flatten(m.start_dim, m.end_dim, channels_last=True)


# ---- Unflatten ------------------------------------------------------------------------
def _unflatten_cases(torch_type):
    @st.composite
    def case(draw):
        shape = list(draw(st.lists(st.integers(1, 3), min_size=1, max_size=4)))
        r = len(shape)
        dim = draw(st.integers(-r, r - 1))
        sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
        shape[dim % r] = math.prod(sizes)
        if draw(st.booleans()):
            sizes[draw(st.integers(0, len(sizes) - 1))] = -1
        form = draw(st.sampled_from([tuple, list, torch.Size]))
        return make_case(draw, nn.Unflatten(dim, form(sizes)), tuple(shape))

    return case()


# Works in torch's axis order: the split axis and every axis after it keep torch's meaning.
@register(nn.Unflatten, cases=_unflatten_cases, layout=(TORCH, TORCH))
def unflatten(m):
    # torch 2.14 accepts an int dim and int sizes only (named-tensor sizes are gone).
    return Unflatten(m.dim, tuple(int(s) for s in m.unflattened_size))


# ---- PixelShuffle / PixelUnshuffle / ChannelShuffle ------------------------------------
def _pixel_cases(torch_type):
    @st.composite
    def case(draw):
        r = draw(st.integers(1, 3))
        lead = draw(st.lists(st.integers(1, 2), min_size=1, max_size=2))  # (N,) or (N, B2)
        c, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        if torch_type is nn.PixelShuffle:
            return make_case(draw, nn.PixelShuffle(r), (*lead, c * r * r, h, w))
        return make_case(draw, nn.PixelUnshuffle(r), (*lead, c, h * r, w * r))

    return case()


@register(nn.PixelShuffle, nn.PixelUnshuffle, cases=_pixel_cases)
def pixel_shuffle(m):
    if isinstance(m, nn.PixelShuffle):
        return PixelShuffle(m.upscale_factor)
    return PixelUnshuffle(m.downscale_factor)


def _channel_shuffle_cases(torch_type):
    @st.composite
    def case(draw):
        g = draw(st.integers(1, 4))
        c = g * draw(st.integers(1, 3))
        spatial = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
        return make_case(draw, nn.ChannelShuffle(g), (draw(st.integers(1, 2)), c, *spatial))

    return case()


@register(nn.ChannelShuffle, cases=_channel_shuffle_cases)
def channel_shuffle(m):
    return ChannelShuffle(m.groups)


# ---- Fold / Unfold ---------------------------------------------------------------------
def _int_or_pair(draw, lo, hi):
    if draw(st.booleans()):
        return draw(st.integers(lo, hi))
    return draw(st.integers(lo, hi)), draw(st.integers(lo, hi))


def _block_args(draw):
    return dict(kernel_size=_int_or_pair(draw, 1, 3), dilation=_int_or_pair(draw, 1, 2), padding=_int_or_pair(draw, 0, 2),
                stride=_int_or_pair(draw, 1, 3))


def _sizes_with_blocks(draw, args):
    """An (H, W) on which every axis has at least one block."""
    k, d, p = (pair(args[a]) for a in ("kernel_size", "dilation", "padding"))
    return tuple(draw(st.integers(max(1, d[i] * (k[i] - 1) + 1 - 2 * p[i]), 6)) for i in range(2))


def _require_rank(m, ctx, rank: int, form: str) -> None:
    if ctx.input_shapes and len(ctx.input_shapes[0]) != rank:
        raise ConversionError(
            f"{type(m).__name__} is converted for batched {form} input, got shape {ctx.input_shapes[0]}: "
            "convert with a batch axis (x[None]) and index the output"
        )


def _fold_cases(torch_type):
    @st.composite
    def case(draw):
        args = _block_args(draw)
        hw = _sizes_with_blocks(draw, args)
        n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
        if torch_type is nn.Unfold:
            return make_case(draw, nn.Unfold(**args), (n, c, *hw))
        k = pair(args["kernel_size"])
        oh, ow = blocks(hw, k, pair(args["dilation"]), pair(args["padding"]), pair(args["stride"]))
        output_size = hw[0] if hw[0] == hw[1] and draw(st.booleans()) else hw
        return make_case(draw, nn.Fold(output_size, **args), (n, c * k[0] * k[1], oh * ow))

    return case()


# Unfold reads a channels-last feature map and returns torch's (N, C*kh*kw, L) blocks.
@register(nn.Unfold, cases=_fold_cases, layout=(CHANNELS_LAST, TORCH))
def unfold(m, ctx):
    _require_rank(m, ctx, 4, "(N, C, H, W)")
    return Unfold(m.kernel_size, m.dilation, m.padding, m.stride)


# Fold reads torch's (N, C*kh*kw, L) blocks and returns a channels-last feature map.
@register(nn.Fold, cases=_fold_cases, layout=(TORCH, CHANNELS_LAST))
def fold(m, ctx):
    _require_rank(m, ctx, 3, "(N, C*kh*kw, L)")
    return Fold(m.output_size, m.kernel_size, m.dilation, m.padding, m.stride)
