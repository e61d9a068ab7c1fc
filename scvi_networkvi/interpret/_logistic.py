"""Batched L2-regularised logistic regression (Newton / IRLS) for many small independent problems.

The probes of the interpretability engine fit one logistic regression per (GO node, phenotype) pair on the node's few
neurons. Each problem is tiny (``w + 1 <= ~50`` parameters) but there are thousands of them sharing the same cells, so
they are solved together: all Newton steps of a chunk of problems are three batched matrix products plus a batched
Cholesky solve of ``(w + 1) x (w + 1)`` systems, in float64.

Objective (identical to scikit-learn's ``LogisticRegression(penalty="l2", C=C, fit_intercept=True)``)::

    C * sum_i s_i * [log(1 + exp(eta_i)) - y_i * eta_i] + 0.5 * ||coef||^2,    eta_i = x_i @ coef + intercept

with sample weights ``s_i`` (class weights multiply them) and the intercept not penalised. The objective is strictly
convex in ``coef``; Newton with an Armijo backtracking line search converges from any start, quadratically near the
optimum, also on perfectly separable data (the penalty keeps the solution finite).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ._newton import _TOL_FLOOR, _newton_chunk, _plan

__all__ = [
    "LogisticFit",
    "decision_function",
    "fit_logistic",
    "fit_logistic_grouped",
    "predict_proba",
]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block on ``n`` torch threads (``None``: unchanged), restoring the previous count afterwards."""
    threads = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


ArrayLike = np.ndarray | torch.Tensor

_DEFAULT_MEMORY = 512 * 2**20  # bytes of float64 work arrays per chunk of problems


@dataclass(frozen=True)
class LogisticFit:
    """Result of :func:`fit_logistic`.

    ``batch`` below is the batch shape of the fit: ``(k, p)`` for ``x`` of shape ``(k, n, w)`` and labels of shape
    ``(p, n)`` or ``(k, p, n)``; ``(k,)`` for labels of shape ``(n,)``; the leading ``k`` is absent when ``x`` was a
    single ``(n, w)`` matrix.

    Attributes
    ----------
    coef
        ``(*batch, w)`` float64 coefficients (scikit-learn's ``coef_[0]``).
    intercept
        ``(*batch,)`` float64 intercepts (scikit-learn's ``intercept_[0]``).
    n_iter
        ``(*batch,)`` int64 Newton iterations used per problem.
    converged
        ``(*batch,)`` bool, ``True`` where the Newton step fell below ``tol`` within ``max_iter`` iterations.
    objective
        ``(*batch,)`` float64 objective value at the solution (see the module docstring).
    C
        The inverse regularisation strength used.
    problem_axis
        Whether the first batch axis indexes the ``k`` feature matrices (``x`` was 3-D).
    """

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    objective: np.ndarray
    C: float
    problem_axis: bool = True

    @property
    def shape(self) -> tuple[int, ...]:
        """Batch shape ``(*batch,)``."""
        return self.intercept.shape

    @property
    def n_features(self) -> int:
        """Number of features ``w``."""
        return self.coef.shape[-1]

    def __getitem__(self, index) -> LogisticFit:
        """Index the batch axes (basic or fancy indexing on ``(*batch,)``), e.g. ``fit[nodes]`` or ``fit[:, j]``."""
        coef = self.coef[index]
        intercept = self.intercept[index]
        # Dropping the first axis by an integer index removes the problem axis.
        first = index[0] if isinstance(index, tuple) and index else index
        problem_axis = self.problem_axis and not isinstance(first, int | np.integer)
        return LogisticFit(
            coef=coef,
            intercept=intercept,
            n_iter=self.n_iter[index],
            converged=self.converged[index],
            objective=self.objective[index],
            C=self.C,
            problem_axis=problem_axis,
        )


# ----------------------------------------------------------------------------------------------------------------------
# helpers


