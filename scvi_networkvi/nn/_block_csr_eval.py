"""The forward product of the CPU block kernel (:mod:`._block_csr`): input rows taken eight at a time.

The forward product of a :class:`~scvi_networkvi.nn.BlockSparseLinear` on CPU, without autograd (latents,
``nvi.tl.embed``, importance activations: :func:`block_csr_forward_eval` is called directly, no autograd node) and
inside :class:`._block_csr.BlockCSRFunction`'s forward pass in training. Each output unit's input rows (every
connection's ``b_in`` rows, in the kernel's connection order) form one flat list; eight of them are multiplied into
an output row per pass over the cells, so that each load and store of the output row in the L1 buffer carries eight
multiply-adds instead of one.

The fused multiply-adds run one after the other in the connection order (no reassociation): the one-row-at-a-time
loop this replaced gave bitwise the same result. Every output row is computed by one thread in a fixed order, so the
result is the same for every thread count and every call. Tested against the plain-torch dense reference
(:meth:`BlockSparseLinear.to_dense`) in ``tests/test_block_csr.py``.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import torch
from numba import types

from . import _torch_threads as threads
from ._block_csr import _WORD, CSRPlan

# Contraction only: the sums keep the training kernel's order (fused multiply-adds in sequence), so that both give
# bitwise the same products; nothing is reassociated.
_CONTRACT = {"contract"}


# Hand-written because a one-row axpy is bound by the output row's loads and stores: taking eight input rows per pass
# runs the first GO level of the package defaults (4000 genes, 128 cells, one thread) in 8.4 instead of 14.3 ms per
# minibatch (full human annotations at GO depth 3, tutorial block sizes: 9.6 -> 6.5 ms).
@numba.njit(cache=True, fastmath=_CONTRACT, nogil=True)
def _forward_eval(x, weight, out_rows, ptr, rows, weight_rows, out, u0, u1):
    """``out[unit rows] += sum_q weight[weight_rows[q]]^T x[rows[q]]`` for units ``[u0, u1)``, eight ``q`` a pass.

    ``weight`` is ``(e * b_in, b_out)``, ``out_rows (units, m)`` the first output row of each of the unit's ``m``
    blocks, ``weight_rows (entries, m)`` the weight row of each entry and block.
    """
    b_out = weight.shape[1]
    m, n = out_rows.shape[1], x.shape[1]
    acc = np.empty((m * b_out, n), dtype=x.dtype)
    for u in range(u0, u1):
        for t in range(m):
            for j in range(b_out):
                o = out_rows[u, t] + j
                for c in range(n):
                    acc[t * b_out + j, c] = out[o, c]
        q, stop = ptr[u], ptr[u + 1]
        while q + 8 <= stop:
            x0, x1, x2, x3 = x[rows[q]], x[rows[q + 1]], x[rows[q + 2]], x[rows[q + 3]]
            x4, x5, x6, x7 = x[rows[q + 4]], x[rows[q + 5]], x[rows[q + 6]], x[rows[q + 7]]
            for t in range(m):
                e = weight_rows[q : q + 8, t]
                e0, e1, e2, e3, e4, e5, e6, e7 = e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]
                for j in range(b_out):
                    a = acc[t * b_out + j]
                    v0, v1, v2, v3 = weight[e0, j], weight[e1, j], weight[e2, j], weight[e3, j]
                    v4, v5, v6, v7 = weight[e4, j], weight[e5, j], weight[e6, j], weight[e7, j]
                    for c in range(n):  # the training kernel's order: one fused multiply-add after the other
                        s = a[c] + v0 * x0[c]
                        s = s + v1 * x1[c]
                        s = s + v2 * x2[c]
                        s = s + v3 * x3[c]
                        s = s + v4 * x4[c]
                        s = s + v5 * x5[c]
                        s = s + v6 * x6[c]
                        a[c] = s + v7 * x7[c]
            q += 8
        while q < stop:
            x0 = x[rows[q]]
            for t in range(m):
                w0 = weight[weight_rows[q, t]]
                for j in range(b_out):
                    a = acc[t * b_out + j]
                    v0 = w0[j]
                    for c in range(n):
                        a[c] += v0 * x0[c]
            q += 1
        for t in range(m):
            for j in range(b_out):
                o = out_rows[u, t] + j
                for c in range(n):
                    out[o, c] = acc[t * b_out + j, c]


@numba.njit(cache=True, nogil=True, fastmath=_CONTRACT)
def _forward_eval_job(data, zero):
    """:func:`_forward_eval` over the unit chunks of a job, for one thread of torch's team."""
    at, i64, w = threads.array_at, np.int64(0), _WORD
    x, weight, out_rows = at(data, w[0], zero, 2), at(data, w[1], zero, 2), at(data, w[2], i64, 2)
    ptr, rows, weight_rows, out = (
        at(data, w[3], i64, 1),
        at(data, w[4], i64, 1),
        at(data, w[5], i64, 2),
        at(data, w[6], zero, 2),
    )
    while True:
        start, stop = threads.next_chunk(data)
        if start < 0:
            return
        _forward_eval(x, weight, out_rows, ptr, rows, weight_rows, out, start, stop)


@functools.cache
def _team_worker(dtype: type):
    """The team worker of :func:`_forward_eval` for float32 or float64 ``dtype``, else ``None`` (see _block_csr)."""
    signature = types.void(types.voidptr)
    if dtype is np.float32:

        @numba.cfunc(signature, cache=True)
        def forward_eval_float32(data):
            _forward_eval_job(data, np.float32(0))

        return forward_eval_float32
    if dtype is not np.float64:
        return None

    @numba.cfunc(signature, cache=True)
    def forward_eval_float64(data):
        _forward_eval_job(data, np.float64(0))

    return forward_eval_float64


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd records an operation on ``tensors`` (grad mode on and one of them requires a gradient)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def block_csr_forward_eval(
    plan: CSRPlan, parts: list[torch.Tensor], bias: torch.Tensor | None, weights: list[torch.Tensor]
) -> torch.Tensor:
    """``W x + b`` of the plan's groups without autograd: the forward result of ``BlockCSRFunction``.

    Parameters
    ----------
    plan
        The layer's CPU kernel plan on these input parts.
    parts
        Feature-major input row blocks ``(rows, n)`` (float32 or float64, CPU).
    bias
        ``(n_out,)`` or ``None``.
    weights
        The groups' ``(e, b_in, b_out)`` parameters.

    Returns
    -------
    ``(n_out, n)``, a new tensor.
    """
    parts = [p.detach().contiguous() for p in parts]
    n, dtype = parts[0].shape[1], parts[0].dtype
    if bias is None:
        out = parts[0].new_zeros(plan.n_out, n)
    else:
        out = bias.detach().to(dtype)[:, None].expand(-1, n).contiguous()
    o = out.numpy()
    for group in plan.groups:
        w = weights[group.weight].detach().to(dtype).contiguous()
        ptr = group.eval_ptr
        arrays = [
            parts[group.part].numpy(), w.view(-1, w.shape[2]).numpy(), group.out_rows, ptr, group.eval_rows,
            group.eval_weight_rows, o,
        ]  # fmt: skip
        threads.run_units(
            lambda: _team_worker(o.dtype.type),
            lambda start, stop, arrays=arrays: _forward_eval(*arrays, start, stop),
            arrays,
            [],
            ptr,
            len(o) * n,
        )
    return out
