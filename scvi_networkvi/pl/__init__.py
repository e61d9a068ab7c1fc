"""Plotting: heatmaps of importances and perturbation effects, the GO graph around a term (matplotlib).

Each function returns the Axes it drew (``None`` when shown), and takes ``show`` / ``save`` like scanpy. :func:`shorten`
cuts a GO term's name to the width the plots give it.
"""

from ._go_graph import go_graph
from ._heatmaps import importances, perturbation
from ._utils import shorten

__all__ = ["go_graph", "importances", "perturbation", "shorten"]
