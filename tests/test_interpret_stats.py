"""Numeric kernels of the interpretability engine: batched logistic regression and AUROC statistics.

References: scikit-learn's ``LogisticRegression`` (lbfgs, tight tolerance) and ``roc_auc_score``, direct O(n^2)
DeLong structural components, a bootstrap, and scipy's ``false_discovery_control``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from scvi_networkvi.interpret._auroc import auroc, benjamini_hochberg, delong, delong_paired
from scvi_networkvi.interpret._logistic import (
    LogisticFit,
    decision_function,
    fit_logistic,
    fit_logistic_grouped,
    predict_proba,
)
from scvi_networkvi.interpret._standardize import standardize


def sk_fit_w(x, y, C=1.0, sample_weight=None, class_weight=None):
    return LogisticRegression(C=C, tol=1e-10, max_iter=10000, class_weight=class_weight).fit(
        x, y, sample_weight=sample_weight
    )


def assert_close_to_sklearn(coef, intercept, model, rtol=1e-4):
    ref = np.concatenate([model.coef_[0], model.intercept_])
    ours = np.concatenate([coef, [intercept]])
    scale = max(1.0, np.abs(ref).max())
    np.testing.assert_allclose(ours, ref, rtol=0, atol=rtol * scale)


def planted(rng, k, n, w, p, strength=1.0):
    """``k`` feature matrices and ``p`` label vectors, each label depending on a few columns of matrix 0..k-1."""
    x = rng.normal(size=(k, n, w))
    y = np.zeros((p, n))
    for j in range(p):
        logits = strength * x[j % k, :, 0] * (j + 1) / p - 0.5 + 0.3 * rng.normal(size=n)
        y[j] = rng.random(n) < 1 / (1 + np.exp(-logits))
    return x, y


# ----------------------------------------------------------------------------------------------------------------------
# logistic regression


@pytest.mark.parametrize("C", [0.05, 1.0, 20.0])
def test_logistic_matches_sklearn_planted_signal(C):
    rng = np.random.default_rng(0)
    k, n, w, p = 3, 500, 4, 3
    x, y = planted(rng, k, n + 300, w, p, strength=3.0)
    x_fit, x_test, y_fit, y_test = x[:, :n], x[:, n:], y[:, :n], y[:, n:]
    fit = fit_logistic(x_fit, y_fit, C=C, tol=1e-8)
    assert fit.coef.shape == (k, p, w) and fit.intercept.shape == (k, p) and fit.shape == (k, p)
    assert fit.converged.all() and (fit.n_iter <= 12).all()
    scores = decision_function(fit, x_test)
    assert scores.shape == (k, p, 300)
    for i in range(k):
        for j in range(p):
            model = sk_fit_w(x_fit[i], y_fit[j], C=C)
            assert_close_to_sklearn(fit.coef[i, j], fit.intercept[i, j], model)
            ref = model.decision_function(x_test[i])
            assert np.corrcoef(scores[i, j], ref)[0, 1] > 0.99999
            np.testing.assert_allclose(scores[i, j], ref, atol=1e-4 * max(1, np.abs(ref).max()))
            assert abs(roc_auc_score(y_test[j], scores[i, j]) - roc_auc_score(y_test[j], ref)) < 0.005
            # Our optimum is at least as good as sklearn's under the shared objective.
            eta = x_fit[i] @ model.coef_[0] + model.intercept_[0]
            ref_obj = C * np.sum(np.logaddexp(0, eta) - y_fit[j] * eta) + 0.5 * np.sum(model.coef_**2)
            assert fit.objective[i, j] <= ref_obj + 1e-8 * abs(ref_obj)


def test_logistic_separable_data_stays_finite():
    rng = np.random.default_rng(1)
    n = 300
    x = rng.normal(size=(2, n, 3))
    y = np.stack([x[0, :, 0] > 0.1, x[1, :, 1] + x[1, :, 2] > 0]).astype(float)
    fit = fit_logistic(x, y[:, None, :], C=1.0, tol=1e-10)  # per-matrix labels (k, 1, n)
    assert fit.shape == (2, 1) and fit.converged.all()
    assert np.isfinite(fit.coef).all()
    for i in range(2):
        assert_close_to_sklearn(fit.coef[i, 0], fit.intercept[i, 0], sk_fit_w(x[i], y[i]))
    # Strong C: large but finite coefficients, still in agreement.
    fit = fit_logistic(x[0], y[0], C=1e3, tol=1e-10)
    assert fit.converged and np.abs(fit.coef).max() > 10
    assert_close_to_sklearn(fit.coef, fit.intercept, sk_fit_w(x[0], y[0], C=1e3), rtol=2e-4)


def test_logistic_constant_columns():
    rng = np.random.default_rng(2)
    n = 400
    x = rng.normal(size=(n, 4))
    x[:, 1] = 0.0  # dead ReLU
    x[:, 3] = 2.5  # constant, collinear with the intercept (penalised, so still identifiable)
    y = (rng.random(n) < 1 / (1 + np.exp(-x[:, 0]))).astype(float)
    fit = fit_logistic(x, y)
    assert fit.coef.shape == (4,) and fit.converged
    assert fit.coef[1] == 0.0
    assert_close_to_sklearn(fit.coef, fit.intercept, sk_fit_w(x, y))


def test_logistic_sample_and_class_weights():
    rng = np.random.default_rng(3)
    n, w = 600, 3
    x = rng.normal(size=(2, n, w))
    y = (rng.random((2, n)) < np.array([[0.15], [0.4]])).astype(float)
    y[:, :50] = (x[0, :50, :1].T > 0) | (rng.random((2, 50)) < 0.1)
    # class_weight="balanced" as scikit-learn
    fit = fit_logistic(x, y, C=0.5, class_weight="balanced")
    for i in range(2):
        for j in range(2):
            model = sk_fit_w(x[i], y[j], C=0.5, class_weight="balanced")
            assert_close_to_sklearn(fit.coef[i, j], fit.intercept[i, j], model)
    # explicit balanced weights n / (2 n_c) give the same fit
    n_pos = y.sum(1, keepdims=True)
    weights = np.where(y == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))
    explicit = fit_logistic(x, y, C=0.5, sample_weight=weights)
    np.testing.assert_allclose(explicit.coef, fit.coef, atol=1e-9)
    # arbitrary per-cell weights, shared (n,) and per label vector (p, n)
    sw = rng.uniform(0.1, 3.0, size=n)
    fit = fit_logistic(x, y, sample_weight=sw)
    assert_close_to_sklearn(fit.coef[1, 0], fit.intercept[1, 0], sk_fit_w(x[1], y[0], sample_weight=sw))
    # zero weight = cell left out
    sw = (rng.random((2, n)) < 0.7).astype(float)
    fit = fit_logistic(x, y, sample_weight=sw)
    for j in range(2):
        keep = sw[j] > 0
        assert_close_to_sklearn(fit.coef[0, j], fit.intercept[0, j], sk_fit_w(x[0][keep], y[j][keep]))


def test_logistic_shapes_and_broadcasting():
    rng = np.random.default_rng(4)
    k, n, w, p = 4, 200, 2, 3
    x, y = planted(rng, k, n, w, p, strength=2.0)
    shared = fit_logistic(x, y)
    # per-matrix labels (k, p, n) equal to the shared ones give the same result
    per = fit_logistic(x, np.broadcast_to(y, (k, p, n)))
    np.testing.assert_allclose(per.coef, shared.coef, atol=1e-10)
    # 1-D labels: batch (k,)
    single = fit_logistic(x, y[1])
    assert single.coef.shape == (k, w) and single.intercept.shape == (k,)
    np.testing.assert_allclose(single.coef, shared.coef[:, 1], atol=1e-10)
    assert decision_function(single, x).shape == (k, n)
    # 2-D x: no problem axis
    one = fit_logistic(x[2], y)
    assert one.coef.shape == (p, w) and not one.problem_axis
    np.testing.assert_allclose(one.coef, shared.coef[2], atol=1e-10)
    np.testing.assert_allclose(decision_function(one, x[2]), decision_function(shared, x)[2], atol=1e-10)
    # indexing keeps the meaning of the axes
    assert not shared[2].problem_axis and shared[1:3].problem_axis and shared[:, 0].shape == (k,)
    np.testing.assert_allclose(decision_function(shared[2], x[2]), decision_function(one, x[2]), atol=1e-10)
    # torch input, float32, bool labels, small memory budgets (one label vector per chunk, with and without the
    # pairwise products): same answer
    ref = fit_logistic(x.astype(np.float32).astype(np.float64), y)
    for budget in (50_000, 1):
        small = fit_logistic(torch.from_numpy(x.astype(np.float32)), y.astype(bool), max_memory=budget)
        np.testing.assert_allclose(small.coef, ref.coef, atol=1e-9)
    per_small = fit_logistic(x, np.broadcast_to(y, (k, p, n)), max_memory=1)
    np.testing.assert_allclose(per_small.coef, shared.coef, atol=1e-9)
    proba = predict_proba(shared, x)
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-decision_function(shared, x))), atol=1e-12)


def test_logistic_w1_and_k0():
    rng = np.random.default_rng(5)
    n = 300
    x = rng.normal(size=(3, n, 1))
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * x[0, :, 0]))).astype(float)
    fit = fit_logistic(x, y)
    assert fit.coef.shape == (3, 1)
    for i in range(3):
        assert_close_to_sklearn(fit.coef[i], fit.intercept[i], sk_fit_w(x[i], y))
    empty = fit_logistic(np.zeros((0, n, 4)), np.stack([y, 1 - y]))
    assert empty.coef.shape == (0, 2, 4) and empty.converged.shape == (0, 2)
    assert decision_function(empty, np.zeros((0, 7, 4))).shape == (0, 2, 7)


def test_logistic_grouped_widths():
    rng = np.random.default_rng(6)
    n, p = 250, 2
    xs = [rng.normal(size=(n, w)) for w in (3, 1, 3, 2)]
    y = (rng.random((p, n)) < 1 / (1 + np.exp(-xs[0][:, :1].T))).astype(float)
    fits = fit_logistic_grouped(xs, y, C=0.3)
    assert [f.coef.shape for f in fits] == [(p, 3), (p, 1), (p, 3), (p, 2)]
    for xj, f in zip(xs, fits, strict=True):
        assert_close_to_sklearn(f.coef[1], f.intercept[1], sk_fit_w(xj, y[1], C=0.3))
        assert decision_function(f, xj).shape == (p, n)


def test_logistic_errors():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 50, 3))
    y = (rng.random((3, 50)) < 0.5).astype(float)
    y_bad = y.copy()
    y_bad[1] = 0.0
    with pytest.raises(ValueError, match=r"index \(1,\).*only one class"):
        fit_logistic(x, y_bad)
    with pytest.raises(ValueError, match="only one class"):
        fit_logistic(x, y, sample_weight=np.where(y == 1, 0.0, 1.0))  # positives weigh nothing
    with pytest.raises(ValueError, match="binary"):
        fit_logistic(x, y * 2)
    with pytest.raises(ValueError, match="cells"):
        fit_logistic(x, y[:, :40])
    with pytest.raises(ValueError, match="k=2"):
        fit_logistic(x, np.broadcast_to(y, (4, 3, 50)))
    with pytest.raises(ValueError, match="NaN"):
        fit_logistic(np.where(x > 2, np.nan, x), y)
    with pytest.raises(ValueError, match="C must"):
        fit_logistic(x, y, C=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        fit_logistic(x, y, sample_weight=-np.ones(50))
    with pytest.raises(ValueError, match="shape"):
        decision_function(fit_logistic(x, y), x[:, :, :2])
    # too few iterations are reported, not raised; the thread setting is restored
    threads = torch.get_num_threads()
    short = fit_logistic(x, y, max_iter=1, num_threads=1)
    assert not short.converged.any() and (short.n_iter == 1).all() and torch.get_num_threads() == threads


def test_standardize():
    rng = np.random.default_rng(8)
    x_fit = rng.normal(3.0, 2.0, size=(2, 100, 4)).astype(np.float32)
    x_fit[:, :, 1] = 0.0
    x_fit[1, :, 2] = 7.0
    x_other = rng.normal(size=(2, 30, 4)).astype(np.float32)
    z_fit, z_other = standardize(x_fit, x_other)
    assert z_fit.dtype == np.float32 and z_other.shape == (2, 30, 4)
    assert np.all(z_fit[:, :, 1] == 0) and np.all(z_other[:, :, 1] == 0) and np.all(z_other[1, :, 2] == 0)
    np.testing.assert_allclose(z_fit[0, :, [0, 2, 3]].mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(z_fit[0, :, [0, 2, 3]].std(1), 1, atol=1e-5)
    mean, std = x_fit[0, :, 0].astype(np.float64).mean(), x_fit[0, :, 0].astype(np.float64).std()
    np.testing.assert_allclose(z_other[0, :, 0], (x_other[0, :, 0] - mean) / std, rtol=1e-5)
    (zt,) = standardize(torch.from_numpy(x_fit))
    assert isinstance(zt, torch.Tensor)
    np.testing.assert_array_equal(zt.numpy(), z_fit)
    with pytest.raises(ValueError, match="apart from the cells"):
        standardize(x_fit, x_other[:, :, :3])


# ----------------------------------------------------------------------------------------------------------------------
# AUROC and DeLong


def delong_direct(scores_list, y):
    """O(n^2) DeLong: structural components from pairwise comparisons; AUROCs and their covariance matrix."""
    y = np.asarray(y).astype(bool)
    v10, v01 = [], []
    for s in scores_list:
        x, z = s[y], s[~y]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        v10.append(psi.mean(1))
        v01.append(psi.mean(0))
    v10, v01 = np.array(v10), np.array(v01)
    aucs = v10.mean(1)
    cov = np.atleast_2d(np.cov(v10)) / y.sum() + np.atleast_2d(np.cov(v01)) / (~y).sum()
    return aucs, cov


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(11)
    m, n = 6, 120
    scores = rng.integers(0, 5, size=(m, n)).astype(float)  # many ties
    scores[0] = rng.normal(size=n)
    scores[1] = 1.0  # all tied: 0.5
    y = (rng.random(n) < 0.3).astype(int)
    got = auroc(scores, y)
    assert got.shape == (m,)
    np.testing.assert_allclose(got, [roc_auc_score(y, s) for s in scores], atol=1e-12)
    assert got[1] == 0.5
    # per-row labels and broadcasting of one score vector against several label vectors
    ys = (rng.random((m, n)) < 0.5).astype(bool)
    np.testing.assert_allclose(auroc(scores, ys), [roc_auc_score(yy, s) for yy, s in zip(ys, scores, strict=True)])
    np.testing.assert_allclose(auroc(scores[2], ys), [roc_auc_score(yy, scores[2]) for yy in ys])
    assert np.ndim(auroc(scores[0], y)) == 0
    with pytest.raises(ValueError, match="both classes"):
        auroc(scores, np.zeros(n))
    with pytest.raises(ValueError, match="NaN"):
        auroc(np.where(scores > 3, np.nan, scores), y)
    with pytest.raises(ValueError, match="binary"):
        auroc(scores, y + 1)


def test_delong_variance_matches_direct():
    rng = np.random.default_rng(12)
    n = 80
    y = (rng.random(n) < 0.4).astype(int)
    scores = np.stack([y + rng.normal(size=n), rng.integers(0, 4, size=n) + 0.5 * y, rng.normal(size=n)])
    res = delong(scores, y)
    aucs, cov = delong_direct(list(scores), y)
    np.testing.assert_allclose(res.auroc, aucs, atol=1e-12)
    np.testing.assert_allclose(res.variance, np.diag(cov), rtol=1e-10)
    np.testing.assert_allclose(res.se, np.sqrt(np.diag(cov)), rtol=1e-10)
    assert res.n_pos.tolist() == [y.sum()] * 3 and res.n_neg.tolist() == [n - y.sum()] * 3
    z = (res.auroc - 0.5) / res.se
    np.testing.assert_allclose(res.pvalue, 2 * scipy.stats.norm.sf(np.abs(z)), rtol=1e-10)
    # normal interval: plain +- z se
    normal = delong(scores, y, ci="normal", level=0.9)
    np.testing.assert_allclose(normal.high - normal.auroc, 1.6448536269514722 * res.se, rtol=1e-8)
    assert np.all((res.low < res.auroc) & (res.auroc < res.high)) and np.all((res.low >= 0) & (res.high <= 1))


def test_delong_degenerate_cases():
    y = np.array([0, 0, 0, 1, 1, 1])
    perfect = delong(np.arange(6.0), y)
    assert perfect.auroc == 1.0 and perfect.variance == 0.0 and perfect.pvalue == 0.0
    assert perfect.low == perfect.high == 1.0
    flat = delong(np.ones(6), y)
    assert flat.auroc == 0.5 and flat.variance == 0.0 and flat.pvalue == 1.0
    one_pos = delong(np.arange(5.0), [0, 0, 0, 0, 1])
    assert one_pos.auroc == 1.0 and np.isnan(one_pos.variance) and np.isnan(one_pos.pvalue)
    with pytest.raises(ValueError, match="level"):
        delong(np.arange(6.0), y, level=1.0)
    with pytest.raises(ValueError, match="both classes"):
        delong(np.arange(6.0), np.zeros(6))


def test_delong_null_coverage():
    # 200 replicates of an uninformative score: the 95% interval should cover 0.5 in about 95% of them.
    rng = np.random.default_rng(13)
    reps, n = 200, 120
    scores = rng.normal(size=(reps, n))
    y = rng.random((reps, n)) < 0.35
    y[:, :2] = [True, False]  # both classes in every replicate
    for ci in ("logit", "normal"):
        res = delong(scores, y, ci=ci)
        coverage = np.mean((res.low <= 0.5) & (0.5 <= res.high))
        assert 0.9 <= coverage <= 0.99, coverage
    assert 0.02 <= np.mean(res.pvalue < 0.05) <= 0.1


def test_delong_paired_matches_direct_and_bootstrap():
    rng = np.random.default_rng(14)
    n = 150
    y = (rng.random(n) < 0.4).astype(int)
    base = y + rng.normal(size=n)
    a = base + 0.5 * rng.normal(size=n)
    b = np.round(base + 0.8 * rng.normal(size=n), 1)  # ties
    res = delong_paired(a, b, y)
    aucs, cov = delong_direct([a, b], y)
    np.testing.assert_allclose([res.auroc_a, res.auroc_b], aucs, atol=1e-12)
    np.testing.assert_allclose(res.delta, aucs[1] - aucs[0], atol=1e-12)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    np.testing.assert_allclose(res.variance, var, rtol=1e-9)
    np.testing.assert_allclose(res.correlation, cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]), rtol=1e-9)
    assert res.low < res.delta < res.high
    # stratified bootstrap of the difference: SE within 25%
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    idx = np.concatenate(
        [rng.choice(pos, size=(400, pos.size)), rng.choice(neg, size=(400, neg.size))], axis=1
    )  # (400, n)
    boot = auroc(b[idx], y[idx]) - auroc(a[idx], y[idx])
    assert 0.75 < res.se / boot.std() < 1.25
    # vectorised over rows; identical scores give no change with p = 1
    stacked = delong_paired(np.stack([a, a]), np.stack([b, a]), y)
    np.testing.assert_allclose(stacked.delta[0], res.delta)
    assert stacked.delta[1] == 0 and stacked.variance[1] == 0 and stacked.pvalue[1] == 1.0


def test_benjamini_hochberg_matches_scipy():
    rng = np.random.default_rng(15)
    p = np.concatenate([rng.uniform(size=80), rng.uniform(0, 0.01, size=20)])
    rng.shuffle(p)
    p[:3] = p[3]  # ties
    q = benjamini_hochberg(p)
    np.testing.assert_allclose(q, scipy.stats.false_discovery_control(p), rtol=1e-12)
    assert np.all(q >= p) and np.all(q <= 1)
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= 0)
    # NaNs stay NaN and do not count
    p_nan = p.copy()
    p_nan[[5, 50, 77]] = np.nan
    q_nan = benjamini_hochberg(p_nan)
    ok = ~np.isnan(p_nan)
    assert np.isnan(q_nan[~ok]).all()
    np.testing.assert_allclose(q_nan[ok], scipy.stats.false_discovery_control(p_nan[ok]), rtol=1e-12)
    # along an axis, and over everything
    grid = rng.uniform(size=(4, 30))
    grid[1, 3] = np.nan
    q_rows = benjamini_hochberg(grid, axis=1)
    q_cols = benjamini_hochberg(grid.T, axis=0).T
    np.testing.assert_allclose(q_rows, q_cols, equal_nan=True)
    np.testing.assert_allclose(q_rows[0], scipy.stats.false_discovery_control(grid[0]), rtol=1e-12)
    flat = benjamini_hochberg(grid, axis=None)
    ok = ~np.isnan(grid)
    np.testing.assert_allclose(flat[ok], scipy.stats.false_discovery_control(grid[ok]), rtol=1e-12)
    assert np.isnan(benjamini_hochberg([np.nan, np.nan])).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.2, 1.5])


def test_probe_pipeline_end_to_end():
    # Fit on one split, score the other, DeLong per node and phenotype, BH over nodes: a planted node wins.
    rng = np.random.default_rng(16)
    k, n, w, p = 5, 700, 3, 2
    x, y = planted(rng, k, n, w, p, strength=4.0)
    z_fit, z_test = standardize(x[:, :400], x[:, 400:])
    fit: LogisticFit = fit_logistic(z_fit, y[:, :400], class_weight="balanced")
    scores = decision_function(fit, z_test)  # (k, p, 300)
    res = delong(scores, y[:, 400:])
    assert res.auroc.shape == (k, p)
    q = benjamini_hochberg(res.pvalue, axis=0)
    assert res.auroc[0, 0] > 0.7 and res.auroc[1, 1] > 0.8 and q[0, 0] < 0.01 and q[1, 1] < 0.01
