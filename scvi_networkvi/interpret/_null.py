"""A size- and width-matched reference for GO-term probes: random gene sets through the same gene layer.

A GO term's node summarises the gene-node activations of its ``n_genes`` genes in ``width`` neurons; a term with
many genes can separate a cell type well without its genes being special. The reference for a term draws random
sets of as many annotated genes from the same modality, summarises their gene-node activations (the same trained
gene layer the term reads) in ``width`` dimensions by PCA on the fitting cells, and fits the same probe on the same
split. The term's held-out AUROC is then compared with those of the random sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA

from ._auroc import auroc
from ._probe import Targets, fitted_scores, standardise

#: Term sizes within this factor of each other share their random draws (log-spaced bins).
SIZE_BIN_RATIO = 1.2


@dataclass(frozen=True)
class NullStats:
    """Per term and phenotype (``(k, p)``): mean held-out AUROC of the random gene sets and the empirical p-value."""

    auroc_null: np.ndarray
    pval_null: np.ndarray


def size_bins(sizes: np.ndarray, ratio: float = SIZE_BIN_RATIO) -> np.ndarray:
    """The representative size of each size's log-spaced bin (bins ``[ratio**i, ratio**(i+1))``, geometric middle)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    index = np.floor(np.log(np.maximum(sizes, 1.0)) / np.log(ratio) + 1e-9)
    return np.maximum(1, np.round(ratio ** (index + 0.5))).astype(np.int64)


def random_set_features(
    genes: np.ndarray,
    gene_size: int,
    members: np.ndarray,
    width: int,
    fit_rows: np.ndarray,
    eval_rows: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``width``-dimensional PCA summary (fitted on the fitting cells) of the gene-node neurons of ``members``."""
    columns = (members[:, None] * gene_size + np.arange(gene_size)).reshape(-1)
    x_fit = np.asarray(genes[np.ix_(fit_rows, columns)], dtype=np.float64)[None]
    x_eval = np.asarray(genes[np.ix_(eval_rows, columns)], dtype=np.float64)[None]
    x_fit, x_eval = (x[0] for x in standardise(x_fit, x_eval))
    n_components = min(width, x_fit.shape[0], x_fit.shape[1])
    pca = PCA(n_components=n_components, random_state=seed)
    z_fit, z_eval = pca.fit_transform(x_fit), pca.transform(x_eval)
    if n_components < width:  # fewer neurons than the term is wide: the missing dimensions carry nothing
        pad = width - n_components
        z_fit, z_eval = np.pad(z_fit, ((0, 0), (0, pad))), np.pad(z_eval, ((0, 0), (0, pad)))
    return z_fit, z_eval


def null_probes(
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
) -> NullStats:
    """Reference AUROCs for terms of ``sizes`` genes and ``widths`` neurons, and p-values of their ``observed`` ones.

    Parameters
    ----------
    genes
        ``(cells, n_genes * gene_size)`` gene-node activations of the modality.
    pool
        Gene-node indices the random sets are drawn from (the modality's annotated genes).
    sizes, widths, observed
        Per term: number of genes, number of neurons, held-out AUROC per phenotype ``(k, p)``.
    n_sets
        Random gene sets per (size bin, width).

    Returns
    -------
    ``auroc_null``: the mean held-out AUROC of the random sets; ``pval_null``: ``(1 + #{random >= observed}) /
    (1 + n_sets)``, one-sided.
    """
    k, p = observed.shape
    out = NullStats(np.full((k, p), np.nan), np.full((k, p), np.nan))
    if len(pool) == 0 or k == 0:
        return out
    binned = np.minimum(size_bins(sizes), len(pool))
    for size, width in sorted(set(zip(binned.tolist(), np.asarray(widths).tolist(), strict=True))):
        rng = np.random.default_rng([seed, size, width])
        summaries = [
            random_set_features(
                genes, gene_size, rng.choice(pool, size=size, replace=False), width, fit_rows, eval_rows, seed
            )
            for _ in range(n_sets)
        ]
        z_fit = np.stack([s[0] for s in summaries])  # (n_sets, n_fit, width)
        z_eval = np.stack([s[1] for s in summaries])
        _, scores_eval, _ = fitted_scores(z_fit, z_eval, targets, C, class_weight, device)
        null = np.full((n_sets, p), np.nan)
        for j in range(p):
            held = targets.case_eval[j] | targets.control_eval[j]
            null[:, j] = auroc(scores_eval[:, j, held], targets.case_eval[j, held])
        terms = np.flatnonzero((binned == size) & (np.asarray(widths) == width))
        out.auroc_null[terms] = null.mean(0)
        exceed = (null[None, :, :] >= observed[terms][:, None, :] - 1e-12).sum(1)  # (terms, p)
        pval = (1.0 + exceed) / (1.0 + n_sets)
        out.pval_null[terms] = np.where(np.isnan(observed[terms]), np.nan, pval)
    return out
