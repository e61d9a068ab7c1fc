"""Run a compiled (numba) kernel on torch's own CPU threads.

torch's CPU operations run in an OpenMP team whose threads keep spinning for a while after each operation. A kernel
split over a second pool (Python threads, numba's own OpenMP or TBB layer) competes with those spinning threads for
the cores and gains nothing inside a training step (measured: 1.8x faster alone, no faster in the step). Handing
the kernel to the same OpenMP team instead, through libgomp's ``GOMP_parallel`` entry point, puts the waiting
threads to work at once.

A kernel is a numba ``cfunc`` taking one pointer: an int64 job (:func:`describe`) whose first word is a chunk
counter, then the number of chunks, the address of the chunk bounds and array descriptors. Each thread of the team
takes chunks from the counter (:func:`next_chunk`, an atomic add) until none is left, so uneven chunks balance out.
A chunk's result does not depend on which thread computes it: the output is the same for every thread count.

Written by hand because neither torch nor numba offers a way to run foreign code in torch's team; where torch does
not use libgomp (another parallel backend, or a runtime without the entry point) :func:`team_size` is 1 and callers
run their serial kernel. Speed it buys (benchmarks/HISTORY.md, 2026-11-27, two threads of an idle 2-core Xeon VM): the
fused kernel's forward 3.3 -> 2.2 ms, a module step 60.9 -> 55.6-56.8 ms. Every kernel run here is tested to give its
serial result bit for bit.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from collections.abc import Callable, Sequence

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import carray, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from ._numba_cache import ensure_cache_location

logger = logging.getLogger(__name__)
# The first cached kernels of the package are decorated below (every kernel module imports this one first).
ensure_cache_location()

# A job's layout (int64 words): counter, number of chunks, address of the bounds, then DESCRIPTOR_WORDS per array
# (address and up to three sizes), then the scalars.
HEADER_WORDS = 3
DESCRIPTOR_WORDS = 4
# Kernels writing fewer elements run on the calling thread: handing them to the team costs more than it saves.
MIN_TEAM_ELEMENTS = 1 << 18


@intrinsic
def _pointer(typingctx, address):
    """The int64 ``address`` as a ``void *`` (for :func:`numba.carray`)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return types.voidptr(types.int64), codegen


@intrinsic
def _address(typingctx, pointer):
    """A ``void *`` as an int64 address."""

    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], ir.IntType(64))

    return types.int64(types.voidptr), codegen


@intrinsic
def _fetch_add(typingctx, address, value):
    """Atomically add ``value`` to the int64 at ``address``; returns the previous value."""

    def codegen(context, builder, signature, args):
        target = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.atomic_rmw("add", target, args[1], "monotonic")

    return types.int64(types.int64, types.int64), codegen


@numba.njit(cache=True, nogil=True)
def word(data, k):
    """Word ``k`` of the job ``data`` (the scalars follow the array descriptors)."""
    return carray(data, (k + 1,), np.int64)[k]


@numba.njit(cache=True, nogil=True)
def next_chunk(data):
    """The next chunk's ``(start, stop)`` bounds, or ``(-1, -1)`` when every chunk is taken."""
    job = carray(data, (HEADER_WORDS,), np.int64)
    chunk = _fetch_add(_address(data), 1)
    if chunk >= job[1]:
        return -1, -1
    bounds = carray(_pointer(job[2]), (job[1] + 1,), np.int64)
    return bounds[chunk], bounds[chunk + 1]


def array_at(data, k, like, ndim):
    """The array whose descriptor starts at word ``k`` of the job ``data``.

    ``ndim`` (1-3, a literal) dimensions and the dtype of the scalar ``like``. For compiled code only (a numba
    ``overload``): the dtype and ``ndim`` are fixed where it is called.
    """
    raise NotImplementedError("array_at is only available inside numba-compiled code.")


@overload(array_at, jit_options={"cache": True})
def _array_at(data, k, like, ndim):
    dtype = as_dtype(like)
    rank = getattr(ndim, "literal_value", None)
    if rank == 1:
        return lambda data, k, like, ndim: carray(_pointer(word(data, k)), (word(data, k + 1),), dtype)
    if rank == 2:
        return lambda data, k, like, ndim: carray(
            _pointer(word(data, k)), (word(data, k + 1), word(data, k + 2)), dtype
        )
    if rank == 3:
        return lambda data, k, like, ndim: carray(
            _pointer(word(data, k)), (word(data, k + 1), word(data, k + 2), word(data, k + 3)), dtype
        )
    return None


