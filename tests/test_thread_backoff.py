"""The thread back-off: fewer torch threads while the process's threads wait for cores, all of them again after."""

from __future__ import annotations

import os
import sys
import types

import mudata as md
import numpy as np
import pytest
import scvi
import torch

import scvi_networkvi as nvi
from scvi_networkvi.model import ThreadBackoff, run_queue_seconds
from scvi_networkvi.model._thread_backoff import ENVIRONMENT_SWITCH, adapt_threads_by_default

MODS = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}
TRAIN = {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False, "batch_size": 64}
CPU_MODULE = types.SimpleNamespace(device=torch.device("cpu"))


@pytest.fixture
def threads():
    """Four torch threads for the test (whatever the machine has), the caller's count restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield 4
    torch.set_num_threads(before)


class Machine:
    """A fake clock and run-queue counter: the process's threads beyond the free cores wait for one, second by second."""

    def __init__(self, free_cores: int):
        self.free_cores = free_cores
        self.now = 0.0
        self.waited = 0.0

    def clock(self) -> float:
        return self.now

    def reader(self) -> float:
        return self.waited

    def run(self, seconds: float) -> None:
        self.waited += max(0, torch.get_num_threads() - self.free_cores) * seconds
        self.now += seconds


def train_for(backoff: ThreadBackoff, machine: Machine, seconds: float, step_s: float = 0.0625) -> list[int]:
    """Steps of ``step_s`` for ``seconds``; the thread count after each."""
    counts = []
    for _ in range(round(seconds / step_s)):
        machine.run(step_s)
        backoff.on_train_batch_end(None, CPU_MODULE, None, None, 0)
        counts.append(torch.get_num_threads())
    return counts


def backoff_on(machine: Machine, **kwargs) -> ThreadBackoff:
    backoff = ThreadBackoff(clock=machine.clock, reader=machine.reader, **kwargs)
    backoff.on_train_start(None, CPU_MODULE)
    return backoff


def test_an_idle_machine_keeps_every_thread(threads):
    machine = Machine(free_cores=8)
    backoff = backoff_on(machine)
    assert backoff.active and backoff.full == threads
    assert set(train_for(backoff, machine, 30.0)) == {threads}
    assert backoff.n_backoffs == 0


def test_busy_cores_drop_the_waiting_threads_and_all_are_tried_again_later(threads):
    machine = Machine(free_cores=2)  # two of four cores taken by other processes
    backoff = backoff_on(machine, window_s=0.25, probe_s=4.0, max_probe_s=64.0)
    counts = train_for(backoff, machine, 1.0)  # steps of 1/16 s: the first window ends with the fourth
    assert counts == [4] * 3 + [2] * 13 and backoff.n_backoffs == 1  # two threads waited per second: two fewer
    # the try with all four threads comes 4 s after the drop, finds the load still there and drops again
    counts = train_for(backoff, machine, 4.0)
    assert 4 in counts and counts[-1] == 2
    assert backoff.n_backoffs == 1  # a failed try is not a new back-off
    # the next try waits twice as long: 8 s; meanwhile the other processes leave
    machine.free_cores = 8
    counts = train_for(backoff, machine, 6.0)
    assert set(counts) == {2}
    counts = train_for(backoff, machine, 4.0)
    assert counts[-1] == 4
    assert set(train_for(backoff, machine, 20.0)) == {4}  # the cores are free: all threads stay


def test_the_thread_count_is_restored_when_training_ends_or_fails(threads):
    for end in ("on_train_end", "on_exception"):
        machine = Machine(free_cores=1)
        backoff = backoff_on(machine)
        train_for(backoff, machine, 1.0)
        assert torch.get_num_threads() == 1
        getattr(backoff, end)(None, CPU_MODULE, *([RuntimeError("stop")] if end == "on_exception" else []))
        assert torch.get_num_threads() == threads


def test_the_back_off_stays_out_of_one_thread_a_gpu_and_an_os_without_run_queue_times(threads):
    machine = Machine(free_cores=0)
    gpu = types.SimpleNamespace(device=torch.device("cuda", 0))
    cases = [
        (ThreadBackoff(clock=machine.clock, reader=machine.reader), gpu),
        (ThreadBackoff(clock=machine.clock, reader=lambda: None), CPU_MODULE),
    ]
    for backoff, module in cases:
        backoff.on_train_start(None, module)
        assert not backoff.active
        train_for(backoff, machine, 2.0)
        assert torch.get_num_threads() == threads
    torch.set_num_threads(1)
    backoff = backoff_on(machine)
    assert not backoff.active


