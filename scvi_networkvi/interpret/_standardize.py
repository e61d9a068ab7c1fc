"""Standardising a probe's features with the statistics of its fitting cells (one function for every probe)."""

from __future__ import annotations

import numpy as np
import torch

from ._logistic import ArrayLike, _as_numpy

#: Values converted to float64 at a time (32 MiB): float32 input is never copied to float64 whole.
_BLOCK_VALUES = 2**22
#: Deviations at most this large are no signal whatever the mean (float64 rounding of values near 0).
_CONSTANT_SD = 1e-12


def standardize(x_fit: ArrayLike, *others: ArrayLike, axis: int = -2) -> tuple[ArrayLike, ...]:
    """Centre and scale every feature by its mean and standard deviation over the fitting cells.

    Statistics over the cells' ``axis`` of ``x_fit``, in float64 with ``ddof=0`` (as scikit-learn's
    ``StandardScaler``). A feature whose deviation is at most 1e-12 or at the rounding level of its mean (8 machine
    epsilons of the output dtype times ``|mean|``) is constant, e.g. a dead ReLU neuron: it becomes 0 in every array,
    so it carries no signal and gets a zero coefficient.

    Parameters
    ----------
    x_fit
        Features of the split the probes are fitted on: ``(..., n, w)`` with ``axis=-2`` (e.g. ``(k, n, w)``, the
        ``w`` neurons of ``k`` nodes), or feature-major ``(..., w, n)`` with ``axis=-1``; numpy or torch.
    *others
        Features of other splits (held-out cells, perturbed cells), of ``x_fit``'s shape apart from the cells' axis,
        standardised with ``x_fit``'s statistics.
    axis
        The cells' axis.

    Returns
    -------
    ``(z_fit, *z_others)``, of the input types (torch tensors on ``x_fit``'s device for a tensor ``x_fit``) and
    floating dtype (float64 for integer input).

    Raises
    ------
    ValueError
        For ``x_fit`` with fewer than two axes, or another array whose shape differs from it apart from the cells.
    """
    a = _as_numpy(x_fit)
    if a.ndim < 2:
        raise ValueError(f"x_fit must have a cells axis and a features axis, got shape {a.shape}.")
    cells = axis % a.ndim
    out_dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)
    # float64 statistics, computed a few entries of the first axis at a time (all at once when it is the cells').
    n_lead = 1 if cells == 0 else a.shape[0]
    per = max(1, _BLOCK_VALUES // max(1, a.size // max(1, n_lead)))
    blocks = [slice(None)] if cells == 0 else [slice(s, s + per) for s in range(0, n_lead, per)]
    stat_shape = tuple(1 if i == cells else size for i, size in enumerate(a.shape))
    mean = np.empty(stat_shape)
    std = np.empty(stat_shape)
    for rows in blocks:
        block = a[rows].astype(np.float64)
        mean[rows] = block.mean(axis=cells, keepdims=True)
        std[rows] = block.std(axis=cells, keepdims=True)
    rounding = 8 * np.finfo(out_dtype).eps * np.maximum(np.abs(mean), np.finfo(np.float64).tiny)
    constant = (std <= rounding) | (std <= _CONSTANT_SD)
    inv = np.where(constant, 0.0, 1.0 / np.where(constant, 1.0, std))

    def apply(values: ArrayLike) -> ArrayLike:
        arr = _as_numpy(values)
        if arr.ndim != a.ndim or any(
            s != t for i, (s, t) in enumerate(zip(arr.shape, a.shape, strict=True)) if i != cells
        ):
            raise ValueError(f"An array of shape {arr.shape} does not match x_fit's {a.shape} apart from the cells.")
        z = np.empty(arr.shape, dtype=out_dtype)
        for rows in blocks:
            z[rows] = (arr[rows].astype(np.float64) - mean[rows]) * inv[rows]
        return torch.from_numpy(z).to(x_fit.device) if isinstance(x_fit, torch.Tensor) else z

    return tuple(apply(values) for values in (x_fit, *others))
