"""The batched Newton solver behind :func:`._logistic.fit_logistic`: one chunk of problems at a time.

Each Newton step of a chunk is three batched matrix products and a batched Cholesky solve of ``(w + 1) x (w + 1)``
systems, in float64; problems leave the working set as they converge. ``_probe_kernel`` runs the same algorithm as a
compiled kernel, with the same constants.
"""

from __future__ import annotations

import math

import torch

_ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
_MAX_HALVINGS = 50  # 2**-50 ~ 1e-15: a step that small cannot change a float64 objective anymore
_TOL_FLOOR = 1e-13  # relative Newton steps below this are float64 rounding noise
_SAFE_NU = 1.5  # steps changing no linear predictor by more than this decrease f enough (see _newton_chunk)
_CACHE_VALUES = 2**19  # target size of the (chunk, p, n) work arrays (4 MiB of float64)


def _upper_pairs(w1: int) -> tuple[torch.Tensor, torch.Tensor]:
    iu = torch.triu_indices(w1, w1)
    return iu[0], iu[1]


def _plan(n: int, w1: int, p: int, max_memory: int) -> tuple[bool, int, int]:
    """``(pairwise, matrices per chunk, label vectors per chunk)`` keeping float64 work arrays within max_memory."""
    q = w1 * (w1 + 1) // 2
    # The pairwise column products (n, q) per matrix make the Hessian one matmul; for very many cells and wide
    # nodes they would not fit, and the Hessian is then formed label vector by label vector (n, w + 1) instead.
    pairwise = 8 * n * q <= max_memory // 4
    fixed = 8 * n * (w1 + (q if pairwise else w1))  # per matrix: augmented copy and products (or one scaled copy)
    per_label = 8 * (12 * n + 4 * w1 * w1)  # per (matrix, label vector): ~12 (n,) work arrays and the Hessian
    labels = int(min(p, max(1, (max_memory - fixed) // per_label)))
    by_memory = max(1, int(max_memory // (fixed + per_label * labels)))
    # The Newton step is bound by elementwise passes over (c, p, n) arrays: keeping them cache-sized is several
    # times faster than streaming large ones through memory, and costs little Python overhead.
    by_cache = max(1, _CACHE_VALUES // max(1, n * labels))
    return pairwise, min(by_memory, by_cache), labels


def _newton_chunk(
    xa: torch.Tensor,
    y: torch.Tensor,
    sw: torch.Tensor,
    *,
    C: float,
    max_iter: int,
    tol: float,
    pairwise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve a chunk of problems.

    Parameters
    ----------
    xa
        ``(c, n, w + 1)`` float64 features with a trailing column of ones (the intercept).
    y, sw
        ``(c or 1, p, n)`` float64 labels and sample weights (a leading 1 is shared by all ``c`` matrices).
    pairwise
        Precompute the pairwise column products (fast Hessians, ``n (w + 1) (w + 2) / 2`` values per matrix).

    Returns
    -------
    beta ``(c, p, w + 1)`` (intercept last), n_iter ``(c, p)``, converged ``(c, p)``, objective ``(c, p)``.
    """
    c, n, w1 = xa.shape
    p = y.shape[1]
    w = w1 - 1
    dev = xa.device
    f64 = torch.float64
    iu, ju = _upper_pairs(w1)
    # Pairwise column products, computed once: the Hessian of every Newton step is then one batched matmul
    # (c, p, n) @ (c, n, q) over the upper triangle, shared across the p label vectors of each matrix.
    xx = xa[..., iu] * xa[..., ju] if pairwise else None
    diag = torch.arange(w, device=dev)
    swy = sw * y
    swn = sw - swy  # weight of the negatives: loss_i = -log(sigmoid(eta_i)) + (1 - y_i) * eta_i

    # Start at the intercept-only optimum: coef = 0, intercept = logit(weighted mean of y).
    ybar = swy.sum(-1) / sw.sum(-1)
    beta = torch.zeros(c, p, w1, dtype=f64, device=dev)
    beta[..., w] = (torch.log(ybar) - torch.log1p(-ybar)).expand(c, p)

    n_iter = torch.zeros(c, p, dtype=torch.int64, device=dev)
    converged = torch.zeros(c, p, dtype=torch.bool, device=dev)
    objective = torch.full((c, p), math.nan, dtype=f64, device=dev)
    zero = torch.zeros((), dtype=f64, device=dev)

    def evaluate(eta: torch.Tensor, b: torch.Tensor, s_all: torch.Tensor, s_neg: torch.Tensor) -> torch.Tensor:
        loss = (s_neg * eta).sum(-1) - (s_all * torch.nn.functional.logsigmoid(eta)).sum(-1)
        return C * loss + 0.5 * (b[..., :w] ** 2).sum(-1)

    # Working set: ``(a, pp)`` problems, problem (i, j) being label vector ci[i, j] on feature matrix ri[i, j] of the
    # chunk. It starts as the full (c, p) grid; as problems finish it shrinks, first to the matrices with a running
    # problem, then (when few remain) to a flat list of single problems (pp = 1), so that a few slow problems (e.g.
    # the well-separated ones) do not keep all the others busy.
    ri = torch.arange(c, device=dev)[:, None].expand(c, p)
    ci = torch.arange(p, device=dev)[None, :].expand(c, p)
    shared = y.shape[0] == 1
    cx, cxx, csw, cswy, cswn, cbeta = xa, xx, sw, swy, swn, beta.clone()
    eta = cbeta @ cx.transpose(1, 2)  # (a, pp, n)
    colmax = cx.abs().amax(1)  # (a, w1)
    cdone = torch.zeros(c, p, dtype=torch.bool, device=dev)  # converged or given up
    prev = torch.full((c, p), math.inf, dtype=f64, device=dev)  # previous relative Newton step
    prev_full = torch.zeros(c, p, dtype=torch.bool, device=dev)  # ... and whether it was taken in full
    for _ in range(max_iter):
        active = ~cdone
        mu = torch.sigmoid(eta)
        swmu = csw * mu
        r = swmu - cswy  # weighted residuals
        s = torch.addcmul(swmu, swmu, mu, value=-1.0)  # sw * mu * (1 - mu)
        g = C * (r @ cx)  # (a, pp, w1)
        g[..., :w] += cbeta[..., :w]
        if cxx is not None:
            hq = C * (s @ cxx)  # (a, pp, q)
            h = torch.zeros(*hq.shape[:-1], w1, w1, dtype=f64, device=dev)
            h[..., iu, ju] = hq
            h[..., ju, iu] = hq
        else:
            h = torch.empty(*s.shape[:-1], w1, w1, dtype=f64, device=dev)
            for j in range(s.shape[1]):
                h[:, j] = C * ((cx * s[:, j, :, None]).transpose(1, 2) @ cx)
        h[..., diag, diag] += 1.0
        chol, info = torch.linalg.cholesky_ex(h)
        if bool((info != 0).any()):
            # Only the unpenalised intercept pivot can vanish (every cell fitted with certainty): a tiny ridge
            # changes the step, not the fixed point.
            scale = h.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1.0)
            for eps in (1e-12, 1e-9, 1e-6, 1e-3):
                bad = (info != 0).to(f64)
                h = h + (eps * scale * bad)[..., None, None] * torch.eye(w1, dtype=f64, device=dev)
                chol, info = torch.linalg.cholesky_ex(h)
                if not bool((info != 0).any()):
                    break
        solved = info == 0
        step = -torch.cholesky_solve(g.unsqueeze(-1), chol).squeeze(-1)
        step = torch.where((active & solved)[..., None], step, zero)
        deta = step @ cx.transpose(1, 2)

        # Step length. Along the line, phi(t) = f(beta + t step) has |phi'''| <= nu phi'' with nu = max_i |deta_i|
        # (the logistic loss l satisfies |l'''| <= l''; the penalty is quadratic), hence
        # phi(t) <= phi(0) - t lam2 + lam2 (exp(t nu) - t nu - 1) / nu^2 with lam2 = -phi'(0) = phi''(0): whenever
        # t nu <= 1.5 the decrease is at least 0.1 t lam2 (Armijo holds) without evaluating f. Longer steps (early
        # iterations of strongly predictable problems) are backtracked from t = 1 with the Armijo test, on those
        # problems only, stopping at t nu <= 1.5 at the latest.
        # nu <= sum_j |step_j| max_i |x_ij| is free to bound; nu itself is computed only where the bound is too loose.
        t = torch.ones(step.shape[:-1], dtype=f64, device=dev)
        ia, ip = (active & ((step.abs() * colmax[:, None, :]).sum(-1) > _SAFE_NU)).nonzero(as_tuple=True)
        nu_sel = deta[ia, ip].abs().amax(-1) if ia.numel() else torch.zeros(0, dtype=f64, device=dev)
        far = nu_sel > _SAFE_NU
        ia, ip, nu_sel = ia[far], ip[far], nu_sel[far]
        if ia.numel() > 0:
            iw = torch.zeros_like(ia) if shared else ia
            e0, de, st, b0 = eta[ia, ip], deta[ia, ip], step[ia, ip], cbeta[ia, ip]
            s_all, s_neg = csw[iw, ip], cswn[iw, ip]
            slope = (g[ia, ip] * st).sum(-1)  # phi'(0) <= 0
            f0 = evaluate(e0, b0, s_all, s_neg)
            slack = 1e-13 * f0.abs()  # rounding noise of the objective itself
            ts = torch.ones_like(f0)
            todo = torch.ones_like(f0, dtype=torch.bool)
            for _ in range(_MAX_HALVINGS):
                f_try = evaluate(torch.addcmul(e0, ts[:, None], de), torch.addcmul(b0, ts[:, None], st), s_all, s_neg)
                todo = todo & (f_try > f0 + _ARMIJO * ts * slope + slack) & (ts * nu_sel > _SAFE_NU)
                if not bool(todo.any()):
                    break
                ts = torch.where(todo, 0.5 * ts, ts)
            t[ia, ip] = ts
        cbeta = torch.addcmul(cbeta, t[..., None], step)
        eta = torch.addcmul(eta, t[..., None], deta)

        # Converged when the full Newton step is negligible relative to the coefficients (its error is then of the
        # order of the step's square), or when two full Newton steps in a row show quadratic convergence that puts
        # the next step, rel^3 / prev^2, below tol / 10: this saves the final verifying iteration of most problems.
        # A singular Newton system (not expected: the Hessian is positive definite) gives up on the problem.
        rel = step.abs().amax(-1) / (1.0 + cbeta.abs().amax(-1))
        full = t == 1.0
        quadratic = full & prev_full & (rel < prev) & (rel <= 1e-2) & (rel**3 <= 0.1 * tol * prev**2)
        now_converged = active & solved & ((rel <= tol) | quadratic)
        prev, prev_full = rel, full
        n_iter[ri, ci] += active.to(torch.int64)
        converged[ri, ci] |= now_converged
        cdone = cdone | now_converged | ~solved
        if bool(cdone.all()):
            break

        running = ~cdone
        n_running = int(running.sum())
        keep = running.any(-1)
        if cdone.shape[1] > 1 and 4 * n_running <= running.numel():
            # Few problems left: flatten them to single problems (their matrices are gathered once).
            beta[ri, ci], objective[ri, ci] = cbeta, evaluate(eta, cbeta, csw, cswn)
            ia, ip = running.nonzero(as_tuple=True)
            iw = torch.zeros_like(ia) if shared else ia
            cx, colmax = cx[ia], colmax[ia]
            cxx = None if cxx is None else cxx[ia]
            csw, cswy, cswn = csw[iw, ip][:, None], cswy[iw, ip][:, None], cswn[iw, ip][:, None]
            cbeta, eta = cbeta[ia, ip][:, None], eta[ia, ip][:, None]
            ri, ci = ri[ia, ip][:, None], ci[ia, ip][:, None]
            prev, prev_full = prev[ia, ip][:, None], prev_full[ia, ip][:, None]
            cdone = torch.zeros(n_running, 1, dtype=torch.bool, device=dev)
            shared = False
        elif 2 * int(keep.sum()) <= keep.numel():
            # Half of the matrices have finished all their problems: drop them.
            beta[ri, ci], objective[ri, ci] = cbeta, evaluate(eta, cbeta, csw, cswn)
            cx, colmax, cbeta, eta, cdone, ri, ci, prev, prev_full = (
                v[keep] for v in (cx, colmax, cbeta, eta, cdone, ri, ci, prev, prev_full)
            )
            cxx = None if cxx is None else cxx[keep]
            if not shared:
                csw, cswy, cswn = csw[keep], cswy[keep], cswn[keep]
    beta[ri, ci], objective[ri, ci] = cbeta, evaluate(eta, cbeta, csw, cswn)
    return beta, n_iter, converged, objective
