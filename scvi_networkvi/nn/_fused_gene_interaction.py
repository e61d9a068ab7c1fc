"""The RNA gene layer and its interaction layer as one CPU kernel (numba), for the wiring's common case.

When every gene node reads one feature (RNA), the gene layer is elementwise: gene ``g``'s ``b`` neurons are
``h_g = mask * (relu(w1 x + b1) + w2 x + b2)`` of its feature's row ``x``. The interaction layer that follows is
``relu(sum_e W_e h_src(e) + bias) + h``. Written as separate torch operations, the two layers pass over
``(genes * b, cells)`` tensors (10 MB for 4000 genes, 5 neurons, 128 cells) about twenty times per step: gene
activations, dropout, gathers, the product, the ReLU, the skip connection, and as many again for the gradients.
Here each gene's block (``b x cells``, a few KB) is computed where it is needed and stays in the L1 cache:

- forward: per output gene, the source genes' blocks are recomputed from their feature rows (cheaper than reading
  them back from memory) and multiplied into an accumulator; the output and its ReLU pattern (one byte per entry)
  are the only full-size writes;
- backward: per source gene, the gradient reaching its block (skip connection + every edge leaving it) is summed in
  a small buffer, from which the gene layer's weight gradients follow directly. The features are data, so no
  gradient is written back to them.

Written by hand because no torch operation fuses these steps on CPU (``torch.compile`` was tried and was slower, see
benchmarks/README.md); numba is already installed with scanpy and scvi-tools. :meth:`GeneLayer.forward_t_with
<scvi_networkvi.nn.GeneLayer.forward_t_with>` decides when the kernel applies and otherwise leaves the work to the torch
layers (GPU tensors, other activations, several features per gene, inputs that need a gradient).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import torch
from torch.autograd.function import once_differentiable

# Reassociation lets LLVM vectorise the sums over cells; the order stays fixed for a given machine (deterministic).
# Every kernel takes ``zero`` of the data's dtype: a literal 0.0 is float64 in numba and would widen float32 arithmetic.
_FAST = {"reassoc", "contract"}


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _gene_block(x, rows, w1, b1, w2, b2, mask, has_mask, g, out, zero):
    """Gene ``g``'s neurons for every cell into ``out`` ``(b, n)``."""
    n = x.shape[1]
    r = rows[g]
    for j in range(w1.shape[1]):
        a1, c1, a2, c2 = w1[g, j], b1[g, j], w2[g, j], b2[g, j]
        for c in range(n):
            v = x[r, c]
            value = max(a1 * v + c1, zero) + (a2 * v + c2)
            out[j, c] = value * mask[g, j, c] if has_mask else value


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _forward(x, rows, w1, b1, w2, b2, mask, has_mask, weight, bias, in_ptr, in_src, in_edge, out, positive, zero):
    """Interaction output ``out`` and its ReLU pattern ``positive``, output gene by output gene."""
    n_genes, b = w1.shape
    n = x.shape[1]
    h = np.empty((b, n), dtype=x.dtype)
    acc = np.empty((b, n), dtype=x.dtype)
    for g in range(n_genes):
        for o in range(b):
            bias_o = bias[g * b + o]
            for c in range(n):
                acc[o, c] = bias_o
        for p in range(in_ptr[g], in_ptr[g + 1]):
            s, e = in_src[p], in_edge[p]
            _gene_block(x, rows, w1, b1, w2, b2, mask, has_mask, s, h, zero)
            for o in range(b):
                for i in range(b):
                    w = weight[e, i, o]
                    for c in range(n):
                        acc[o, c] += w * h[i, c]
        _gene_block(x, rows, w1, b1, w2, b2, mask, has_mask, g, h, zero)  # the skip connection
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
    rows,
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
):
    """Parameter gradients from the output gradient ``grad``, source gene by source gene."""
    n_genes, b = w1.shape
    n = x.shape[1]
    for r in range(n_genes * b):  # bias of the interaction product: its gradient behind the ReLU
        total = zero
        for c in range(n):
            total += grad[r, c] if positive[r, c] else zero
        grad_bias[r] = total
    h = np.empty((b, n), dtype=x.dtype)
    grad_h = np.empty((b, n), dtype=x.dtype)
    grad_pre = np.empty((b, n), dtype=x.dtype)
    for s in range(n_genes):
        _gene_block(x, rows, w1, b1, w2, b2, mask, has_mask, s, h, zero)
        for i in range(b):  # the skip connection's gradient
            for c in range(n):
                grad_h[i, c] = grad[s * b + i, c]
        for p in range(out_ptr[s], out_ptr[s + 1]):
            d, e = out_dst[p], out_edge[p]
            for o in range(b):
                r = d * b + o
                for c in range(n):
                    grad_pre[o, c] = grad[r, c] if positive[r, c] else zero
            for i in range(b):
                for o in range(b):
                    w = weight[e, i, o]
                    total = zero
                    for c in range(n):
                        total += grad_pre[o, c] * h[i, c]
                        grad_h[i, c] += w * grad_pre[o, c]
                    grad_weight[e, i, o] = total
        r = rows[s]
        for j in range(b):  # the gene layer: grad_h through dropout and the two paths
            a1, c1 = w1[s, j], b1[s, j]
            sw1 = sb1 = sw2 = sb2 = zero
            for c in range(n):
                v = x[r, c]
                gj = grad_h[j, c] * mask[s, j, c] if has_mask else grad_h[j, c]
                on = gj if a1 * v + c1 > zero else zero
                sw1 += on * v
                sb1 += on
                sw2 += gj * v
                sb2 += gj
            grad_w1[s, j], grad_b1[s, j], grad_w2[s, j], grad_b2[s, j] = sw1, sb1, sw2, sb2


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
    """Gene layer (one feature per gene, two paths, ReLU, optional dropout) + ReLU interaction layer with skip.

    Inputs: ``xt`` ``(n_features, n)`` (no gradient), ``rows`` (each gene's feature row, numpy), ``w1, b1, w2, b2``
    ``(genes, b, 1)`` (the gene layer's paths), ``mask`` (numpy uint8 ``(genes, b, n)`` keep mask or ``None``),
    ``scale`` (dropout's ``1 / (1 - p)``), the interaction ``weight`` ``(e, b, b)`` and ``bias`` ``(genes * b,)``,
    its :class:`EdgePlan`. Returns ``(genes * b, n)``, feature-major. Differentiable once, in the parameters.
    """

    @staticmethod
    def forward(ctx, xt, rows, w1, b1, w2, b2, mask, scale, weight, bias, plan: EdgePlan):
        n_genes, b = w1.shape[0], w1.shape[1]
        n = xt.shape[1]
        # dropout's scale folded into the gene layer (relu(s a) = s relu(a) for s > 0): the mask is then 0 / 1
        gene = [(t.detach() * scale).reshape(n_genes, b).contiguous().numpy() for t in (w1, b1, w2, b2)]
        has_mask = mask is not None
        mask = mask if has_mask else np.ones((1, 1, 1), dtype=np.uint8)
        x_saved, w_saved = xt.detach().contiguous(), weight.detach().contiguous()  # share the inputs' version counters
        x, w = x_saved.numpy(), w_saved.numpy()
        zero = x.dtype.type(0)
        out = torch.empty(n_genes * b, n, dtype=xt.dtype)
        positive = np.empty((n_genes * b, n), dtype=np.bool_)
        _forward(
            x, rows, *gene, mask, has_mask, w, bias.detach().contiguous().numpy(),
            plan.in_ptr, plan.in_src, plan.in_edge, out.numpy(), positive, zero,
        )  # fmt: skip
        # Saved as tensors (numpy views, no copies) so that autograd frees them after the backward pass; the input and
        # the weight as detached views, so that changing either in place before the backward pass raises as usual.
        ctx.save_for_backward(x_saved, w_saved, *(torch.from_numpy(a) for a in (*gene, mask, positive)))
        ctx.rows, ctx.has_mask, ctx.plan, ctx.scale = rows, has_mask, plan, scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, w, *gene, mask, positive = (t.numpy() for t in ctx.saved_tensors)
        plan = ctx.plan
        n_genes, b = gene[0].shape
        grads = [np.empty((n_genes, b), dtype=x.dtype) for _ in range(4)]
        grad_weight = np.empty_like(w)
        grad_bias = np.empty(n_genes * b, dtype=x.dtype)
        _backward(
            grad.contiguous().numpy(), x, ctx.rows, *gene, mask, ctx.has_mask, w,
            positive, plan.out_ptr, plan.out_dst, plan.out_edge, *grads, grad_weight, grad_bias, x.dtype.type(0),
        )  # fmt: skip
        gene_grads = [torch.from_numpy(g).mul_(ctx.scale).view(n_genes, b, 1) for g in grads]
        needs = ctx.needs_input_grad
        gene_grads = [g if needs[2 + k] else None for k, g in enumerate(gene_grads)]
        return (
            None, None, *gene_grads, None, None,
            torch.from_numpy(grad_weight) if needs[8] else None,
            torch.from_numpy(grad_bias) if needs[9] else None,
            None,
        )  # fmt: skip
