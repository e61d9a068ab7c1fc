"""Torch layers built from a :class:`~scvi_networkvi.wiring.Wiring`."""

from ._attention import CovariateAttention, covariate_vector
from ._block_sparse import BlockSparseLinear
from ._input_transform import log1p_shift_scale_t
from ._level_norm import LevelBatchNorm
from ._log1p import log1p
from ._numba_cache import ensure_cache_location
from ._options import check_choices, keyword_defaults
from ._wired_encoder import (
    GeneLayer,
    GONetwork,
    InteractionLayer,
    WideDropout,
    WiredEncoder,
    activation_module,
    transposed,
)

__all__ = [
    "BlockSparseLinear",
    "CovariateAttention",
    "covariate_vector",
    "ensure_cache_location",
    "GONetwork",
    "GeneLayer",
    "InteractionLayer",
    "LevelBatchNorm",
    "WideDropout",
    "WiredEncoder",
    "activation_module",
    "check_choices",
    "keyword_defaults",
    "log1p",
    "log1p_shift_scale_t",
    "transposed",
]
