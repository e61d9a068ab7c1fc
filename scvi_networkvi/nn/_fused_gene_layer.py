"""The gene layer as one CPU kernel (numba), and the per-gene pieces the interaction kernel builds on.

:class:`FusedGeneLayer` serves encoders without a gene–gene interaction layer; the per-gene blocks
(:func:`_gene_block`, :func:`_one_feature_block`), their gradients (:func:`_gene_layer_grads`) and the
:class:`GenePlan` are also those of :mod:`._fused_gene_interaction`, which fuses the gene layer with the first
interaction layer.

Gene ``g``'s ``b`` neurons are ``mask * (relu(sum_f w1_f x_f + b1) + sum_f w2_f x_f + b2)`` over the features ``f``
it reads: one per gene for RNA, the linked peaks for ATAC (a gene reads 0-6 peaks, a peak feeds ~2 genes). As torch
operations (:class:`~scvi_networkvi.nn._two_path._GatheredTwoPathReLU`, the reference path, which also serves GPU
tensors and inputs that need a gradient) the layer passes over ``(genes * b, cells)`` tensors a dozen times per
step: gathers, slot-wise products and ``index_add_``, the ReLU, dropout, and as many again for the gradients. Here
each gene's block (``b x cells``, a few KB) is computed in the L1 cache:

- forward: the output is the only full-size write; nothing is saved but the inputs and the gathered weights;
- backward: per gene, the first path's pre-activation is recomputed from its feature rows (cheaper than storing and
  reading back a full-size ReLU pattern), then every weight and bias gradient is one dot product over the cells.
  The features are data, so no gradient is written back to them.

Genes are independent in both passes, so with several torch CPU threads they are split into chunks that torch's
own OpenMP team computes (:mod:`._torch_threads`); the result is the same for every thread count. Written by hand
because no torch operation fuses a gather, a ReLU and per-connection reductions on CPU. Speed it buys (2026-12-06,
one thread of the 2-core AMD EPYC VM, 128 cells): the tutorial multiome's default ATAC gene layer (20,001 peaks ->
67,916 neurons) forward + backward 115 -> 55 ms (the kernels 2.5 + 4 ms; the rest is the page faults of fresh
35 MB tensors, ~16 ms each on this VM), the 4000-gene RNA layer 6.4 -> 2.4 ms; a multiome module step 378 -> 287
ms. Tested against the torch layers and a plain reference (``tests/test_fused_gene_layer.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import types
from torch.autograd.function import once_differentiable

from . import _torch_threads as threads

# Reassociation lets LLVM vectorise the sums over cells; the order stays fixed for a given machine (deterministic).
# Every kernel takes ``zero`` of the data's dtype: a literal 0.0 is float64 in numba and would widen float32 arithmetic.
_FAST = {"reassoc", "contract"}


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _one_feature_block(x, r, p, w1, b1, w2, b2, mask, has_mask, g, out, zero):
    """Gene ``g``'s neurons into ``out`` when it reads one feature (row ``r`` of ``x``, weights ``p``): one pass."""
    n = x.shape[1]
    for j in range(b1.shape[1]):
        a1, c1, a2, c2 = w1[p, j], b1[g, j], w2[p, j], b2[g, j]
        for c in range(n):
            v = x[r, c]
            value = max(a1 * v + c1, zero) + (a2 * v + c2)
            out[j, c] = value * mask[g, j, c] if has_mask else value


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _gene_block(x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, g, out, pre, zero):
    """Gene ``g``'s neurons for every cell into ``out`` ``(b, n)``, its first path's pre-activation into ``pre``.

    Any number of features; the callers take :func:`_one_feature_block` for genes with one (short calls inline).
    """
    n = x.shape[1]
    b = b1.shape[1]
    start, stop = gene_ptr[g], gene_ptr[g + 1]
    for j in range(b):
        for c in range(n):
            pre[j, c] = b1[g, j]
            out[j, c] = b2[g, j]
    for p in range(start, stop):  # several features (ATAC peaks of a gene), or none
        r = gene_src[p]
        for j in range(b):
            a1, a2 = w1[p, j], w2[p, j]
            for c in range(n):
                v = x[r, c]
                pre[j, c] += a1 * v
                out[j, c] += a2 * v
    for j in range(b):
        for c in range(n):
            value = max(pre[j, c], zero) + out[j, c]
            out[j, c] = value * mask[g, j, c] if has_mask else value


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _gene_layer_grads(
    x, gene_ptr, gene_src, w1, b1, mask, has_mask, g, grad_h, pre, grad_out, grad_path1, grad_w1, grad_b1, grad_w2,
    grad_b2, zero,
):  # fmt: skip
    """Gene ``g``'s gene-layer weight and bias gradients from the gradient ``grad_h`` ``(b, n)`` reaching its neurons.

    ``pre``: the first path's pre-activation of a gene of several features (:func:`_gene_block`; a gene of one
    feature recomputes it); ``grad_out``, ``grad_path1``: ``(b, n)`` work buffers (``grad_out`` may be ``grad_h``).
    """
    b = b1.shape[1]
    n = x.shape[1]
    start, stop = gene_ptr[g], gene_ptr[g + 1]
    if stop - start == 1:  # one feature (RNA): every sum in one pass, the pre-activation recomputed
        r = gene_src[start]
        for j in range(b):
            a1, c1 = w1[start, j], b1[g, j]
            sw1 = sb1 = sw2 = sb2 = zero
            for c in range(n):
                v = x[r, c]
                gj = grad_h[j, c] * mask[g, j, c] if has_mask else grad_h[j, c]
                on = gj if a1 * v + c1 > zero else zero
                sw1 += on * v
                sb1 += on
                sw2 += gj * v
                sb2 += gj
            grad_w1[start, j], grad_b1[g, j], grad_w2[start, j], grad_b2[g, j] = sw1, sb1, sw2, sb2
        return
    for j in range(b):  # the gradient through dropout, then through the first path's ReLU
        sb1 = sb2 = zero
        for c in range(n):
            gj = grad_h[j, c] * mask[g, j, c] if has_mask else grad_h[j, c]
            on = gj if pre[j, c] > zero else zero
            grad_out[j, c] = gj
            grad_path1[j, c] = on
            sb1 += on
            sb2 += gj
        grad_b1[g, j], grad_b2[g, j] = sb1, sb2
    for p in range(start, stop):
        r = gene_src[p]
        for j in range(b):
            sw1 = sw2 = zero
            for c in range(n):
                v = x[r, c]
                sw1 += grad_path1[j, c] * v
                sw2 += grad_out[j, c] * v
            grad_w1[p, j], grad_w2[p, j] = sw1, sw2


