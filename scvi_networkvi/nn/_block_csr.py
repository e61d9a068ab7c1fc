"""The block kernel of :class:`~scvi_networkvi.nn.BlockSparseLinear` on CPU: compressed block rows, numba.

Each output block's ``b_out x cells`` rows (both paths of a GO level: ``2 b_out`` rows) are accumulated in a small
buffer that stays in the L1 cache while every input block it reads is multiplied into it, eight input rows per pass
over the cells (the forward product is :mod:`._block_csr_eval`'s, with or without autograd); the backward pass does
the same per input block, its gradient rows in the buffer, and takes each weight gradient (a dot product of an input
row with an output-gradient row) from the same reads. Nothing is gathered or padded: no ``(blocks, k * b_in, cells)``
copies, no zero-padded weights, no index_copy of products, no zero-filled full-size gradient.

Written by hand because torch has no block-sparse CPU product: the bucketed gathers and batched matmuls of
:mod:`._block_kernel` ran the first GO level of the full human annotations (64,500 connections of 5 x 2 blocks, 128
cells, one thread) forward and backward in 35-41 ms of thread time; this kernel takes 18-19 ms, and a training step at
GO depth 3 / 4 is 1.4 / 1.6x faster (benchmarks/results/go_speed_cpu_2026-12-05.md). Its forward pass on the
eight-row product: 9.6 -> 6.5 ms for that level (bitwise the same output). The GPU keeps :mod:`._block_kernel` (one
launch per bucket). Tested against the dense reference (:meth:`BlockSparseLinear.to_dense`) in float64.

Output blocks (forward) and input blocks (backward) are independent, so with several torch CPU threads they are cut
into chunks that torch's own OpenMP team computes (:mod:`._torch_threads`); every row is computed by one thread in a
fixed order, so the result is the same for every thread count.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba import types
from torch.autograd.function import once_differentiable

from . import _torch_threads as threads
from ._block_csr_sums import _sum_rows, _sum_rows_dots
from ._block_plan import _expand, _twin_partners
from ._shared_grad import SharedPartGrad

# Reassociation lets LLVM vectorise the sums over cells; the order stays fixed for a given machine (deterministic).
_FAST = {"reassoc", "contract"}


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _backward(x, grad, weight, in_rows, grad_rows, ptr, outs, edges, grad_x, grad_w, need_x, need_w, add, zero, s0, s1):
    """Input-gradient rows and weight gradients of input blocks ``[s0, s1)``.

    Block ``s`` reads input rows ``in_rows[s] + [0, b_in)`` and writes (``add``: adds to) gradient rows
    ``grad_rows[s] + [0, b_in)``; its connections ``ptr[s]:ptr[s + 1]`` go to output rows ``outs[p]`` with weight
    ``edges[p]``, whose gradient is written once here. The input gradient sums its terms (connection, then output
    row) in that order, eight per pass (:mod:`._block_csr_sums`); with it, the weight gradients come from the same
    pass (:func:`._block_csr_sums._sum_rows_dots`), else from four input rows per pass over each output-gradient row.
    """
    b_in, b_out = weight.shape[1], weight.shape[2]
    n = x.shape[1]
    acc = np.empty((b_in, n), dtype=x.dtype)
    most = 0
    for s in range(s0, s1):
        most = max(most, ptr[s + 1] - ptr[s])
    terms = np.empty(most * b_out, dtype=np.int64)  # a block's output-gradient rows ...
    factors = np.empty((b_in, most * b_out), dtype=x.dtype)  # ... and their weights per input row
    dots = np.empty((b_in, most * b_out), dtype=x.dtype)  # ... and their weight gradients
    for s in range(s0, s1):
        r = in_rows[s]
        if need_w and not need_x:
            for p in range(ptr[s], ptr[s + 1]):
                o, e = outs[p], edges[p]
                for j in range(b_out):
                    i = 0
                    while i + 4 <= b_in:  # four input rows per pass over the output-gradient row
                        d0 = d1 = d2 = d3 = zero
                        for c in range(n):
                            v = grad[o + j, c]
                            d0 += x[r + i, c] * v
                            d1 += x[r + i + 1, c] * v
                            d2 += x[r + i + 2, c] * v
                            d3 += x[r + i + 3, c] * v
                        grad_w[e, i, j], grad_w[e, i + 1, j], grad_w[e, i + 2, j], grad_w[e, i + 3, j] = d0, d1, d2, d3
                        i += 4
                    while i < b_in:
                        total = zero
                        for c in range(n):
                            total += x[r + i, c] * grad[o + j, c]
                        grad_w[e, i, j] = total
                        i += 1
        if need_x:
            k = 0
            for p in range(ptr[s], ptr[s + 1]):
                o, e = outs[p], edges[p]
                for j in range(b_out):
                    terms[k] = o + j
                    for i in range(b_in):
                        factors[i, k] = weight[e, i, j]
                    k += 1
            if need_w:  # the weight gradients from the same reads of the term rows
                _sum_rows_dots(grad, terms, factors, k, acc, x, r, dots, zero)
                k = 0
                for p in range(ptr[s], ptr[s + 1]):
                    e = edges[p]
                    for j in range(b_out):
                        for i in range(b_in):
                            grad_w[e, i, j] = dots[i, k]
                        k += 1
            else:
                _sum_rows(grad, terms, factors, k, acc, zero)
            g = grad_rows[s]
            for i in range(b_in):
                if add:
                    for c in range(n):
                        grad_x[g + i, c] += acc[i, c]
                else:
                    for c in range(n):
                        grad_x[g + i, c] = acc[i, c]


@numba.njit(cache=True, nogil=True)
def _zero_rows(grad_x, rows, zero):
    """Zero the listed rows (gradient rows no block of the writing group covers)."""
    for r in rows:
        for c in range(grad_x.shape[1]):
            grad_x[r, c] = zero


# Job layouts of the team workers: the arrays in the kernels' argument order, then the integer flags.
_WORD = tuple(threads.HEADER_WORDS + threads.DESCRIPTOR_WORDS * k for k in range(11))


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _backward_job(data, zero):
    """:func:`_backward` over the input-block chunks of a job, for one thread of the team."""
    at, i64, w = threads.array_at, np.int64(0), _WORD
    x, grad, weight = at(data, w[0], zero, 2), at(data, w[1], zero, 2), at(data, w[2], zero, 3)
    in_rows, grad_rows, ptr = at(data, w[3], i64, 1), at(data, w[4], i64, 1), at(data, w[5], i64, 1)
    outs, edges = at(data, w[6], i64, 1), at(data, w[7], i64, 1)
    grad_x, grad_w = at(data, w[8], zero, 2), at(data, w[9], zero, 3)
    need_x, need_w, add = threads.word(data, w[10]), threads.word(data, w[10] + 1), threads.word(data, w[10] + 2)
    while True:
        start, stop = threads.next_chunk(data)
        if start < 0:
            return
        _backward(
            x, grad, weight, in_rows, grad_rows, ptr, outs, edges, grad_x, grad_w,
            need_x != 0, need_w != 0, add != 0, zero, start, stop,
        )  # fmt: skip


@functools.cache
def _team_worker(dtype: type):
    """The backward pass's team worker for float32 or float64 ``dtype``, else ``None``.

    Defined on first use (a ``cfunc`` compiles where it is defined); no closure variables, so numba's disk cache
    finds it again in the next process.
    """
    signature = types.void(types.voidptr)
    if dtype is np.float32:

        @numba.cfunc(signature, cache=True)
        def backward_float32(data):
            _backward_job(data, np.float32(0))

        return backward_float32
    if dtype is not np.float64:
        return None

    @numba.cfunc(signature, cache=True)
    def backward_float64(data):
        _backward_job(data, np.float64(0))

    return backward_float64


@dataclass(frozen=True)
class CSRGroup:
    """One connection group (block shape ``(b_in, b_out)``) as compressed block rows, both ways.

    Forward: unit ``u`` (one output block, or two with the same inputs) writes rows ``out_rows[u]`` and reads the
    connections ``fwd_ptr[u]:fwd_ptr[u + 1]`` (input row ``fwd_rows[p]`` within the group's part, weights
    ``fwd_edges[p]``). Backward: input block ``s`` reads rows ``in_rows[s]`` of the part, writes gradient rows
    ``grad_rows[s]`` and walks the connections ``bwd_ptr[s]:bwd_ptr[s + 1]`` (output row ``bwd_outs[p]``, weight
    ``bwd_edges[p]``). ``weight``: the group's parameter (several plan groups share one when a group reads several
    parts). ``writes``: the first group reading its part writes its gradient rows and zeroes
    ``zero_rows`` (those no block of it covers); later groups add to the rows. ``eval_ptr``, ``eval_rows``,
    ``eval_weight_rows``: the forward connections one input row at a time (:func:`flat_inputs`), for the forward
    product (:mod:`._block_csr_eval`).
    """

    part: int
    weight: int
    out_rows: np.ndarray
    fwd_ptr: np.ndarray
    fwd_rows: np.ndarray
    fwd_edges: np.ndarray
    in_rows: np.ndarray
    grad_rows: np.ndarray
    bwd_ptr: np.ndarray
    bwd_outs: np.ndarray
    bwd_edges: np.ndarray
    writes: bool
    zero_rows: np.ndarray
    eval_ptr: np.ndarray
    eval_rows: np.ndarray
    eval_weight_rows: np.ndarray


@dataclass(frozen=True)
class CSRPlan:
    """The kernel groups of a layer on given input row blocks: one :class:`CSRGroup` each.

    ``grad_rows[k]``: rows of part ``k``'s gradient; ``sparse_rows``: when set, part 0's gradient holds only those
    rows of the part (in that order) and is returned as a sparse tensor (see
    :attr:`BlockSparseLinear.sparse_first_part_grad`).
    """

    groups: list[CSRGroup]
    n_out: int
    grad_rows: list[int]
    sparse_rows: torch.Tensor | None


def build_csr_plan(
    shapes: list[tuple[int, int]],
    sources: list[np.ndarray],
    targets: list[np.ndarray],
    in_offsets: np.ndarray,
    out_offsets: np.ndarray,
    n_out: int,
    bounds: np.ndarray,
    sparse_first: bool = False,
) -> CSRPlan | None:
    """Plan the groups (block shape ``(b_in, b_out)``, connections ``sources`` -> ``targets``, parameter order).

    ``bounds``: the first input row of every part, then the number of input rows. A group reading several parts
    (a GO level's term-to-term connections from several deeper levels) becomes one :class:`CSRGroup` per part, so
    the parts are never stacked. ``None`` when an input block straddles two parts (the caller stacks them).
    ``sparse_first``: part 0's gradient holds only the rows of the input blocks read (with several parts: a GO level
    above the first, reading a few of the many gene nodes).
    """
    in_sizes = np.diff(np.append(in_offsets, bounds[-1]))
    block_part = np.searchsorted(bounds, in_offsets, side="right") - 1
    if np.any(in_offsets + in_sizes > bounds[np.minimum(block_part + 1, len(bounds) - 1)]):
        return None
    grad_rows = [int(b) for b in np.diff(bounds)]
    offsets = in_offsets - bounds[block_part]  # each block's first row within its part
    grad_offsets = offsets.copy()
    sparse_rows = None
    if sparse_first and len(bounds) > 2:
        touched = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *sources]))
        touched = touched[block_part[touched] == 0]
        if len(touched):
            grad_offsets[touched] = np.cumsum(in_sizes[touched]) - in_sizes[touched]
            sparse_rows = torch.as_tensor(_expand(in_offsets[touched], in_sizes[touched]))
            grad_rows[0] = len(sparse_rows)
    groups, seen = [], set()
    for index, ((b_in, _), src, dst) in enumerate(zip(shapes, sources, targets, strict=True)):
        for part in np.unique(block_part[src]):
            ids = np.flatnonzero(block_part[src] == part)  # this part's connections, as parameter indices
            s, d = src[ids], dst[ids]
            twins = _twin_partners(s, d, len(out_offsets))
            first = np.arange(len(s)) if twins is None else np.flatnonzero(twins[0] >= 0)
            order = first[np.lexsort((s[first], d[first]))]  # forward: by output block, then input block
            blocks, starts = np.unique(d[order], return_index=True)
            out_rows, edges = out_offsets[blocks][:, None], ids[order][:, None]
            if twins is not None:
                partner, h = twins
                out_rows = np.concatenate([out_rows, out_offsets[blocks + h][:, None]], axis=1)
                edges = np.stack([ids[order], ids[partner[order]]], axis=1)
            fwd_rows, fwd_ptr = offsets[s[order]], np.append(starts, len(order))
            order = np.lexsort((d, s))  # backward: by input block, then output block
            inputs, starts = np.unique(s[order], return_index=True)
            writes = int(part) not in seen  # the first group reading a part writes its gradient rows
            seen.add(int(part))
            zero_rows = np.zeros(0, dtype=np.int64)
            if writes:  # and zeroes those of the part no block of it reads (later groups add to the rows)
                covered = np.zeros(grad_rows[part], dtype=bool)
                covered[_expand(grad_offsets[inputs], np.full(len(inputs), b_in))] = True
                zero_rows = np.flatnonzero(~covered)
            arrays = {
                "out_rows": out_rows,
                "fwd_ptr": fwd_ptr,
                "fwd_rows": fwd_rows,
                "fwd_edges": edges,
                "in_rows": offsets[inputs],
                "grad_rows": grad_offsets[inputs],
                "bwd_ptr": np.append(starts, len(order)),
                "bwd_outs": out_offsets[d[order]],
                "bwd_edges": ids[order],
                "zero_rows": zero_rows,
            }
            arrays["eval_ptr"], arrays["eval_rows"], arrays["eval_weight_rows"] = flat_inputs(
                arrays["fwd_ptr"], arrays["fwd_rows"], arrays["fwd_edges"], b_in
            )
            arrays = {name: np.ascontiguousarray(a, dtype=np.int64) for name, a in arrays.items()}
            groups.append(CSRGroup(part=int(part), weight=index, writes=writes, **arrays))
    return CSRPlan(groups, int(n_out), grad_rows, sparse_rows)


def flat_inputs(
    fwd_ptr: np.ndarray, fwd_rows: np.ndarray, fwd_edges: np.ndarray, b_in: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output unit of a kernel group, its input rows one by one: ``(ptr, rows, weight_rows)``.

    ``fwd_*``: the group's forward arrays (:class:`CSRGroup`). Entry ``q = p * b_in + i`` is row ``i`` of connection
    ``p``: input row ``fwd_rows[p] + i`` and, per path ``t``, row ``fwd_edges[p, t] * b_in + i`` of the group's
    weight seen as ``(e * b_in, b_out)``; unit ``u`` owns entries ``ptr[u]:ptr[u + 1]``.
    """
    offsets = np.arange(b_in, dtype=np.int64)
    rows = (fwd_rows[:, None] + offsets).reshape(-1)
    weight_rows = (fwd_edges[:, None, :] * b_in + offsets[None, :, None]).reshape(-1, fwd_edges.shape[1])
    return fwd_ptr * b_in, np.ascontiguousarray(rows), np.ascontiguousarray(weight_rows)


