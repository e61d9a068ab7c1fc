"""The probes of many random gene sets as one compiled CPU kernel (numba): Newton fits and held-out AUROCs.

The size-matched reference fits ``sets x phenotypes`` logistic probes (thousands per size bin) on a few features
(a term's width, 2 for the tutorial settings) over the same few thousand cells. Written as torch operations
(:func:`._logistic.fit_logistic`), each Newton step passes over ``(sets, phenotypes, cells)`` arrays about twenty
times, and the line search's ``logsigmoid`` costs as much again: ~85 ns per cell and Newton step. Here one problem
is solved at a time with its cells' work vectors in the L1 / L2 cache, and each pass over them is a loop LLVM
vectorises: ``exp`` and ``log1p`` are written as polynomials (the libm calls would keep the loops scalar).

The algorithm is :func:`._newton._newton_chunk`'s for one problem, step for step: the same start (the
intercept-only optimum), Newton system, ridge for a singular intercept pivot, safe step length, Armijo backtracking
and convergence tests. Only the order of the sums over cells and the last bits of ``exp`` / ``log1p`` (relative error
~1e-14 instead of ~1e-16) differ, so the coefficients agree with :func:`._logistic.fit_logistic` far inside its ``tol``
(``tests/test_interpret_probe_kernel.py``).

Problems are independent; sets are handed out to ``num_threads`` Python threads (the kernels release the GIL), so
the numbers do not depend on the thread count.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from ._newton import _ARMIJO, _MAX_HALVINGS, _SAFE_NU, _TOL_FLOOR

# Reassociation lets LLVM vectorise the sums over cells; each problem runs on one thread in a fixed order, so the
# numbers are the same on every run of a machine.
_FAST = {"reassoc", "contract"}
#: ``|eta|`` beyond which the logistic function is 0 or 1 in float64 (exp(-40) ~ 4e-18): exp's argument is clamped.
_CLAMP = 40.0
#: Decision values are rounded to this many decimals before ranking (:func:`._probe.tied`).
_TIE_DECIMALS = 9


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def _exp(z: float) -> float:
    """``exp(z)`` for ``|z| <= 40`` by a degree-15 Taylor polynomial of ``z / 64`` squared six times (rel. ~1e-14)."""
    t = z * 0.015625
    p = 1.0 / 1307674368000.0
    p = p * t + 1.0 / 87178291200.0
    p = p * t + 1.0 / 6227020800.0
    p = p * t + 1.0 / 479001600.0
    p = p * t + 1.0 / 39916800.0
    p = p * t + 1.0 / 3628800.0
    p = p * t + 1.0 / 362880.0
    p = p * t + 1.0 / 40320.0
    p = p * t + 1.0 / 5040.0
    p = p * t + 1.0 / 720.0
    p = p * t + 1.0 / 120.0
    p = p * t + 1.0 / 24.0
    p = p * t + 1.0 / 6.0
    p = p * t + 0.5
    p = p * t + 1.0
    p = p * t + 1.0
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    return p * p


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def _sigmoid(eta: float) -> float:
    """The logistic function ``1 / (1 + exp(-eta))``."""
    return 1.0 / (1.0 + _exp(min(max(-eta, -_CLAMP), _CLAMP)))


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def _log_sigmoid(eta: float) -> float:
    """``log(sigmoid(eta)) = min(eta, 0) - log1p(exp(-|eta|))``; ``log1p(u) = 2 atanh(u / (2 + u))`` by its series."""
    u = _exp(-min(abs(eta), _CLAMP))  # in (0, 1]
    v = u / (2.0 + u)  # <= 1/3: 18 odd terms reach 1e-17
    v2 = v * v
    s = 1.0 / 35.0
    for k in range(16, -1, -1):
        s = s * v2 + 1.0 / (2 * k + 1)
    return min(eta, 0.0) - 2.0 * v * s


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _objective(x, beta, t, step, eta, deta, sw, swn, C):
    """``f(beta + t step)`` of one problem, with linear predictors ``eta + t deta`` (see :mod:`._logistic`)."""
    n = eta.shape[0]
    w = x.shape[0]
    loss = 0.0
    for i in range(n):
        e = eta[i] + t * deta[i]
        loss += swn[i] * e - sw[i] * _log_sigmoid(e)
    penalty = 0.0
    for k in range(w):
        b = beta[k] + t * step[k]
        penalty += b * b
    return C * loss + 0.5 * penalty


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cholesky(h, chol):
    """Lower Cholesky factor of ``h`` into ``chol``; ``False`` if a pivot is not positive (not positive definite)."""
    m = h.shape[0]
    for j in range(m):
        d = h[j, j]
        for k in range(j):
            d -= chol[j, k] * chol[j, k]
        if not d > 0.0:
            return False
        d = math.sqrt(d)
        chol[j, j] = d
        for i in range(j + 1, m):
            v = h[i, j]
            for k in range(j):
                v -= chol[i, k] * chol[j, k]
            chol[i, j] = v / d
        for i in range(j):
            chol[i, j] = 0.0
    return True


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _newton_one(x, y, sw, C, max_iter, tol, beta, eta, deta, swn, r, s, g, h, chol, step, colmax):
    """Fit one problem (``x`` ``(w, n)`` feature-major, labels and weights ``(n,)``) into ``beta`` ``(w + 1,)``.

    The steps of :func:`._logistic._newton_chunk` for a single problem; the other arguments are work buffers
    (``(n,)``, ``(w + 1,)`` or ``(w + 1, w + 1)``). Returns ``(n_iter, converged, objective)``.
    """
    w, n = x.shape
    w1 = w + 1
    sw_sum = 0.0
    swy_sum = 0.0
    for i in range(n):
        sw_sum += sw[i]
        swy_sum += sw[i] * y[i]
    ybar = swy_sum / sw_sum
    for k in range(w1):
        beta[k] = 0.0
    beta[w] = math.log(ybar) - math.log1p(-ybar)
    for i in range(n):
        eta[i] = beta[w]
    for k in range(w):
        m = 0.0
        for i in range(n):
            m = max(m, abs(x[k, i]))
        colmax[k] = m
    colmax[w] = 1.0
    for i in range(n):
        swn[i] = sw[i] - sw[i] * y[i]  # the negatives' weights: loss_i = swn_i eta_i - sw_i log(sigmoid(eta_i))
    prev = math.inf
    prev_full = False
    converged = False
    n_iter = 0
    for _ in range(max_iter):
        # residuals and curvature weights, then the gradient and Hessian (upper triangle) as sums over cells
        for i in range(n):
            mu = _sigmoid(eta[i])
            swmu = sw[i] * mu
            r[i] = swmu - sw[i] * y[i]
            s[i] = swmu - swmu * mu
        for a in range(w1):
            acc = 0.0
            if a < w:
                for i in range(n):
                    acc += r[i] * x[a, i]
            else:
                for i in range(n):
                    acc += r[i]
            g[a] = C * acc
        for a in range(w):
            g[a] += beta[a]
        for a in range(w1):
            for b in range(a, w1):
                acc = 0.0
                if b < w:
                    for i in range(n):
                        acc += s[i] * x[a, i] * x[b, i]
                elif a < w:
                    for i in range(n):
                        acc += s[i] * x[a, i]
                else:
                    for i in range(n):
                        acc += s[i]
                h[a, b] = C * acc
                h[b, a] = C * acc
        for a in range(w):
            h[a, a] += 1.0
        solved = _cholesky(h, chol)
        if not solved:
            # only the unpenalised intercept pivot can vanish: a tiny ridge changes the step, not the fixed point
            scale = 1.0
            for a in range(w1):
                scale = max(scale, abs(h[a, a]))
            for eps in (1e-12, 1e-9, 1e-6, 1e-3):
                for a in range(w1):
                    h[a, a] += eps * scale
                solved = _cholesky(h, chol)
                if solved:
                    break
        if solved:
            for a in range(w1):  # forward substitution: L z = -g
                v = -g[a]
                for b in range(a):
                    v -= chol[a, b] * step[b]
                step[a] = v / chol[a, a]
            for a in range(w1 - 1, -1, -1):  # back substitution: L^T step = z
                v = step[a]
                for b in range(a + 1, w1):
                    v -= chol[b, a] * step[b]
                step[a] = v / chol[a, a]
        else:
            for a in range(w1):
                step[a] = 0.0
        for i in range(n):
            deta[i] = step[w]
        for k in range(w):
            sk = step[k]
            for i in range(n):
                deta[i] += sk * x[k, i]
        # step length: the full step where the self-concordance bound guarantees enough decrease, else Armijo
        t = 1.0
        bound = 0.0
        for a in range(w1):
            bound += abs(step[a]) * colmax[a]
        if bound > _SAFE_NU:
            nu = 0.0
            for i in range(n):
                nu = max(nu, abs(deta[i]))
            if nu > _SAFE_NU:
                slope = 0.0
                for a in range(w1):
                    slope += g[a] * step[a]
                f0 = _objective(x, beta, 0.0, step, eta, deta, sw, swn, C)
                slack = 1e-13 * abs(f0)
                for _halving in range(_MAX_HALVINGS):
                    f_try = _objective(x, beta, t, step, eta, deta, sw, swn, C)
                    if not (f_try > f0 + _ARMIJO * t * slope + slack and t * nu > _SAFE_NU):
                        break
                    t *= 0.5
        largest_step = 0.0
        largest_beta = 0.0
        for a in range(w1):
            beta[a] += t * step[a]
            largest_step = max(largest_step, abs(step[a]))
            largest_beta = max(largest_beta, abs(beta[a]))
        for i in range(n):
            eta[i] += t * deta[i]
        rel = largest_step / (1.0 + largest_beta)
        full = t == 1.0
        quadratic = full and prev_full and rel < prev and rel <= 1e-2 and rel**3 <= 0.1 * tol * prev**2
        n_iter += 1
        prev, prev_full = rel, full
        if solved and (rel <= tol or quadratic):
            converged = True
            break
        if not solved:
            break
    for a in range(w1):
        step[a] = 0.0
    return n_iter, converged, _objective(x, beta, 0.0, step, eta, deta, sw, swn, C)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fit_sets(x, y, sw, C, max_iter, tol, first, last, beta, n_iter, converged, objective):
    """Fit the problems of sets ``first:last`` (``x`` ``(sets, w, n)``) for every label vector (``y``, ``sw`` ``(p, n)``)."""
    w, n = x.shape[1], x.shape[2]
    w1 = w + 1
    eta, deta, swn, r, s = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    g, step, colmax = np.empty(w1), np.empty(w1), np.empty(w1)
    h, chol = np.empty((w1, w1)), np.empty((w1, w1))
    for k in range(first, last):
        for j in range(y.shape[0]):
            it, conv, obj = _newton_one(
                x[k], y[j], sw[j], C, max_iter, tol, beta[k, j], eta, deta, swn, r, s, g, h, chol, step, colmax
            )
            n_iter[k, j] = it
            converged[k, j] = conv
            objective[k, j] = obj


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pair_auroc(scores, cases, few, many):
    """AUROC of ``scores`` against the boolean ``cases``, ties counting one half (Mann-Whitney ``U / (n1 n0)``).

    Each cell of the smaller class is compared with every cell of the other (``few``, ``many``: work buffers): with
    one-vs-rest phenotypes the cases are few, and the comparisons vectorise where a sort would not. The counts are
    integers, so ``U`` and the AUROC are exactly those of the rank sums (:func:`._null.rank_auroc`).
    """
    n = scores.shape[0]
    n1 = 0
    for i in range(n):
        n1 += cases[i]
    n0 = n - n1
    fewer_cases = n1 <= n0
    a = 0
    b = 0
    for i in range(n):
        if cases[i] == fewer_cases:
            few[a] = scores[i]
            a += 1
        else:
            many[b] = scores[i]
            b += 1
    below = 0.0  # over the smaller class: (cells of the other class below) + 0.5 (tied)
    for i in range(a):
        v = few[i]
        less = 0
        equal = 0
        for k in range(b):
            less += many[k] < v
            equal += many[k] == v
        below += less + 0.5 * equal
    u = below if fewer_cases else float(n1) * n0 - below
    return u / (float(n1) * n0)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _score_sets(x, beta, held, cases, first, last, out):
    """Held-out AUROCs ``out[k, j]`` of sets ``first:last`` (``x`` ``(sets, w, m)``, ``beta`` ``(sets, p, w + 1)``).

    ``held`` ``(p, m)``: the held-out cells of each label vector; scores are rounded to :data:`_TIE_DECIMALS`
    decimals as numpy's ``round`` does (so that cells with identical activations tie).
    """
    w, m = x.shape[1], x.shape[2]
    factor = 10.0**_TIE_DECIMALS
    scores = np.empty(m)
    labels = np.empty(m, dtype=np.bool_)
    few, many = np.empty(m), np.empty(m)
    for k in range(first, last):
        for j in range(held.shape[0]):
            count = 0
            for i in range(m):
                if held[j, i]:
                    v = beta[k, j, w]
                    for a in range(w):
                        v += beta[k, j, a] * x[k, a, i]
                    scores[count] = np.rint(v * factor) / factor
                    labels[count] = cases[j, i]
                    count += 1
            out[k, j] = _pair_auroc(scores[:count], labels[:count], few, many)


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """Up to ``parts`` contiguous, non-empty ``(first, last)`` ranges covering ``0:n``."""
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _run(kernel, n_sets: int, num_threads: int, inputs: tuple, outputs: tuple) -> None:
    """Run ``kernel(*inputs, first, last, *outputs)`` over ranges of sets on ``num_threads`` threads."""
    parts = _ranges(n_sets, max(1, num_threads) * 4)  # a few ranges per thread: problems differ in their steps
    if num_threads <= 1 or len(parts) <= 1:
        kernel(*inputs, 0, n_sets, *outputs)
        return
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        for future in [pool.submit(kernel, *inputs, a, b, *outputs) for a, b in parts]:
            future.result()


def fit_sets(
    x: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray,
    *,
    C: float,
    max_iter: int = 100,
    tol: float = 1e-6,
    num_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``sets x p`` L2-regularised logistic probes: :func:`._logistic.fit_logistic` for shared labels.

    Parameters
    ----------
    x
        ``(sets, w, n)`` float64 features, feature-major (each set's features are contiguous rows over cells).
    y, sample_weight
        ``(p, n)`` 0/1 labels and non-negative weights (class weights folded in), shared by every set; both classes
        must carry weight in every label vector.
    C, max_iter, tol
        As for :func:`._logistic.fit_logistic`.
    num_threads
        Threads the sets are split over (the result does not depend on it).

    Returns
    -------
    ``beta`` ``(sets, p, w + 1)`` (coefficients, then the intercept), ``n_iter``, ``converged``, ``objective``
    ``(sets, p)``.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    sw = np.ascontiguousarray(np.broadcast_to(sample_weight, y.shape), dtype=np.float64)
    k, w, _ = x.shape
    p = y.shape[0]
    beta = np.zeros((k, p, w + 1))
    n_iter = np.zeros((k, p), dtype=np.int64)
    converged = np.zeros((k, p), dtype=np.bool_)
    objective = np.zeros((k, p))
    inputs = (x, y, sw, float(C), int(max_iter), max(float(tol), _TOL_FLOOR))
    _run(_fit_sets, k, num_threads, inputs, (beta, n_iter, converged, objective))
    return beta, n_iter, converged, objective


def held_out_aurocs(
    x_eval: np.ndarray, beta: np.ndarray, held: np.ndarray, cases: np.ndarray, *, num_threads: int = 1
) -> np.ndarray:
    """``(sets, p)`` AUROCs of the fitted probes ``beta`` on the held-out cells ``held`` ``(p, m)``.

    ``x_eval``: ``(sets, w, m)`` float64 features (feature-major); ``cases`` ``(p, m)``: the cases among them.
    Decision values are rounded as :func:`._probe.tied` does, ties take their average rank.
    """
    x_eval = np.ascontiguousarray(x_eval, dtype=np.float64)
    out = np.empty(beta.shape[:2])
    inputs = (x_eval, np.ascontiguousarray(beta), np.ascontiguousarray(held), np.ascontiguousarray(cases))
    _run(_score_sets, len(x_eval), num_threads, inputs, (out,))
    return out
