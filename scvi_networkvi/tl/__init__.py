"""Tools: NETWORKVI on MuData, muon-style (``nvi.tl.train``, ``embed``, ``importances``, ``perturb``...).

Each function takes the data first and keyword-only options, checks its inputs before changing anything, and writes
documented keys (listed in its docstring).
"""

from ._embed import embed
from ._interpret import attention, importances, perturb
from ._query import map_query, transfer_labels
from ._train import train

__all__ = ["attention", "embed", "importances", "map_query", "perturb", "train", "transfer_labels"]
