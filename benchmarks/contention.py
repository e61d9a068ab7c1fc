"""Training and import under CPU contention: NETWORKVI's slowdown next to TOTALVI's under the same controlled load.

Method. Each model trains in a fresh subprocess (this script re-invokes itself with ``--worker``) on the same cells:
TOTALVI with scvi-tools' defaults, NETWORKVI with the package defaults (``encoder="go"``: the full human annotations
``org.Hs.eg.db`` with ``GO.db`` from the registry, GO depth 2), batch size 128, ``accelerator="cpu"``, no early
stopping, ``--threads`` torch threads. One training run covers every setting, epoch by epoch: a warm-up epoch (not
counted), then ``--repeats`` rounds of ``[idle, K busy]`` epochs for each ``K`` of ``--loads``. During a loaded epoch
the worker keeps ``K`` busy processes running (plain Python spin loops, ``python -S -c "while True: pass"``, same
priority), started before the epoch's timer starts and stopped after its last batch, so that the load costs only the
loaded epochs' time. An epoch's time is its wall time from the first batch's start to the last batch's end
(validation excluded, as in ``train_throughput.py``); the process CPU time over the same span is recorded too (CPU /
wall above the threads' share under load means threads spin while they wait), and the seconds the process's threads
spent waiting in the run queue (``/proc/self/task/*/schedstat``: runnable, no core free).

Slowdown = median s/epoch under load K / median idle s/epoch of the same run (same process, same model, epochs
interleaved, so slow drift of the machine cancels); the number to compare is NETWORKVI's slowdown / TOTALVI's
(<= 1: NETWORKVI suffers no more from the load than TOTALVI). The models alternate (TOTALVI first, then NETWORKVI,
per thread count and ``--runs``). NETWORKVI trains with its default ``adapt_threads=True`` (fewer threads while its
threads wait for cores, :class:`scvi_networkvi.model.ThreadBackoff`); every epoch starts on all threads again (the
back-off is reset), so idle epochs are timed on all of them and a loaded epoch pays for noticing the load.
``--models networkvi-fixed`` adds NETWORKVI with ``adapt_threads=False`` (a fixed thread count, as before 2026-12-07).

Import: ``import scvi``, ``import scvi_networkvi`` and ``from scvi_networkvi import NETWORKVI`` (what a user's first
line costs: it imports scvi-tools and torch), each in a fresh interpreter (the time inside it, interpreter start
excluded), ``--import-repeats`` times alternating, idle and under the largest load.

Diagnosis: ``--serial-kernels`` runs NETWORKVI's compiled kernels on the calling thread only (torch's own operations
keep their threads); ``--policies default PASSIVE`` trains every model under both OpenMP wait policies of torch's
threads (``default``: ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` unset: libgomp spins about 300,000 times after each
parallel operation before it sleeps; ``PASSIVE``: it sleeps at once), alternating models within each policy.

The machine is never idle here (other work shares it): the 1-minute load average is recorded before every epoch and
every import; "idle" means no load of ours, not an idle machine.

Results: ``--out-dir``/``NAME.csv`` (one row per epoch and per import) and ``NAME.md`` (summary tables, machine, date,
versions, command).

Usage (``--policies default PASSIVE`` with the other defaults: 14 minutes on a busy 2-core VM, of which the busy
processes ran about 6, mostly during the default policy's two-thread epochs)::

    python benchmarks/contention.py [--cells 1000] [--threads 1 2] [--loads 1 2] [--repeats 2] [--runs 1]
        [--policies default PASSIVE] [--import-repeats 2] [--out-dir benchmarks/results] [--name contention]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _portable import portable_command  # the sibling scripts (on sys.path)
from train_throughput import MODALITIES, _epoch_timer, _quiet, device_name

logger = logging.getLogger("benchmarks.contention")
#: The tutorial CITE-seq MuData's modalities for ``setup_mudata`` (train_throughput keeps one mapping per dataset).
CITE_MODALITIES = MODALITIES["cite"]
#: ``networkvi-fixed``: NETWORKVI with ``train(adapt_threads=False)``, its fixed thread count (the behaviour before
#: 2026-12-07).
MODELS = ("totalvi", "networkvi", "networkvi-fixed")
SPIN = "while True: pass"
IMPORTS = {
    "import scvi": "import scvi",
    "import scvi_networkvi": "import scvi_networkvi",
    "from scvi_networkvi import NETWORKVI": "from scvi_networkvi import NETWORKVI",
}


class Load:
    """``k`` busy processes (Python spin loops at the caller's priority) while a ``with`` block runs."""

    def __init__(self, k: int):
        self.k = k
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        self.processes = [subprocess.Popen([sys.executable, "-S", "-c", SPIN]) for _ in range(self.k)]
        if self.k:
            time.sleep(0.3)  # the spinners are running (interpreter started) before anything is timed

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()
        self.processes = []

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def schedule(loads: list[int], repeats: int) -> list[int]:
    """The load of every epoch: ``-1`` (warm-up), then ``repeats`` rounds of ``0, k`` for each ``k`` in ``loads``."""
    return [-1] + [k for _ in range(repeats) for load in loads for k in (0, load)]


def schedstat() -> tuple[float, float]:
    """Seconds this process's threads have run on a CPU and waited for one (Linux ``/proc/self/task/*/schedstat``).

    The wall time not covered by either (per thread) is time asleep: blocked in a futex, on I/O, or a sleeping
    OpenMP worker. Zeros where there is no such file.
    """
    run = wait = 0
    for task in Path("/proc/self/task").glob("*"):
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:  # the thread ended
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e9, wait / 1e9


def _load_switch(plan: list[int], loadavg: list[float], sched: list[tuple[float, float]], backoffs: list[int]):
    """A Lightning callback that runs epoch ``i`` under ``plan[i]`` busy processes (the timer must come after it).

    Also records the 1-minute load average before each epoch and the threads' on-CPU and run-queue seconds over it,
    and how often NETWORKVI's thread back-off dropped threads in it (``backoffs``; 0 without one).
    """
    from lightning.pytorch.callbacks import Callback

    from scvi_networkvi.model import ThreadBackoff

    class LoadSwitch(Callback):
        def __init__(self):
            self.load = Load(0)
            self.start = None

        def on_train_epoch_start(self, trainer, pl_module):
            self.backoff = next((c for c in trainer.callbacks if isinstance(c, ThreadBackoff)), None)
            if self.backoff is not None:  # every epoch starts on all threads: idle epochs are timed on them
                self.backoff.reset()
                self.backoffs_before = self.backoff.n_backoffs
            loadavg.append(os.getloadavg()[0])
            self.load = Load(max(plan[trainer.current_epoch], 0))
            self.load.start()
            self.start = schedstat()

        def on_validation_epoch_start(self, trainer, pl_module):
            self._stop()

        def on_train_epoch_end(self, trainer, pl_module):
            self._stop()

        def _stop(self):
            if self.start is not None:
                end = schedstat()
                sched.append((end[0] - self.start[0], end[1] - self.start[1]))
                backoffs.append(0 if self.backoff is None else self.backoff.n_backoffs - self.backoffs_before)
                self.start = None
            self.load.stop()

        def on_exception(self, trainer, pl_module, exception):
            self.load.stop()

    return LoadSwitch()


def run_worker(args: argparse.Namespace) -> dict:
    """Train ``args.worker`` through the epoch schedule in this process; per-epoch seconds, CPU seconds, load."""
    import numpy as np
    import scvi
    import torch

    import scvi_networkvi as nvi

    _quiet()
    scvi.settings.verbosity = logging.WARNING
    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    mdata = nvi.datasets.tutorial_cite()
    if args.cells and args.cells < mdata.n_obs:
        keep = np.sort(np.random.default_rng(args.seed).choice(mdata.n_obs, size=args.cells, replace=False))
        mdata = mdata[keep].copy()
    train_kwargs = {}
    if args.worker.startswith("networkvi"):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=CITE_MODALITIES)
        model = nvi.NETWORKVI(mdata)
        train_kwargs["adapt_threads"] = args.worker != "networkvi-fixed"
    else:
        scvi.model.TOTALVI.setup_mudata(mdata, batch_key="Site", modalities=CITE_MODALITIES)
        model = scvi.model.TOTALVI(mdata)
    plan = schedule(args.loads, args.repeats)
    if args.serial_kernels:  # the package's kernels on the calling thread only; torch's operations keep their threads
        from scvi_networkvi.nn import _torch_threads

        _torch_threads.team_size = lambda: 1
    loadavg: list[float] = []
    sched: list[tuple[float, float]] = []
    backoffs: list[int] = []
    timer = _epoch_timer()
    model.train(
        max_epochs=len(plan),
        batch_size=128,
        accelerator="cpu",
        early_stopping=False,
        enable_progress_bar=False,
        callbacks=[_load_switch(plan, loadavg, sched, backoffs), timer],
        **train_kwargs,
    )
    return {
        "model": args.worker,
        "threads": torch.get_num_threads(),
        "cells": mdata.n_obs,
        "load": plan,
        "seconds": timer.seconds,
        "cpu_seconds": timer.cpu_seconds,
        "loadavg": loadavg,
        "sched": sched,
        "backoffs": backoffs,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "scvi-tools": scvi.__version__},
    }


