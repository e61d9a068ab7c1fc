"""Kernels on torch's own CPU threads: chunking, job layout and a run by the team."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from numba import types

from scvi_networkvi.nn import _torch_threads as threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_chunk_bounds_cover_every_item_once_with_balanced_cost():
    cost = np.array([1, 1, 1, 1, 10, 1, 1, 1, 1, 1, 1, 10], dtype=np.int64)
    bounds = threads.chunk_bounds(np.concatenate([[0], np.cumsum(cost)]), 4)
    assert bounds[0] == 0 and bounds[-1] == len(cost)
    assert (np.diff(bounds) > 0).all() and len(bounds) <= 5
    totals = np.add.reduceat(cost, bounds[:-1])
    assert totals.max() <= 2 * cost.sum() / 4  # no chunk holds more than twice its share
    assert threads.chunk_bounds(np.arange(4), 8).tolist() == [0, 1, 2, 3]  # never empty chunks
    assert threads.chunk_bounds(np.array([5, 7, 9]), 2).tolist() == [0, 1, 2]  # the cost need not start at 0


def test_describe_lays_out_arrays_and_scalars_and_refuses_strided_arrays():
    a, b = np.zeros((2, 3), dtype=np.float32), np.arange(4, dtype=np.int64)
    bounds = np.array([0, 2, 4], dtype=np.int64)
    job = threads.describe([a, b], [7], bounds)
    header, words = threads.HEADER_WORDS, threads.DESCRIPTOR_WORDS
    assert job[1] == 2 and job[2] == bounds.ctypes.data
    assert job[header : header + 4].tolist() == [a.ctypes.data, 2, 3, 0]
    assert job[header + words : header + words + 2].tolist() == [b.ctypes.data, 4]
    assert job[-1] == 7
    with pytest.raises(ValueError, match="C-contiguous"):
        threads.describe([a[:, ::2]], [], bounds)
    with pytest.raises(ValueError, match="int64"):
        threads.describe([a], [], bounds.astype(np.int32))


@numba.cfunc(types.void(types.voidptr))
def _count_visits(data):
    counts = threads.array_at(data, threads.HEADER_WORDS, np.int64(0), 1)
    while True:
        start, stop = threads.next_chunk(data)
        if start < 0:
            return
        for i in range(start, stop):
            counts[i] += 1


@pytest.mark.skipif(
    "parallel backend: OpenMP" not in torch.__config__.parallel_info(), reason="torch does not use OpenMP here"
)
def test_the_team_takes_every_chunk_exactly_once(two_threads):
    assert threads.team_size() == 2  # torch's OpenMP runtime was found (no silent fall back to one thread)
    counts = np.zeros(1000, dtype=np.int64)
    bounds = threads.chunk_bounds(np.arange(1001), 64)
    job = threads.describe([counts], [], bounds)
    for _ in range(50):  # a chunk taken twice or never would show as a count off by one
        threads.run(_count_visits, job, 2)
    assert (counts == 50).all()
    torch.set_num_threads(1)
    assert threads.team_size() == 1


def test_run_refuses_when_no_team_is_reachable(monkeypatch):
    monkeypatch.setattr(threads, "_gomp_parallel", lambda: None)
    assert threads.team_size() == 1
    with pytest.raises(RuntimeError, match="team_size"):
        threads.run(_count_visits, np.zeros(3, dtype=np.int64), 2)


@pytest.mark.skipif(
    "parallel backend: OpenMP" not in torch.__config__.parallel_info(), reason="torch does not use OpenMP here"
)
def test_run_units_hands_large_work_to_the_team_and_small_or_workerless_work_to_the_serial_kernel(two_threads):
    ptr = np.arange(1001, dtype=np.int64)  # 1000 units of one entry each
    counts = np.zeros(1000, dtype=np.int64)
    serial_calls = []

    def serial(start: int, stop: int) -> None:
        serial_calls.append((start, stop))
        counts[start:stop] += 1

    threads.run_units(lambda: _count_visits, serial, [counts], [], ptr, threads.MIN_TEAM_ELEMENTS)
    assert serial_calls == [] and (counts == 1).all()  # the team took every unit once
    threads.run_units(lambda: _count_visits, serial, [counts], [], ptr, threads.MIN_TEAM_ELEMENTS - 1)
    assert serial_calls == [(0, 1000)] and (counts == 2).all()  # too small to hand over
    threads.run_units(lambda: None, serial, [counts], [], ptr, threads.MIN_TEAM_ELEMENTS)
    assert serial_calls == [(0, 1000), (0, 1000)] and (counts == 3).all()  # no team worker for this dtype
    one = np.array([0, 1000], dtype=np.int64)  # a single unit of 1000 entries: nothing for a second thread to take
    threads.run_units(lambda: _count_visits, serial, [counts], [], one, threads.MIN_TEAM_ELEMENTS)
    assert serial_calls[-1] == (0, 1)