def _run_backward(arrays: list, scalars: list, ptr: np.ndarray, n_rows: int) -> None:
    """Run :func:`_backward` over every input block of ``ptr``.

    On torch's CPU threads when it has several and the work is large, else on this thread. ``scalars``: the
    kernel's flags (``need_x``, ``need_w``, ``add``) as integers.
    """
    flags = [flag != 0 for flag in scalars]
    threads.run_units(
        lambda: _team_worker(arrays[0].dtype.type),
        lambda start, stop: _backward(*arrays, *flags, arrays[0].dtype.type(0), start, stop),
        arrays,
        scalars,
        ptr,
        n_rows * arrays[0].shape[1],
    )


class BlockCSRFunction(torch.autograd.Function):
    """The kernel groups of a :class:`BlockSparseLinear` (``W x + b`` of their rows) on CPU: see module docs.

    Arguments: the layer's :class:`CSRPlan`, the number of input parts, ``shared`` (``None``, or a
    :class:`._shared_grad.SharedPartGrad` and this call's token in it: part 0's gradient goes into that buffer), the
    bias (or ``None``), the parts and the groups' ``(e, b_in, b_out)`` weights. Output ``(n_out, n)``: the bias plus
    the groups' products. Differentiable once.
    """

    @staticmethod
    def forward(ctx, plan: CSRPlan, n_parts: int, shared: tuple[SharedPartGrad, int] | None, bias, *args):
        from ._block_csr_eval import block_csr_forward_eval  # that module imports this one

        parts = [p.detach().contiguous() for p in args[:n_parts]]
        weights = [w.detach().contiguous() for w in args[n_parts:]]
        out = block_csr_forward_eval(plan, parts, bias, weights)  # the product, input rows taken eight at a time
        ctx.plan, ctx.n_parts, ctx.shared = plan, n_parts, shared
        ctx.part_rows = [p.shape[0] for p in parts]
        ctx.save_for_backward(*parts, *weights)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        plan: CSRPlan = ctx.plan
        saved = ctx.saved_tensors
        parts, weights = saved[: ctx.n_parts], saved[ctx.n_parts :]
        grad = grad_out.contiguous()
        if grad.dtype != parts[0].dtype:
            grad = grad.to(parts[0].dtype)
        n, g_np = grad.shape[1], grad.numpy()
        need_parts = ctx.needs_input_grad[4 : 4 + ctx.n_parts]
        need_weights = ctx.needs_input_grad[4 + ctx.n_parts :]
        grad_parts: list[torch.Tensor | None] = [None] * ctx.n_parts
        # every connection is in exactly one plan group: each weight gradient entry is written once
        grad_weights = [torch.empty_like(w) if need else None for w, need in zip(weights, need_weights, strict=True)]
        zero = parts[0].numpy().dtype.type(0)
        shared, token = ctx.shared if ctx.shared is not None and need_parts[0] else (None, None)
        adds = False  # part 0 into the shared buffer that an earlier backward pass wrote: every group adds
        for group in plan.groups:
            need_x, need_w = bool(need_parts[group.part]), grad_weights[group.weight] is not None
            if not (need_x or need_w):
                continue
            if need_x and grad_parts[group.part] is None:
                if shared is not None and group.part == 0:
                    grad_parts[0], fresh = shared.take(token, plan.grad_rows[0], grad)
                    adds = not fresh
                else:
                    grad_parts[group.part] = grad.new_empty(plan.grad_rows[group.part], n)
                if not (adds and group.part == 0):
                    _zero_rows(grad_parts[group.part].numpy(), group.zero_rows, zero)
            grad_x = grad_parts[group.part].numpy() if need_x else np.zeros((0, n), dtype=g_np.dtype)
            grad_w = grad_weights[group.weight].numpy() if need_w else np.zeros((0, 0, 0), dtype=g_np.dtype)
            x, w = parts[group.part].numpy(), weights[group.weight].numpy()
            arrays = [
                x, g_np, w, group.in_rows, group.grad_rows, group.bwd_ptr, group.bwd_outs, group.bwd_edges, grad_x,
                grad_w,
            ]  # fmt: skip
            scalars = [int(need_x), int(need_w), int(not group.writes or (adds and group.part == 0))]
            _run_backward(arrays, scalars, group.bwd_ptr, max(len(grad_x), 1))
        if shared is not None:  # the owner, last to run, hands the sum to autograd; the other members none
            grad_parts[0] = shared.hand_over() if token == 0 else None
        elif plan.sparse_rows is not None and grad_parts[0] is not None:
            # rows of a wide first part: autograd adds them into the dense gradient another reader makes; the rows are
            # sorted and distinct, and saying so spares that addition a coalescing copy (a zero-filled gradient)
            grad_parts[0] = torch.sparse_coo_tensor(
                plan.sparse_rows.unsqueeze(0),
                grad_parts[0],
                (ctx.part_rows[0], n),
                check_invariants=False,
                is_coalesced=True,
            )
        grad_bias = grad_out.sum(1) if ctx.needs_input_grad[3] else None
        return None, None, None, grad_bias, *grad_parts, *grad_weights
