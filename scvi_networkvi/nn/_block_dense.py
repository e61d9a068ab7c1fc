"""The dense groups of :class:`~scvi_networkvi.nn.BlockSparseLinear`: one dense matmul per connection group.

Narrow layers (GO levels above the first) multiply each block shape's weights as one dense ``(rows written, rows
read)`` matrix; the input comes as row blocks (``[genes | deeper terms]``) that are never stacked.

Written by hand (torch operations in one autograd node) because autograd's composition of per-group gathers zero-fills
and adds a full-size input gradient per group, and copies the first GO level's 10 MB gradient before the levels above
add to it: returning that gradient as the tensor itself took a step from 55.6 to 50.2 ms (benchmarks/HISTORY.md,
2026-11-27). Tested against the dense reference (:meth:`BlockSparseLinear.to_dense`) in ``tests/test_block_csr.py``
and ``tests/test_block_sparse.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ._block_plan import _as_range

if TYPE_CHECKING:
    from ._block_sparse import BlockSparseLinear


class _DenseGroupsFunction(torch.autograd.Function):
    """Dense groups (``groups``, whole-input ones first) of :class:`BlockSparseLinear` on inputs given as row blocks.

    One autograd node for all of them: the input gradient is one tensor, written by the first whole-input group and
    accumulated in place by the others, where separate gathers would each zero-fill a gradient of the full input.
    """

    @staticmethod
    def forward(ctx, layer: BlockSparseLinear, groups: list, n_parts: int, *args):
        parts, bias, weights = args[:n_parts], args[n_parts], args[n_parts + 1 :]
        whole, out, inputs, matrices = None, None, [], []
        for group, weight in zip(groups, weights, strict=True):
            if group.whole_in:
                if whole is None:
                    whole = parts[0] if n_parts == 1 else torch.cat(parts)
                x = whole
            else:
                x = _gather_parts(layer, parts, group.index)
            w = _dense_matrix(layer, group, weight)
            if group.all_out and out is None:
                out = torch.addmm(bias[:, None], w, x) if bias is not None else w @ x
            elif group.all_out:
                out.addmm_(w, x)
            else:
                if out is None:
                    out = layer._bias_rows(x) if bias is not None else x.new_zeros(layer.n_out, x.shape[1])
                out.index_add_(0, getattr(layer, f"_out{group.index}"), w @ x)
            inputs.append(x)
            matrices.append(w)
        ctx.layer, ctx.groups = layer, groups
        ctx.part_rows = [p.shape[0] for p in parts]
        ctx.save_for_backward(*inputs, *matrices)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        layer: BlockSparseLinear = ctx.layer
        saved = ctx.saved_tensors
        groups = ctx.groups
        inputs, matrices = saved[: len(groups)], saved[len(groups) :]
        n_parts = len(ctx.part_rows)
        need_parts = any(ctx.needs_input_grad[3 : 3 + n_parts])
        need_bias = ctx.needs_input_grad[3 + n_parts]
        g = grad_out.contiguous()
        grad_parts: list[torch.Tensor | None] = [None] * n_parts  # parts no group reads get no gradient at all
        sparse_rows: list[tuple[torch.Tensor, torch.Tensor]] = []
        grad_weights = []
        needs = ctx.needs_input_grad[4 + n_parts :]
        for group, x, w, needed in zip(groups, inputs, matrices, needs, strict=True):
            rows, grad_w = _group_grads(layer, group, g, x, needed)
            grad_weights.append(grad_w)
            if not need_parts:
                continue
            grad_x = torch.mm(w.t(), rows)
            if group.whole_in and grad_parts[0] is None:  # whole-input groups come first
                # one part: the tensor itself, not a view of it, so that autograd may add other gradients in place
                grad_parts = [grad_x] if n_parts == 1 else list(grad_x.split(ctx.part_rows))
            elif group.whole_in:
                for part, piece in zip(grad_parts, grad_x.split(ctx.part_rows), strict=True):
                    part.add_(piece)
            else:
                start = 0
                for k, local, _ in _part_pieces(layer, ctx.part_rows, group.index, g.device):
                    piece = grad_x[start : start + len(local)]
                    start += len(local)
                    if k == 0 and grad_parts[0] is None and layer.sparse_first_part_grad and g.device.type == "cpu":
                        sparse_rows.append((local, piece))
                        continue
                    if grad_parts[k] is None:
                        grad_parts[k] = g.new_zeros(ctx.part_rows[k], g.shape[1])
                    grad_parts[k].index_add_(0, local, piece)
        if sparse_rows:  # rows of a wide first part: autograd adds them into the dense gradient another reader makes
            grad_parts[0] = torch.sparse_coo_tensor(
                torch.cat([local for local, _ in sparse_rows]).unsqueeze(0),
                torch.cat([piece for _, piece in sparse_rows]),
                (ctx.part_rows[0], g.shape[1]),
                check_invariants=False,
            )
        grad_bias = g.sum(1) if need_bias else None
        return None, None, None, *grad_parts, grad_bias, *grad_weights


def _gather_parts(layer: BlockSparseLinear, parts: tuple[torch.Tensor, ...], g: int) -> torch.Tensor:
    """Rows ``_in{g}`` of the row-stacked ``parts``, without stacking the parts."""
    pieces = _part_pieces(layer, tuple(p.shape[0] for p in parts), g, parts[0].device)
    taken = [parts[k][r[0] : r[1]] if r is not None else parts[k].index_select(0, local) for k, local, r in pieces]
    return taken[0] if len(taken) == 1 else torch.cat(taken)


def _part_pieces(layer: BlockSparseLinear, sizes: Sequence[int], g: int, device: torch.device) -> list:
    """``(part, rows within the part, their range or None)`` for the rows ``_in{g}``, cached per part sizes."""
    key = (g, tuple(sizes), device)
    pieces = layer._part_index.get(key)
    if pieces is None:
        index = getattr(layer, f"_in{g}")
        bounds = np.cumsum([0, *sizes])
        pieces = []
        for k in range(len(sizes)):
            local = index[(index >= int(bounds[k])) & (index < int(bounds[k + 1]))] - int(bounds[k])
            if local.numel():
                pieces.append((k, local, _as_range(local.cpu().numpy())))
        layer._part_index[key] = pieces
    return pieces


def _dense_matrix(layer: BlockSparseLinear, group, weight: torch.Tensor) -> torch.Tensor:
    """A dense group's ``(rows written, rows read)`` matrix from its block parameter (zeros where no block is)."""
    flat = getattr(layer, f"_flat{group.index}")
    matrix = weight.new_zeros(group.n_rows * group.n_cols).index_copy_(0, flat, weight.reshape(-1))
    return matrix.view(group.n_rows, group.n_cols)