def test_statistics_that_go_away_in_training_change_nothing(threads):
    machine = Machine(free_cores=1)
    readings = iter([0.0])  # one reading at the start, then none
    backoff = ThreadBackoff(clock=machine.clock, reader=lambda: next(readings, None))
    backoff.on_train_start(None, CPU_MODULE)
    assert backoff.active
    assert set(train_for(backoff, machine, 2.0)) == {threads}


@pytest.mark.parametrize(
    "kwargs", [{"window_s": 0}, {"threshold": -1}, {"probe_s": 0}, {"probe_s": 10.0, "max_probe_s": 5.0}]
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="ThreadBackoff needs"):
        ThreadBackoff(**kwargs)


def test_no_readable_statistics_read_as_none(tmp_path, monkeypatch):
    """A folder of threads without scheduler statistics (a kernel built without them) says nothing, not zero."""
    from scvi_networkvi.model import _thread_backoff

    (tmp_path / "101").mkdir()
    monkeypatch.setattr(_thread_backoff, "TASKS", str(tmp_path))
    assert run_queue_seconds() is None
    (tmp_path / "101" / "schedstat").write_text("5000 2500000000 7\n")
    assert run_queue_seconds() == 2.5
    monkeypatch.setattr(_thread_backoff, "TASKS", str(tmp_path / "missing"))
    assert run_queue_seconds() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="run-queue times come from Linux's /proc")
def test_the_run_queue_reading_counts_seconds_and_never_goes_back():
    first = run_queue_seconds()
    torch.randn(300, 300) @ torch.randn(300, 300)
    second = run_queue_seconds()
    assert isinstance(first, float) and 0.0 <= first <= second


@pytest.fixture(scope="module")
def switch_seen_by_a_module_fixture() -> str | None:
    return os.environ.get(ENVIRONMENT_SWITCH)


def test_the_suites_switch_is_on_before_module_scoped_fixtures_train(switch_seen_by_a_module_fixture):
    # models trained once per module (the slow planted-signal test's) must not follow the machine's load either
    assert switch_seen_by_a_module_fixture == "0"


def test_the_environment_switch_decides_what_none_means(monkeypatch):
    for value, expected in (("0", False), (" 0 ", False), ("1", True), ("yes", True)):
        monkeypatch.setenv(ENVIRONMENT_SWITCH, value)
        assert adapt_threads_by_default() is expected
    monkeypatch.delenv(ENVIRONMENT_SWITCH)
    assert adapt_threads_by_default() is True


def test_training_watches_the_cores_by_default_and_not_when_asked(example_sites, threads, monkeypatch):
    monkeypatch.delenv(ENVIRONMENT_SWITCH)  # the suite's switch (conftest) off: the package default
    cells = example_sites(["site2", "site4"])
    mdata: md.MuData = cells[np.r_[0:100, cells.n_obs - 100 : cells.n_obs]].copy()
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MODS)
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(mdata, encoder="dense")
    with pytest.raises(ValueError, match=r"train\(adapt_threads='yes'\) must be True, False or None"):
        model.train(adapt_threads="yes", **TRAIN)
    assert not model.is_trained_
    model.train(**TRAIN)
    watching = [c for c in model.trainer.callbacks if isinstance(c, ThreadBackoff)]
    assert len(watching) == 1 and watching[0].full == threads
    assert torch.get_num_threads() == threads
    model.train(adapt_threads=False, **TRAIN)
    assert not any(isinstance(c, ThreadBackoff) for c in model.trainer.callbacks)
    monkeypatch.setenv(ENVIRONMENT_SWITCH, "0")
    model.train(**TRAIN)
    assert not any(isinstance(c, ThreadBackoff) for c in model.trainer.callbacks)
    model.train(adapt_threads=True, **TRAIN)  # an explicit choice wins over the switch
    assert any(isinstance(c, ThreadBackoff) for c in model.trainer.callbacks)
