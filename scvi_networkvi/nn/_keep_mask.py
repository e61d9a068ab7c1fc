"""Dropout keep masks for CPU tensors, drawn by a counter-based generator in a compiled loop.

torch's CPU generator (Mersenne Twister) produces one 32-bit draw per element serially and costs more than the gene
layer that the mask drops out; numpy's PCG64 is faster but writes its draws to memory before they are compared. Here
the mask is written directly: SplitMix64's output function (Steele, Lea & Flood 2014; it seeds numpy's and Java's
generators and passes BigCrush as a counter-based generator) applied to ``seed + (k + 1) * golden_gamma`` gives 64
bits for elements ``k`` and ``k + ceil(n / 2)``. The seed is one draw from torch's generator, so ``torch.manual_seed``
fixes every mask. A 4000 x 5 x 128 mask (the tutorial's gene layer) takes 0.75 ms on one core of a 2-core Xeon VM,
3.5 ms with PCG64. Large masks are drawn in chunks by torch's CPU threads (:mod:`._torch_threads`); every element
depends only on the seed and its position, so the mask is the same for every thread count.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numba
import numpy as np
import torch
from numba import types

from . import _torch_threads as threads

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(seed, k):
    """Output ``k`` of SplitMix64 started at ``seed``."""
    z = seed + np.uint64(k + 1) * _GOLDEN_GAMMA
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def _draw(seed, threshold, out, start, stop):
    """Elements ``k`` and ``k + ceil(n / 2)`` of ``out`` from the lower and upper 32 bits of output ``k``.

    For ``k`` in ``[start, stop)``, ``stop <= n // 2``; the range that ends at ``n // 2`` also writes the middle
    element of an odd ``n``. 1 where the bits are at least ``threshold``, else 0.
    """
    n = out.shape[0]
    half = n - n // 2
    t = np.uint64(threshold)
    low = np.uint64(0xFFFFFFFF)
    # Written through slices with a loop index from 0: numba must handle a negative index of ``out`` for a loop
    # from ``start`` (a wraparound branch per store), which stops LLVM from vectorising (3x slower); from 0 it need not.
    lower, upper = out[start:stop], out[start + half : stop + half]
    for i in range(stop - start):  # both halves used: no branch in the loop (it vectorises)
        z = _mix(seed, start + i)
        lower[i] = (z & low) >= t
        upper[i] = (z >> np.uint64(32)) >= t
    if stop == n // 2 and half > n // 2:  # odd n: the middle element has no partner
        out[half - 1] = (_mix(seed, half - 1) & low) >= t


@numba.njit(cache=True, nogil=True)
def _draw_job(data, like):
    """:func:`_draw` over the chunks of a job (``out`` of ``like``'s dtype, then seed and threshold)."""
    out = threads.array_at(data, threads.HEADER_WORDS, like, 1)
    scalars = threads.HEADER_WORDS + threads.DESCRIPTOR_WORDS
    seed, threshold = np.uint64(threads.word(data, scalars)), threads.word(data, scalars + 1)
    while True:
        start, stop = threads.next_chunk(data)
        if start < 0:
            return
        _draw(seed, threshold, out, start, stop)


@functools.cache
def _team_worker(dtype: type):
    """:func:`_draw_job` as a ``cfunc`` for ``dtype``: uint8, float32 or float64, ``None`` for others.

    Defined on first use, without closure variables, like the fused kernel's workers.
    """
    signature = types.void(types.voidptr)
    if dtype is np.uint8:

        @numba.cfunc(signature, cache=True)
        def draw_uint8(data):
            _draw_job(data, np.uint8(0))

        return draw_uint8
    if dtype is np.float32:

        @numba.cfunc(signature, cache=True)
        def draw_float32(data):
            _draw_job(data, np.float32(0))

        return draw_float32
    if dtype is np.float64:

        @numba.cfunc(signature, cache=True)
        def draw_float64(data):
            _draw_job(data, np.float64(0))

        return draw_float64
    return None


def _draw_all(seed: np.uint64, threshold: int, out: np.ndarray) -> None:
    """Fill the flat ``out``: on torch's CPU threads when it is large and there are several, else here."""
    pairs = out.shape[0] // 2
    team = threads.team_size() if out.shape[0] >= threads.MIN_TEAM_ELEMENTS else 1
    worker = _team_worker(out.dtype.type) if team > 1 else None
    if worker is None:
        _draw(seed, threshold, out, 0, pairs)
        return
    bounds = np.linspace(0, pairs, 4 * team + 1).astype(np.int64)
    scalars = [int(np.array(seed, dtype=np.uint64).view(np.int64)), threshold]
    threads.run(worker, threads.describe([out], scalars, bounds), team)


def keep_mask(shape: Sequence[int], p: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A CPU tensor of 0/1 (``dtype``: float or ``torch.uint8``), each element 1 with probability ``1 - p``.

    ``0 < p < 1``; the elements are independent. Each element compares 32 random bits with ``round(p * 2**32)``: the drop probability is ``p`` to within
    ``2**-32`` (torch's own ``bernoulli_`` resolves ``2**-24``).
    """
    seed = np.uint64(int(torch.randint(0, 2**62, ()).item()))
    threshold = min(round(p * 2**32), 2**32)
    target_dtype = torch.float32 if dtype == torch.bfloat16 else dtype  # numba has no bfloat16
    mask = torch.empty(tuple(shape), dtype=target_dtype)
    _draw_all(seed, threshold, mask.numpy().reshape(-1))
    return mask.to(dtype)
