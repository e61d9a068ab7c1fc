"""The size- and width-matched reference of GO-term probes (random gene sets through the gene layer), on synthetic
gene-node activations where it is known which genes carry the phenotype."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from scvi_networkvi.interpret._null import SIZE_BIN_RATIO, null_probes, size_bins
from scvi_networkvi.interpret._probe import Targets

GENE_SIZE = 2


def synthetic(n_cells: int = 400, n_genes: int = 200, signal_genes: int = 5, seed: int = 0):
    """Gene-node activations in which only the first ``signal_genes`` genes shift with the phenotype."""
    rng = np.random.default_rng(seed)
    case = np.zeros(n_cells, dtype=bool)
    case[: n_cells // 2] = True
    genes = rng.normal(size=(n_cells, n_genes * GENE_SIZE))
    genes[case, : signal_genes * GENE_SIZE] += 1.5
    heldout = rng.permutation(n_cells) < n_cells * 0.3
    fit_rows, eval_rows = np.flatnonzero(~heldout), np.flatnonzero(heldout)
    targets = Targets(
        case_fit=case[fit_rows][None],
        control_fit=~case[fit_rows][None],
        case_eval=case[eval_rows][None],
        control_eval=~case[eval_rows][None],
    )
    return genes.astype(np.float32), fit_rows, eval_rows, targets


def reference(genes, pool, observed, fit_rows, eval_rows, targets, n_sets=40, seed=0, sizes=(5, 5), own_sets=None):
    return null_probes(
        genes,
        GENE_SIZE,
        pool,
        np.asarray(sizes),
        np.full(len(sizes), 2),
        np.asarray(observed, dtype=float).reshape(len(sizes), 1),
        fit_rows,
        eval_rows,
        targets,
        n_sets=n_sets,
        C=1.0,
        class_weight="balanced",
        seed=seed,
        own_sets=own_sets,
    )


def test_a_term_beating_random_gene_sets_of_its_size_gets_a_small_p_value():
    genes, fit_rows, eval_rows, targets = synthetic()  # the 5 signal genes' own summary scores 1.0
    null = reference(genes, np.arange(200), [0.99, 0.55], fit_rows, eval_rows, targets)
    assert 0.45 < null.auroc_null[0, 0] < 0.7  # 5 random genes of 200 rarely hold a signal gene
    assert null.auroc_null[0, 0] == null.auroc_null[1, 0]  # same size and width: same draws
    assert null.pval_null[0, 0] <= 3 / 41
    assert null.pval_null[1, 0] >= 0.2
    assert set(np.round(null.pval_null.ravel() * 41, 6)) <= {float(c) for c in range(1, 42)}


def test_when_any_gene_set_of_the_size_separates_the_phenotype_the_term_is_not_special():
    """Drawn only from signal genes, random sets score as well as the term: size, not the genes, explains it."""
    genes, fit_rows, eval_rows, targets = synthetic(n_genes=60, signal_genes=60)
    null = reference(genes, np.arange(60), [0.95, 0.95], fit_rows, eval_rows, targets)
    assert null.auroc_null[0, 0] > 0.95
    assert null.pval_null[0, 0] > 0.5


def test_reference_is_seeded_and_larger_terms_get_larger_random_sets():
    genes, fit_rows, eval_rows, targets = synthetic(n_genes=60, signal_genes=3)
    first = reference(genes, np.arange(60), [0.9, 0.9], fit_rows, eval_rows, targets, sizes=(2, 40))
    again = reference(genes, np.arange(60), [0.9, 0.9], fit_rows, eval_rows, targets, sizes=(2, 40))
    np.testing.assert_array_equal(first.auroc_null, again.auroc_null)
    other = reference(genes, np.arange(60), [0.9, 0.9], fit_rows, eval_rows, targets, sizes=(2, 40), seed=1)
    assert not np.array_equal(first.auroc_null, other.auroc_null)
    assert first.auroc_null[1, 0] > first.auroc_null[0, 0]  # 40 of 60 genes nearly always include signal genes


def test_nan_observed_aurocs_and_empty_pools_give_nan():
    genes, fit_rows, eval_rows, targets = synthetic()
    null = reference(genes, np.arange(60), [np.nan, 0.9], fit_rows, eval_rows, targets, n_sets=5)
    assert np.isnan(null.pval_null[0, 0]) and np.isfinite(null.pval_null[1, 0])
    empty = reference(genes, np.arange(0), [0.9, 0.9], fit_rows, eval_rows, targets, n_sets=5)
    assert np.isnan(empty.auroc_null).all() and np.isnan(empty.pval_null).all()


@pytest.mark.parametrize("sizes", [np.arange(1, 3000), np.array([1, 2, 5, 26, 27, 152, 169, 20000])])
def test_size_bins_stay_within_the_ratio(sizes):
    bins = size_bins(sizes)
    assert (bins >= 1).all()
    # within sqrt(ratio) of the term's size (the bin's geometric middle), up to rounding to whole genes
    assert (np.abs(np.log(bins / sizes)) <= 0.5 * np.log(SIZE_BIN_RATIO) + np.log1p(0.5 / sizes) + 1e-9).all()
    assert (np.diff(bins[np.argsort(sizes)]) >= 0).all()  # monotone: a larger term never gets a smaller reference


def test_a_terms_own_gene_set_is_tested_like_the_random_sets():
    """The signal genes' own set beats random sets of its size; a set of other genes does not; the null is the
    same with or without the own sets (they are probed after it, in the same batch)."""
    genes, fit_rows, eval_rows, targets = synthetic()
    own = [np.arange(5), np.arange(100, 105)]
    args = (genes, np.arange(200), [0.99, 0.55], fit_rows, eval_rows, targets)
    with_sets = reference(*args, own_sets=own)
    without = reference(*args)
    np.testing.assert_array_equal(with_sets.auroc_null, without.auroc_null)
    np.testing.assert_array_equal(with_sets.pval_null, without.pval_null)
    assert np.isnan(without.auroc_set).all() and np.isnan(without.pval_set).all()
    assert with_sets.auroc_set[0, 0] > 0.95 and with_sets.pval_set[0, 0] <= 1 / 41 + 1e-12
    assert 0.3 < with_sets.auroc_set[1, 0] < 0.7 and with_sets.pval_set[1, 0] >= 0.2
    counts = with_sets.pval_set.ravel() * 41
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)


def test_own_set_of_a_signal_rich_gene_pool_is_not_special():
    """When every gene carries the signal, the term's own genes are no better than any other set of its size."""
    genes, fit_rows, eval_rows, targets = synthetic(n_genes=60, signal_genes=60)
    null = reference(genes, np.arange(60), [0.95], fit_rows, eval_rows, targets, sizes=(5,), own_sets=[np.arange(5)])
    assert null.auroc_set[0, 0] > 0.9
    assert null.pval_set[0, 0] > 0.05


