"""Keras layers with PyTorch semantics that stock Keras lacks or gets subtly wrong.

Keras only: importing this package never imports torch, so converted models load and serve
in a TensorFlow-only image (`keras.saving.load_model(path, safe_mode=True)` after
`import recreate`). Every layer here is registered for serialization under "recreate>".
"""

from .activations import (
    CELU,
    GELU,
    GLU,
    Hardshrink,
    Hardtanh,
    LeakyReLU,
    Softplus,
    Softshrink,
    Threshold,
)
from .adaptive_pool import AdaptivePooling
from .affine_grid import AffineGrid
from .attention import MultiheadAttention
from .avg_pool import AveragePooling
from .batch_stat_norm import BatchStatNormalization
from .bilinear import Bilinear
from .channel_shuffle import ChannelShuffle
from .cond import Cond, WhileLoop
from .conv_transpose import ConvTranspose
from .deform_conv import DeformConv2D
from .distance import CosineSimilarity, PairwiseDistance
from .embedding import MaxNormEmbedding
from .embedding_bag import EmbeddingBag
from .flatten import Flatten
from .fold import Fold, Unfold
from .fractional_max_pool import FractionalMaxPooling
from .grid_sample import GridSample
from .interpolate import Interpolate
from .layer_norm import LayerNorm
from .local_response_norm import LocalResponseNormalization
from .lp_pool import LPPooling
from .max_pool import MaxPooling
from .max_unpool import MaxUnpooling
from .nms import NonMaxSuppression
from .op import Constant, Op
from .pad import Pad
from .parameter import Parameter
from .pixel_shuffle import PixelShuffle, PixelUnshuffle
from .recurrent import Recurrent, RecurrentCell
from .roi_align import RoIAlign
from .roi_pool import RoIPool
from .sdpa import ScaledDotProductAttention
from .softmax import LogSoftmax, Softmin
from .subsample import Subsample
from .transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from .unflatten import Unflatten

__all__ = [
    "AdaptivePooling",
    "AffineGrid",
    "AveragePooling",
    "BatchStatNormalization",
    "Bilinear",
    "CELU",
    "ChannelShuffle",
    "Constant",
    "Cond",
    "ConvTranspose",
    "CosineSimilarity",
    "DeformConv2D",
    "EmbeddingBag",
    "Flatten",
    "Fold",
    "FractionalMaxPooling",
    "GELU",
    "GLU",
    "GridSample",
    "Hardshrink",
    "Hardtanh",
    "Interpolate",
    "LPPooling",
    "LayerNorm",
    "LeakyReLU",
    "LocalResponseNormalization",
    "LogSoftmax",
    "MaxNormEmbedding",
    "MaxPooling",
    "MaxUnpooling",
    "MultiheadAttention",
    "NonMaxSuppression",
    "Op",
    "Pad",
    "PairwiseDistance",
    "Parameter",
    "PixelShuffle",
    "PixelUnshuffle",
    "Recurrent",
    "RecurrentCell",
    "RoIAlign",
    "RoIPool",
    "ScaledDotProductAttention",
    "Softmin",
    "Softplus",
    "Softshrink",
    "Subsample",
    "Threshold",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "Unflatten",
    "Unfold",
    "WhileLoop",
]
