"""The block kernel of :class:`~scvi_networkvi.nn.BlockSparseLinear`: one gather and one batched matmul per bucket.

The plans (which rows each bucket gathers and writes) come from :mod:`._block_plan`. The plain-torch reference the
kernel is tested against is the layer's dense equivalent (:meth:`BlockSparseLinear.to_dense`).

Written by hand because torch has no block-sparse product: this is the GPU path (a step costs what it launches, and
the bucketing bounds the launches at ``O(log max connections)`` per group: 146 instead of 823 GO-level buckets per
step at depth 4 of the full human annotations). On CPU the compressed-block-row kernel of :mod:`._block_csr` replaces
it (2x faster on the first GO level there); ``BlockSparseLinear.cpu_kernel = False`` runs this one on CPU (tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.autograd.function import once_differentiable

from ._block_plan import _Bucket

if TYPE_CHECKING:
    from ._block_sparse import BlockSparseLinear


class _BlockSparseFunction(torch.autograd.Function):
    """The block kernel of :class:`BlockSparseLinear` (its kernel groups) on feature-major tensors.

    ``tensors``: the ``n_parts`` input row blocks, then the kernel groups' weights; each group reads one part
    (:class:`~._block_plan.KernelPlan`), so the parts are never stacked (a GO level reads ``[genes | terms]``).
    ``residual``: return ``relu(W x + b) + x`` instead of ``W x + b`` (square layers, one part).
    """

    @staticmethod
    def forward(
        ctx, layer: BlockSparseLinear, n_parts: int, bias: torch.Tensor | None, residual: bool, *tensors
    ) -> torch.Tensor:
        parts, weights = [p.contiguous() for p in tensors[:n_parts]], tensors[n_parts:]
        plan = layer._plan(parts)
        ix, n = plan.index, parts[0].shape[1]
        out = _initial(plan.fwd_init, layer.n_out, parts[0], layer._bias_rows)
        for g, weight, buckets, part in zip(layer._kernel_groups, weights, plan.fwd, plan.part_of, strict=True):
            b_in, b_out = layer.groups[g]
            padded = _with_zero_row(weight, buckets)
            for bucket in buckets:
                d, k, m = bucket.n_blocks, bucket.k, bucket.twins
                x = _take(parts[part], ix["fg"], bucket.gather, bucket.gather_range).view(d, k * b_in, n)
                w = _take(padded, ix["fe"], bucket.edges, bucket.edges_range).view(d, m, k, b_in, b_out)
                w = w.permute(0, 1, 4, 2, 3).reshape(d, m * b_out, k * b_in)
                rows = None if bucket.accumulate else _take(bias, ix["fp"], bucket.place, bucket.place_range)
                out = _write(out, ix["fp"], bucket, w, x, rows)
        ctx.layer, ctx.plan, ctx.residual = layer, plan, residual
        ctx.part_rows = [p.shape[0] for p in parts]
        ctx.n_weights = len(weights)
        # The gathered inputs are not kept: the backward pass reads each input block once, with the gradient rows it
        # gathers anyway (first GO level of the full human GAF: 108 MB fewer saved, ~57 MB fewer read per step).
        if residual:  # the product is not an output: ReLU in place, its result saved for the ReLU's gradient
            ctx.save_for_backward(*weights, out.relu_(), *parts)
            return out + parts[0]
        ctx.save_for_backward(*weights, *parts)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        layer: BlockSparseLinear = ctx.layer
        plan, saved, part_rows = ctx.plan, ctx.saved_tensors, ctx.part_rows
        ix = plan.index
        weights, parts = saved[: ctx.n_weights], saved[ctx.n_weights :]
        g = grad_out.contiguous()
        skip = None
        if ctx.residual:  # the product's gradient goes through the ReLU; the skip's starts the input gradient
            skip, g, parts = g, torch.ops.aten.threshold_backward(g, parts[0], 0), parts[1:]
        n = g.shape[1]
        need_bias = ctx.needs_input_grad[2]
        need_parts = ctx.needs_input_grad[4 : 4 + len(part_rows)]
        grad_parts: list[torch.Tensor | None] = [None] * len(part_rows)  # parts no group reads get no gradient
        grad_weights = []
        for g_index, weight, bwd, part, need_w in zip(
            layer._kernel_groups,
            weights,
            plan.bwd,
            plan.part_of,
            ctx.needs_input_grad[4 + len(part_rows) :],
            strict=True,
        ):
            b_in, b_out = layer.groups[g_index]
            need_x = need_parts[part]
            if need_x and grad_parts[part] is None:
                if skip is not None and plan.bwd_init == "fill":
                    grad_parts[part] = skip.clone()
                elif plan.bwd_init == "rest":  # the buckets write every other row once
                    grad = grad_parts[part] = g.new_empty(plan.grad_rows[part], n)
                    if skip is None:
                        grad.index_fill_(0, plan.unwritten, 0)
                    else:
                        grad.index_copy_(0, plan.unwritten, skip.index_select(0, plan.unwritten))
                else:
                    grad_parts[part] = _initial(plan.bwd_init, plan.grad_rows[part], g, None)
            # every connection is in exactly one bucket; padded slots write the extra row, dropped after
            e = weight.shape[0]
            grad_w = weight.new_empty(e + any(b.padded for b in bwd), b_in, b_out) if need_w else None
            padded = _with_zero_row(weight, bwd) if need_x else None
            for bucket in bwd:  # input blocks with the output-gradient rows of their k connections
                s, k, m = bucket.n_blocks, bucket.k, bucket.twins
                go = _take(g, ix["bg"], bucket.gather, bucket.gather_range).view(s, k * m * b_out, n)
                if need_w:
                    x = _take(parts[part], ix["bx"], bucket.read, bucket.read_range).view(s, b_in, n)
                    dw = torch.bmm(x, go.transpose(1, 2))  # (s, b_in, k * m * b_out), connections (s, k, m)
                    dw = dw.view(s, b_in, k * m, b_out).transpose(1, 2).reshape(s * k * m, b_in, b_out)
                    grad_w.index_copy_(0, ix["be"][bucket.edges], dw)
                if need_x:
                    w = _take(padded, ix["be"], bucket.edges, bucket.edges_range).view(s, k, m, b_in, b_out)
                    w = w.permute(0, 3, 1, 2, 4).reshape(s, b_in, k * m * b_out)
                    # rows a bucket writes (rather than adds to) start from the skip connection's gradient
                    base = (
                        None
                        if skip is None or bucket.accumulate
                        else _take(skip, ix["bp"], bucket.place, bucket.place_range)
                    )
                    grad_parts[part] = _write(grad_parts[part], ix["bp"], bucket, w, go, base)
            grad_weights.append(None if grad_w is None else grad_w[:e])
        if plan.sparse_rows is not None and grad_parts[0] is not None:
            # rows of a wide first part: autograd adds them into the dense gradient another reader makes
            grad_parts[0] = torch.sparse_coo_tensor(
                plan.sparse_rows.unsqueeze(0), grad_parts[0], (part_rows[0], n), check_invariants=False
            )
        grad_bias = g.sum(1) if need_bias else None
        return None, None, grad_bias, None, *grad_parts, *grad_weights


def _with_zero_row(weight: torch.Tensor, buckets: list[_Bucket]) -> torch.Tensor:
    """``weight`` with a zero connection appended when a bucket pads its blocks (its padded slots index it).

    One copy of the group's weights per pass, where zeroing the padded slots would cost a kernel per bucket; the
    parameter itself stays exactly the structural weights.
    """
    if not any(bucket.padded for bucket in buckets):
        return weight
    return torch.cat([weight, weight.new_zeros(1, *weight.shape[1:])])


def _initial(mode: str, n_rows: int, like: torch.Tensor, bias_rows) -> torch.Tensor:
    """The tensor a plan writes into: uninitialised (its buckets write every row), or bias / zeros."""
    if mode == "empty":
        return like.new_empty(n_rows, like.shape[1])
    return bias_rows(like).detach() if bias_rows is not None else like.new_zeros(n_rows, like.shape[1])


def _write(
    out: torch.Tensor, place: torch.Tensor, bucket: _Bucket, w: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Write (or add) one bucket's ``w @ x (+ bias)`` at its rows of ``out``, in place where the rows are a range."""
    n, target = x.shape[-1], None
    if bucket.place_range is not None:
        target = out[bucket.place_range[0] : bucket.place_range[1]].view(w.shape[0], w.shape[1], n)
    if bucket.accumulate:
        if target is not None:
            _product(w, x, None, target, accumulate=True)
        else:
            out.index_add_(0, place[bucket.place], _product(w, x, None, None).view(-1, n))
        return out
    if target is not None:
        _product(w, x, bias, target)
    else:
        out.index_copy_(0, place[bucket.place], _product(w, x, bias, None).view(-1, n))
    return out


