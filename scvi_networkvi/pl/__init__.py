"""Plotting: heatmaps of importances and perturbation effects, the GO graph around a term (matplotlib).

Each function returns the Axes it drew (``None`` when shown), and takes ``show`` / ``save`` like scanpy.
"""

from ._go_graph import go_graph
from ._heatmaps import importances, perturbation

__all__ = ["go_graph", "importances", "perturbation"]