def probe_device(device: str | torch.device | None) -> torch.device:
    """The torch device probes are fitted on: ``None`` is the CPU; an unusable device raises before any work.

    Raises
    ------
    ValueError
        For a string torch cannot parse, a CUDA device when CUDA is unavailable or the index does not exist, or a
        device without float64 support (MPS: the probes are fitted in float64), or any other device type.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device: use 'cpu', 'cuda' or 'cuda:N'.") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} asks for CUDA, but torch sees no CUDA GPU here: use device='cpu'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: there are {torch.cuda.device_count()} CUDA devices (cuda:0 ... "
                f"cuda:{torch.cuda.device_count() - 1})."
            )
    elif dev.type == "mps":
        raise ValueError("device='mps' cannot fit the probes (they need float64, which MPS lacks): use 'cpu'.")
    elif dev.type != "cpu":
        raise ValueError(f"device={device!r}: probes run on 'cpu' or 'cuda' devices.")
    return dev


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}.")
        with warnings.catch_warnings():
            # Read-only arrays (e.g. memory maps) are fine: the solver never writes to its inputs.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(np.ascontiguousarray(arr))  # no copy for contiguous numpy input
    if t.dtype == torch.bool or not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def _as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_labels(y: np.ndarray) -> np.ndarray:
    if y.dtype == bool:
        return y.astype(np.float64)
    if not np.issubdtype(y.dtype, np.number):
        raise TypeError(f"y must hold 0/1 (or bool) labels, got dtype {y.dtype}.")
    y = y.astype(np.float64, copy=False)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y must hold binary 0/1 labels only (NaN and other values are not allowed).")
    return y


def _class_balance(y: np.ndarray, sw: np.ndarray) -> np.ndarray:
    """Multiply ``sw`` by 'balanced' class weights ``W / (2 W_c)`` of each label vector (last axis)."""
    # Weighted counts as in scikit-learn >= 1.7; with unit sample weights this is n / (2 n_c).
    w_pos = (sw * y).sum(-1, keepdims=True)
    w_all = sw.sum(-1, keepdims=True)
    w_neg = w_all - w_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        cw_pos = w_all / (2.0 * w_pos)
        cw_neg = w_all / (2.0 * w_neg)
    return sw * np.where(y == 1, cw_pos, cw_neg)


def fit_logistic(
    x: ArrayLike,
    y: ArrayLike,
    *,
    C: float = 1.0,
    sample_weight: ArrayLike | None = None,
    class_weight: Literal["balanced"] | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    max_memory: int = _DEFAULT_MEMORY,
    device: str | torch.device | None = None,
    num_threads: int | None = None,
) -> LogisticFit:
    """Fit many independent L2-regularised binary logistic regressions at once (Newton's method, float64).

    Each problem minimises scikit-learn's ``LogisticRegression(penalty="l2", C=C, fit_intercept=True)`` objective
    ``C * sum_i s_i * logloss_i + 0.5 * ||coef||^2`` (intercept not penalised), so the solutions agree with
    scikit-learn's to the solvers' tolerance.

    Parameters
    ----------
    x
        Features, ``(k, n, w)`` for ``k`` problems of ``n`` cells and ``w`` features each (e.g. the ``w`` neurons of
        ``k`` GO nodes of equal width), or ``(n, w)`` for a single feature matrix. Any float dtype (float32 saves
        memory: chunks are converted to float64 one at a time); numpy arrays or torch tensors. ``k = 0`` is allowed.
    y
        Binary 0/1 (or bool) labels:

        - ``(n,)``: the same labels for every feature matrix; batch shape ``(k,)``;
        - ``(p, n)``: ``p`` label vectors (phenotypes) shared by every feature matrix, one problem per (matrix,
          label vector) pair without copying ``x``; batch shape ``(k, p)``;
        - ``(k, p, n)``: per-matrix labels (use ``(k, 1, n)`` for one label vector per matrix); batch shape ``(k, p)``.
    C
        Inverse regularisation strength (> 0), as in scikit-learn.
    sample_weight
        Non-negative per-cell weights broadcastable to the label shape (``(n,)``, ``(p, n)`` or ``(k, p, n)``).
    class_weight
        ``"balanced"`` multiplies the sample weights by ``W / (2 W_pos)`` for positives and ``W / (2 W_neg)`` for
        negatives of each label vector (``W`` = summed sample weights; ``n / (2 n_pos)``, ``n / (2 n_neg)``
        without sample weights), as scikit-learn's ``class_weight="balanced"``.
    max_iter
        Maximum Newton iterations per problem (typically 5-15 are needed).
    tol
        A problem has converged when its last Newton step is at most ``tol * (1 + max|beta|)`` in every coordinate
        (or two consecutive full steps converge quadratically towards that); values below ``1e-13`` (float64
        rounding) are raised to it. The default leaves coefficients ~1e-8 relative from the optimum.
    max_memory
        Approximate bytes of float64 work arrays per chunk of feature matrices; bounds peak memory.
    device
        Torch device to compute on; defaults to ``x``'s device for tensors, else CPU.
    num_threads
        Torch intra-op threads during the fit (restored afterwards); ``None`` keeps torch's setting. The work arrays
        are cache-sized, so on a machine shared with other busy processes ``1`` is often fastest: threads waiting
        for each other at every small operation cost more than they gain.

    Returns
    -------
    :class:`LogisticFit` with ``coef`` ``(*batch, w)`` and ``intercept``, ``n_iter``, ``converged``, ``objective``
    ``(*batch,)``; ``batch`` as described under ``y`` (without the leading ``k`` for a 2-D ``x``).

    Raises
    ------
    ValueError
        On shape mismatches, non-binary labels, negative or non-finite weights, non-finite features, or a label
        vector with only one class (among cells of positive weight) - the index of the offending problem is named.
    """
    if not C > 0 or not math.isfinite(C):
        raise ValueError(f"C must be a positive finite number, got {C}.")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}.")
    if class_weight not in (None, "balanced"):
        raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}.")

    xt = _as_tensor(x, "x")
    problem_axis = xt.ndim == 3
    if xt.ndim == 2:
        xt = xt.unsqueeze(0)
    elif xt.ndim != 3:
        raise ValueError(f"x must have shape (k, n, w) or (n, w), got {tuple(xt.shape)}.")
    k, n, w = xt.shape
    if w < 1:
        raise ValueError("x must have at least one feature (w >= 1).")
    dev = torch.device(device) if device is not None else xt.device

    yn = _check_labels(_as_numpy(y))
    label_axis = yn.ndim >= 2
    if yn.ndim == 1:
        yn = yn[None, :]
    if yn.ndim == 2:
        shared = True
    elif yn.ndim == 3:
        shared = False
        if yn.shape[0] != k:
            raise ValueError(f"y of shape (k, p, n) must have k={k} (the number of feature matrices), got {yn.shape}.")
    else:
        raise ValueError(f"y must have shape (n,), (p, n) or (k, p, n), got {yn.shape}.")
    if yn.shape[-1] != n:
        raise ValueError(f"y has {yn.shape[-1]} cells but x has n={n}.")
    p = yn.shape[-2]

    # Weights stay broadcast views where possible: per-matrix labels (k, p, n) are moved to torch chunk by chunk.
    if sample_weight is None:
        swn = np.broadcast_to(np.float64(1.0), yn.shape)
    else:
        swn = _as_numpy(sample_weight).astype(np.float64)
        try:
            swn = np.broadcast_to(swn, yn.shape)
        except ValueError as err:
            raise ValueError(
                f"sample_weight of shape {swn.shape} does not broadcast to the labels {yn.shape}."
            ) from err
        if not np.all(np.isfinite(swn)) or np.any(swn < 0):
            raise ValueError("sample_weight must be finite and non-negative.")
    if class_weight == "balanced":
        swn = _class_balance(yn, swn)
    # Both classes must carry weight in every problem (scikit-learn raises likewise).
    if n == 0:
        raise ValueError("x and y have no cells (n = 0).")
    has_pos = ((swn > 0) & (yn == 1)).any(-1)
    has_neg = ((swn > 0) & (yn == 0)).any(-1)
    if not (has_pos.all() and has_neg.all()):
        bad = np.argwhere(~(has_pos & has_neg))
        where = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"Each label vector needs both classes among cells of positive weight; label vector at index {where} "
            f"(of label batch shape {yn.shape[:-1]}) has only one class ({len(bad)} such label vector(s) in total)."
        )

    batch = (k, p) if label_axis else (k,)
    coef = np.zeros((k, p, w))
    intercept = np.zeros((k, p))
    n_iter = np.zeros((k, p), dtype=np.int64)
    converged = np.zeros((k, p), dtype=bool)
    objective = np.zeros((k, p))
    with torch_threads(num_threads):
        if shared and k > 0:  # one (1, p, n) copy for all chunks
            y_shared = torch.tensor(yn, dtype=torch.float64, device=dev)[None]
            sw_shared = torch.tensor(swn, dtype=torch.float64, device=dev)[None]
        pairwise, chunk, labels = _plan(n, w + 1, p, max_memory)
        for start in range(0, k, chunk):
            stop = min(start + chunk, k)
            xc = xt[start:stop].to(device=dev, dtype=torch.float64)
            if not bool(torch.isfinite(xc).all()):
                raise ValueError("x contains NaN or infinite values.")
            xa = torch.cat([xc, torch.ones(stop - start, n, 1, dtype=torch.float64, device=dev)], dim=-1)
            for first in range(0, p, labels):
                last = min(first + labels, p)
                if shared:
                    yc, swc = y_shared[:, first:last], sw_shared[:, first:last]
                else:
                    yc = torch.tensor(yn[start:stop, first:last], dtype=torch.float64, device=dev)
                    swc = torch.tensor(swn[start:stop, first:last], dtype=torch.float64, device=dev)
                beta, it, conv, obj = _newton_chunk(
                    xa, yc, swc, C=float(C), max_iter=max_iter, tol=max(tol, _TOL_FLOOR), pairwise=pairwise
                )
                block = (slice(start, stop), slice(first, last))
                beta = beta.cpu().numpy()
                coef[block] = beta[..., :w]
                intercept[block] = beta[..., w]
                n_iter[block] = it.cpu().numpy()
                converged[block] = conv.cpu().numpy()
                objective[block] = obj.cpu().numpy()

    def shape_out(a: np.ndarray) -> np.ndarray:
        a = a.reshape(*batch, *a.shape[2:])
        return a if problem_axis else a[0]

    return LogisticFit(
        coef=shape_out(coef),
        intercept=shape_out(intercept),
        n_iter=shape_out(n_iter),
        converged=shape_out(converged),
        objective=shape_out(objective),
        C=float(C),
        problem_axis=problem_axis,
    )


def fit_logistic_grouped(xs: Sequence[ArrayLike], y: ArrayLike, **kwargs) -> list[LogisticFit]:
    """Fit feature matrices of different widths: group them by width and call :func:`fit_logistic` per group.

    Parameters
    ----------
    xs
        ``k`` feature matrices ``(n, w_j)`` over the same ``n`` cells (e.g. the neurons of ``k`` GO nodes).
    y
        Labels ``(n,)`` or ``(p, n)`` shared by all matrices (see :func:`fit_logistic`).
    **kwargs
        Passed on to :func:`fit_logistic` (``C``, ``sample_weight``, ``class_weight``, ...).

    Returns
    -------
    One :class:`LogisticFit` per matrix, in the order of ``xs``, with batch shape ``(p,)`` (or ``()`` for 1-D ``y``)
    and ``problem_axis=False``.
    """
    groups: dict[int, list[int]] = {}
    for j, xj in enumerate(xs):
        if len(xj.shape) != 2:
            raise ValueError(f"xs[{j}] must be a 2-D (n, w) matrix, got shape {tuple(xj.shape)}.")
        groups.setdefault(int(xj.shape[1]), []).append(j)
    out: list[LogisticFit | None] = [None] * len(xs)
    for idx in groups.values():
        parts = [xs[j] if isinstance(xs[j], torch.Tensor) else torch.from_numpy(np.asarray(xs[j])) for j in idx]
        fit = fit_logistic(torch.stack(parts), y, **kwargs)
        for pos, j in enumerate(idx):
            out[j] = fit[pos]
    return out  # type: ignore[return-value]


def decision_function(fit: LogisticFit, x: ArrayLike, *, max_memory: int = _DEFAULT_MEMORY) -> np.ndarray:
    """Linear scores ``x @ coef + intercept`` (log-odds) of fitted problems on (held-out) cells.

    Parameters
    ----------
    fit
        A :class:`LogisticFit` with batch shape ``(k, *rest)`` (``problem_axis=True``) or ``(*rest,)``.
    x
        ``(k, m, w)`` features matching the fit's ``k`` problems, or ``(m, w)`` for a fit without problem axis.
    max_memory
        Approximate bytes per chunk of problems (the output itself is allocated in full).

    Returns
    -------
    ``(k, *rest, m)`` float64 scores (``(*rest, m)`` without problem axis), e.g. ``(k, p, m)`` for a fit on ``(p, n)``
    labels.
    """
    xt = _as_tensor(x, "x")
    w = fit.n_features
    if fit.problem_axis:
        if xt.ndim != 3 or xt.shape[0] != fit.shape[0] or xt.shape[2] != w:
            raise ValueError(f"x must have shape (k={fit.shape[0]}, m, w={w}), got {tuple(xt.shape)}.")
        k, rest = fit.shape[0], fit.shape[1:]
    else:
        if xt.ndim != 2 or xt.shape[1] != w:
            raise ValueError(f"x must have shape (m, w={w}), got {tuple(xt.shape)}.")
        xt, k, rest = xt.unsqueeze(0), 1, fit.shape
    m = xt.shape[1]
    r = math.prod(rest)
    coef = torch.from_numpy(np.ascontiguousarray(fit.coef.reshape(k, r, w)))
    intercept = torch.from_numpy(np.ascontiguousarray(fit.intercept.reshape(k, r, 1)))
    out = np.empty((k, r, m))
    chunk = max(1, int(max_memory // (8 * max(1, m) * (w + 2 * r))))
    for start in range(0, k, chunk):
        stop = min(start + chunk, k)
        xc = xt[start:stop].to(device="cpu", dtype=torch.float64)
        out[start:stop] = (coef[start:stop] @ xc.transpose(1, 2) + intercept[start:stop]).numpy()
    out = out.reshape(k, *rest, m)
    return out if fit.problem_axis else out[0]


def predict_proba(fit: LogisticFit, x: ArrayLike, *, max_memory: int = _DEFAULT_MEMORY) -> np.ndarray:
    """Probability of the positive class, ``sigmoid(decision_function(fit, x))``; same shapes."""
    scores = decision_function(fit, x, max_memory=max_memory)
    return 0.5 * (1.0 + np.tanh(0.5 * scores))  # overflow-free logistic
