"""The compiled kernels leave torch's team to the calling thread while the cores are busy with other work."""

from __future__ import annotations

import sys

import pytest
import torch

from scvi_networkvi.nn import _torch_threads as threads


def _samples(monkeypatch, shares: list[float]) -> threads._Contention:
    """A detector fed one schedstat sample per window: each window ran 1 s of thread time and waited ``share`` of it."""
    run = wait = 0
    samples = [(run, wait)]
    for share in shares:
        run, wait = run + int(1e9 * (1 - share)), wait + int(1e9 * share)
        samples.append((run, wait))
    feed = iter(samples)
    clock = iter(range(0, 1000, 1))  # one window (CONTENTION_WINDOW_S < 1 s) per call
    monkeypatch.setattr(threads, "_schedstat", lambda: next(feed))
    monkeypatch.setattr(threads.time, "monotonic", lambda: float(next(clock)))
    return threads._Contention()


def test_busy_above_the_wait_share_until_it_falls_below_the_clear_share(monkeypatch):
    contended = _samples(monkeypatch, [0.0, 0.3, 0.6, 0.3, 0.05, 0.3])
    assert contended() is False  # first sample: nothing to compare yet
    assert [contended() for _ in range(6)] == [False, False, True, True, False, False]


def test_sampled_once_per_window(monkeypatch):
    calls = []
    monkeypatch.setattr(threads, "_schedstat", lambda: calls.append(1) or (len(calls), 0))
    contended = threads._Contention()
    for _ in range(100):
        contended()
    assert len(calls) == 1  # the next sample waits for CONTENTION_WINDOW_S


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc schedstat")
def test_schedstat_reads_this_process():
    sample = threads._schedstat()
    assert sample is None or (sample[0] > 0 and sample[1] >= 0)  # None: a kernel without schedstats


@pytest.mark.skipif(
    "parallel backend: OpenMP" not in torch.__config__.parallel_info(), reason="torch does not use OpenMP here"
)
def test_team_size_is_one_while_contended(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(threads, "_contended", lambda: True)
        assert threads.team_size() == 1
        monkeypatch.setattr(threads, "_contended", lambda: False)
        assert threads.team_size() == 2
    finally:
        torch.set_num_threads(before)
