"""Vectorised AUROC statistics: midrank AUROC, DeLong variance and intervals, paired DeLong, Benjamini-Hochberg.

All functions work on many score vectors at once: scores ``(..., n)`` against labels ``(..., n)`` broadcast over the
leading axes, with ``n`` cells on the last axis.

DeLong's variance uses the midrank algorithm of Sun & Xu (2014, IEEE Signal Process. Lett. 21:1389): with ``T_z``
the midranks of all ``n`` scores, ``T_x`` those of the ``n1`` positives among themselves and ``T_y`` those of the
``n0`` negatives among themselves, the structural components are ``V10_i = (T_z,i - T_x,i) / n0`` (positives) and
``V01_j = 1 - (T_z,j - T_y,j) / n1`` (negatives); ``AUROC = mean(V10) = mean(V01)`` and
``Var(AUROC) = var(V10) / n1 + var(V01) / n0`` (sample variances, ``ddof=1``). Cost ``O(n log n)`` per vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import expit, logit
from scipy.stats import false_discovery_control, norm, rankdata

__all__ = [
    "DeLongResult",
    "PairedDeLongResult",
    "auroc",
    "benjamini_hochberg",
    "delong",
    "delong_paired",
]

# Variances below this are rounding noise of components that are all equal (e.g. perfect separation): exactly 0.
_VAR_FLOOR = 64 * np.finfo(np.float64).eps ** 2


@dataclass(frozen=True)
class DeLongResult:
    """AUROC with its DeLong variance, confidence interval and test against 0.5; all arrays of shape ``(...)``.

    Attributes
    ----------
    auroc
        Area under the ROC curve (ties count 1/2), equal to scikit-learn's ``roc_auc_score``.
    variance
        DeLong variance of the AUROC; NaN when a class has fewer than 2 cells (the sample variance is undefined).
    low, high
        Confidence interval at ``level``, within ``[0, 1]``.
    pvalue
        Two-sided p-value of ``AUROC = 0.5`` (z-test with the DeLong standard error). A zero variance gives 0 where
        the AUROC differs from 0.5 and 1 where it equals 0.5; NaN variance gives NaN.
    n_pos, n_neg
        Number of positive and negative cells (int64).
    level
        Confidence level of the interval.
    """

    auroc: np.ndarray
    variance: np.ndarray
    low: np.ndarray
    high: np.ndarray
    pvalue: np.ndarray
    n_pos: np.ndarray
    n_neg: np.ndarray
    level: float

    @property
    def se(self) -> np.ndarray:
        """DeLong standard error, ``sqrt(variance)``."""
        return np.sqrt(self.variance)


@dataclass(frozen=True)
class PairedDeLongResult:
    """Change of AUROC between two score vectors on the same cells, ``delta = auroc_b - auroc_a``; shapes ``(...)``.

    Attributes
    ----------
    auroc_a, auroc_b
        AUROC of the first and second scores.
    delta
        ``auroc_b - auroc_a``.
    variance
        DeLong variance of ``delta`` (``var_a + var_b - 2 cov_ab`` from the paired structural components); NaN when a
        class has fewer than 2 cells.
    low, high
        Confidence interval of ``delta`` at ``level`` (normal approximation), within ``[-1, 1]``.
    pvalue
        Two-sided p-value of ``delta = 0``; a zero variance gives 1 where ``delta == 0`` and 0 elsewhere.
    correlation
        Correlation of the two AUROC estimates (``cov_ab / sqrt(var_a var_b)``; NaN where a variance is 0).
    level
        Confidence level of the interval.
    """

    auroc_a: np.ndarray
    auroc_b: np.ndarray
    delta: np.ndarray
    variance: np.ndarray
    low: np.ndarray
    high: np.ndarray
    pvalue: np.ndarray
    correlation: np.ndarray
    level: float

    @property
    def se(self) -> np.ndarray:
        """DeLong standard error of ``delta``."""
        return np.sqrt(self.variance)


# ----------------------------------------------------------------------------------------------------------------------
# ranks and inputs


def _labels(y, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.dtype == bool:
        return y
    if not np.issubdtype(y.dtype, np.number):
        raise TypeError(f"{name} must hold 0/1 (or bool) labels, got dtype {y.dtype}.")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"{name} must hold binary 0/1 labels only.")
    return y == 1


def _scores(scores, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (cells last).")
    if np.isnan(s).any():
        raise ValueError(f"{name} contain NaN.")
    return s


def _counts(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n1 = y.sum(-1)
    n0 = y.shape[-1] - n1
    if np.any(n1 == 0) or np.any(n0 == 0):
        bad = np.argwhere(np.atleast_1d((n1 == 0) | (n0 == 0)))[0]
        raise ValueError(
            f"AUROC needs both classes: the label vector at index {tuple(int(i) for i in bad)} has only one class."
        )
    return n1, n0


def _components(tz: np.ndarray, y: np.ndarray, n1: np.ndarray, n0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``V10`` on positives and ``V01`` on negatives, in one ``(..., n)`` array each (0 on the other class)."""
    # Ranks within a class: the other class is pushed past every score (tz is finite), leaving these ranks intact.
    tx = rankdata(np.where(y, tz, np.inf), axis=-1)
    ty = rankdata(np.where(y, np.inf, tz), axis=-1)
    v10 = np.where(y, (tz - tx) / n0[..., None], 0.0)
    v01 = np.where(y, 0.0, 1.0 - (tz - ty) / n1[..., None])
    return v10, v01


