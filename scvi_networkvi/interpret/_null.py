"""A size- and width-matched reference for GO-term probes: random gene sets through the same gene layer.

A GO term's node summarises the gene-node activations of its ``n_genes`` genes in ``width`` neurons; a term with
many genes can separate a cell type well without its genes being special. The reference for a term draws random
sets of as many annotated genes from the same modality, summarises their gene-node activations (the same trained
gene layer the term reads) in ``width`` dimensions by PCA on fitting cells, and fits the same probe on the same
split. The term's held-out AUROC is then compared with those of the random sets.

The random sets' summaries are untrained while the term's neurons were trained. For a like-with-like test the
term's own genes are summarised and probed exactly as the random sets are: whether the term's gene set separates the
phenotype better than random gene sets of its size, in the trained gene layer's representation.

Cost: the neurons are standardised on the PCA cells once, the PCA summaries of all sets of a size bin are one
batched computation (:func:`fit_set_projections`, scikit-learn's solvers reproduced), and the ``n_sets`` x
phenotypes probes per size bin are fitted and scored on the held-out cells by a compiled kernel
(:mod:`._probe_kernel`; the batched torch solver on GPUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from . import _probe_kernel
from ._logistic import decision_function, fit_logistic, torch_threads
from ._probe import Targets, sample_weights, tied
from ._progress import track
from ._standardize import standardize

#: Log-spaced size bins: terms whose sizes fall in one bin ``[r**i, r**(i+1))`` share their random draws, drawn at
#: the bin's geometric middle (within a factor ``sqrt(r)`` = 1.22 of every size in it).
SIZE_BIN_RATIO = 1.5
#: The standardisation and PCA of a random set are fitted on at most this many (seeded) fitting cells; every cell is
#: then projected.
PCA_CELLS = 500
#: Draw the PCA cells in equal shares from the phenotypes (cells of no phenotype as one more group) instead of at
#: random among the fitting cells.
PCA_STRATIFIED = False
#: Sets holding more than 1/DENSE_SHARE of all neurons are projected together by one dense product.
DENSE_SHARE = 25


@dataclass(frozen=True)
class NullStats:
    """Per term and phenotype (``(k, p)``): the reference and the gene-set test.

    ``auroc_null`` / ``pval_null``: the random gene sets' mean held-out AUROC and the term's empirical p-value
    against them; ``auroc_set`` / ``pval_set``: the held-out AUROC of the term's own gene set summarised like the
    random sets, and its empirical p-value against them (NaN where the term's gene set was not given);
    ``auroc_null_sd``: the standard deviation of the random sets' held-out AUROCs.
    """

    auroc_null: np.ndarray
    pval_null: np.ndarray
    auroc_set: np.ndarray
    pval_set: np.ndarray
    auroc_null_sd: np.ndarray


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


#: Bytes of the work arrays of one batch of sets in the batched PCA (gathered neurons, products).
PCA_BATCH_BYTES = 128 * 2**20
#: scikit-learn's PCA settings the summaries reproduce: ``iterated_power`` and ``n_oversamples`` of its randomized
#: SVD (used for more than 500 neurons, as its automatic solver does).
POWER_ITERATIONS = 2
OVERSAMPLES = 4


@dataclass(frozen=True)
class PCACells:
    """Every gene-node neuron on the PCA cells, standardised once for all gene sets (feature-major).

    A set's standardisation only reads its own neurons' rows, so standardising all neurons once gives every set
    exactly the numbers it would compute alone.
    """

    standard: np.ndarray  # (neurons, PCA cells) float32: (x - mean) * scale
    mean: np.ndarray  # (neurons,) float32 mean over the PCA cells
    scale: np.ndarray  # (neurons,) float32 1 / deviation, 0 for constant neurons
    centre: np.ndarray  # (neurons,) float64 mean of ``standard`` over the PCA cells (the PCA's own centring, ~0)


def pca_rows(fit_rows: np.ndarray, targets: Targets, seed: int) -> np.ndarray:
    """The sorted fitting rows (at most :data:`PCA_CELLS`) on which every gene set's standardisation and PCA are fitted.

    At random among ``fit_rows`` (seeded), or with :data:`PCA_STRATIFIED` in equal shares from each phenotype's cases
    (a cell goes to its first phenotype; cells of none form one more group), a group smaller than its share giving
    all its cells and the rest going to the larger ones.
    """
    rng = np.random.default_rng([seed, 0])
    if not PCA_STRATIFIED or len(fit_rows) <= PCA_CELLS:
        return np.sort(rng.permutation(fit_rows)[:PCA_CELLS])
    cases = targets.case_fit
    group = np.where(cases.any(0), cases.argmax(0), cases.shape[0])  # fitting cell -> its group
    members = [np.flatnonzero(group == g) for g in np.unique(group)]
    chosen, left = [], PCA_CELLS
    for i, rows in enumerate(sorted(members, key=len)):  # smallest first: each takes at most an equal share
        take = min(len(rows), left // (len(members) - i))
        chosen.append(rng.choice(rows, size=take, replace=False))
        left -= take
    return np.sort(fit_rows[np.concatenate(chosen)])


def pca_cells(pca_neurons: np.ndarray) -> PCACells:
    """Standardise the ``(neurons, PCA cells)`` float32 neurons by their mean and deviation (constant ones: 0)."""
    mean = pca_neurons.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    std = pca_neurons.std(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    scale = np.where(std > 1e-6, 1.0 / np.where(std > 1e-6, std, 1.0), 0.0).astype(np.float32)
    standard = np.ascontiguousarray((pca_neurons - mean) * scale, dtype=np.float32)
    return PCACells(standard, mean[:, 0], scale[:, 0], standard.mean(axis=1, dtype=np.float64))


def pca_solver(n_cells: int, n_neurons: int, n_components: int) -> str:
    """``"exact"`` or ``"randomized"``: the choice of scikit-learn's automatic PCA solver for this shape.

    scikit-learn takes the covariance eigendecomposition (at most 1000 features and ten times as many samples) or a
    full SVD (at most 500 samples and features), both exact; its randomized SVD when fewer components than 80 % of
    the smaller side are wanted; else a full SVD.
    """
    if n_neurons <= 1000 and n_cells >= 10 * n_neurons:
        return "exact"
    if max(n_cells, n_neurons) <= 500:
        return "exact"
    if 1 <= n_components < 0.8 * min(n_cells, n_neurons):
        return "randomized"
    return "exact"


def fit_set_projections(
    cells: PCACells, gene_size: int, members: Sequence[np.ndarray], width: int, seed: int, *, dense_share: int = 0
) -> list[SetProjection | None]:
    """The ``<= width``-dimensional PCA summaries of many gene sets' neurons (``None`` where all are constant).

    The same summaries as one scikit-learn ``PCA(n_components=width, iterated_power=2, n_oversamples=4,
    random_state=seed)`` per set on its standardised neurons, computed for all sets of one size together: sets of at
    most 500 neurons (or 10x fewer than PCA cells) by an exact eigendecomposition, in float64 (scikit-learn's exact
    solvers, up to rounding); larger ones by scikit-learn's randomized SVD (the same Gaussian start from ``seed``, two
    power iterations, QR, SVD of the small projection), batched in float32 as scikit-learn runs it on float32 data.
    Components have scikit-learn's signs (the largest entry of each positive).

    Parameters
    ----------
    cells
        The standardised neurons on the PCA cells (:func:`pca_cells`).
    members
        Gene-node indices of each set.
    dense_share
        Sets holding more than ``1 / dense_share`` of all neurons run their randomized SVD through products with all
        neurons (one GEMM for many sets); ``0`` (default): :data:`DENSE_SHARE`.
    """
    n_neurons, n_cells = cells.standard.shape
    share = dense_share or DENSE_SHARE
    out: list[SetProjection | None] = [None] * len(members)
    groups: dict[tuple[int, int, str], list[tuple[int, np.ndarray]]] = {}
    for i, m in enumerate(members):
        rows = (np.asarray(m, dtype=np.int64)[:, None] * gene_size + np.arange(gene_size)).reshape(-1)
        if not len(rows) or not cells.scale[rows].any():  # every neuron constant: nothing to summarise
            continue
        n_components = min(width, n_cells, len(rows))
        key = (len(rows), n_components, pca_solver(n_cells, len(rows), n_components))
        groups.setdefault(key, []).append((i, rows))
    for (n_rows, n_components, solver), group in groups.items():
        dense = solver == "randomized" and n_rows * share > n_neurons
        if solver == "exact":  # float64 neurons and covariance (or Gram) matrix
            per_set = 8 * n_rows * (n_cells + min(n_rows, n_cells))
        elif dense:  # float32 products over all neurons: scattered columns, product and picked rows
            per_set = 4 * (n_components + OVERSAMPLES) * (2 * n_neurons + n_rows)
        else:  # float32 gathered neurons
            per_set = 4 * n_rows * n_cells
        batch = max(1, PCA_BATCH_BYTES // per_set)
        for start in range(0, len(group), batch):
            part = group[start : start + batch]
            rows = np.stack([r for _, r in part])  # (b, set neurons)
            if solver == "exact":
                components = exact_components(cells, rows, n_components)
            else:
                components = randomized_components(cells, rows, n_components, seed, dense=dense)
            for (i, r), comp in zip(part, components, strict=True):
                weights = (comp * cells.scale[r]).astype(np.float32)
                offset = weights @ cells.mean[r][:, None] + (comp @ cells.centre[r])[:, None].astype(np.float32)
                out[i] = SetProjection(r, weights, offset)
    return out


def flip_signs(components: torch.Tensor) -> torch.Tensor:
    """scikit-learn's ``svd_flip(u_based_decision=False)``: the largest-magnitude entry of each component positive."""
    largest = components.abs().argmax(-1, keepdim=True)
    signs = torch.sign(torch.gather(components, -1, largest))
    return components * torch.where(signs == 0, torch.ones_like(signs), signs)


