"""Inference-only kernels of :mod:`._sparse_counts`: the GO levels' gene-node products from the nonzero counts only.

A zero count gives an encoder input ``c[batch, feature] = (log1p(0) - shift) * scale``, a per-batch constant, and a
gene node reading that feature the constant activation ``h0[batch, node]``. Every GO level's gene-node product is
then ``W h = W h0[batch] + W (h - h0[batch])``: the first term (with the bias) is the same for every cell of a batch
(``base``, :func:`base_rows`), the second is nonzero only at the nonzero counts.

:func:`nonzero_deltas` lists, per gene node, the minibatch's cells with a nonzero count and their ``h - h0``
(one pass over the counts). :func:`_blocks` then works output block by output block (a GO term's neurons in one
path, padded to :data:`._lanes.LANES` rows): the block's rows for every cell start as the batch's ``base`` in a small
buffer that stays in the L1 cache, each connection (gene node -> block) adds its ``(size, width)`` weights times the
deltas of the node's nonzero cells as vector multiply-adds (:mod:`._lanes`), and the rows are written feature-major.
The weights are read once per minibatch, in order. Each block is computed by one thread in a fixed order: the result
is the same for every thread count and every call.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import types

from . import _torch_threads as threads
from ._lanes import LANES, madd_lanes


# Hand-written with the kernel below: one branch-free pass over the dense counts finds the nonzero ones and a counting
# sort groups them by feature, so that the deltas are written in the order _blocks reads them (a 256 x 4000 minibatch
# of the tutorial data: ~1.5 ms, where a branch per count and writes in cell order took ~2.6 ms).
@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def nonzero_deltas(x, limit, found, batch, shift, scale, table, fptr, fnodes, w1, b1, w2, b2, h0, n_nodes):
    """Per gene node, its cells with a nonzero count and ``h - h0`` there: ``(n_nonzero, ptr, cells, deltas)``.

    ``x (n, features)`` counts (more than ``limit`` nonzero: only ``n_nonzero`` is computed, the arrays are empty);
    ``found`` a work buffer of ``n * features + 1`` int32; ``shift``, ``scale (n_batch, features)``;
    ``table`` ``log1p`` of whole numbers (other values: ``math.log1p``); feature ``f`` feeds gene nodes
    ``fnodes[fptr[f]:fptr[f + 1]]``; node ``g`` is ``relu(w1 x + b1) + (w2 x + b2)`` (``(nodes, size)``
    parameters) with the zero-count activation ``h0[batch, g]``.
    """
    n, n_features = x.shape
    size, n_table, zero = w1.shape[1], table.shape[0], x.dtype.type(0)
    cptr = np.zeros(n + 1, dtype=np.int64)
    m = 0
    for c in range(n):  # found[cptr[c]:cptr[c + 1]]: cell c's nonzero features
        xc = x[c]
        for f in range(n_features):
            found[m] = f
            m += xc[f] != zero
        cptr[c + 1] = m
    if m > limit:
        return m, cptr[:0], cptr[:0], np.empty((0, size), dtype=x.dtype)
    fptr_x = np.zeros(n_features + 1, dtype=np.int64)  # the same entries by feature: cells and encoder inputs
    for i in range(m):
        fptr_x[found[i] + 1] += 1
    for f in range(n_features):
        fptr_x[f + 1] += fptr_x[f]
    fill = fptr_x[:-1].copy()
    by_cell = np.empty(m, dtype=np.int32)
    by_value = np.empty(m, dtype=x.dtype)
    for c in range(n):
        xc, b = x[c], batch[c]
        for i in range(cptr[c], cptr[c + 1]):
            f = found[i]
            v = xc[f]
            if v >= 0 and v < n_table and v == np.floor(v):
                lv = table[np.int64(v)]
            else:
                lv = x.dtype.type(math.log1p(v))
            p = fill[f]
            fill[f] += 1
            by_cell[p] = c
            by_value[p] = (lv - shift[b, f]) * scale[b, f]
    ptr = np.zeros(n_nodes + 1, dtype=np.int64)
    for f in range(n_features):
        for q in range(fptr[f], fptr[f + 1]):
            ptr[fnodes[q] + 1] = fptr_x[f + 1] - fptr_x[f]
    for g in range(n_nodes):
        ptr[g + 1] += ptr[g]
    cells = np.empty(ptr[n_nodes], dtype=np.int64)
    deltas = np.empty((ptr[n_nodes], size), dtype=x.dtype)
    for f in range(n_features):
        for q in range(fptr[f], fptr[f + 1]):
            g = fnodes[q]
            p = ptr[g]
            for i in range(fptr_x[f], fptr_x[f + 1]):
                c, xv = by_cell[i], by_value[i]
                b = batch[c]
                cells[p] = c
                for k in range(size):
                    h = w1[g, k] * xv + b1[g, k]
                    deltas[p, k] = (w2[g, k] * xv + b2[g, k]) + (h if h > zero else zero) - h0[b, g, k]
                p += 1
    return m, ptr, cells, deltas


@numba.njit(cache=True, nogil=True)
def base_rows(h0, bstart, bwidth, bptr, enode, eoff, weights, bias, out):
    """``out[b] = bias + sum over gene nodes g of W_g^T h0[b, g]`` in the padded rows: the all-zero cell of batch b."""
    size = h0.shape[2]
    for b in range(h0.shape[0]):
        out[b] = bias
        for blk in range(len(bstart)):
            start, width = bstart[blk], bwidth[blk]
            for e in range(bptr[blk], bptr[blk + 1]):
                g, offset = enode[e], eoff[e]
                for k in range(size):
                    v = h0[b, g, k]
                    for j in range(width):
                        out[b, start + j] += v * weights[offset + k * width + j]


# Hand-written because the dense first GO level multiplies every gene node while ~92 % of the counts are zero: the
# package defaults' RNA encoder (4000 genes, 256 cells, 8 % nonzero, one thread) takes 8 instead of 21 ms per minibatch
# with nonzero_deltas (see _sparse_counts.SPARSE_MAX_SHARE for where it pays); the explicit vector multiply-adds of
# _lanes take this kernel from ~12 to ~3.5 ms per minibatch of the tutorial data.
@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _blocks(ptr, cells, deltas, batch, bstart, bwidth, brow, bsize, bptr, enode, eoff, weights, base, out, b0, b1):
    """Output blocks ``[b0, b1)``: ``out[brow + j, c] = base[batch[c], bstart + j] + sum_e W_e^T deltas`` (j < bsize).

    Block ``blk`` has padded rows ``bstart:bstart + bwidth`` (a multiple of LANES) and connections
    ``bptr[blk]:bptr[blk + 1]``, each from gene node ``enode`` with ``(size, bwidth)`` weights at ``weights[eoff:]``.
    """
    n, size = batch.shape[0], deltas.shape[1]
    stride = max(bwidth.max(), LANES) if len(bwidth) else LANES
    acc = np.empty(n * stride, dtype=weights.dtype)  # cell c's rows of the block at c * stride: L1-resident
    for blk in range(b0, b1):
        start, width = bstart[blk], bwidth[blk]
        for c in range(n):
            row = base[batch[c]]
            for j in range(width):
                acc[c * stride + j] = row[start + j]
        for e in range(bptr[blk], bptr[blk + 1]):
            g, offset = enode[e], eoff[e]
            for j0 in range(0, width, LANES):
                if size == 4:  # the package default: one load and store of the cell's lanes per connection
                    for q in range(ptr[g], ptr[g + 1]):
                        d = (deltas[q, 0], deltas[q, 1], deltas[q, 2], deltas[q, 3])
                        madd_lanes(acc, cells[q] * stride + j0, weights, offset + j0, width, d)
                else:
                    for q in range(ptr[g], ptr[g + 1]):
                        for k in range(size):
                            madd_lanes(acc, cells[q] * stride + j0, weights, offset + k * width + j0, 0,
                                       (deltas[q, k],))  # fmt: skip
        first = brow[blk]
        for j in range(bsize[blk]):
            o = out[first + j]
            for c in range(n):
                o[c] = acc[c * stride + j]


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _blocks_job(data, zero):
    """:func:`_blocks` over the block chunks of a job, for one thread of torch's team."""
    at, i64, w, step = threads.array_at, np.int64(0), threads.HEADER_WORDS, threads.DESCRIPTOR_WORDS
    ptr, cells, deltas = at(data, w, i64, 1), at(data, w + step, i64, 1), at(data, w + 2 * step, zero, 2)
    batch, bstart, bwidth = (
        at(data, w + 3 * step, i64, 1),
        at(data, w + 4 * step, i64, 1),
        at(data, w + 5 * step, i64, 1),
    )
    brow, bsize, bptr = at(data, w + 6 * step, i64, 1), at(data, w + 7 * step, i64, 1), at(data, w + 8 * step, i64, 1)
    enode, eoff = at(data, w + 9 * step, i64, 1), at(data, w + 10 * step, i64, 1)
    weights, base, out = (
        at(data, w + 11 * step, zero, 1),
        at(data, w + 12 * step, zero, 2),
        at(data, w + 13 * step, zero, 2),
    )
    while True:
        start, stop = threads.next_chunk(data)
        if start < 0:
            return
        _blocks(ptr, cells, deltas, batch, bstart, bwidth, brow, bsize, bptr, enode, eoff, weights, base, out,
                start, stop)  # fmt: skip


@functools.cache
def _team_worker(dtype: type):
    """The team worker of :func:`_blocks` for float32 or float64 ``dtype``, else ``None``.

    Written out per kernel like :mod:`._block_csr`'s, not made by a shared factory: numba's disk cache finds a
    ``cfunc`` only when it calls a module-level function, not a closure variable.
    """
    signature = types.void(types.voidptr)
    if dtype is np.float32:

        @numba.cfunc(signature, cache=True)
        def blocks_float32(data):
            _blocks_job(data, np.float32(0))

        return blocks_float32
    if dtype is not np.float64:
        return None

    @numba.cfunc(signature, cache=True)
    def blocks_float64(data):
        _blocks_job(data, np.float64(0))

    return blocks_float64


def blocks(arrays: list[np.ndarray], n_rows: int) -> None:
    """Run :func:`_blocks` (``arrays`` in its argument order) over every block, on torch's team when large.

    ``n_rows``: rows written per cell (what decides whether handing the work to the team pays).
    """
    threads.run_units(
        lambda: _team_worker(arrays[2].dtype.type),
        lambda start, stop: _blocks(*arrays, start, stop),
        arrays,
        [],
        arrays[8],
        len(arrays[3]) * n_rows,
    )