def test_own_sets_need_one_set_per_term_and_empty_sets_give_nan():
    genes, fit_rows, eval_rows, targets = synthetic()
    args = (genes, np.arange(200), [0.9, 0.9], fit_rows, eval_rows, targets)
    with pytest.raises(ValueError, match="one gene set per term"):
        reference(*args, n_sets=5, own_sets=[np.arange(5)])
    null = reference(*args, n_sets=5, own_sets=[np.arange(5), np.zeros(0, dtype=np.int64)])
    assert np.isfinite(null.auroc_set[0, 0]) and np.isnan(null.auroc_set[1, 0]) and np.isnan(null.pval_set[1, 0])


def test_a_set_of_constant_neurons_summarises_to_zeros_without_warnings():
    """Genes silent on the fitting cells give constant neurons: no PCA (it would divide by a zero variance)."""
    genes, fit_rows, eval_rows, targets = synthetic()
    genes[:, 10 * GENE_SIZE : 15 * GENE_SIZE] = 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        null = reference(
            genes, np.arange(200), [0.9], fit_rows, eval_rows, targets, sizes=(5,), own_sets=[np.arange(10, 15)]
        )
    assert null.auroc_set[0, 0] == 0.5
    assert null.pval_set[0, 0] > 0.5


def test_dense_and_sparse_projections_agree_with_the_direct_summary(monkeypatch):
    """Large sets share one dense product, small ones a sparse one: both equal ``weights @ neurons[rows] - offset``."""
    from scvi_networkvi.interpret import _null

    rng = np.random.default_rng(3)
    neurons = rng.normal(size=(60 * GENE_SIZE, 300)).astype(np.float32)
    pca_neurons = np.ascontiguousarray(neurons[:, ::3])
    sets = [rng.choice(60, size, replace=False) for size in (1, 4, 30, 50)]
    projections = _null.fit_set_projections(_null.pca_cells(pca_neurons), GENE_SIZE, sets, 2, seed=0)
    projections.append(None)
    expected = np.zeros((len(projections), 300, 2))
    for i, p in enumerate(projections[:-1]):
        c = len(p.weights)
        expected[i, :, :c] = (p.weights.astype(np.float64) @ neurons[p.rows] - p.offset).T
    assert len(projections[0].weights) == 2  # one gene of two neurons: two components
    for share in (1, 25, 10**6):  # all sparse, mixed, all dense
        monkeypatch.setattr(_null, "DENSE_SHARE", share)
        np.testing.assert_allclose(_null.project_sets(neurons, projections, 2), expected, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# the fast path against the first implementation (one scikit-learn PCA per set), kept as the reference


def reference_inputs(n_genes: int, sizes, n_sets: int = 12, seed: int = 0):
    """Synthetic activations, sizes, own sets and settings shared by both implementations."""
    genes, fit_rows, eval_rows, targets = synthetic(n_cells=400, n_genes=n_genes, signal_genes=4, seed=seed)
    sizes = np.asarray(sizes)
    own = [np.arange(s) + i for i, s in enumerate(sizes)]
    observed = np.linspace(0.55, 0.95, len(sizes))[:, None]
    args = (genes, GENE_SIZE, np.arange(n_genes), sizes, np.full(len(sizes), 2), observed, fit_rows, eval_rows)
    kwargs = {"n_sets": n_sets, "C": 1.0, "class_weight": "balanced", "seed": seed, "own_sets": own}
    return (*args, targets), kwargs


#: Largest difference of a reference AUROC allowed between the two paths: the exact PCA runs in float64 where
#: scikit-learn's runs in float32, and the randomized SVD's products are batched: summaries differ by float32
#: rounding (~1e-6), which can swap two held-out cells whose probe scores are that close (one case-control pair
#: moves an AUROC by 1 / (cases x controls), ~1e-4 on this fixture; averaged over the sets for auroc_null).
AUROC_TOLERANCE = 2e-4


@pytest.mark.parametrize(
    ("n_genes", "sizes"),
    [
        (60, (1, 2, 5, 9)),  # covariance eigendecomposition in scikit-learn (<= 50 neurons)
        (200, (14, 120)),  # full SVD in scikit-learn (<= 500 neurons)
        (400, (260,)),  # randomized SVD (> 500 neurons), products over all neurons
    ],
)
def test_fast_path_gives_the_reference_numbers(n_genes, sizes):
    from scvi_networkvi.interpret._null_reference import null_probes_reference

    args, kwargs = reference_inputs(n_genes, sizes)
    fast, ref = null_probes(*args, **kwargs), null_probes_reference(*args, **kwargs)
    for column in ("auroc_null", "auroc_set", "auroc_null_sd"):
        a, b = getattr(fast, column), getattr(ref, column)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, atol=AUROC_TOLERANCE, rtol=0)
    for column in ("pval_null", "pval_set"):
        a, b = getattr(fast, column), getattr(ref, column)
        # p-values count random sets at or above an AUROC: a swapped pair changes a count only at a near-tie
        np.testing.assert_allclose(a, b, atol=1 / (kwargs["n_sets"] + 1) + 1e-12, rtol=0)
    assert np.mean(fast.pval_null == ref.pval_null) >= 0.5


