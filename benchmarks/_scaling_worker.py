"""One model's measurement for ``scaling.py`` in its own interpreter (``--worker``): build, train, time, memory."""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from pathlib import Path

from train_throughput import construct_cold_and_cached, device_name

MODALITIES = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM`` of ``/proc/self/status``).

    Returns
    -------
    Peak RSS in MiB, ``nan`` where there is no ``/proc``.
    """
    return _proc_status("VmHWM")


def rss_mb() -> float:
    """Current resident set size of this process in MiB (``VmRSS``).

    Returns
    -------
    RSS in MiB, ``nan`` where there is no ``/proc``.
    """
    return _proc_status("VmRSS")


def _proc_status(field: str) -> float:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere).

    Returns
    -------
    The model name.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _quiet() -> None:
    """Only warnings from the libraries (Lightning sets its own loggers to INFO when imported)."""
    for name in ("scvi", "scvi_networkvi", "lightning", "lightning.pytorch", "lightning.fabric", "py.warnings"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False


def _batch_timer(cuda: bool = False):
    """A Lightning callback recording wall and CPU time at each training epoch's start and after every batch.

    Parameters
    ----------
    cuda
        Synchronise the GPU before each time is read, so that a batch counts when its kernels have run rather than
        when the host has queued them (one synchronisation per batch, for both models alike).

    Returns
    -------
    The callback; ``epochs`` holds per epoch ``(start, [(wall, cpu) after each batch], n_batches)``.
    """
    import torch
    from lightning.pytorch.callbacks import Callback

    def now() -> tuple[float, float]:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()

    class BatchTimer(Callback):
        def __init__(self):
            self.epochs: list[tuple[tuple[float, float], list[tuple[float, float]], int]] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.epochs.append((now(), [], int(trainer.num_training_batches)))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.epochs[-1][1].append(now())

    return BatchTimer()


def _versions() -> dict:
    """Where a row was measured: host, Python, torch and scvi-tools (the tables may be written on another machine)."""
    import scvi
    import torch

    return {
        "host": f"{platform.machine()} ({os.cpu_count()} cores, {cpu_name()})",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "scvi_tools": scvi.__version__,
    }


def _settings(spec: dict) -> dict:
    """NETWORKVI keyword arguments for a worker spec (tutorial settings, GO files of the spec)."""
    settings = {
        "gene_size": 5,
        "go_size": 2,
        "gene_layer": "interaction",
        "encode_covariates": True,
        "n_layers_encoder": spec.get("depth", 2),
    }
    if spec["model"] == "networkvi-dense":
        settings["encoder"] = "dense"
    else:
        settings.update(go=Path(spec["obo"]), annotations=Path(spec["gaf"]), interactions=Path(spec["interactions"]))
    return settings


def run_worker(spec: dict) -> dict:
    """Build and train one model in this process (the subprocess of one table row).

    Parameters
    ----------
    spec
        ``model`` (one of ``CELL_MODELS``), ``data`` (``.h5mu``), ``threads``, ``seed``, ``batch_size``,
        ``warmup_epochs``, ``epochs``, ``skip_batches``, ``accelerator`` (``"cpu"`` or ``"cuda"``); for NETWORKVI
        with the GO encoder ``obo``, ``gaf``, ``interactions`` and ``depth``.

    Returns
    -------
    The measurements (JSON-compatible).
    """
    import mudata
    import scvi
    import torch

    import scvi_networkvi as nvi
    import scvi_networkvi.model._networkvi as networkvi_model

    _quiet()
    scvi.settings.verbosity = logging.WARNING
    torch.set_num_threads(spec["threads"])
    scvi.settings.seed = spec["seed"]
    load = os.getloadavg()[0]
    rss_start = rss_mb()
    mdata = mudata.read_h5mu(spec["data"])
    cuda = spec.get("accelerator", "cpu") == "cuda"
    result = {"cells": mdata.n_obs, "threads": torch.get_num_threads(), "load_start": load}
    result["device"] = device_name("cuda" if cuda else "cpu")
    result.update(_versions())
    result["rss_imports_mb"] = rss_start
    result["rss_data_mb"] = rss_mb() - rss_start
    train_kwargs = {
        "max_epochs": spec["warmup_epochs"] + spec["epochs"],
        "batch_size": spec["batch_size"],
        "accelerator": "cpu",
        "early_stopping": False,
        "enable_progress_bar": False,
    }
    if cuda:
        train_kwargs.update(accelerator="gpu", devices=1)
    if spec["model"].startswith("networkvi"):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MODALITIES)
        settings = _settings(spec)
        compile_s: list[float] = []
        original = getattr(networkvi_model, "compile_wirings", None)
        if original is not None:  # time the wiring compiler inside the model's construction (not a package change)

            def timed_compile(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    compile_s.append(time.perf_counter() - start)

            networkvi_model.compile_wirings = timed_compile
        model, result["construct_cold_s"], result["construct_s"] = construct_cold_and_cached(mdata, settings)
        if original is not None:
            networkvi_model.compile_wirings = original
        if len(compile_s) == 2:
            result["compile_cold_s"], result["compile_cached_s"] = compile_s
        result["go_terms"] = {role: int(w.n_terms) for role, w in model.wirings_.items()}
        result["gene_edges"] = {role: int(w.gene_edges.shape[1]) for role, w in model.wirings_.items()}
        result["gene_term"] = {role: int(w.gene_term.shape[1]) for role, w in model.wirings_.items()}
        result["term_term"] = {role: int(w.term_term.shape[1]) for role, w in model.wirings_.items()}
        train_kwargs["adversarial_mixing"] = False
    else:
        scvi.model.TOTALVI.setup_mudata(mdata, batch_key="Site", modalities=MODALITIES)
        start = time.perf_counter()
        model = scvi.model.TOTALVI(mdata)
        result["construct_s"] = time.perf_counter() - start
    result["parameters"] = sum(p.numel() for p in model.module.parameters() if p.requires_grad)
    result["rss_before_train_mb"] = rss_mb()
    timer = _batch_timer(cuda)
    model.train(callbacks=[timer], **train_kwargs)
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    result["load_end"] = os.getloadavg()[0]
    n_train = len(model.train_indices)
    batch = spec["batch_size"]
    result.update(train_cells=n_train, n_batches=timer.epochs[0][2])
    epoch_s = [ends[-1][0] - start[0] for start, ends, _ in timer.epochs]
    epoch_cpu_s = [ends[-1][1] - start[1] for start, ends, _ in timer.epochs]
    result["epoch_s"] = [round(s, 3) for s in epoch_s]
    skip = spec["skip_batches"]
    first_start, first_ends, n_batches = timer.epochs[0]
    if spec["warmup_epochs"] == 0:
        # Large sets: the first `skip` batches are the warm-up; time from the end of batch `skip` to the end of the
        # last batch of the last epoch, over the cells trained in between.
        span = timer.epochs[-1][1][-1][0] - first_ends[skip - 1][0]
        span_cpu = timer.epochs[-1][1][-1][1] - first_ends[skip - 1][1]
        cells = n_train * spec["epochs"] - skip * batch
        result["timing"] = f"{spec['epochs']} epoch(s) after the first {skip} batches"
        result["cells_per_s"] = cells / span
        result["s_per_epoch"] = n_train / result["cells_per_s"]
        result["cpu_s_per_epoch"] = span_cpu * n_train / cells
        result["s_per_epoch_first_rule"] = result["s_per_epoch"]
    else:
        counted = epoch_s[spec["warmup_epochs"] :]
        result["timing"] = f"median of {len(counted)} epoch(s) after {spec['warmup_epochs']} warm-up"
        result["s_per_epoch"] = statistics.median(counted)
        result["cpu_s_per_epoch"] = statistics.median(epoch_cpu_s[spec["warmup_epochs"] :])
        result["cells_per_s"] = n_train / result["s_per_epoch"]
        if n_batches > skip + 5:  # the large-set rule applied to the first epoch, as a check of that rule
            span = first_ends[-1][0] - first_ends[skip - 1][0]
            result["s_per_epoch_first_rule"] = span * n_train / (n_train - skip * batch)
    return result
