"""``log1p`` of count data on CPU: whole numbers read from a table of ``torch.log1p``'s own values.

The encoders' input transform ``log(1 + x)`` runs on every minibatch of every modality; torch's CPU ``log1p`` is not
vectorised on this platform (a 128 x 4000 minibatch: ~2.3 ms on one thread, more than the first GO level's share of
the inference pass once that runs on :mod:`._block_csr_eval`). Counts are whole numbers, mostly small: their values
come from a table that ``torch.log1p`` computed, so the result is bitwise ``torch.log1p(x)``; other entries
(fractions, large or negative values, NaN) are computed by ``torch.log1p`` itself.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import torch

#: Whole numbers below this are read from the table (256 KiB in float32: stays in the L2 cache).
TABLE_SIZE = 1 << 16


@functools.cache
def _table(dtype: torch.dtype) -> np.ndarray:
    """``torch.log1p(0, 1, ..., TABLE_SIZE - 1)`` in ``dtype``, as a numpy array."""
    return torch.log1p(torch.arange(TABLE_SIZE, dtype=dtype)).numpy()


# Hand-written because torch's CPU log1p is scalar code: one table read per count takes the 128 x 4000 minibatch of
# the package defaults from ~2.3 to ~0.5 ms on one thread.
@numba.njit(cache=True, nogil=True)
def _from_table(x, table, out):
    """``out[i] = table[x[i]]`` where ``x[i]`` is a whole number in the table's range, else 0; returns the misses."""
    size = table.shape[0]
    missed = 0
    for i in range(x.shape[0]):
        v = x[i]
        if v >= 0 and v < size and v == np.floor(v):
            out[i] = table[np.int64(v)]
        else:
            out[i] = 0
            missed += 1
    return missed


def log1p(x: torch.Tensor) -> torch.Tensor:
    """``torch.log1p(x)``, bitwise, faster for count data on CPU.

    Parameters
    ----------
    x
        Any tensor. Takes the table path on CPU for float32 / float64 without autograd on ``x``; elsewhere this is
        ``torch.log1p(x)``.

    Returns
    -------
    A new tensor of ``x``'s shape and dtype.
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.requires_grad or not x.numel():
        return torch.log1p(x)
    flat = x.detach().contiguous().view(-1)
    out = torch.empty_like(flat)
    if _from_table(flat.numpy(), _table(x.dtype), out.numpy()):
        misses = ~((flat >= 0) & (flat < TABLE_SIZE) & (flat == flat.floor()))
        out[misses] = torch.log1p(flat[misses])
    return out.view(x.shape)