def exact_components(cells: PCACells, rows: np.ndarray, n_components: int) -> np.ndarray:
    """``(b, n_components, set neurons)`` float64 leading principal axes of each set (rows ``(b, set neurons)``).

    The eigenvectors of the smaller of the neurons' covariance and the cells' Gram matrix of the centred data, on one
    torch thread: spread over two busy threads, torch's batched ``eigh`` was measured ten times slower. (LAPACK's
    ``syevr`` on the leading eigenvectors only is 4x faster at 500 rows, but where eigenvalues nearly tie it returns
    other axes than the full decomposition: 0.9 % of the gene-set p-values moved with the full human annotations.)
    """
    x = torch.from_numpy(cells.standard[rows]).to(torch.float64)  # (b, m, cells)
    x -= torch.from_numpy(cells.centre[rows])[..., None]
    m, n = x.shape[1:]
    gram = x @ x.transpose(1, 2) if m <= n else x.transpose(1, 2) @ x
    with torch_threads(1):
        vectors = torch.linalg.eigh(gram)[1][..., -n_components:].flip(-1)  # ascending eigenvalues
    if m <= n:
        components = vectors.transpose(1, 2)
    else:
        axes = x @ vectors  # (b, m, c): X v = s u
        components = (axes / axes.norm(dim=1, keepdim=True).clamp_min(1e-300)).transpose(1, 2)
    return flip_signs(components).numpy()