class GenePlan(NamedTuple):
    """The gene layer's inputs per gene, a compressed list: gene ``g`` reads features ``src[ptr[g]:ptr[g + 1]]``.

    ``edge1`` / ``edge2``: for every entry the row of its first / second path's weights in the layer's
    ``(connections, 1, b)`` parameter (torch int64, for a differentiable ``index_select``).
    """

    ptr: np.ndarray
    src: np.ndarray
    edge1: torch.Tensor
    edge2: torch.Tensor

    @classmethod
    def from_connections(cls, connections: np.ndarray, n_genes: int) -> GenePlan | None:
        """The plan of a two-path layer's ``(2, e)`` (feature, output block) connections, or ``None``.

        Connections in parameter order; blocks ``[0, n_genes)`` are the first path, their copies
        ``[n_genes, 2 n_genes)`` the second. ``None`` unless both paths read the same features.
        """
        src, dst = (np.asarray(row, dtype=np.int64) for row in connections)
        first, second = np.flatnonzero(dst < n_genes), np.flatnonzero(dst >= n_genes)
        # both in (feature, block) order: the paths share their structure iff the pairs agree entry by entry
        if not (np.array_equal(src[first], src[second]) and np.array_equal(dst[first], dst[second] - n_genes)):
            return None
        order = first[np.argsort(dst[first], kind="stable")]  # entries grouped by gene
        partner = second[np.searchsorted(first, order)]
        ptr = np.searchsorted(dst[order], np.arange(n_genes + 1)).astype(np.int64)
        return cls(ptr, np.ascontiguousarray(src[order]), torch.as_tensor(order), torch.as_tensor(partner))


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _forward(x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, out, zero, g0, g1):
    """Rows ``[g0 b, g1 b)`` of ``out``: the neurons of genes ``[g0, g1)`` for every cell."""
    b = b1.shape[1]
    pre = np.empty((b, x.shape[1]), dtype=x.dtype)
    for g in range(g0, g1):
        block = out[g * b : (g + 1) * b]
        if gene_ptr[g + 1] - gene_ptr[g] == 1:  # one feature (RNA): the short call, which LLVM inlines
            _one_feature_block(x, gene_src[gene_ptr[g]], gene_ptr[g], w1, b1, w2, b2, mask, has_mask, g, block, zero)
        else:
            _gene_block(x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, g, block, pre, zero)


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _backward(
    grad, x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, grad_w1, grad_b1, grad_w2, grad_b2, zero, g0, g1
):  # fmt: skip
    """The weight and bias gradients of genes ``[g0, g1)`` from the output gradient ``grad``."""
    b = b1.shape[1]
    n = x.shape[1]
    h = np.empty((b, n), dtype=x.dtype)  # scratch: _gene_block writes the neurons too
    pre = np.empty((b, n), dtype=x.dtype)
    grad_out = np.empty((b, n), dtype=x.dtype)
    grad_path1 = np.empty((b, n), dtype=x.dtype)
    for g in range(g0, g1):
        if gene_ptr[g + 1] - gene_ptr[g] != 1:  # the pre-activation of a gene of several features, recomputed
            _gene_block(x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, g, h, pre, zero)
        _gene_layer_grads(
            x, gene_ptr, gene_src, w1, b1, mask, has_mask, g, grad[g * b : (g + 1) * b], pre, grad_out, grad_path1,
            grad_w1, grad_b1, grad_w2, grad_b2, zero,
        )  # fmt: skip


