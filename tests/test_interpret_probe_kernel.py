"""The compiled probe kernel of the size-matched reference against the plain implementations it replaces: the batched
torch Newton solver (:func:`fit_logistic`) and the rank-sum AUROC of tied decision values."""

from __future__ import annotations

import numpy as np
import pytest

from scvi_networkvi.interpret import _probe_kernel
from scvi_networkvi.interpret._logistic import decision_function, fit_logistic
from scvi_networkvi.interpret._null import rank_auroc
from scvi_networkvi.interpret._probe import sample_weights, tied


def problems(n_sets: int, width: int, n_cells: int = 300, separation: float = 1.0, seed: int = 0):
    """``(sets, w, n)`` standardised features, three one-vs-rest label vectors and their balanced weights."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 3, n_cells)
    cases = groups[None, :] == np.arange(3)[:, None]  # (p, n)
    x = rng.normal(size=(n_sets, width, n_cells))
    x[:, 0] += separation * (groups == 0)  # the first feature carries the first phenotype
    x = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
    return x, cases, sample_weights(cases, ~cases, "balanced")


@pytest.mark.parametrize(("width", "separation", "C"), [(1, 0.5, 1.0), (2, 1.0, 1.0), (4, 8.0, 1.0), (2, 8.0, 100.0)])
def test_kernel_fits_the_torch_solvers_coefficients(width, separation, C):
    """Same optimum far inside ``tol`` (the Newton steps are the same; only the order of sums over cells differs)."""
    x, cases, weights = problems(6, width, separation=separation)
    beta, n_iter, converged, objective = _probe_kernel.fit_sets(x, cases, weights, C=C)
    ref = fit_logistic(x.transpose(0, 2, 1), cases.astype(float), C=C, sample_weight=weights)
    scale = 1.0 + np.abs(ref.coef).max()
    np.testing.assert_allclose(beta[..., :-1], ref.coef, atol=1e-9 * scale, rtol=0)
    np.testing.assert_allclose(beta[..., -1], ref.intercept, atol=1e-9 * scale, rtol=0)
    np.testing.assert_allclose(objective, ref.objective, rtol=1e-10)
    assert converged.all() and ref.converged.all()
    assert np.mean(n_iter == ref.n_iter) >= 0.9  # the same steps: counts differ only where a test sits at its bound
    if separation > 2:
        assert n_iter.max() > 5  # well-separated phenotypes: damped first steps (the line search) were exercised


def test_kernel_results_do_not_depend_on_the_thread_count():
    x, cases, weights = problems(9, 2, separation=3.0)
    one = _probe_kernel.fit_sets(x, cases, weights, C=1.0, num_threads=1)
    three = _probe_kernel.fit_sets(x, cases, weights, C=1.0, num_threads=3)
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a, b)
    held = np.ones_like(cases)
    np.testing.assert_array_equal(
        _probe_kernel.held_out_aurocs(x, one[0], held, cases, num_threads=1),
        _probe_kernel.held_out_aurocs(x, one[0], held, cases, num_threads=3),
    )


def test_kernel_aurocs_equal_the_rank_sums_of_tied_decision_values():
    """Rounded decision values with many ties (few distinct activations), on a subset of held-out cells."""
    x, cases, weights = problems(5, 2, n_cells=240, separation=1.5, seed=1)
    x = np.round(x * 2) / 2  # coarse activations: many cells tie
    beta, *_ = _probe_kernel.fit_sets(x, cases, weights, C=1.0)
    held = np.ones_like(cases)
    held[1, ::3] = False  # a label vector that leaves some cells out
    held[2, :40] = False
    out = _probe_kernel.held_out_aurocs(x, beta, held, cases)
    ref = fit_logistic(x.transpose(0, 2, 1), cases.astype(float), C=1.0, sample_weight=weights)
    scores = tied(decision_function(ref, x.transpose(0, 2, 1)))
    for j in range(3):
        expected = rank_auroc(scores[:, j, held[j]], cases[j, held[j]])
        np.testing.assert_array_equal(out[:, j], expected)
    # more cases than controls: the kernel compares from the controls' side
    flipped = _probe_kernel.held_out_aurocs(x, -beta, held, ~cases)
    np.testing.assert_allclose(flipped, out, atol=1e-12)


def test_pairwise_auroc_counts_ties_as_one_half():
    scores = np.array([0.0, 1.0, 1.0, 2.0, 3.0])
    cases = np.array([False, True, False, True, False])
    few, many = np.empty(5), np.empty(5)
    # cases 1.0 and 2.0 against controls 0.0, 1.0, 3.0: (1 + 0.5) + 2 = 3.5 of 6 pairs
    assert _probe_kernel._pair_auroc(scores, cases, few, many) == 3.5 / 6
    assert _probe_kernel._pair_auroc(scores, ~cases, few, many) == 2.5 / 6


def test_cpu_kernel_and_torch_path_give_the_same_held_out_aurocs():
    """``held_out_aurocs`` runs the kernel on the CPU and the torch solver elsewhere (GPUs): same numbers."""
    from scvi_networkvi.interpret._null import held_out_aurocs, held_out_aurocs_torch
    from scvi_networkvi.interpret._probe import Targets

    x, cases, weights = problems(7, 2, n_cells=400, separation=1.0, seed=2)
    fit_rows, eval_rows = np.arange(280), np.arange(280, 400)
    targets = Targets(cases[:, fit_rows], ~cases[:, fit_rows], cases[:, eval_rows], ~cases[:, eval_rows])
    z = (x * 3.0 + 1.0).astype(np.float32)  # unstandardised summaries, as the projections give them
    fast = held_out_aurocs(z[..., fit_rows], z[..., eval_rows], targets, 1.0, "balanced")
    mean = z[..., fit_rows].mean(-1, keepdims=True, dtype=np.float64)
    std = z[..., fit_rows].std(-1, keepdims=True, dtype=np.float64)
    x_fit, x_eval = (z[..., fit_rows] - mean) / std, (z[..., eval_rows] - mean) / std
    plain = held_out_aurocs_torch(
        x_fit, x_eval, targets, sample_weights(cases[:, fit_rows], ~cases[:, fit_rows], "balanced"), 1.0
    )
    np.testing.assert_array_equal(fast, plain)