@functools.cache
def _gomp_parallel() -> Callable | None:
    """The ``GOMP_parallel`` entry point of the OpenMP runtime torch uses, or ``None``."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        # dlsym through torch's extension module searches its dependencies, so this is the OpenMP runtime that
        # torch's own operations use (a process may hold another copy, e.g. numba's or the system's).
        library = ctypes.CDLL(torch._C.__file__, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        parallel = library.GOMP_parallel
    except (OSError, AttributeError) as error:
        logger.debug("torch's OpenMP team is not reachable (%s): fused kernels run on one thread.", error)
        return None
    parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    return parallel


def team_size() -> int:
    """How many threads :func:`run` uses: torch's CPU thread count, or 1 where its team is not reachable."""
    threads = torch.get_num_threads()
    return threads if threads > 1 and _gomp_parallel() is not None else 1


def chunk_bounds(cumulative_cost: np.ndarray, n_chunks: int) -> np.ndarray:
    """Bounds ``[0, ..., n]`` of at most ``n_chunks`` consecutive ranges of ``n`` items of about equal cost.

    ``cumulative_cost``: ``n + 1`` non-decreasing values, the cost of items ``[0, i)`` at ``i`` (e.g. a compressed
    list's pointer array plus ``arange(n + 1)`` for a cost of one per item and one per entry).
    """
    n = len(cumulative_cost) - 1
    targets = np.linspace(cumulative_cost[0], cumulative_cost[-1], n_chunks + 1)
    bounds = np.searchsorted(cumulative_cost, targets)
    bounds[0], bounds[-1] = 0, n
    return np.unique(bounds).astype(np.int64)


def describe(arrays: Sequence[np.ndarray], scalars: Sequence[int], bounds: np.ndarray) -> np.ndarray:
    """The int64 job of a kernel: header, one descriptor per (C-contiguous) array, then the integer scalars.

    The caller keeps ``arrays`` and ``bounds`` alive until :func:`run` returns (the job holds raw addresses).
    """
    if bounds.dtype != np.int64 or not bounds.flags.c_contiguous or bounds.ndim != 1:
        raise ValueError("describe: the chunk bounds must be a contiguous 1-D int64 array.")
    job = np.zeros(HEADER_WORDS + DESCRIPTOR_WORDS * len(arrays) + len(scalars), dtype=np.int64)
    job[1], job[2] = len(bounds) - 1, bounds.__array_interface__["data"][0]
    for k, array in enumerate(arrays):
        if not array.flags.c_contiguous or array.ndim >= DESCRIPTOR_WORDS:
            raise ValueError(f"describe: array {k} must be C-contiguous with at most 3 dimensions.")
        start = HEADER_WORDS + DESCRIPTOR_WORDS * k
        job[start] = array.__array_interface__["data"][0]
        job[start + 1 : start + 1 + array.ndim] = array.shape
    job[HEADER_WORDS + DESCRIPTOR_WORDS * len(arrays) :] = scalars
    return job


def run(kernel, job: np.ndarray, n_threads: int) -> None:
    """Run the ``cfunc`` ``kernel`` on ``job`` with ``n_threads`` threads of torch's team (this thread included)."""
    parallel = _gomp_parallel()
    if parallel is None:
        raise RuntimeError("torch's OpenMP team is not reachable; check team_size() before calling run().")
    job[0] = 0
    parallel(kernel.address, job.ctypes.data, n_threads, 0)


def run_units(
    workers: Callable[[], object | None],
    serial: Callable[[int, int], None],
    arrays: Sequence[np.ndarray],
    scalars: Sequence[int],
    ptr: np.ndarray,
    n_outputs: int,
) -> None:
    """Run a kernel over the units of a compressed list ``ptr`` (unit ``i`` costs one plus its ``ptr`` entries).

    On the team (:func:`run`) in a few chunks per thread when torch has several threads, there are several units,
    the kernel writes at least :data:`MIN_TEAM_ELEMENTS` values and ``workers()`` gives its ``cfunc`` (``None``: no
    team worker for this dtype); else ``serial(0, n_units)`` on this thread.
    """
    n_units = len(ptr) - 1
    # one unit cannot be split: handing it to the team would only add the hand-over while the other threads idle
    team = team_size() if n_outputs >= MIN_TEAM_ELEMENTS and n_units > 1 else 1
    worker = workers() if team > 1 else None
    if worker is None:
        serial(0, n_units)
        return
    bounds = chunk_bounds(ptr + np.arange(n_units + 1), 4 * team)  # units differ in cost: the counter evens it out
    run(worker, describe(arrays, scalars, bounds), team)
