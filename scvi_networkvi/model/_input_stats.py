"""The encoders' input statistics taken from the registered data: per-batch means and spreads of the log counts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scvi import REGISTRY_KEYS

from scvi_networkvi.module import DATA_KEYS, DEPTH_TARGET

from ._data import presence_mask


class NetworkVIInputStatsMixin:
    """The statistics behind ``batch_centered_input``, ``batch_scaled_input`` and ``depth_normalized_input``."""

    def _input_transforms(
        self, centered: Sequence[str], scaled: bool, normalized: Sequence[str] = ()
    ) -> dict[str, dict[str, np.ndarray]]:
        """The module's ``input_shifts`` (batch means of the centred roles) and, if ``scaled``, ``input_spreads``.

        A role in ``normalized`` (``depth_normalized_input``) has its moments taken of the depth-normalised counts
        that its encoder reads.
        """
        moments = {role: self._batch_moments(role, role in normalized) for role in centered}
        shifts = {role: mean for role, (mean, _, _) in moments.items()}
        if not scaled:
            return {"input_shifts": shifts}
        spreads = {role: _batch_spreads(variance, n_cells) for role, (_, variance, n_cells) in moments.items()}
        return {"input_shifts": shifts, "input_spreads": spreads}

    def _batch_moments(self, role: str, depth_normalized: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per batch: mean and variance of every feature's ``log1p`` count (``(n_batch, n_features)``), cell counts.

        ``depth_normalized``: of the counts scaled to :data:`DEPTH_TARGET` per cell, as the encoder reads them.
        """
        counts = self.adata_manager.get_from_registry(DATA_KEYS[role])
        counts = counts.to_numpy() if isinstance(counts, pd.DataFrame) else counts
        if depth_normalized:
            counts = _depth_normalized(counts)
        batch = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        present = presence_mask(self.adata, [self.modality_name(role)])[:, 0] > 0
        n_batch = max(self.summary_stats.n_batch, 1)
        mean = np.zeros((n_batch, counts.shape[1]), dtype=np.float64)
        square = np.zeros_like(mean)
        n_cells = np.zeros(n_batch, dtype=np.int64)
        for b in range(n_batch):
            rows = np.flatnonzero(present & (batch == b))
            n_cells[b] = rows.size
            if rows.size:
                block = counts[rows]
                if hasattr(block, "toarray"):  # sparse: log1p keeps zeros, so the sums are over the stored values
                    logged = block.astype(np.float64).log1p()
                    mean[b] = np.asarray(logged.sum(axis=0)).ravel() / rows.size
                    square[b] = np.asarray(logged.power(2).sum(axis=0)).ravel() / rows.size
                else:
                    logged = np.log1p(np.asarray(block, dtype=np.float64))
                    mean[b] = logged.mean(axis=0)
                    square[b] = np.square(logged).mean(axis=0)
        variance = np.maximum(square - np.square(mean), 0.0)
        return mean.astype(np.float32), variance, n_cells


def _batch_spreads(variance: np.ndarray, n_cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each batch's standard deviation of every feature and the pooled within-batch one, the spread to give them.

    ``variance``: ``(n_batch, n_features)`` within each batch; rows of batches without cells stay 0, the mark a query
    model replaces by its own batch's spreads.
    """
    pooled = np.sqrt((n_cells / max(n_cells.sum(), 1)) @ variance)
    return np.sqrt(variance).astype(np.float32), pooled.astype(np.float32)


def _depth_normalized(counts):
    """``counts`` (cells x features, dense or sparse) with every cell scaled to :data:`DEPTH_TARGET` in total."""
    totals = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    factors = DEPTH_TARGET / np.maximum(totals, 1.0)
    if hasattr(counts, "toarray"):
        return sp.csr_matrix(sp.diags(factors) @ counts)
    return np.asarray(counts, dtype=np.float64) * factors[:, None]