def _product(
    w: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor | None, accumulate: bool = False
) -> torch.Tensor:
    """``w @ x (+ bias)`` batched over blocks, into ``out`` (or added to it); elementwise when the inner size is 1.

    ``bias``: one value per row (``(blocks * b_out,)``) or per entry (``(blocks * b_out, n)``, a residual's gradient).
    """
    outer = w.shape[2] == 1  # (blocks, b_out, 1) * (blocks, 1, n): no matmul needed
    if accumulate:
        return out.addcmul_(w, x) if outer else out.baddbmm_(w, x)
    kwargs = {} if out is None else {"out": out}
    if bias is None:
        return torch.mul(w, x, **kwargs) if outer else torch.bmm(w, x, **kwargs)
    bias = bias.view(w.shape[0], w.shape[1], -1)
    return torch.addcmul(bias, w, x, **kwargs) if outer else torch.baddbmm(bias, w, x, **kwargs)


def _take(
    source: torch.Tensor | None, index: torch.Tensor, part: slice, contiguous: tuple[int, int] | None
) -> torch.Tensor | None:
    """Rows ``index[part]`` of ``source``: a view when they are a contiguous range, else a gather."""
    if source is None:
        return None
    if contiguous is not None:
        return source[contiguous[0] : contiguous[1]]
    return source.index_select(0, index[part])