def run_model(model: str, threads: int, policy: str, args: argparse.Namespace) -> dict:
    """:func:`run_worker` in a fresh interpreter with OpenMP wait policy ``policy`` (``default``: none set)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, os.fspath(Path(__file__).resolve()), "--worker", model, "--result", os.fspath(out)]
        command += ["--threads", str(threads), "--cells", str(args.cells), "--seed", str(args.seed)]
        command += ["--repeats", str(args.repeats), "--loads", *map(str, args.loads)]
        command += ["--serial-kernels"] if args.serial_kernels else []
        logger.info("Training %s on %d thread(s), OpenMP wait policy %s ...", model, threads, policy)
        subprocess.run(command, check=True, env=env)
        return {**json.loads(out.read_text()), "policy": policy}


def time_import(statement: str) -> float:
    """Seconds ``statement`` takes in a fresh interpreter (its start excluded)."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def import_rows(args: argparse.Namespace) -> list[dict]:
    """Import times, idle and under the largest load, alternating statements and loads."""
    rows = []
    for repeat in range(args.import_repeats):
        for k in (0, max(args.loads)):
            for label, statement in IMPORTS.items():
                loadavg = os.getloadavg()[0]
                with Load(k):
                    seconds = time_import(statement)
                rows.append({"kind": "import", "model": label, "threads": "", "load": k, "repeat": repeat,
                             "seconds": round(seconds, 3), "cpu_seconds": "", "loadavg": round(loadavg, 2)})  # fmt: skip
                logger.info("%s, load %d: %.2f s", label, k, seconds)
    return rows