def randomized_components(
    cells: PCACells, rows: np.ndarray, n_components: int, seed: int, *, dense: bool
) -> np.ndarray:
    """``(b, n_components, set neurons)`` float32 principal axes by scikit-learn's randomized SVD, for many sets.

    scikit-learn transposes a wide matrix: ``M`` = the set's centred neurons ``(m, cells)``; ``Q`` starts as a
    standard normal ``(cells, n_components + 4)`` from ``RandomState(seed)`` (the same for every set), then ``Q = M
    Q; Q = M.T Q`` twice without normalisation, ``Q = qr(M Q)``, ``B = Q.T M``, ``U S V = svd(B)`` and the axes are
    the first columns of ``Q U``. ``dense``: the products with ``M`` run over all neurons (one GEMM for the batch),
    else over the gathered ``(b, m, cells)`` neurons.
    """
    n_neurons, n_cells = cells.standard.shape
    b, m = rows.shape
    n_random = n_components + OVERSAMPLES
    start = torch.from_numpy(np.random.RandomState(seed).normal(size=(n_cells, n_random)).astype(np.float32))
    centre = torch.from_numpy(cells.centre[rows].astype(np.float32))  # (b, m)
    index = torch.from_numpy(rows)
    z = torch.from_numpy(cells.standard)
    gathered = None if dense else z[index] - centre[..., None]  # (b, m, cells)

    def forward(q: torch.Tensor) -> torch.Tensor:
        """``M @ q`` per set: ``(b, cells, r)`` (or a shared ``(cells, r)``) -> ``(b, m, r)``."""
        if gathered is not None:
            return gathered @ q
        if q.ndim == 2:
            return (z @ q)[index] - centre[..., None] * q.sum(0)
        product = (z @ q.permute(1, 0, 2).reshape(n_cells, b * n_random)).reshape(n_neurons, b, n_random)
        picked = product[index, torch.arange(b)[:, None]]  # (b, m, r): set s's rows of its own columns
        return picked - centre[..., None] * q.sum(1, keepdim=True)

    def backward(y: torch.Tensor) -> torch.Tensor:
        """``M.T @ y`` per set: ``(b, m, r)`` -> ``(b, cells, r)``."""
        if gathered is not None:
            return gathered.transpose(1, 2) @ y
        scattered = torch.zeros(n_neurons, b, n_random, dtype=y.dtype)
        scattered[index, torch.arange(b)[:, None]] = y
        product = (z.T @ scattered.reshape(n_neurons, b * n_random)).reshape(n_cells, b, n_random).permute(1, 0, 2)
        return product - (centre[..., None] * y).sum(1, keepdim=True)

    q = backward(forward(start))
    for _ in range(POWER_ITERATIONS - 1):
        q = backward(forward(q))
    q, _ = torch.linalg.qr(forward(q))  # (b, m, r)
    small = backward(q).transpose(1, 2)  # B = Q.T M: (b, r, cells)
    with torch_threads(1):  # torch's batched SVD of these small matrices was measured 10x slower on 2 busy threads
        u_small, _, _ = torch.linalg.svd(small, full_matrices=False)
    components = (q @ u_small)[..., :n_components].transpose(1, 2)
    return flip_signs(components).numpy()