def test_fast_path_is_deterministic():
    args, kwargs = reference_inputs(400, (14, 260))
    first, again = null_probes(*args, **kwargs), null_probes(*args, **kwargs)
    for column in ("auroc_null", "pval_null", "auroc_set", "pval_set", "auroc_null_sd"):
        np.testing.assert_array_equal(getattr(first, column), getattr(again, column))


def test_batched_pca_matches_scikit_learns_per_set_pca():
    """Exact solvers and the randomized SVD (over gathered neurons or over all neurons) give scikit-learn's axes."""
    from scvi_networkvi.interpret import _null
    from scvi_networkvi.interpret._null_reference import fit_set_projection_reference

    rng = np.random.default_rng(5)
    neurons = rng.normal(size=(700 * GENE_SIZE, 300)).astype(np.float32)
    neurons[:40] *= 3.0  # a few strong directions: well-separated leading axes
    cells = _null.pca_cells(neurons)
    sets = [rng.choice(700, size, replace=False) for size in (3, 3, 60, 60, 300, 300)]
    for share in (1, 10**6):  # randomized products over gathered neurons / over all neurons
        fast = _null.fit_set_projections(cells, GENE_SIZE, sets, 3, seed=2, dense_share=share)
        for members, projection in zip(sets, fast, strict=True):
            ref = fit_set_projection_reference(neurons, GENE_SIZE, members, 3, seed=2)
            np.testing.assert_array_equal(projection.rows, ref.rows)
            np.testing.assert_allclose(projection.weights, ref.weights, atol=2e-4)
            np.testing.assert_allclose(projection.offset, ref.offset, atol=2e-4)
    # more neurons than PCA cells, all <= 500: scikit-learn's full SVD, here the eigenvectors of the cells' Gram matrix
    few_cells = np.ascontiguousarray(neurons[:, :150])
    members = rng.choice(700, 100, replace=False)
    (projection,) = _null.fit_set_projections(_null.pca_cells(few_cells), GENE_SIZE, [members], 3, seed=2)
    ref = fit_set_projection_reference(few_cells, GENE_SIZE, members, 3, seed=2)
    np.testing.assert_allclose(projection.weights, ref.weights, atol=2e-4)
    np.testing.assert_allclose(projection.offset, ref.offset, atol=2e-4)