def _class_var(v: np.ndarray, mean: np.ndarray, mask: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Sample variance (``ddof=1``) of ``v`` over the cells in ``mask``; NaN for fewer than 2 cells."""
    dev = np.where(mask, v - mean[..., None], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count >= 2, (dev * dev).sum(-1) / (count - 1), np.nan)


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    return float(norm.ppf(0.5 + level / 2))


def _pvalue(effect: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Two-sided normal p-value of ``effect = 0``; zero variance decides by ``effect`` alone."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(effect) / np.sqrt(var)
    p = 2.0 * norm.sf(z)
    p = np.where(var == 0, np.where(effect == 0, 1.0, 0.0), p)
    return np.where(np.isnan(var), np.nan, p)


def _out(a: np.ndarray):
    return a[()] if a.ndim == 0 else a


# ----------------------------------------------------------------------------------------------------------------------
# public API


def auroc(scores, y) -> np.ndarray:
    """AUROC of score vectors against binary labels, ties counted 1/2 (equal to ``roc_auc_score``).

    Parameters
    ----------
    scores
        ``(..., n)`` scores, higher meaning more likely positive (e.g. ``(m, n)`` for ``m`` vectors).
    y
        ``(..., n)`` 0/1 or bool labels broadcastable against ``scores`` (e.g. ``(n,)`` shared by all vectors).

    Returns
    -------
    ``(...)`` float64 AUROC (the broadcast leading shape; a NumPy scalar for 1-D input).

    Raises
    ------
    ValueError
        When a label vector has only one class, labels are not binary, scores contain NaN or the shapes do not match.
    """
    s = _scores(scores)
    yb = _labels(y)
    shape = np.broadcast_shapes(s.shape, yb.shape)
    # Ranks depend on the scores only: rank before broadcasting against several label vectors.
    tz = np.broadcast_to(rankdata(s, axis=-1), shape)
    yb = np.broadcast_to(yb, shape)
    n1, n0 = _counts(yb)
    pos_rank_sum = np.where(yb, tz, 0.0).sum(-1)
    return _out((pos_rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def delong(
    scores,
    y,
    *,
    level: float = 0.95,
    ci: Literal["logit", "normal"] = "logit",
) -> DeLongResult:
    """AUROC with DeLong variance, confidence interval and two-sided p-value against 0.5, vectorised.

    Parameters
    ----------
    scores
        ``(..., n)`` scores (e.g. ``(m, n)``).
    y
        ``(..., n)`` 0/1 or bool labels broadcastable against ``scores``.
    level
        Confidence level of the interval.
    ci
        ``"logit"`` (default): normal interval for ``logit(AUROC)`` with the delta-method SE
        ``se / (AUROC (1 - AUROC))``, mapped back (stays inside ``(0, 1)`` and has better coverage near the bounds);
        where the AUROC is exactly 0 or 1 it falls back to ``"normal"``. ``"normal"``: ``AUROC +- z se`` clipped to
        ``[0, 1]``.

    Returns
    -------
    :class:`DeLongResult` with arrays of the broadcast leading shape ``(...)``.
    """
    if ci not in ("logit", "normal"):
        raise ValueError(f"ci must be 'logit' or 'normal', got {ci!r}.")
    z = _z(level)
    s = _scores(scores)
    yb = _labels(y)
    shape = np.broadcast_shapes(s.shape, yb.shape)
    tz = np.broadcast_to(rankdata(s, axis=-1), shape)
    yb = np.broadcast_to(yb, shape)
    n1, n0 = _counts(yb)
    v10, v01 = _components(tz, yb, n1, n0)
    auc = v10.sum(-1) / n1
    var = _class_var(v10, auc, yb, n1) / n1 + _class_var(v01, auc, ~yb, n0) / n0
    var = np.where(var < _VAR_FLOOR, 0.0, var)
    se = np.sqrt(var)

    low = np.clip(auc - z * se, 0.0, 1.0)
    high = np.clip(auc + z * se, 0.0, 1.0)
    if ci == "logit":
        inner = (auc > 0) & (auc < 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            centre = logit(np.where(inner, auc, 0.5))
            half = z * se / np.where(inner, auc * (1.0 - auc), 1.0)
        low = np.where(inner, expit(centre - half), low)
        high = np.where(inner, expit(centre + half), high)
    return DeLongResult(
        auroc=_out(auc),
        variance=_out(var),
        low=_out(low),
        high=_out(high),
        pvalue=_out(_pvalue(auc - 0.5, var)),
        n_pos=_out(np.asarray(n1, dtype=np.int64)),
        n_neg=_out(np.asarray(n0, dtype=np.int64)),
        level=float(level),
    )


def delong_paired(scores_a, scores_b, y, *, level: float = 0.95) -> PairedDeLongResult:
    """Paired DeLong test of the AUROC change ``auroc(scores_b) - auroc(scores_a)`` on the same cells.

    Both AUROCs are estimated on the same cells, so their errors are correlated; DeLong's covariance of the
    structural components accounts for it (e.g. AUROC before and after an in-silico perturbation).

    Parameters
    ----------
    scores_a, scores_b
        ``(..., n)`` scores of the same cells (broadcastable against each other and ``y``).
    y
        ``(..., n)`` 0/1 or bool labels.
    level
        Confidence level of the interval for ``delta``.

    Returns
    -------
    :class:`PairedDeLongResult` with arrays of the broadcast leading shape ``(...)``.
    """
    z = _z(level)
    sa = _scores(scores_a, "scores_a")
    sb = _scores(scores_b, "scores_b")
    yb = _labels(y)
    shape = np.broadcast_shapes(sa.shape, sb.shape, yb.shape)
    yb = np.broadcast_to(yb, shape)
    n1, n0 = _counts(yb)
    va10, va01 = _components(np.broadcast_to(rankdata(sa, axis=-1), shape), yb, n1, n0)
    vb10, vb01 = _components(np.broadcast_to(rankdata(sb, axis=-1), shape), yb, n1, n0)
    auc_a = va10.sum(-1) / n1
    auc_b = vb10.sum(-1) / n1
    delta = auc_b - auc_a

    def cov(u10, u_mean, t10, t_mean, u01, t01):
        # Sample covariance of the components within each class, divided by the class size.
        du, dt = np.where(yb, u10 - u_mean[..., None], 0.0), np.where(yb, t10 - t_mean[..., None], 0.0)
        eu, et = np.where(yb, 0.0, u01 - u_mean[..., None]), np.where(yb, 0.0, t01 - t_mean[..., None])
        with np.errstate(divide="ignore", invalid="ignore"):
            c10 = np.where(n1 >= 2, (du * dt).sum(-1) / (n1 - 1), np.nan)
            c01 = np.where(n0 >= 2, (eu * et).sum(-1) / (n0 - 1), np.nan)
        return c10 / n1 + c01 / n0

    var_a = cov(va10, auc_a, va10, auc_a, va01, va01)
    var_b = cov(vb10, auc_b, vb10, auc_b, vb01, vb01)
    # The difference's variance straight from the component differences (no cancellation of var_a + var_b - 2 cov).
    var = cov(vb10 - va10, delta, vb10 - va10, delta, vb01 - va01, vb01 - va01)
    var = np.where(var < _VAR_FLOOR, 0.0, var)
    cov_ab = cov(va10, auc_a, vb10, auc_b, va01, vb01)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov_ab / np.sqrt(var_a * var_b)
    corr = np.where((var_a > _VAR_FLOOR) & (var_b > _VAR_FLOOR), corr, np.nan)
    se = np.sqrt(var)
    return PairedDeLongResult(
        auroc_a=_out(auc_a),
        auroc_b=_out(auc_b),
        delta=_out(delta),
        variance=_out(var),
        low=_out(np.clip(delta - z * se, -1.0, 1.0)),
        high=_out(np.clip(delta + z * se, -1.0, 1.0)),
        pvalue=_out(_pvalue(delta, var)),
        correlation=_out(corr),
        level=float(level),
    )


def benjamini_hochberg(pvals, axis: int | None = -1) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), NaN-aware and vectorised along ``axis``.

    ``scipy.stats.false_discovery_control(method="bh")`` per family of the non-NaN p-values: NaNs stay NaN and do not
    count towards the number of tests.

    Parameters
    ----------
    pvals
        P-values in ``[0, 1]`` (or NaN), any shape.
    axis
        Axis of the families; every other axis indexes independent families. ``None``: one family of all values.

    Returns
    -------
    q-values, float64, of the shape of ``pvals``.
    """
    p = np.asarray(pvals, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1] (NaN allowed).")
    if axis is None:
        return benjamini_hochberg(p.reshape(-1), axis=-1).reshape(p.shape)
    if p.ndim == 0:
        return p.copy()
    p = np.moveaxis(p, axis, -1)
    q = np.full(p.shape, np.nan)
    for family in np.ndindex(p.shape[:-1]):  # scipy's adjustment refuses NaN: each family's non-NaN values
        present = ~np.isnan(p[family])
        if present.any():
            q[family][present] = false_discovery_control(p[family][present], method="bh")
    return np.moveaxis(q, -1, axis)
