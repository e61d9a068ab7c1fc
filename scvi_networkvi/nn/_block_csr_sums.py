"""The backward sums of the CPU block kernel (:mod:`._block_csr`): an input block's gradient rows, several terms a pass.

Input block ``s`` of a :class:`~scvi_networkvi.nn.BlockSparseLinear` gets the gradient ``sum_k factors[i, k]
grad[terms[k]]`` per input row ``i`` (its connections' output-gradient rows, each times the weight between them);
the weight gradients are the dot products of those term rows with the block's input rows. Both are taken from the
same loads of each term row, several terms per pass over the cells, so that each load and store of the accumulated
row in the L1 buffer carries several multiply-adds. Tested against numpy and one term per pass in
``tests/test_block_csr.py``, and through the kernel against the dense reference and the bucketed GPU kernel.
"""

from __future__ import annotations

import numba

# Reassociation lets LLVM vectorise the dot products over cells; the order stays fixed for a given machine.
_FAST = {"reassoc", "contract"}


# Hand-written in this form because one term per pass is bound by the loads and stores of the accumulated row: eight
# terms per pass (each term row's view made once for all input rows), with the weight gradients four input rows per
# pass, take the first GO level's backward pass (full human annotations, depth 3, 128 cells, one thread) from 11.7 to
# 9.9 ms (its input-gradient half 5.8 -> 5.0 ms from making the views once).
@numba.njit(cache=True, fastmath={"contract"}, nogil=True)
def _sum_rows(grad, terms, factors, count, acc, zero):
    """``acc[i] = sum_k factors[i, k] * grad[terms[k]]`` over ``k < count``, fused multiply-adds in ``k`` order.

    Eight terms per pass over the cells, one after the other (contraction only, no reassociation): bitwise the result
    of adding them one per pass.
    """
    n = acc.shape[1]
    for i in range(acc.shape[0]):
        for c in range(n):
            acc[i, c] = zero
    q = 0
    while q + 8 <= count:
        g0, g1, g2, g3 = grad[terms[q]], grad[terms[q + 1]], grad[terms[q + 2]], grad[terms[q + 3]]
        g4, g5, g6, g7 = grad[terms[q + 4]], grad[terms[q + 5]], grad[terms[q + 6]], grad[terms[q + 7]]
        for i in range(acc.shape[0]):
            a, f = acc[i], factors[i]
            v0, v1, v2, v3, v4, v5, v6, v7 = f[q], f[q + 1], f[q + 2], f[q + 3], f[q + 4], f[q + 5], f[q + 6], f[q + 7]
            for c in range(n):
                t = a[c] + v0 * g0[c]
                t = t + v1 * g1[c]
                t = t + v2 * g2[c]
                t = t + v3 * g3[c]
                t = t + v4 * g4[c]
                t = t + v5 * g5[c]
                t = t + v6 * g6[c]
                a[c] = t + v7 * g7[c]
        q += 8
    while q < count:
        g0 = grad[terms[q]]
        for i in range(acc.shape[0]):
            a, v0 = acc[i], factors[i, q]
            for c in range(n):
                a[c] += v0 * g0[c]
        q += 1


# Written out beside _sum_rows rather than sharing its loop: numba has no cheap way to make the dot products optional
# inside one unrolled loop, and _sum_rows (no weight gradients asked for: frozen weights) must not pay for them.
# The weight gradients taken in the input-gradient pass (each term row loaded once for both): the first GO level's
# backward pass (full human annotations, depth 3, 128 cells, one thread) 10.5 -> 9.6 ms, a module step 3 % faster.
@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _sum_rows_dots(grad, terms, factors, count, acc, x, r, dots, zero):
    """:func:`_sum_rows`, and ``dots[i, k] = x[r + i] . grad[terms[k]]`` from the same loads of the term rows.

    The sums into ``acc`` are bitwise those of :func:`_sum_rows`; the dot products are reassociated (vectorised over
    the cells), so they differ from :func:`._block_csr._backward`'s weight-gradient-only loop by float rounding.
    """
    n = acc.shape[1]
    for i in range(acc.shape[0]):
        for c in range(n):
            acc[i, c] = zero
    q = 0
    while q + 8 <= count:
        g0, g1, g2, g3 = grad[terms[q]], grad[terms[q + 1]], grad[terms[q + 2]], grad[terms[q + 3]]
        g4, g5, g6, g7 = grad[terms[q + 4]], grad[terms[q + 5]], grad[terms[q + 6]], grad[terms[q + 7]]
        for i in range(acc.shape[0]):
            a, f, xi = acc[i], factors[i], x[r + i]
            v0, v1, v2, v3, v4, v5, v6, v7 = f[q], f[q + 1], f[q + 2], f[q + 3], f[q + 4], f[q + 5], f[q + 6], f[q + 7]
            d0 = d1 = d2 = d3 = d4 = d5 = d6 = d7 = zero
            for c in range(n):
                u = xi[c]
                h0, h1, h2, h3, h4, h5, h6, h7 = g0[c], g1[c], g2[c], g3[c], g4[c], g5[c], g6[c], g7[c]
                t = a[c] + v0 * h0
                t = t + v1 * h1
                t = t + v2 * h2
                t = t + v3 * h3
                t = t + v4 * h4
                t = t + v5 * h5
                t = t + v6 * h6
                a[c] = t + v7 * h7
                d0 += u * h0
                d1 += u * h1
                d2 += u * h2
                d3 += u * h3
                d4 += u * h4
                d5 += u * h5
                d6 += u * h6
                d7 += u * h7
            dots[i, q], dots[i, q + 1], dots[i, q + 2], dots[i, q + 3] = d0, d1, d2, d3
            dots[i, q + 4], dots[i, q + 5], dots[i, q + 6], dots[i, q + 7] = d4, d5, d6, d7
        q += 8
    # then four terms per pass, then one: all GO levels' backward passes at depth 4 14.7 -> 14.2 ms (the deep levels'
    # blocks have few terms)
    while q + 4 <= count:
        g0, g1, g2, g3 = grad[terms[q]], grad[terms[q + 1]], grad[terms[q + 2]], grad[terms[q + 3]]
        for i in range(acc.shape[0]):
            a, f, xi = acc[i], factors[i], x[r + i]
            v0, v1, v2, v3 = f[q], f[q + 1], f[q + 2], f[q + 3]
            d0 = d1 = d2 = d3 = zero
            for c in range(n):
                u, h0, h1, h2, h3 = xi[c], g0[c], g1[c], g2[c], g3[c]
                t = a[c] + v0 * h0
                t = t + v1 * h1
                t = t + v2 * h2
                a[c] = t + v3 * h3
                d0 += u * h0
                d1 += u * h1
                d2 += u * h2
                d3 += u * h3
            dots[i, q], dots[i, q + 1], dots[i, q + 2], dots[i, q + 3] = d0, d1, d2, d3
        q += 4
    while q < count:
        g0 = grad[terms[q]]
        for i in range(acc.shape[0]):
            a, v0, xi = acc[i], factors[i, q], x[r + i]
            d0 = zero
            for c in range(n):
                h0 = g0[c]
                a[c] += v0 * h0
                d0 += xi[c] * h0
            dots[i, q] = d0
        q += 1
