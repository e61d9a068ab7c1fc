"""The size-matched reference as first implemented: one scikit-learn PCA per random set, one probe batch per size bin.

Kept as the tested reference of :func:`scvi_networkvi.interpret._null.null_probes` (``tests/test_interpret_null.py``
compares the two) and as the baseline of ``benchmarks/importances.py --null-sets``; not used by the package itself.
The method is the same as the fast path's, which batches the PCA of all sets of a size (exact eigendecomposition for
at most 500 neurons, the same randomized SVD above) and scores only the held-out cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.decomposition import PCA

from ._auroc import auroc
from ._null import NullStats, SetProjection, exceedance, pca_rows, project_sets, size_bins
from ._probe import Targets, fitted_scores


def fit_set_projection_reference(
    pca_neurons: np.ndarray, gene_size: int, members: np.ndarray, width: int, seed: int
) -> SetProjection | None:
    """The ``<= width``-dimensional PCA summary of the gene-node neurons of ``members``; ``None`` when all are constant.

    ``pca_neurons`` holds the neurons (feature-major, ``(n_genes * gene_size, PCA cells)``, float32) on the fitting
    cells the summary is fitted on. The neurons are standardised by their mean and deviation over those cells
    (constant ones become 0), and scikit-learn's PCA (its automatic solver; two power iterations where that is
    randomised) is fitted on the same cells.
    """
    rows = (members[:, None] * gene_size + np.arange(gene_size)).reshape(-1)
    sample = pca_neurons[rows]  # (set neurons, PCA cells)
    mean = sample.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    std = sample.std(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    scale = np.where(std > 1e-6, 1.0 / np.where(std > 1e-6, std, 1.0), 0.0).astype(np.float32)
    if not scale.any():
        return None
    n_components = min(width, sample.shape[1], len(rows))
    pca = PCA(n_components=n_components, iterated_power=2, n_oversamples=4, random_state=seed)
    pca.fit(((sample - mean) * scale).T)
    weights = (pca.components_ * scale.T).astype(np.float32)
    offset = weights @ mean + (pca.components_ @ pca.mean_[:, None]).astype(np.float32)
    return SetProjection(rows, weights, offset)


def null_probes_reference(
    genes: np.ndarray,
    gene_size: int,
    pool: np.ndarray,
    sizes: np.ndarray,
    widths: np.ndarray,
    observed: np.ndarray,
    fit_rows: np.ndarray,
    eval_rows: np.ndarray,
    targets: Targets,
    *,
    n_sets: int,
    C: float,
    class_weight: str | None,
    seed: int,
    device: torch.device | None = None,
    own_sets: Sequence[np.ndarray] | None = None,
) -> NullStats:
    """:func:`scvi_networkvi.interpret._null.null_probes` as first implemented (same parameters and result)."""
    k, p = observed.shape
    out = NullStats(*(np.full((k, p), np.nan) for _ in range(5)))
    if len(pool) == 0 or k == 0:
        return out
    if own_sets is not None and len(own_sets) != k:
        raise ValueError(f"own_sets must hold one gene set per term ({k}), got {len(own_sets)}.")
    binned = np.minimum(size_bins(sizes), len(pool))
    neurons = np.ascontiguousarray(np.asarray(genes, dtype=np.float32).T)
    pca_neurons = np.ascontiguousarray(neurons[:, pca_rows(fit_rows, targets, seed)])
    for size, width in sorted(set(zip(binned.tolist(), np.asarray(widths).tolist(), strict=True))):
        terms = np.flatnonzero((binned == size) & (np.asarray(widths) == width))
        rng = np.random.default_rng([seed, size, width])
        members = [rng.choice(pool, size=size, replace=False) for _ in range(n_sets)]
        own = [] if own_sets is None else [t for t in terms if len(own_sets[t])]
        members += [np.asarray(own_sets[t], dtype=np.int64) for t in own]
        projections = [fit_set_projection_reference(pca_neurons, gene_size, m, width, seed) for m in members]
        z = project_sets(neurons, projections, width)
        z_fit, z_eval = z[:, fit_rows], z[:, eval_rows]
        _, scores_eval, _ = fitted_scores(z_fit, z_eval, targets, C, class_weight, device)
        held_auroc = np.full((len(members), p), np.nan)
        for j in range(p):
            held = targets.case_eval[j] | targets.control_eval[j]
            held_auroc[:, j] = auroc(scores_eval[:, j, held], targets.case_eval[j, held])
        null = held_auroc[:n_sets]
        out.auroc_null[terms] = null.mean(0)
        out.auroc_null_sd[terms] = null.std(0, ddof=1) if n_sets > 1 else np.nan
        out.pval_null[terms] = exceedance(null, observed[terms], n_sets)
        if own:
            out.auroc_set[own] = held_auroc[n_sets:]
            out.pval_set[own] = exceedance(null, out.auroc_set[own], n_sets)
    return out
