"""totalVI's empirical initialisation of the protein background prior, per batch, from the counts."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

logger = logging.getLogger(__name__)

#: Cells per batch whose counts are fitted (totalVI's number).
N_CELLS = 100
#: Prior of a batch without usable cells (scvi-tools' value for missing batches); a query model overwrites it.
_FALLBACK = (0.0, 0.05)


def empirical_protein_background(
    counts, batch: np.ndarray, n_batch: int, *, n_cells: int = N_CELLS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the log protein background per protein and batch, as totalVI initialises its prior.

    For ``n_cells`` cells of each batch (drawn with a seeded generator), a two-component Gaussian mixture is fitted to
    the cell's ``log1p`` protein counts; the lower component is the cell's background. A batch's prior mean is the
    mean of its cells' background means, its scale ``sqrt(sum of squared sds) / n_cells`` (totalVI's). Every protein
    of a batch gets the same values. scvi-tools' version is a private method of TOTALVI bound to its registry and
    draws cells from the global NumPy state, hence this one.

    Parameters
    ----------
    counts
        Cells x proteins counts (dense or sparse) of the cells that have the protein modality.
    batch
        Batch code of each of those cells.
    n_batch
        Number of batches of the model (batches without cells get a neutral prior).
    n_cells, seed
        Cells fitted per batch (drawn with replacement when a batch has fewer) and the generator's seed.

    Returns
    -------
    ``(mean, scale)``, each ``(n_proteins, n_batch)`` float32.
    """
    batch = np.asarray(batch).ravel()
    if counts.shape[0] != batch.shape[0]:
        raise ValueError(f"counts has {counts.shape[0]} cells but batch has {batch.shape[0]} codes.")
    rng = np.random.default_rng(seed)
    means, scales = np.full(n_batch, _FALLBACK[0]), np.full(n_batch, _FALLBACK[1])
    for b in range(n_batch):
        rows = np.flatnonzero(batch == b)
        if rows.size == 0:
            continue
        chosen = rng.choice(rows, size=n_cells, replace=rows.size < n_cells)
        block = counts[chosen]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        cell_means, cell_sds = [], []
        for values in np.log1p(block.astype(np.float64)):
            mean, sd = _background_of_cell(values, seed)
            cell_means.append(mean)
            cell_sds.append(sd)
        means[b] = float(np.mean(cell_means))
        scales[b] = float(np.sqrt(np.sum(np.square(cell_sds))) / n_cells)
    n_proteins = counts.shape[1]
    return (
        np.tile(means.astype(np.float32), (n_proteins, 1)),
        np.tile(scales.astype(np.float32), (n_proteins, 1)),
    )


def _background_of_cell(values: np.ndarray, seed: int) -> tuple[float, float]:
    """Mean and sd of the lower component of a two-component mixture on one cell's log counts."""
    if np.unique(values).size < 2:  # an all-zero (or constant) cell has no two components
        return _FALLBACK
    mixture = GaussianMixture(n_components=2, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            mixture.fit(values.reshape(-1, 1))
        except ConvergenceWarning:
            return _FALLBACK
    lower = int(np.argmin(mixture.means_.ravel()))
    return float(mixture.means_.ravel()[lower]), float(np.sqrt(mixture.covariances_.ravel()[lower]))