def _group_grads(
    layer: BlockSparseLinear, group, grad: torch.Tensor, x: torch.Tensor, needed: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A dense group's rows of the output gradient ``grad`` and (if ``needed``) its weight gradient, from its input."""
    rows = grad if group.all_out else grad.index_select(0, getattr(layer, f"_out{group.index}"))
    if not needed:
        return rows, None
    grad_w = torch.mm(rows, x.t()).view(-1).index_select(0, getattr(layer, f"_flat{group.index}"))
    return rows, grad_w.view_as(layer.weights[group.index])


class _SharedDenseGroups(torch.autograd.Function):
    """Whole-input dense groups of a CPU-kernel GO level, their input gradient in the shared gene-row buffer.

    The groups' product is added to the kernel's output ``base``; their input gradient goes into the forward pass's
    buffer (:mod:`._shared_grad`). Written by hand because :class:`_DenseGroupsFunction` returns that gradient as a
    fresh full-size tensor, which autograd then adds to the buffer: the tutorial multiome's UNKNOWN node reads all
    84,895 ATAC gene neurons, a 43 MB tensor per step (module step 347 -> 334 ms, 2026-12-06, one thread). Reading
    ``base`` orders this node's backward pass before the kernel node's, so the buffer's owner (a kernel node of this
    level or below) still runs last. ``member``: ``(shared, token)`` from :meth:`~._shared_grad.SharedPartGrad.join`.
    Tested against the reference kernel in ``tests/test_shared_grad.py``.
    """

    @staticmethod
    def forward(ctx, layer: BlockSparseLinear, groups: list, member, base, x, *weights):
        out = base.clone()
        matrices = []
        for group, weight in zip(groups, weights, strict=True):
            w = _dense_matrix(layer, group, weight)
            if group.all_out:
                out.addmm_(w, x)
            else:
                out.index_add_(0, getattr(layer, f"_out{group.index}"), w @ x)
            matrices.append(w)
        ctx.layer, ctx.groups, ctx.member = layer, groups, member
        ctx.save_for_backward(x, *matrices)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, *matrices = ctx.saved_tensors
        layer: BlockSparseLinear = ctx.layer
        shared, token = ctx.member
        g = grad_out.contiguous()
        buffer, fresh = shared.take(token, x.shape[0], g) if ctx.needs_input_grad[4] else (None, False)
        grad_weights = []
        for group, w, needed in zip(ctx.groups, matrices, ctx.needs_input_grad[5:], strict=True):
            rows, grad_w = _group_grads(layer, group, g, x, needed)
            grad_weights.append(grad_w)
            if buffer is not None:
                if fresh:  # the first writer of this pass: every row, no zero-fill
                    torch.mm(w.t(), rows, out=buffer)
                    fresh = False
                else:
                    buffer.addmm_(w.t(), rows)
        # the input's gradient is in the buffer, which the owner hands to autograd
        return None, None, None, grad_out, None, *grad_weights
