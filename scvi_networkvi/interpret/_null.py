"""A size- and width-matched reference for GO-term probes: random gene sets through the same gene layer.

A GO term's node summarises the gene-node activations of its ``n_genes`` genes in ``width`` neurons; a term with
many genes can separate a cell type well without its genes being special. The reference for a term draws random
sets of as many annotated genes from the same modality, summarises their gene-node activations (the same trained
gene layer the term reads) in ``width`` dimensions by PCA on fitting cells, and fits the same probe on the same
split. The term's held-out AUROC is then compared with those of the random sets.

The random sets' summaries are untrained while the term's neurons were trained. For a like-with-like test the
term's own genes are summarised and probed exactly as the random sets are: whether the term's gene set separates the
phenotype better than random gene sets of its size, in the trained gene layer's representation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.decomposition import PCA

from ._auroc import auroc
from ._probe import Targets, fitted_scores
from ._progress import track

#: Log-spaced size bins: terms whose sizes fall in one bin ``[r**i, r**(i+1))`` share their random draws, drawn at
#: the bin's geometric middle (within a factor ``sqrt(r)`` = 1.22 of every size in it).
SIZE_BIN_RATIO = 1.5
#: The standardisation and PCA of a random set are fitted on at most this many (seeded) fitting cells; every cell is
#: then projected.
PCA_CELLS = 500
#: Sets holding more than 1/DENSE_SHARE of all neurons are projected together by one dense product.
DENSE_SHARE = 25


@dataclass(frozen=True)
class NullStats:
    """Per term and phenotype (``(k, p)``): the reference and the gene-set test.

    ``auroc_null`` / ``pval_null``: the random gene sets' mean held-out AUROC and the term's empirical p-value
    against them; ``auroc_set`` / ``pval_set``: the held-out AUROC of the term's own gene set summarised like the
    random sets, and its empirical p-value against them (NaN where the term's gene set was not given).
    """

    auroc_null: np.ndarray
    pval_null: np.ndarray
    auroc_set: np.ndarray
    pval_set: np.ndarray


def size_bins(sizes: np.ndarray, ratio: float = SIZE_BIN_RATIO) -> np.ndarray:
    """The representative size of each size's log-spaced bin (bins ``[ratio**i, ratio**(i+1))``, geometric middle)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    index = np.floor(np.log(np.maximum(sizes, 1.0)) / np.log(ratio) + 1e-9)
    return np.maximum(1, np.round(ratio ** (index + 0.5))).astype(np.int64)


@dataclass(frozen=True)
class SetProjection:
    """A gene set's PCA summary as an affine map of its neurons: ``z = weights @ neurons[rows] - offset``."""

    rows: np.ndarray  # (set neurons,) rows of the feature-major neurons
    weights: np.ndarray  # (components, set neurons), float32, the standardisation folded in
    offset: np.ndarray  # (components, 1), float32


def fit_set_projection(
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
    # _probe.standardise expects cell-major (k, n, w) blocks; transposing every set would copy it twice more
    mean = sample.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    std = sample.std(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    scale = np.where(std > 1e-6, 1.0 / np.where(std > 1e-6, std, 1.0), 0.0).astype(np.float32)
    if not scale.any():  # every neuron constant on the fitting cells (e.g. genes silent there): nothing to summarise
        return None
    n_components = min(width, sample.shape[1], len(rows))
    pca = PCA(n_components=n_components, iterated_power=2, n_oversamples=4, random_state=seed)
    pca.fit(((sample - mean) * scale).T)
    # z = components @ ((x - mean) * scale - m) without materialising the standardised neurons
    weights = (pca.components_ * scale.T).astype(np.float32)
    offset = weights @ mean + (pca.components_ @ pca.mean_[:, None]).astype(np.float32)
    return SetProjection(rows, weights, offset)


def project_sets(neurons: np.ndarray, projections: list[SetProjection | None], width: int) -> np.ndarray:
    """``(sets, cells, width)`` summaries of every cell (zeros for ``None`` and for missing components).

    Sets that are large against all neurons share one dense product (one pass over the neurons for all of them);
    small ones read their own rows through a sparse product (their neurons are never copied).
    """
    n_neurons, n_cells = neurons.shape
    z = np.zeros((len(projections), width, n_cells), dtype=np.float32)
    large = [i for i, p in enumerate(projections) if p is not None and len(p.rows) * DENSE_SHARE > n_neurons]
    dense_sets = set(large)
    if large:  # measured on one CPU core: a shared float32 GEMM costs ~1/25 of a sparse product per nonzero
        dense = np.zeros((len(large) * width, n_neurons), dtype=np.float32)
        for k, i in enumerate(large):
            p = projections[i]
            dense[k * width : k * width + len(p.weights)][:, p.rows] = p.weights
        z[large] = (dense @ neurons).reshape(len(large), width, n_cells)
    for i, p in enumerate(projections):
        if p is None:
            continue
        c = len(p.weights)
        if i not in dense_sets:
            columns = np.tile(p.rows, c)
            index = (np.repeat(np.arange(c), len(p.rows)), columns)
            z[i, :c] = sp.csr_matrix((p.weights.ravel(), index), shape=(c, n_neurons)) @ neurons
        z[i, :c] -= p.offset
    return z.transpose(0, 2, 1).astype(np.float64)


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
    own_sets: Sequence[np.ndarray] | None = None,
    progress: bool = False,
    description: str = "Random gene sets",
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
    own_sets
        Per term, its own gene-node indices (``None``: no gene-set test). Summarised and probed like the random sets.
    progress, description
        Draw scvi-tools' progress bar over the (size bin, width) groups, with this description.

    Returns
    -------
    ``auroc_null``: the mean held-out AUROC of the random sets; ``pval_null``: ``(1 + #{random >= observed}) /
    (1 + n_sets)``, one-sided; ``auroc_set``: the held-out AUROC of the term's own gene set; ``pval_set``: ``(1 +
    #{random >= auroc_set}) / (1 + n_sets)``.
    """
    k, p = observed.shape
    out = NullStats(*(np.full((k, p), np.nan) for _ in range(4)))
    if len(pool) == 0 or k == 0:
        return out
    if own_sets is not None and len(own_sets) != k:
        raise ValueError(f"own_sets must hold one gene set per term ({k}), got {len(own_sets)}.")
    binned = np.minimum(size_bins(sizes), len(pool))
    neurons = np.ascontiguousarray(np.asarray(genes, dtype=np.float32).T)  # feature-major: a set is row copies
    pca_rows = np.sort(np.random.default_rng([seed, 0]).permutation(fit_rows)[:PCA_CELLS])
    pca_neurons = np.ascontiguousarray(neurons[:, pca_rows])  # every set's PCA reads these cells only
    groups = sorted(set(zip(binned.tolist(), np.asarray(widths).tolist(), strict=True)))
    for size, width in track(groups, description, enabled=progress):
        terms = np.flatnonzero((binned == size) & (np.asarray(widths) == width))
        rng = np.random.default_rng([seed, size, width])
        members = [rng.choice(pool, size=size, replace=False) for _ in range(n_sets)]
        own = [] if own_sets is None else [t for t in terms if len(own_sets[t])]
        members += [np.asarray(own_sets[t], dtype=np.int64) for t in own]  # probed in the same batch, after the null
        projections = [fit_set_projection(pca_neurons, gene_size, m, width, seed) for m in members]
        z = project_sets(neurons, projections, width)  # (sets, cells, width)
        z_fit, z_eval = z[:, fit_rows], z[:, eval_rows]
        _, scores_eval, _ = fitted_scores(z_fit, z_eval, targets, C, class_weight, device)
        held_auroc = np.full((len(members), p), np.nan)
        for j in range(p):
            held = targets.case_eval[j] | targets.control_eval[j]
            held_auroc[:, j] = auroc(scores_eval[:, j, held], targets.case_eval[j, held])
        null = held_auroc[:n_sets]
        out.auroc_null[terms] = null.mean(0)
        out.pval_null[terms] = _exceedance(null, observed[terms], n_sets)
        if own:
            out.auroc_set[own] = held_auroc[n_sets:]
            out.pval_set[own] = _exceedance(null, out.auroc_set[own], n_sets)
    return out


def _exceedance(null: np.ndarray, observed: np.ndarray, n_sets: int) -> np.ndarray:
    """``(1 + #{null >= observed}) / (1 + n_sets)`` per row of ``observed`` ``(terms, p)``; NaN where it is NaN."""
    exceed = (null[None, :, :] >= observed[:, None, :] - 1e-12).sum(1)
    return np.where(np.isnan(observed), np.nan, (1.0 + exceed) / (1.0 + n_sets))