def project_sets(neurons: np.ndarray, projections: list[SetProjection | None], width: int) -> np.ndarray:
    """``(sets, cells, width)`` float64 summaries of every cell (zeros for ``None`` and for missing components)."""
    return summaries(neurons, projections, width).transpose(0, 2, 1).astype(np.float64)


def summaries(neurons: np.ndarray, projections: list[SetProjection | None], width: int) -> np.ndarray:
    """``(sets, width, cells)`` float32 summaries of every cell (zeros for ``None`` and for missing components).

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
    return z


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

    Notes
    -----
    The neurons are standardised on the PCA cells once for all sets; the PCA summaries of all sets of a (size bin,
    width) are computed together (:func:`fit_set_projections`); the probes score the held-out cells only. The
    numbers are those of one scikit-learn PCA per set (``_null_reference.null_probes_reference``) up to rounding.
    """
    k, p = observed.shape
    out = NullStats(*(np.full((k, p), np.nan) for _ in range(5)))
    if len(pool) == 0 or k == 0:
        return out
    if own_sets is not None and len(own_sets) != k:
        raise ValueError(f"own_sets must hold one gene set per term ({k}), got {len(own_sets)}.")
    binned = np.minimum(size_bins(sizes), len(pool))
    neurons = np.ascontiguousarray(np.asarray(genes, dtype=np.float32).T)  # feature-major: a set is row copies
    pca_cell_rows = pca_rows(fit_rows, targets, seed)
    cells = pca_cells(np.ascontiguousarray(neurons[:, pca_cell_rows]))  # every set's PCA reads these cells only
    groups = sorted(set(zip(binned.tolist(), np.asarray(widths).tolist(), strict=True)))
    for size, width in track(groups, description, enabled=progress):
        terms = np.flatnonzero((binned == size) & (np.asarray(widths) == width))
        rng = np.random.default_rng([seed, size, width])
        members = [rng.choice(pool, size=size, replace=False) for _ in range(n_sets)]
        own = [] if own_sets is None else [t for t in terms if len(own_sets[t])]
        members += [np.asarray(own_sets[t], dtype=np.int64) for t in own]  # probed in the same batch, after the null
        projections = fit_set_projections(cells, gene_size, members, width, seed)
        z = summaries(neurons, projections, width)  # (sets, width, cells)
        held_auroc = held_out_aurocs(z[..., fit_rows], z[..., eval_rows], targets, C, class_weight, device)
        null = held_auroc[:n_sets]
        out.auroc_null[terms] = null.mean(0)
        out.auroc_null_sd[terms] = null.std(0, ddof=1) if n_sets > 1 else np.nan
        out.pval_null[terms] = exceedance(null, observed[terms], n_sets)
        if own:
            out.auroc_set[own] = held_auroc[n_sets:]
            out.pval_set[own] = exceedance(null, out.auroc_set[own], n_sets)
    return out


