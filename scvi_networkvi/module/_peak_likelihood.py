"""The peaks' Bernoulli likelihood from the decoder's logits, depth and region factors, in two CPU passes.

The accessibility of peak ``j`` in cell ``i`` is ``p = sigmoid(a_ij) * depth_i * factor_j`` (PeakVI's and MULTIVI's
model); the loss is ``-sum_j log q_ij`` with ``q = p`` for an open peak and ``1 - p`` for a closed one, logs clamped at
-100 as torch's ``binary_cross_entropy`` does. As torch operations (:func:`~scvi_networkvi.module._likelihood.
bernoulli_nll_cells` on the product, with autograd through the products and the sigmoid) that is about a dozen passes
over the cells x peaks matrix, each writing a fresh 10 MB tensor for 128 cells x 20,001 peaks: ~47 ms forward and
backward on one CPU thread, a fifth of a multiome training step. Written by hand because no library fuses a
likelihood with its gradient: on the CPU, :class:`_PeakNLL` writes ``q`` in one compiled pass (torch takes its log in
place) and its backward pass recomputes ``q``, writes the logits' gradient and sums the depth and factor gradients in
one more: ~9 ms (2026-12-06, AMD EPYC, one thread). Other tensors (a GPU's, posterior samples in front) take the torch
composition, which is also the reference the kernels are tested against: the loss is the same to the last bit,
the gradients to float rounding.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch.autograd.function import once_differentiable

from scvi_networkvi.nn import ensure_cache_location

from ._likelihood import bernoulli_nll_cells

ensure_cache_location()

#: torch's binary cross-entropy clamps each log at this value; a clamped term has no gradient.
LOG_FLOOR = -100.0


@numba.njit(cache=True, nogil=True)
def _observed_probability(probs, depth, factors, counts, one, q):
    """``q[i, j]``: the probability of the observed value, ``(probs * depth) * factors`` or one minus it.

    No fastmath: the products keep torch's order, so ``q`` is bitwise the reference's (``one``: 1 in their dtype).
    """
    n, m = probs.shape
    for i in range(n):
        d = depth[i]
        for j in range(m):
            p = probs[i, j] * d * factors[j]
            q[i, j] = p if counts[i, j] > 0 else one - p


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _backward(probs, depth, factors, counts, grad_out, floor, one, grad_logits, grad_depth, grad_factors):
    """Gradients of ``sum_i grad_out[i] * nll_i`` for the logits, the depth and the region factors.

    ``q`` is recomputed as in :func:`_observed_probability`. ``d nll / d p`` is ``-1 / q`` for an open peak and
    ``1 / q`` for a closed one, 0 where the log was clamped (``q < floor``); ``grad_factors`` is accumulated (zeroed
    by the caller). Scalars come in the arrays' dtype, so float32 stays float32 (16 lanes of AVX-512).
    """
    n, m = probs.shape
    for i in range(n):
        go = grad_out[i]
        d = depth[i]
        total = one - one
        for j in range(m):
            s = probs[i, j]
            p = s * d * factors[j]
            is_open = counts[i, j] > 0
            qij = p if is_open else one - p
            g = (-go if is_open else go) / qij
            g = one - one if qij < floor else g
            gs = g * s
            grad_logits[i, j] = gs * d * factors[j] * (one - s)
            total += gs * factors[j]
            grad_factors[j] += gs * d
        grad_depth[i] = total


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


class _PeakNLL(torch.autograd.Function):
    """Per-cell peak NLL from logits; ``probs`` is ``sigmoid(logits)``, passed in because the caller has it already."""

    @staticmethod
    def forward(ctx, logits, probs, depth, factors, counts):
        q = torch.empty_like(probs)
        one = _as_numpy(probs).dtype.type(1)
        _observed_probability(_as_numpy(probs), _as_numpy(depth), _as_numpy(factors), _as_numpy(counts), one, q.numpy())
        ctx.save_for_backward(probs, depth, factors, counts)  # the backward pass recomputes q: one tensor fewer
        return -q.log_().clamp_min_(LOG_FLOOR).sum(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        probs, depth, factors, counts = ctx.saved_tensors
        grad_logits = torch.empty_like(probs)
        grad_depth = torch.empty_like(depth)
        grad_factors = torch.zeros_like(factors)
        dtype = _as_numpy(probs).dtype.type
        floor = np.exp(dtype(LOG_FLOOR))  # q below it had its log clamped
        _backward(
            _as_numpy(probs),
            _as_numpy(depth),
            _as_numpy(factors),
            _as_numpy(counts),
            _as_numpy(grad_out.contiguous()),
            floor,
            dtype(1),
            grad_logits.numpy(),
            grad_depth.numpy(),
            grad_factors.numpy(),
        )
        return grad_logits, None, grad_depth, grad_factors, None


def _kernel_ready(
    logits: torch.Tensor, probs: torch.Tensor, depth: torch.Tensor, factors: torch.Tensor | None, counts: torch.Tensor
) -> bool:
    """CPU float tensors of one dtype and matching 2-D shapes, contiguous, no second-order gradient needed."""
    tensors = (logits, probs, depth, counts) if factors is None else (logits, probs, depth, factors, counts)
    return (
        all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)
        and len({t.dtype for t in tensors}) == 1
        and logits.dim() == 2
        and probs.shape == logits.shape == counts.shape
        and depth.shape == (logits.shape[0], 1)
        and probs.is_contiguous()
        and counts.is_contiguous()
        and not (torch.is_grad_enabled() and probs.requires_grad and not logits.requires_grad)
    )


def peak_nll_cells(
    logits: torch.Tensor,
    probs: torch.Tensor,
    depth: torch.Tensor,
    factors: torch.Tensor | None,
    counts: torch.Tensor,
    *,
    reference: bool = False,
) -> torch.Tensor:
    """Per-cell negative Bernoulli log-likelihood of ``counts > 0`` under ``sigmoid(logits) * depth * factors``.

    Parameters
    ----------
    logits
        The accessibility decoder's output before its sigmoid, cells x peaks.
    probs
        ``sigmoid(logits)`` (the decoder's output). The gradient reaches the logits, not ``probs``.
    depth
        Per-cell depth factor in (0, 1), ``(cells, 1)``.
    factors
        Per-peak factor in (0, 1), ``(peaks,)``, or ``None`` (no region factors).
    counts
        Observed counts (or 0/1), cells x peaks.
    reference
        Compute with torch operations (the composition the kernels are tested against).
    """
    if reference or not _kernel_ready(logits, probs, depth, factors, counts):
        p = probs * depth  # depth (cells, 1) broadcasts over the peaks (and over posterior samples in front)
        if factors is not None:
            p = p * factors
        return bernoulli_nll_cells(p, counts)
    if factors is None:
        factors = torch.ones(counts.shape[-1], dtype=probs.dtype)
    return _PeakNLL.apply(logits, probs.detach(), depth.reshape(-1).contiguous(), factors.contiguous(), counts)
