"""Per-node activations of the GO-wired encoders on a set of cells: what the probes and perturbations read.

Captured by :meth:`~scvi_networkvi.NETWORKVI.get_activations` (one inference pass with forward hooks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scvi_networkvi.wiring import Wiring


@dataclass(frozen=True)
class ModalityActivations:
    """Activations of one modality's wired encoder on the cells that have the modality.

    Attributes
    ----------
    role
        ``rna``, ``protein`` or ``atac``.
    modality
        The MuData modality name.
    wiring
        The encoder's wiring (node order and widths).
    cells
        Positions, among the requested cells, of the cells that have the modality (the rows below).
    terms
        ``(cells, term neurons)``: every term's neurons, terms in wiring order (deepest level first); term ``t`` owns
        columns ``term_offsets[t]:term_offsets[t + 1]``.
    genes
        ``(cells, n_genes * gene_size)``: the gene-node activations that feed the GO network (after the interaction
        layers), gene ``g`` owning columns ``g * gene_size:(g + 1) * gene_size``; ``None`` unless requested.
    """

    role: str
    modality: str
    wiring: Wiring
    cells: np.ndarray
    terms: np.ndarray
    genes: np.ndarray | None

    @property
    def term_offsets(self) -> np.ndarray:
        """Column where each term's neurons start, plus the total width at the end."""
        return np.concatenate([[0], np.cumsum(self.wiring.term_size)]).astype(np.int64)


@dataclass(frozen=True)
class Activations:
    """Activations of every requested modality on a set of cells (``obs_names``, in the order requested)."""

    obs_names: pd.Index
    modalities: dict[str, ModalityActivations]
