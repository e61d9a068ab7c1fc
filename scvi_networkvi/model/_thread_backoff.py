"""Train on fewer CPU threads while other processes keep the cores busy, and on all of them again once they leave.

torch splits each CPU operation over its threads (the package's compiled kernels run on the same OpenMP team) and
waits at the operation's end for the slowest one. When other processes share the cores, the OS parks one of the
threads for a whole time slice and every operation of the step waits for it. A step of NETWORKVI has more such
operations than TOTALVI's, so it suffered more: with two threads on a 2-core machine and one busy process an epoch
took 3.6x its idle time against TOTALVI's 2.8x; backing off to one thread, 1.3x (`docs/benchmarks.md`, "Under
contention, with the thread back-off").

The signal is the process's run-queue time (Linux ``/proc/self/task/*/schedstat``: seconds its threads were
runnable with no core free), a counter the kernel keeps anyway: on an idle machine it stays near 0 per second of wall
time, under load it grows by about one second per parked thread. Written by hand because neither torch nor Lightning
adapts the thread count to the machine's load.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

import torch
from lightning.pytorch.callbacks import Callback

logger = logging.getLogger(__name__)

TASKS = "/proc/self/task"
#: ``0`` here makes ``train(adapt_threads=None)`` keep the thread count fixed.
ENVIRONMENT_SWITCH = "SCVI_NETWORKVI_ADAPT_THREADS"


def adapt_threads_by_default() -> bool:
    """What ``train(adapt_threads=None)`` means: ``True`` unless ``$SCVI_NETWORKVI_ADAPT_THREADS`` is ``0``."""
    return os.environ.get(ENVIRONMENT_SWITCH, "1").strip() != "0"


def run_queue_seconds() -> float | None:
    """Seconds this process's threads have waited for a core so far; ``None`` where the OS does not say.

    Linux only (``/proc/self/task/*/schedstat``); a kernel without scheduler statistics says nothing either.
    """
    try:
        tasks = os.listdir(TASKS)
    except OSError:
        return None
    waited, read = 0, False
    for task in tasks:
        try:
            with open(f"{TASKS}/{task}/schedstat", "rb") as stats:
                waited += int(stats.read().split()[1])
        except (OSError, IndexError, ValueError):  # the thread ended, or a kernel without scheduler statistics
            continue
        read = True
    return waited / 1e9 if read else None


class ThreadBackoff(Callback):
    """A Lightning callback: fewer torch threads while the process's threads wait for cores, all of them again after.

    Every ``window_s`` seconds of training it reads how long the process's threads waited in the run queue. Where that
    is at least ``threshold`` seconds per second of wall time (threads that were runnable but had no core), the thread
    count drops by the number of threads waiting (at least one thread stays). With fewer threads than at the start it
    tries all of them again for one window after ``probe_s`` seconds, and waits twice as long before the next try
    while the load stays (up to ``max_probe_s``). The thread count found at the start is restored when training ends.

    Inactive on a GPU, with one thread, and where the OS keeps no run-queue times (not Linux). Results depend on the
    thread count only through torch's own parallel reductions (the package's kernels give the same result for every
    count), so a run that backed off may differ in the last digits from an undisturbed one.

    Parameters
    ----------
    window_s
        Seconds of training between two readings.
    threshold
        Run-queue seconds per wall second from which the thread count drops.
    probe_s, max_probe_s
        First and longest wait before all threads are tried again.
    clock, reader
        The wall clock and the run-queue reading (replaceable for tests).
    """

    def __init__(
        self,
        window_s: float = 0.25,
        threshold: float = 0.25,
        probe_s: float = 4.0,
        max_probe_s: float = 64.0,
        clock: Callable[[], float] = time.monotonic,
        reader: Callable[[], float | None] = run_queue_seconds,
    ):
        if not (window_s > 0 and threshold > 0 and 0 < probe_s <= max_probe_s):
            raise ValueError(
                "ThreadBackoff needs window_s > 0, threshold > 0 and 0 < probe_s <= max_probe_s, got "
                f"{window_s!r}, {threshold!r}, {probe_s!r}, {max_probe_s!r}."
            )
        self.window_s, self.threshold = float(window_s), float(threshold)
        self.probe_s, self.max_probe_s = float(probe_s), float(max_probe_s)
        self.clock, self.reader = clock, reader
        self.full: int | None = None  # the thread count found at the start; None: inactive
        self.n_backoffs = 0
        self._probing = False

    @property
    def active(self) -> bool:
        """Whether the callback watches this training run."""
        return self.full is not None

    def on_train_start(self, trainer, pl_module) -> None:
        self.full = None
        threads = torch.get_num_threads()
        if pl_module.device.type != "cpu" or threads < 2 or self.reader() is None:
            return
        self.full = threads
        self.reset()

    def reset(self) -> None:
        """All threads again and a fresh window (e.g. when the load is known to have changed)."""
        if not self.active:
            return
        self._set_threads(self.full)
        self._probing = False
        self._interval = self.probe_s
        self._next_probe = math.inf
        self._start_window()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.active:
            return
        now = self.clock()
        if now - self._window_start < self.window_s:
            return
        waited = self.reader()
        if waited is None or self._waited_start is None:  # the statistics went away: no reading, no change
            self._start_window()
            return
        share = (waited - self._waited_start) / (now - self._window_start)
        threads = torch.get_num_threads()
        if share >= self.threshold and threads > 1:
            fewer = max(1, threads - math.ceil(share))
            if self._probing:  # the load is still there: wait longer before the next try
                self._interval = min(2 * self._interval, self.max_probe_s)
            else:
                self.n_backoffs += 1
                logger.info(
                    "Other processes keep the cores busy (threads waited %.2f s per s): training on %d of %d threads.",
                    share,
                    fewer,
                    self.full,
                )
            self._set_threads(fewer)
            self._next_probe = now + self._interval
        elif self._probing:  # the cores are free again
            logger.info("The cores are free again: training on all %d threads.", self.full)
            self._interval = self.probe_s
            self._next_probe = math.inf
        elif threads < self.full and now >= self._next_probe:
            self._set_threads(self.full)
            self._probing = True
            self._start_window()
            return
        self._probing = False
        self._start_window()

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()

    def _restore(self) -> None:
        if self.active and torch.get_num_threads() != self.full:
            torch.set_num_threads(self.full)
        self._probing = False

    def _set_threads(self, n: int) -> None:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def _start_window(self) -> None:
        self._window_start = self.clock()
        self._waited_start = self.reader()
