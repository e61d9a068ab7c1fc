"""Inference-only gene layer of single-feature genes: ``relu(w1 x + b1) + (w2 x + b2)`` in one pass, on CPU.

Without autograd the elementwise two-path ReLU of :class:`._two_path._TwoPathBlockLayer` (every gene node reads one
feature) runs here instead of :class:`._two_path._ElementwiseTwoPathReLU`: one read of each feature row and one write
of each output row, where the torch composition gathers the rows, writes the hidden path, writes the linear path and
adds them (four full-size passes with broadcasting). Each path is one fused multiply-add, as torch's vectorised CPU
``addcmul`` computes it on x86 with FMA, so the result there is bitwise the composition's (elsewhere equal within
rounding); tested against it and the dense reference in ``tests/test_two_path_eval.py``.
"""

from __future__ import annotations

import numba
import numpy as np
import torch


# Hand-written because torch's broadcast addcmul passes dominate the gene layer: one pass takes it (4000 genes of 4
# neurons, 128 cells, one thread) from ~3 to ~0.5 ms per minibatch.
@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _two_path_relu(x, rows, w1, b1, w2, b2, out):
    """``out[g * size + k] = max(w1[g, k] * x[rows[g]] + b1[g, k], 0) + (w2[g, k] * x[rows[g]] + b2[g, k])``."""
    size, n = w1.shape[1], x.shape[1]
    zero = x.dtype.type(0)
    for g in range(rows.shape[0]):
        xr = x[rows[g]]
        for k in range(size):
            o = out[g * size + k]
            p, q, s, t = w1[g, k], b1[g, k], w2[g, k], b2[g, k]
            for c in range(n):
                v = xr[c]
                h = p * v + q
                o[c] = (s * v + t) + (h if h > zero else zero)


def two_path_relu_eval(
    xt: torch.Tensor, rows: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor
) -> torch.Tensor | None:
    """``relu(w1 x + b1) + (w2 x + b2)`` per gene node without autograd, or ``None`` where it does not apply.

    Parameters
    ----------
    xt
        Feature-major input ``(n_features, n)``.
    rows
        Per gene node, the feature it reads ``(blocks,)``.
    w1, b1, w2, b2
        The two paths' ``(blocks, size, 1)`` weights and biases.

    Returns
    -------
    ``(blocks * size, n)``; ``None`` unless ``xt`` is a float32 / float64 CPU tensor of the parameters' dtype.
    """
    if xt.device.type != "cpu" or xt.dtype not in (torch.float32, torch.float64) or w1.dtype != xt.dtype:
        return None
    blocks, size = w1.shape[0], w1.shape[1]
    out = xt.new_empty(blocks * size, xt.shape[1])
    params = [t.detach().reshape(blocks, size).contiguous().numpy() for t in (w1, b1, w2, b2)]
    x = xt.detach().contiguous().numpy()
    _two_path_relu(x, rows.numpy().astype(np.int64, copy=False), *params, out.numpy())
    return out
