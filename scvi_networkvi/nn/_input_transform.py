"""A GO encoder's input on CPU in one pass: ``(log1p(x) - shift[batch]) * scale[batch]``, written feature-major.

:class:`~scvi_networkvi.module.NetworkVAE` feeds a GO encoder ``log1p`` of the counts, minus the per-batch shift of a
centred modality, times the per-batch scale of a scaled one; the encoder then transposes it to feature-major rows
(:func:`._wired_encoder.transposed`). As torch operations that is five full-size passes (``log1p``, two
``index_select`` of the per-batch rows, the subtraction and the product) and the transposed copy; here it is one
read of the counts and one write of the rows. ``log1p`` comes from the table of :mod:`._log1p` (bitwise
``torch.log1p`` for whole numbers), the subtraction and the product are single roundings as in torch: the result is
bitwise the torch composition's. Minibatches with other values (fractions, large counts) take the torch path.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from ._log1p import _table


# Hand-written because the five torch passes plus the transposed copy cost more than the gene layer itself: one pass
# takes the encoders' input of the package defaults (4000 genes and 134 proteins, 5000 cells, one thread) from ~0.2 to
# ~0.06 s per latent.
@numba.njit(cache=True, nogil=True)
def _log1p_shift_scale_t(x, table, shift, scale, batch, out):
    """``out[f, c] = (table[x[c, f]] - shift[batch[c], f]) * scale[batch[c], f]``; returns the misses (0: done).

    A miss is a value that is not a whole number in the table's range; the caller then discards ``out``.
    """
    n, n_features = x.shape
    size = table.shape[0]
    width = 64  # feature rows written per pass over the cells: their cache lines fill together
    for f0 in range(0, n_features, width):
        f1 = min(f0 + width, n_features)
        for c in range(n):
            b = batch[c]
            for f in range(f0, f1):
                v = x[c, f]
                if not (v >= 0 and v < size and v == np.floor(v)):
                    return 1
                out[f, c] = (table[np.int64(v)] - shift[b, f]) * scale[b, f]
    return 0


def log1p_shift_scale_t(
    x: torch.Tensor, batch: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor | None
) -> torch.Tensor | None:
    """``((log1p(x) - shift[batch]) * scale[batch]).t()`` as a new feature-major tensor, or ``None``.

    Parameters
    ----------
    x
        Counts, cells x features.
    batch
        Batch code of each cell (``(n,)`` or ``(n, 1)``).
    shift, scale
        ``(n_batch, n_features)`` per-batch shift and scale, or ``None`` (no shift / no scale).

    Returns
    -------
    ``(n_features, n)``, bitwise the torch composition's; ``None`` (the caller computes it with torch) unless ``x``
    is a float32 / float64 CPU tensor that needs no gradient, with whole-number values below
    :data:`._log1p.TABLE_SIZE`, and the shift and scale (where given) are CPU tensors of its dtype.
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.requires_grad or x.ndim != 2:
        return None
    given = [t for t in (shift, scale) if t is not None]
    if any(t.device.type != "cpu" or t.dtype != x.dtype or t.requires_grad for t in given):
        return None
    n, n_features = x.shape
    n_batch = len(given[0]) if given else 1
    if any(tuple(t.shape) != (n_batch, n_features) for t in given):
        return None
    dtype = x.numpy().dtype
    shift_np = np.zeros((n_batch, n_features), dtype) if shift is None else shift.detach().contiguous().numpy()
    scale_np = np.ones((n_batch, n_features), dtype) if scale is None else scale.detach().contiguous().numpy()
    codes = batch.reshape(-1).long().numpy() if given else np.zeros(n, dtype=np.int64)
    if len(codes) != n or (n and (codes.min() < 0 or codes.max() >= n_batch)):
        return None
    out = x.new_empty(n_features, n)
    if _log1p_shift_scale_t(x.detach().contiguous().numpy(), _table(x.dtype), shift_np, scale_np, codes, out.numpy()):
        return None
    return out
