"""The gene layer and its interaction layer as one CPU kernel (numba).

The gene layer's ``b`` neurons of gene ``g`` are ``h_g = mask * (relu(sum_f w1_f x_f + b1) + sum_f w2_f x_f + b2)``
over the features ``f`` it reads (one per gene for RNA, the linked peaks for ATAC). The interaction layer that
follows is ``relu(sum_e W_e h_src(e) + bias) + h``. Written as separate torch operations, the two layers pass over
``(genes * b, cells)`` tensors (10 MB for 4000 genes, 5 neurons, 128 cells; 43 MB for the tutorial ATAC's 16,979
genes) about twenty times per step: gene activations, dropout, gathers, the product, the ReLU, the skip connection,
and as many again for the gradients. Here each gene's block (``b x cells``, a few KB) is computed where it is needed
and stays in the L1 cache:

- forward: per output gene, the source genes' blocks are recomputed from their feature rows (cheaper than reading
  them back from memory) and multiplied into an accumulator; the output and its ReLU pattern (one byte per entry)
  are the only full-size writes;
- backward: per source gene, the gradient reaching its block (skip connection + every edge leaving it) is summed in
  a small buffer, from which the gene layer's weight gradients follow directly. The features are data, so no
  gradient is written back to them.

Genes are independent in both passes (each writes its own rows and weight gradients), so with several torch CPU
threads they are split into chunks that torch's own OpenMP team computes (:mod:`._torch_threads`); the result is the
same for every thread count.

Written by hand because no torch operation fuses these steps on CPU (``torch.compile`` was tried and was slower, see
benchmarks/HISTORY.md); numba is already installed with scanpy and scvi-tools. Speed it buys (HISTORY.md, 2026-11-26,
one thread of a 2-core AMD EPYC VM): forward + backward of the two layers 31-35 -> 8-9 ms, a module step 117-122 ->
89-91 ms. Tested against the torch layers (``tests/test_fused_gene_interaction.py``). :meth:`GeneLayer.forward_t_with
<scvi_networkvi.nn.GeneLayer.forward_t_with>` decides when the kernel applies and otherwise leaves the work to the torch
layers (GPU tensors, other activations, inputs that need a gradient).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import types
from torch.autograd.function import once_differentiable

from . import _torch_threads as threads
from ._fused_gene_layer import _FAST, GenePlan, _gene_block, _gene_layer_grads, _one_feature_block, run_by_gene


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _forward(
    x,
    gene_ptr,
    gene_src,
    w1,
    b1,
    w2,
    b2,
    mask,
    has_mask,
    weight,
    bias,
    in_ptr,
    in_src,
    in_edge,
    out,
    positive,
    zero,
    g0,
    g1,
):
    """Interaction output ``out`` and its ReLU pattern ``positive``, output gene by output gene."""
    n_genes, b = b1.shape
    n = x.shape[1]
    h = np.empty((b, n), dtype=x.dtype)
    pre = np.empty((b, n), dtype=x.dtype)
    acc = np.empty((b, n), dtype=x.dtype)
    for g in range(g0, g1):
        for o in range(b):
            bias_o = bias[g * b + o]
            for c in range(n):
                acc[o, c] = bias_o
        for p in range(in_ptr[g], in_ptr[g + 1]):
            s, e = in_src[p], in_edge[p]
            if gene_ptr[s + 1] - gene_ptr[s] == 1:  # one feature (RNA): the short call, which LLVM inlines
                _one_feature_block(x, gene_src[gene_ptr[s]], gene_ptr[s], w1, b1, w2, b2, mask, has_mask, s, h, zero)
            else:
                _gene_block(x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, s, h, pre, zero)
            for o in range(b):
                for i in range(b):
                    w = weight[e, i, o]
                    for c in range(n):
                        acc[o, c] += w * h[i, c]
        if gene_ptr[g + 1] - gene_ptr[g] == 1:  # the skip connection
            _one_feature_block(x, gene_src[gene_ptr[g]], gene_ptr[g], w1, b1, w2, b2, mask, has_mask, g, h, zero)
        else:
            _gene_block(x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, g, h, pre, zero)
        for o in range(b):
            r = g * b + o
            for c in range(n):
                a = acc[o, c]
                on = a > zero
                positive[r, c] = on
                out[r, c] = (a if on else zero) + h[o, c]


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _backward(
    grad,
    x,
    gene_ptr,
    gene_src,
    w1,
    b1,
    w2,
    b2,
    mask,
    has_mask,
    weight,
    positive,
    out_ptr,
    out_dst,
    out_edge,
    grad_w1,
    grad_b1,
    grad_w2,
    grad_b2,
    grad_weight,
    grad_bias,
    zero,
    g0,
    g1,
):
    """Parameter gradients from the output gradient ``grad``, source gene by source gene."""
    n_genes, b = b1.shape
    n = x.shape[1]
    for r in range(g0 * b, g1 * b):  # bias of the interaction product: its gradient behind the ReLU
        total = zero
        for c in range(n):
            total += grad[r, c] if positive[r, c] else zero
        grad_bias[r] = total
    h = np.empty((b, n), dtype=x.dtype)
    pre = np.empty((b, n), dtype=x.dtype)
    grad_h = np.empty((b, n), dtype=x.dtype)
    grad_product = np.empty((b, n), dtype=x.dtype)
    grad_path1 = np.empty((b, n), dtype=x.dtype)
    for s in range(g0, g1):
        if gene_ptr[s + 1] - gene_ptr[s] == 1:
            _one_feature_block(x, gene_src[gene_ptr[s]], gene_ptr[s], w1, b1, w2, b2, mask, has_mask, s, h, zero)
        else:
            _gene_block(x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, s, h, pre, zero)
        for i in range(b):  # the skip connection's gradient
            for c in range(n):
                grad_h[i, c] = grad[s * b + i, c]
        for p in range(out_ptr[s], out_ptr[s + 1]):
            d, e = out_dst[p], out_edge[p]
            for o in range(b):
                r = d * b + o
                for c in range(n):
                    grad_product[o, c] = grad[r, c] if positive[r, c] else zero
            for i in range(b):
                for o in range(b):
                    w = weight[e, i, o]
                    total = zero
                    for c in range(n):
                        total += grad_product[o, c] * h[i, c]
                        grad_h[i, c] += w * grad_product[o, c]
                    grad_weight[e, i, o] = total
        _gene_layer_grads(
            x, gene_ptr, gene_src, w1, b1, mask, has_mask, s, grad_h, pre, grad_h, grad_path1, grad_w1, grad_b1,
            grad_w2, grad_b2, zero,
        )  # fmt: skip


# Job layouts of the team workers: the arrays in the kernels' argument order, then ``has_mask``.
_WORD = tuple(threads.HEADER_WORDS + threads.DESCRIPTOR_WORDS * k for k in range(21))


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _forward_job(data, zero):
    """:func:`_forward` over the gene chunks of a job, for one thread of the team (``zero``: the float dtype)."""
    at, i64, w = threads.array_at, np.int64(0), _WORD
    x, gene_ptr, gene_src = at(data, w[0], zero, 2), at(data, w[1], i64, 1), at(data, w[2], i64, 1)
    w1, b1, w2, b2 = at(data, w[3], zero, 2), at(data, w[4], zero, 2), at(data, w[5], zero, 2), at(data, w[6], zero, 2)
    mask, weight, bias = at(data, w[7], np.uint8(0), 3), at(data, w[8], zero, 3), at(data, w[9], zero, 1)
    in_ptr, in_src, in_edge = at(data, w[10], i64, 1), at(data, w[11], i64, 1), at(data, w[12], i64, 1)
    out, positive = at(data, w[13], zero, 2), at(data, w[14], np.bool_(False), 2)
    has_mask = threads.word(data, w[15]) != 0
    while True:
        start, stop = threads.next_chunk(data)
        if start < 0:
            return
        _forward(
            x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, weight, bias, in_ptr, in_src, in_edge, out,
            positive, zero, start, stop,
        )  # fmt: skip


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _backward_job(data, zero):
    """:func:`_backward` over the gene chunks of a job, for one thread of the team."""
    at, i64, w = threads.array_at, np.int64(0), _WORD
    grad, x, gene_ptr, gene_src = (
        at(data, w[0], zero, 2),
        at(data, w[1], zero, 2),
        at(data, w[2], i64, 1),
        at(data, w[3], i64, 1),
    )
    w1, b1, w2, b2 = at(data, w[4], zero, 2), at(data, w[5], zero, 2), at(data, w[6], zero, 2), at(data, w[7], zero, 2)
    mask, weight, positive = at(data, w[8], np.uint8(0), 3), at(data, w[9], zero, 3), at(data, w[10], np.bool_(0), 2)
    out_ptr, out_dst, out_edge = at(data, w[11], i64, 1), at(data, w[12], i64, 1), at(data, w[13], i64, 1)
    grad_w1, grad_b1 = at(data, w[14], zero, 2), at(data, w[15], zero, 2)
    grad_w2, grad_b2 = at(data, w[16], zero, 2), at(data, w[17], zero, 2)
    grad_weight, grad_bias = at(data, w[18], zero, 3), at(data, w[19], zero, 1)
    has_mask = threads.word(data, w[20]) != 0
    while True:
        start, stop = threads.next_chunk(data)
        if start < 0:
            return
        _backward(
            grad, x, gene_ptr, gene_src, w1, b1, w2, b2, mask, has_mask, weight, positive, out_ptr, out_dst,
            out_edge, grad_w1, grad_b1, grad_w2, grad_b2, grad_weight, grad_bias, zero, start, stop,
        )  # fmt: skip


@functools.cache
def _team_workers(dtype: type):
    """The ``(forward, backward)`` team workers for float32 or float64 ``dtype``, else ``None``.

    A ``cfunc`` compiles where it is defined, so these are defined on first use; they have no closure variables, so
    numba's disk cache finds them again in the next process.
    """
    signature = types.void(types.voidptr)
    if dtype is np.float32:

        @numba.cfunc(signature, cache=True)
        def forward_float32(data):
            _forward_job(data, np.float32(0))

        @numba.cfunc(signature, cache=True)
        def backward_float32(data):
            _backward_job(data, np.float32(0))

        return forward_float32, backward_float32
    if dtype is not np.float64:
        return None  # another float type: the serial kernels

    @numba.cfunc(signature, cache=True)
    def forward_float64(data):
        _forward_job(data, np.float64(0))

    @numba.cfunc(signature, cache=True)
    def backward_float64(data):
        _backward_job(data, np.float64(0))

    return forward_float64, backward_float64


class EdgePlan(NamedTuple):
    """The interaction layer's connections as two compressed lists (numpy int64), for the kernels.

    ``in_*``: per output gene (``in_ptr[g]:in_ptr[g + 1]``) its source genes and their weight rows; ``out_*``: per
    source gene its output genes and weight rows.
    """

    in_ptr: np.ndarray
    in_src: np.ndarray
    in_edge: np.ndarray
    out_ptr: np.ndarray
    out_dst: np.ndarray
    out_edge: np.ndarray

    @classmethod
    def from_connections(cls, connections: np.ndarray, n_genes: int) -> EdgePlan:
        """``connections``: ``(2, e)`` (source gene, output gene) pairs, in the order of the weight rows."""
        src, dst = (np.ascontiguousarray(row, dtype=np.int64) for row in connections)
        by_dst = np.argsort(dst, kind="stable").astype(np.int64)
        by_src = np.argsort(src, kind="stable").astype(np.int64)
        bounds = np.arange(n_genes + 1)
        return cls(
            np.searchsorted(dst[by_dst], bounds).astype(np.int64),
            src[by_dst],
            by_dst,
            np.searchsorted(src[by_src], bounds).astype(np.int64),
            dst[by_src],
            by_src,
        )


class FusedGeneInteraction(torch.autograd.Function):
    """Two-path ReLU gene layer (optional dropout) + ReLU interaction layer with its skip connection, on CPU.

    Inputs: ``xt`` ``(n_features, n)`` (no gradient); ``genes``, the :class:`GenePlan`; ``w1``, ``w2``
    ``(entries, b)`` (the two paths' weights of every (gene, feature) entry) and ``b1``, ``b2`` ``(genes, b)``;
    ``mask``, a numpy uint8 ``(genes, b, n)`` keep mask or ``None``; ``scale``, dropout's ``1 / (1 - p)``; the
    interaction ``weight`` ``(e, b, b)`` and ``bias`` ``(genes * b,)``; ``edges``, its :class:`EdgePlan`. Returns
    ``(genes * b, n)``, feature-major. Differentiable once, in the parameters.
    """

    @staticmethod
    def forward(ctx, xt, genes: GenePlan, w1, b1, w2, b2, mask, scale, weight, bias, edges: EdgePlan):
        n_genes, b = b1.shape
        n = xt.shape[1]
        # dropout's scale folded into the gene layer (relu(s a) = s relu(a) for s > 0): the mask is then 0 / 1
        gene = [(t.detach() * scale).contiguous().numpy() for t in (w1, b1, w2, b2)]
        has_mask = mask is not None
        mask = mask if has_mask else np.ones((1, 1, 1), dtype=np.uint8)
        x_saved, w_saved = xt.detach().contiguous(), weight.detach().contiguous()  # share the inputs' version counters
        x, w = x_saved.numpy(), w_saved.numpy()
        out = torch.empty(n_genes * b, n, dtype=xt.dtype)
        positive = np.empty((n_genes * b, n), dtype=np.bool_)
        run_by_gene(
            (_forward, _backward),
            _team_workers,
            "forward",
            [
                x, genes.ptr, genes.src, *gene, mask, w, bias.detach().contiguous().numpy(),
                edges.in_ptr, edges.in_src, edges.in_edge, out.numpy(), positive,
            ],
            has_mask,
            edges.in_ptr,
            out.numel(),
        )  # fmt: skip
        # Saved as tensors (numpy views, no copies) so that autograd frees them after the backward pass; the input and
        # the weight as detached views, so that changing either in place before the backward pass raises as usual.
        ctx.save_for_backward(x_saved, w_saved, *(torch.from_numpy(a) for a in (*gene, mask, positive)))
        ctx.genes, ctx.has_mask, ctx.edges, ctx.scale = genes, has_mask, edges, scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, w, *gene, mask, positive = (t.numpy() for t in ctx.saved_tensors)
        genes, edges = ctx.genes, ctx.edges
        grads = [np.empty_like(t) for t in gene]
        grad_weight = np.empty_like(w)
        grad_bias = np.empty(positive.shape[0], dtype=x.dtype)
        run_by_gene(
            (_forward, _backward),
            _team_workers,
            "backward",
            [
                grad.contiguous().numpy(), x, genes.ptr, genes.src, *gene, mask, w, positive,
                edges.out_ptr, edges.out_dst, edges.out_edge, *grads, grad_weight, grad_bias,
            ],
            ctx.has_mask,
            edges.out_ptr,
            grad.numel(),
        )  # fmt: skip
        needs = ctx.needs_input_grad
        gene_grads = [torch.from_numpy(g).mul_(ctx.scale) if needs[2 + k] else None for k, g in enumerate(grads)]
        return (
            None, None, *gene_grads, None, None,
            torch.from_numpy(grad_weight) if needs[8] else None,
            torch.from_numpy(grad_bias) if needs[9] else None,
            None,
        )  # fmt: skip