def epoch_rows(result: dict, run: int) -> list[dict]:
    """One CSV row per counted epoch of a worker's result."""
    rows = []
    columns = (result["load"], result["seconds"], result["cpu_seconds"], result["loadavg"], result["sched"])
    columns += (result.get("backoffs") or [0] * len(result["load"]),)
    for epoch, (k, s, cpu, avg, (_on_cpu, queued), dropped) in enumerate(zip(*columns, strict=False)):
        if k >= 0:
            rows.append({"kind": "epoch", "model": result["model"].upper(), "threads": result["threads"],
                         "policy": result["policy"], "load": k,
                         "repeat": f"{run}.{epoch}", "seconds": round(s, 3), "cpu_seconds": round(cpu, 3),
                         "loadavg": round(avg, 2), "queued_s": round(queued, 3), "backoffs": dropped})  # fmt: skip
    return rows


def summarise(frame):
    """Per model, threads and load: median s/epoch, CPU / wall, slowdown and NETWORKVI's slowdown / TOTALVI's."""
    import pandas as pd

    epochs = frame[frame["kind"] == "epoch"].astype(
        {"seconds": float, "cpu_seconds": float, "loadavg": float, "queued_s": float, "backoffs": int}
    )
    out = []
    for (policy, model, threads), group in epochs.groupby(["policy", "model", "threads"], sort=False):
        idle = group.loc[group["load"] == 0, "seconds"].median()
        for k, rows in group.groupby("load"):
            median = rows["seconds"].median()
            out.append({"OpenMP wait policy": policy, "model": model, "threads": threads, "busy processes": k, "s/epoch": round(median, 3),
                        "CPU s / wall s": round((rows["cpu_seconds"] / rows["seconds"]).median(), 2),
                        "run-queue s / wall s": round((rows["queued_s"] / rows["seconds"]).median(), 2),
                        "slowdown": round(median / idle, 2), "load avg (1 min) before": round(rows["loadavg"].median(), 2),
                        "epochs": len(rows), "epochs with a back-off": int((rows["backoffs"] > 0).sum())})  # fmt: skip
    table = pd.DataFrame(out)
    ratios = []
    keys = ["OpenMP wait policy", "threads", "busy processes"]
    for (policy, threads, k), rows in table[table["busy processes"] > 0].groupby(keys, sort=False):
        by_model = rows.set_index("model")["slowdown"]
        if "TOTALVI" not in by_model.index:
            continue
        for model in by_model.index.drop("TOTALVI"):
            ratios.append({"OpenMP wait policy": policy, "threads": threads, "busy processes": k, "model": model,
                           "TOTALVI slowdown": by_model["TOTALVI"], "model's slowdown": by_model[model],
                           "model / TOTALVI": round(by_model[model] / by_model["TOTALVI"], 2)})  # fmt: skip
    return table, pd.DataFrame(ratios)


