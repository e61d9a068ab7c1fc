"""The inference path of :class:`~scvi_networkvi.nn.BlockSparseLinear` on CPU: the weight as torch CSR matrices.

Without autograd (inference, analysis), a layer computed only as dense matmuls over mostly zero entries (a GO level
whose many input neurons mostly feed one wide UNKNOWN term) multiplies its weight as one CSR matrix per input part
instead: every structural weight is read once per batch from a compressed row layout, where the dense groups multiply
mostly zeros. The CSR structure (row pointers, columns, the order of the parameters' entries) is computed once per
input layout (:func:`csr_structure`); the values are gathered from the parameters at every call (a few hundred
thousand floats), so that the product always uses the current weights (optimiser steps do not all bump tensor version
counters). Same result as the autograd path up to float summation order. Plain torch (``torch.sparse.mm``): no
hand-written kernel.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

#: Without autograd on CPU (inference, analysis), a layer computed only as dense matmuls that multiply at least this
#: many entries per structural weight multiplies its weight as a CSR matrix instead (see
#: :meth:`BlockSparseLinear.forward_t`). Measured on one CPU thread, 128 cells: a CSR product costs about 8-18 dense
#: entries per weight (the second GO level of the tutorial data, 11.7 entries per weight: 11 -> 5.5 ms per batch). Where
#: the CPU block kernel applies (``cpu_kernel``), it runs inference too: faster than this path (the package defaults'
#: second GO level: 27 ms per batch here, under the profiler).
INFERENCE_CSR_MIN_DENSE_RATIO = 8.0

#: Per input part: ``(entry order, row pointers, columns, width)`` of its CSR matrix, or ``None`` (no weight reads it).
CSRStructure = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int] | None]


def csr_structure(
    rows: torch.Tensor, cols: torch.Tensor, n_out: int, sizes: tuple[int, ...], device: torch.device
) -> CSRStructure:
    """The CSR structure of a weight with entries at ``(rows, cols)`` (parameter order), per input part of ``sizes``.

    Parameters
    ----------
    rows, cols
        Output and input neuron of every structural weight, in the parameters' order.
    n_out
        Output neurons.
    sizes
        Input rows of each part.
    device
        Where the index tensors go.
    """
    rows, cols = rows.cpu().numpy(), cols.cpu().numpy()
    order = np.lexsort((cols, rows))  # CSR order: by row, then column
    bounds = np.cumsum([0, *sizes])
    plans: CSRStructure = []
    for k in range(len(sizes)):
        sel = order[(cols[order] >= bounds[k]) & (cols[order] < bounds[k + 1])]
        if not len(sel):
            plans.append(None)
            continue
        crow = np.concatenate([[0], np.cumsum(np.bincount(rows[sel], minlength=n_out))])
        arrays = (torch.as_tensor(a, dtype=torch.int64, device=device) for a in (sel, crow, cols[sel] - bounds[k]))
        plans.append((*arrays, int(sizes[k])))
    return plans


def csr_product(
    weights: Sequence[torch.Tensor],
    bias: torch.Tensor | None,
    n_out: int,
    plans: CSRStructure,
    parts: Sequence[torch.Tensor],
) -> torch.Tensor | None:
    """``W x + b`` as one sparse-dense product per input part; ``None`` when no weight reads any part.

    Parameters
    ----------
    weights
        The layer's block parameters (their values in parameter order make up the structural weights).
    bias
        ``(n_out,)`` or ``None``.
    n_out
        Output neurons.
    plans
        :func:`csr_structure` of the parts' sizes.
    parts
        Feature-major ``(rows, n)`` inputs that stacked make up the input rows.
    """
    dtype = parts[0].dtype
    values = torch.cat([w.detach().reshape(-1) for w in weights]).to(dtype)
    out = None
    for part, plan in zip(parts, plans, strict=True):
        if plan is None:
            continue
        order, crow, col, n_cols = plan
        with warnings.catch_warnings():  # torch's one-time "sparse CSR support is in beta" notice: not the user's
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
            matrix = torch.sparse_csr_tensor(
                crow, col, values.index_select(0, order), (n_out, n_cols), check_invariants=False
            )
        product = torch.sparse.mm(matrix, part.contiguous())
        out = product if out is None else out.add_(product)
    if out is not None and bias is not None:
        out.add_(bias.to(dtype)[:, None])
    return out