def test_rank_auroc_equals_the_auroc_with_ties():
    from scvi_networkvi.interpret._auroc import auroc
    from scvi_networkvi.interpret._null import rank_auroc

    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(50, 301)), 1)  # many ties
    y = rng.random(301) < 0.3
    np.testing.assert_array_equal(rank_auroc(scores, y), auroc(scores, y))


def test_pca_rows_are_seeded_random_fitting_rows_or_equal_shares_of_the_phenotypes(monkeypatch):
    from scvi_networkvi.interpret import _null

    rng = np.random.default_rng(0)
    fit_rows = np.sort(rng.choice(5000, size=3000, replace=False))
    label = np.repeat([0, 1, 2, 3], [2000, 800, 150, 50])  # 3 phenotypes (one vs rest) and cells of none (label 3)
    case = np.stack([label == j for j in range(3)])
    targets = Targets(case_fit=case, control_fit=~case, case_eval=case[:, :10], control_eval=~case[:, :10])
    random_rows = _null.pca_rows(fit_rows, targets, seed=3)
    expected = np.sort(np.random.default_rng([3, 0]).permutation(fit_rows)[: _null.PCA_CELLS])
    np.testing.assert_array_equal(random_rows, expected)  # the default: today's draw
    monkeypatch.setattr(_null, "PCA_STRATIFIED", True)
    rows = _null.pca_rows(fit_rows, targets, seed=3)
    np.testing.assert_array_equal(rows, _null.pca_rows(fit_rows, targets, seed=3))
    assert len(rows) == _null.PCA_CELLS == len(np.unique(rows)) and np.isin(rows, fit_rows).all()
    counts = np.bincount(label[np.searchsorted(fit_rows, rows)], minlength=4)
    np.testing.assert_array_equal(counts, [150, 150, 150, 50])  # the smallest group whole, the rest in equal shares
    small = fit_rows[:300]  # fewer fitting cells than PCA cells: all of them, whatever the design
    np.testing.assert_array_equal(np.sort(_null.pca_rows(small, targets, seed=3)), small)