def import_summary(frame):
    """Median import seconds per statement, idle and loaded."""
    imports = frame[frame["kind"] == "import"].astype({"seconds": float})
    table = imports.pivot_table(index="model", columns="load", values="seconds", aggfunc="median")
    table.columns = [f"s, {k} busy" for k in table.columns]
    return table.reset_index().rename(columns={"model": "statement"}).round(3)


def _environment() -> str:
    """The OpenMP settings of the command (the training workers' policy is ``--policies``'; imports use these)."""
    names = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    found = [f"{name}={os.environ[name]}" for name in names if name in os.environ]
    return ", ".join(found) or "no OpenMP variables set"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=1000, help="cells drawn from the 5000 (0: all)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts")
    parser.add_argument("--loads", type=int, nargs="+", default=[1, 2], help="busy processes under load")
    parser.add_argument("--repeats", type=int, default=2, help="[idle, loaded] epoch pairs per load and run")
    parser.add_argument("--runs", type=int, default=1, help="training runs per model and thread count")
    parser.add_argument("--import-repeats", type=int, default=2, help="0: no import timing")
    parser.add_argument("--no-training", action="store_true", help="import timing only")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--policies",
        nargs="+",
        default=["default"],
        choices=["default", "PASSIVE", "ACTIVE"],
        help="OpenMP wait policies of the training workers (default: OMP_WAIT_POLICY and GOMP_SPINCOUNT unset)",
    )
    parser.add_argument(
        "--serial-kernels", action="store_true", help="NETWORKVI's kernels on one thread (torch's team not used)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="contention")
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _quiet()
    if args.worker:
        args.threads = args.threads[0]
        warnings.filterwarnings("ignore")
        args.result.write_text(json.dumps(run_worker(args)))
        return

    import pandas as pd
    from _scaling_report import md_table

    rows, versions = [], {}
    started = os.getloadavg()[0]
    if not args.no_training:
        for threads in args.threads:
            for run in range(args.runs):
                for model, policy in [(m, p) for p in args.policies for m in args.models]:
                    result = run_model(model, threads, policy, args)
                    versions = result["versions"]
                    rows += epoch_rows(result, run)
    if args.import_repeats:
        rows += import_rows(args)
    frame = pd.DataFrame(rows)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out_dir / f"{args.name}.csv", index=False)
    command = portable_command([Path(sys.executable).name, *sys.argv])
    lines = [
        "# Training and import under CPU contention: NETWORKVI vs TOTALVI",
        "",
        f"{datetime.date.today().isoformat()}, {platform.machine()} ({os.cpu_count()} cores, {device_name('cpu')}); "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; 1-min load average {started:.2f} at the start (the machine is shared: never idle); "
        + f"environment: {_environment()}. "
        + f"Command: `{command}`",
        "",
        "Load: K busy Python spin loops during the loaded epochs only; slowdown = s/epoch under load / idle s/epoch of "
        "the same run (epochs interleaved). Method: the script's docstring.",
        "",
    ]
    if not args.no_training:
        table, ratios = summarise(frame)
        lines += ["## Slowdown NETWORKVI / TOTALVI", "", md_table(ratios), "", "## Per model", "", md_table(table), ""]
        logger.info("\n%s\n%s", ratios.to_string(index=False), table.to_string(index=False))
    if args.import_repeats:
        imports = import_summary(frame)
        lines += ["## Import (fresh interpreter, seconds, median)", "", md_table(imports), ""]
        logger.info("\n%s", imports.to_string(index=False))
    (args.out_dir / f"{args.name}.md").write_text("\n".join(lines))
    logger.info("Results written to %s/%s.{csv,md}", args.out_dir, args.name)


if __name__ == "__main__":
    main()