# Job layouts of the team workers: the arrays in the kernels' argument order, then ``has_mask``.
_WORD = tuple(threads.HEADER_WORDS + threads.DESCRIPTOR_WORDS * k for k in range(15))


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _forward_job(data, zero):
    """:func:`_forward` over the gene chunks of a job, for one thread of the team (``zero``: the float dtype)."""
    at, i64, w = threads.array_at, np.int64(0), _WORD
    x, gene_ptr, gene_src = at(data, w[0], zero, 2), at(data, w[1], i64, 1), at(data, w[2], i64, 1)
    w1, b1, w2, b2 = at(data, w[3], zero, 2), at(data, w[4], zero, 2), at(data, w[5], zero, 2), at(data, w[6], zero, 2)
    mask, out = at(data, w[7], np.uint8(0), 3), at(data, w[8], zero, 2)
    has_mask = threads.word(data, w[9]) != 0
    while True:
        start, stop = threads.next_chunk(data)
        if start < 0:
            return
        _forward(x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, out, zero, start, stop)


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _backward_job(data, zero):
    """:func:`_backward` over the gene chunks of a job, for one thread of the team."""
    at, i64, w = threads.array_at, np.int64(0), _WORD
    grad, x = at(data, w[0], zero, 2), at(data, w[1], zero, 2)
    gene_ptr, gene_src = at(data, w[2], i64, 1), at(data, w[3], i64, 1)
    w1, b1, w2, b2 = at(data, w[4], zero, 2), at(data, w[5], zero, 2), at(data, w[6], zero, 2), at(data, w[7], zero, 2)
    mask = at(data, w[8], np.uint8(0), 3)
    grad_w1, grad_b1 = at(data, w[9], zero, 2), at(data, w[10], zero, 2)
    grad_w2, grad_b2 = at(data, w[11], zero, 2), at(data, w[12], zero, 2)
    has_mask = threads.word(data, w[13]) != 0
    while True:
        start, stop = threads.next_chunk(data)
        if start < 0:
            return
        _backward(
            grad, x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, grad_w1, grad_b1, grad_w2, grad_b2, zero,
            start, stop,
        )  # fmt: skip