def held_out_aurocs(
    z_fit: np.ndarray,
    z_eval: np.ndarray,
    targets: Targets,
    C: float,
    class_weight: str | None,
    device: torch.device | None = None,
) -> np.ndarray:
    """``(sets, p)`` held-out AUROCs of probes fitted on ``(sets, width, cells)`` summaries (feature-major).

    The probes of :func:`scvi_networkvi.interpret._probe.fitted_scores`: standardised on the fitting cells, the same
    L2-regularised logistic regressions, decision values rounded as :func:`._probe.tied` does; only the held-out
    cells are scored. On the CPU the compiled kernel (:mod:`._probe_kernel`) fits and scores them, on torch's thread
    count; on another device the batched torch solver (:func:`._logistic.fit_logistic`) does.
    """
    x_fit, x_eval = standardize(z_fit.astype(np.float64), z_eval.astype(np.float64), axis=-1)
    weights = sample_weights(targets.case_fit, targets.control_fit, class_weight)
    if device is not None and torch.device(device).type != "cpu":
        return held_out_aurocs_torch(x_fit, x_eval, targets, weights, C, device)
    threads = torch.get_num_threads()
    beta, *_ = _probe_kernel.fit_sets(x_fit, targets.case_fit, weights, C=C, num_threads=threads)
    held = targets.case_eval | targets.control_eval
    return _probe_kernel.held_out_aurocs(x_eval, beta, held, targets.case_eval, num_threads=threads)


def held_out_aurocs_torch(
    x_fit: np.ndarray,
    x_eval: np.ndarray,
    targets: Targets,
    weights: np.ndarray,
    C: float,
    device: torch.device | None = None,
) -> np.ndarray:
    """:func:`held_out_aurocs` by the batched torch solver, on any device, for standardised ``x_fit`` / ``x_eval``.

    The plain implementation of the compiled kernel's fits and scores (the first fast path's), used on GPUs.
    """
    x_fit, x_eval = x_fit.transpose(0, 2, 1), x_eval.transpose(0, 2, 1)
    fit = fit_logistic(x_fit, targets.case_fit.astype(np.float64), C=C, sample_weight=weights, device=device)
    scores = tied(decision_function(fit, x_eval))  # (sets, p, held-out cells)
    held = targets.case_eval | targets.control_eval
    out = np.empty(scores.shape[:2])
    for j in range(targets.n_phenotypes):
        out[:, j] = rank_auroc(scores[:, j, held[j]], targets.case_eval[j, held[j]])
    return out


def rank_auroc(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``scores`` ``(r, n)`` against the labels ``y`` ``(n,)`` (both classes present).

    Mann-Whitney with tied scores at their average rank: the same numbers as :func:`._auroc.auroc` (rank sums of
    half-integers are exact in float64), from one sort per row and without unsorting the ranks.
    """
    r, n = scores.shape
    order = np.argsort(scores, axis=1)
    ordered = np.take_along_axis(scores, order, axis=1)
    index = np.arange(n)
    new = np.ones((r, n + 1), dtype=bool)  # new[:, i]: a tie group starts at sorted position i (n: past the end)
    new[:, 1:n] = ordered[:, 1:] != ordered[:, :-1]
    first = np.maximum.accumulate(np.where(new[:, :n], index, 0), axis=1)
    last = np.minimum.accumulate(np.where(new[:, 1:], index, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = 0.5 * (first + last) + 1.0  # average 1-based rank of each sorted position's tie group
    cases = np.asarray(y, dtype=bool)
    n1 = float(cases.sum())
    n0 = n - n1
    rank_sum = (ranks * cases[order]).sum(1)
    return (rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def exceedance(null: np.ndarray, observed: np.ndarray, n_sets: int) -> np.ndarray:
    """``(1 + #{null >= observed}) / (1 + n_sets)`` per row of ``observed`` ``(terms, p)``; NaN where it is NaN."""
    exceed = (null[None, :, :] >= observed[:, None, :] - 1e-12).sum(1)
    return np.where(np.isnan(observed), np.nan, (1.0 + exceed) / (1.0 + n_sets))
