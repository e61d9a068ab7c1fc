"""The replacements of earlier hand-written code give its numbers: frozen copies of that code are the references.

``scipy.stats.rankdata`` and ``false_discovery_control`` replaced our midrank and Benjamini-Hochberg (ties, NaN
families); one ``standardize`` replaced the probes' ``standardise`` and the logistic module's ``standardize``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from scvi_networkvi.interpret._auroc import auroc, benjamini_hochberg
from scvi_networkvi.interpret._standardize import standardize


def old_standardize(x_fit, x_other):
    """``_logistic.standardize`` before the merge, unchunked: float64 statistics, constant at rounding level."""
    a = np.asarray(x_fit)
    out_dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)
    a64 = a.astype(np.float64)
    mean, std = a64.mean(axis=-2, keepdims=True), a64.std(axis=-2, keepdims=True)
    constant = std <= 8 * np.finfo(out_dtype).eps * np.maximum(np.abs(mean), np.finfo(np.float64).tiny)
    inv = np.where(constant, 0.0, 1.0 / np.where(constant, 1.0, std))
    return tuple(((np.asarray(v).astype(np.float64) - mean) * inv).astype(out_dtype) for v in (x_fit, x_other))


def old_standardise(x_fit, *others, axis=1):
    """``_probe.standardise`` before the merge (frozen copy): statistics in the input dtype, constant below 1e-12."""
    mean = x_fit.mean(axis=axis, keepdims=True)
    std = x_fit.std(axis=axis, keepdims=True)
    scale = np.where(std > 1e-12, 1.0 / np.where(std > 1e-12, std, 1.0), 0.0)
    return tuple((x - mean) * scale for x in (x_fit, *others))


@pytest.mark.parametrize("shape", [(3, 50, 4), (2, 3, 40, 3), (60, 5)])
def test_one_standardize_gives_both_former_functions_numbers(shape):
    """The probes' ``standardise`` and the tests' ``standardize`` were one computation twice: the same numbers."""
    rng = np.random.default_rng(9)
    x_fit = rng.normal(2.0, 3.0, size=shape)
    x_fit[..., 1] = 0.0  # a dead neuron
    x_fit[..., 2] = np.round(x_fit[..., 2])  # ties
    x_other = rng.normal(size=(*shape[:-2], 17, shape[-1]))
    new = standardize(x_fit, x_other)
    for got, want in zip(new, old_standardize(x_fit, x_other), strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(new, old_standardise(x_fit, x_other, axis=-2), strict=True):
        np.testing.assert_array_equal(got, want)
    # feature-major (sets, neurons, cells), as the random-gene-set reference calls it
    major = [np.ascontiguousarray(np.swapaxes(v, -1, -2)) for v in (x_fit, x_other)]
    for got, want in zip(standardize(*major, axis=-1), old_standardise(*major, axis=-1), strict=True):
        np.testing.assert_array_equal(got, want)
    x32 = x_fit.astype(np.float32)
    for got, want in zip(standardize(x32, x_other), old_standardize(x32, x_other), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def old_midrank(a):
    """The hand-written midrank that ``scipy.stats.rankdata`` replaced (frozen copy): ties get their mean rank."""
    a = np.asarray(a)
    n = a.shape[-1]
    order = np.argsort(a, axis=-1, kind="stable")
    s = np.take_along_axis(a, order, axis=-1)
    idx = np.broadcast_to(np.arange(n), s.shape)
    starts = np.ones(s.shape, dtype=bool)
    starts[..., 1:] = s[..., 1:] != s[..., :-1]
    ends = np.ones(s.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, idx, n - 1), axis=-1), axis=-1), axis=-1)
    ranks = np.empty(s.shape)
    np.put_along_axis(ranks, order, 0.5 * (first + last) + 1.0, axis=-1)
    return ranks


def old_benjamini_hochberg(p, axis=-1):
    """The hand-written adjustment that ``false_discovery_control`` replaced (frozen copy), NaN-aware."""
    p = np.moveaxis(np.asarray(p, dtype=np.float64), axis, -1)
    order = np.argsort(p, axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, axis=-1)
    m = (~np.isnan(p)).sum(-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        scaled = ps * m / np.arange(1, p.shape[-1] + 1)
    qs = np.minimum(np.flip(np.fmin.accumulate(np.flip(scaled, axis=-1), axis=-1), axis=-1), 1.0)
    qs = np.where(np.isnan(ps), np.nan, qs)
    q = np.empty_like(qs)
    np.put_along_axis(q, order, qs, axis=-1)
    return np.moveaxis(q, -1, axis)


def test_scipys_ranks_and_adjustment_give_the_former_numbers():
    """``rankdata`` and ``false_discovery_control`` replaced our copies: the same ranks, AUROCs and q-values."""
    rng = np.random.default_rng(17)
    scores = rng.integers(0, 5, size=(6, 80)).astype(float)  # many ties
    np.testing.assert_array_equal(scipy.stats.rankdata(scores, axis=-1), old_midrank(scores))
    y = rng.random((6, 80)) < 0.3
    tz = old_midrank(scores)
    n1 = y.sum(-1)
    old_auc = (np.where(y, tz, 0.0).sum(-1) - n1 * (n1 + 1) / 2) / (n1 * (80 - n1))
    np.testing.assert_allclose(auroc(scores, y), old_auc, rtol=0, atol=1e-15)
    p = rng.uniform(size=(5, 40))
    p[:, :4] = p[:, [4]]  # ties
    p[0, 7] = p[2, [1, 30]] = np.nan  # NaNs stay NaN and do not count
    p[4] = np.nan  # a family without p-values
    for axis in (-1, 0):
        np.testing.assert_allclose(
            benjamini_hochberg(p, axis=axis), old_benjamini_hochberg(p, axis=axis), rtol=1e-12, equal_nan=True
        )