@functools.cache
def _team_workers(dtype: type):
    """The ``(forward, backward)`` team workers for float32 or float64 ``dtype``, else ``None``.

    Defined on first use (a ``cfunc`` compiles where it is defined); without closure variables, so numba's disk
    cache finds them again in the next process.
    """
    signature = types.void(types.voidptr)
    if dtype is np.float32:

        @numba.cfunc(signature, cache=True)
        def gene_forward_float32(data):
            _forward_job(data, np.float32(0))

        @numba.cfunc(signature, cache=True)
        def gene_backward_float32(data):
            _backward_job(data, np.float32(0))

        return gene_forward_float32, gene_backward_float32
    if dtype is not np.float64:
        return None  # another float type: the serial kernels

    @numba.cfunc(signature, cache=True)
    def gene_forward_float64(data):
        _forward_job(data, np.float64(0))

    @numba.cfunc(signature, cache=True)
    def gene_backward_float64(data):
        _backward_job(data, np.float64(0))

    return gene_forward_float64, gene_backward_float64


def run_by_gene(
    kernels: tuple, team_workers: Callable, kernel: str, arrays: list, has_mask: bool, ptr: np.ndarray, n_outputs: int
) -> None:
    """Run a gene kernel over every gene: on torch's CPU threads when it has several, else here.

    ``kernels``: the serial ``(forward, backward)`` kernels, which take ``arrays`` with ``has_mask`` after the 8th
    (forward) or 9th (backward) array, then ``zero`` and a gene range; ``team_workers(dtype)``: their team ``cfunc``
    pair, or ``None``; ``ptr``: the compressed list the kernel walks per gene (a gene costs one plus its entries).
    """
    zero = arrays[0].dtype.type(0)
    index = 0 if kernel == "forward" else 1
    split = 8 + index

    def workers():
        pair = team_workers(arrays[0].dtype.type)
        return None if pair is None else pair[index]

    def serial(start: int, stop: int) -> None:
        kernels[index](*arrays[:split], has_mask, *arrays[split:], zero, start, stop)

    threads.run_units(workers, serial, arrays, [int(has_mask)], ptr, n_outputs)


class FusedGeneLayer(torch.autograd.Function):
    """Two-path ReLU gene layer with an optional dropout mask, on CPU.

    Inputs: ``xt`` ``(n_features, n)`` (no gradient); ``genes``, the :class:`GenePlan`; ``w1``, ``w2``
    ``(entries, b)`` (the two paths' weights of every (gene, feature) entry) and ``b1``, ``b2`` ``(genes, b)``;
    ``mask``, a numpy uint8 ``(genes, b, n)`` keep mask or ``None``; ``scale``, dropout's ``1 / (1 - p)``. Returns
    ``(genes * b, n)``, feature-major. Differentiable once, in the parameters.
    """

    @staticmethod
    def forward(ctx, xt, genes: GenePlan, w1, b1, w2, b2, mask, scale):
        n_genes, b = b1.shape
        n = xt.shape[1]
        # dropout's scale folded into the parameters (relu(s a) = s relu(a) for s > 0): the mask is then 0 / 1
        params = [(t.detach() * scale).contiguous().numpy() for t in (w1, b1, w2, b2)]
        has_mask = mask is not None
        mask = mask if has_mask else np.ones((1, 1, 1), dtype=np.uint8)
        x_saved = xt.detach().contiguous()  # shares the input's version counter: an in-place change raises
        out = torch.empty(n_genes * b, n, dtype=xt.dtype)
        arrays = [x_saved.numpy(), genes.ptr, genes.src, *params, mask, out.numpy()]
        run_by_gene((_forward, _backward), _team_workers, "forward", arrays, has_mask, genes.ptr, out.numel())
        # tensors (numpy views), so that autograd frees them after the backward pass
        ctx.save_for_backward(x_saved, *(torch.from_numpy(a) for a in (*params, mask)))
        ctx.genes, ctx.has_mask, ctx.scale = genes, has_mask, scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, *params, mask = (t.numpy() for t in ctx.saved_tensors)
        genes = ctx.genes
        grads = [np.empty_like(t) for t in params]
        arrays = [grad.contiguous().numpy(), x, genes.ptr, genes.src, *params, mask, *grads]
        run_by_gene((_forward, _backward), _team_workers, "backward", arrays, ctx.has_mask, genes.ptr, grad.numel())
        needs = ctx.needs_input_grad
        gene_grads = [torch.from_numpy(g).mul_(ctx.scale) if needs[2 + k] else None for k, g in enumerate(grads)]
        return None, None, *gene_grads, None, None
