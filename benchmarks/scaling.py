"""Scaling: NETWORKVI's training cost over the number of cells and over the size of the GO wiring, against TOTALVI.

Two axes (``--axes``), each a table of one row per (setting, model), written to ``--out-dir`` (default
``benchmarks/results``) as ``scaling_<axis>.csv`` (every measurement) and ``scaling_<axis>.md`` (the summary with the
ratios NETWORKVI / TOTALVI). Every model is built and trained in its own fresh subprocess (this script re-invokes
itself with ``--worker``) so that its peak resident memory (``VmHWM``: interpreter, data, model and training) belongs
to that model alone. The runs are long: a row already in the CSV is not measured again (delete the CSV, or the rows,
to re-measure).

``cells`` - growth over the number of cells (``--sizes``, default 1000 5000 20000 100000).
    Source: the tutorial CITE-seq set (``cite_bmmc_5k.h5ad``: 4000 genes, 134 proteins) without site1 (the
    tutorial's query site), i.e. the 4129 training cells of ``benchmarks/train_throughput.py``. An N-cell set draws
    N of these cells uniformly with replacement (numpy ``default_rng([seed, N])``) and replaces every non-zero count
    ``x`` of each drawn cell, RNA and protein, by ``1 + Poisson(x - 1)``: integer counts with the same mean and the
    same zero pattern (a plain ``Poisson(x)`` would zero 37 % of the many counts of 1: 213 instead of ~300
    non-zero genes per cell in a 1000-cell draw), Poisson variance ``x - 1``, so repeated draws of one cell differ
    wherever it has counts above 1. ``cell_type`` and the batch key ``Site`` are kept. The sets are written once
    to ``--work-dir`` as ``.h5mu`` (RNA as CSR, proteins dense) and read by each worker, so the generation's memory
    is not in any model's peak.
    Models: NETWORKVI with the tutorial settings (go-basic, tutorial GAF and interaction table, ``gene_size=5,
    go_size=2, gene_layer="interaction", encode_covariates=True``, GO depth 2, ``adversarial_mixing=False``), the
    same with ``encoder="dense"`` (scvi-tools encoders: the ablation), and TOTALVI with its defaults. Batch size 128,
    ``train_size`` 0.9 (validation never runs: no early stopping), CPU.
    Timing, sets below ``--large-from`` (default 50000 cells): one warm-up epoch, then
    ``max(1, ceil(--min-timed-cells / training cells))`` counted epochs (at least ~20,000 cells timed, so the 1000-cell
    set is not timed over 8 batches); s/epoch = median wall time of a counted epoch (first batch start to last batch
    end). As a check of the large-set protocol the first epoch is also timed after its first ``--skip-batches``
    batches (column ``check: first-epoch rule``). Sets of ``--large-from`` cells or more: ``--epochs-large`` epochs
    (default 1) and no warm-up epoch; the first ``--skip-batches`` (default 20) batches are the warm-up and the span
    from the end of that batch to the end of the last batch is timed: cells/s = cells trained in that span / its
    duration, s/epoch = training cells / (cells/s). Every batch of the epoch runs, so the peak RSS is that of a
    whole epoch on the whole set.

``go`` - growth over the GO wiring (``--depths`` 2 3 4 x ``--gafs`` tutorial full).
    Cells: ``--go-cells`` (default 2000) cells drawn without replacement and without noise from the same 4129
    training cells (the real counts). Annotations: ``tutorial`` = the tutorial's subsampled GAF (4072 BP
    annotations, 64 BP terms, 3290 genes) with the tutorial's go-basic (release 2025-03-16); ``full`` = the full
    human GAF of ``get_human_go.sh`` (176,568 BP annotations, 12,579 BP terms, 21,069 genes) with the GO release it
    was made against (``go-2022-07-01.obo``, as ``benchmarks/interpretability.py``). These are the consistent pairs:
    every BP term of each GAF is in its OBO and none is obsolete there (the full GAF has 3.4 % of its annotations on
    terms obsolete in go-basic 2025; the tutorial GAF 0.1 % of its annotations on terms missing from the 2022
    release). Without those files (and without ``--human-go``), ``full`` is the registry's ``org.Hs.eg.db`` 3.16
    with its ``GO.db`` (the same GO release), by name. Interaction table: the tutorial's for both. Depth =
    ``n_layers_encoder``, the deepest GO level kept.
    Other settings as on the cells axis; one warm-up epoch and ``--go-epochs`` (default 3) counted epochs; TOTALVI
    once on the same cells for the ratio. Wiring: the time spent in ``compile_wirings`` during model construction
    with an empty cache folder (``SCVI_NETWORKVI_DATA_DIR`` = a new temporary folder; the files are passed as
    paths, so nothing is downloaded: OBO + GAF + interaction table read and compiled) and again with the cache
    filled (content hashes checked, wiring loaded); the whole construction with the cache filled; GO terms kept per
    modality (incl. root and UNKNOWN chain); trainable parameters.

``--accelerator cuda``: every model trains on one GPU (``accelerator="gpu", devices=1``); the GPU is synchronised
before each batch end is timed (both models alike) and torch's peak GPU allocation is recorded next to the host's
peak RSS. Results go to ``scaling_<axis>_cuda.csv`` / ``.md`` beside the CPU tables (``benchmarks/gpu.sh`` runs the
cells axis this way).

Usage (about 11 minutes for everything with one thread per model on a 2-core AMD EPYC VM; the 100k-cell
``.h5mu`` takes 300 MB in ``--work-dir``)::

    python benchmarks/scaling.py [--axes cells go] [--sizes 1000 5000 20000 100000] [--depths 2 3 4]
        [--gafs tutorial full] [--threads 1] [--accelerator cpu] [--out-dir benchmarks/results]
        [--work-dir <tmp>/nvi-scaling] [--summarize]

Smoke run::

    python benchmarks/scaling.py --sizes 1000 --depths 2 --gafs tutorial --out-dir benchmarks/_out/scaling-smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _portable import portable_command, portable_path  # the sibling scripts (on sys.path)
from train_throughput import construct_cold_and_cached, device_name

logger = logging.getLogger("benchmarks.scaling")

DATA = Path.home() / ".cache" / "nvi-tutorial-data"
HUMAN_GO = Path(os.environ.get("NVI_HUMAN_GO", Path.home() / ".cache" / "nvi-human-go"))
MODALITIES = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}
CELL_MODELS = ("networkvi", "totalvi", "networkvi-dense")
CELLS_KEY = ("n_cells", "model")
GO_KEY = ("gaf", "depth", "model")


# --------------------------------------------------------------------------------------------- helpers


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


def md_table(frame) -> str:
    """A pandas DataFrame as a GitHub markdown table (index not included).

    Parameters
    ----------
    frame
        The table; cells are written with ``str``.

    Returns
    -------
    The markdown text.
    """
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- data


def load_training_cells(data_dir: Path):
    """The tutorial CITE-seq MuData without site1 (the tutorial's query site).

    Parameters
    ----------
    data_dir
        Folder with ``cite_bmmc_5k.h5ad``.

    Returns
    -------
    MuData with ``rna`` (CSR counts) and ``prot`` (dense counts), obs ``cell_type`` and ``Site``.
    """
    import anndata

    try:
        from scvi_networkvi.datasets import cite_to_mudata
    except ImportError:  # not re-exported in every version
        from scvi_networkvi.datasets._tutorial import cite_to_mudata

    mdata = cite_to_mudata(anndata.read_h5ad(data_dir / "cite_bmmc_5k.h5ad"))
    return mdata[(mdata.obs["Site"] != "site1").to_numpy()].copy()


def make_dataset(source, n_cells: int, seed: int, *, noise: bool, replace: bool):
    """Draw ``n_cells`` cells of ``source``; optionally add count noise that keeps the mean and the zero pattern.

    Parameters
    ----------
    source
        MuData with ``rna`` (CSR counts) and ``prot`` (dense counts).
    n_cells
        Cells in the result.
    seed
        Seed; the generator is ``numpy.random.default_rng([seed, n_cells])``.
    noise
        Replace every non-zero count ``x`` by ``1 + Poisson(x - 1)`` (same mean, same zero pattern, integers).
    replace
        Draw with replacement (needed when ``n_cells`` exceeds the source).

    Returns
    -------
    MuData with modalities ``rna`` and ``prot`` and obs ``cell_type``, ``Site``; cells named ``c0``, ``c1``, ...
    """
    import anndata
    import mudata
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng([seed, n_cells])
    index = rng.choice(source.n_obs, size=n_cells, replace=replace)
    if not replace:
        index = np.sort(index)
    obs = source.obs[["cell_type", "Site"]].iloc[index].copy()
    for column in obs:  # categories of cells not drawn (site1) would count as batches
        obs[column] = obs[column].astype(str).astype("category")
    obs.index = [f"c{i}" for i in range(n_cells)]
    rna = sp.csr_matrix(source["rna"].X)[index]
    prot = np.asarray(source["prot"].X)[index]
    if noise:
        rna.data = _shifted_poisson(rng, rna.data)
        prot = _shifted_poisson(rng, prot)
    rna = sp.csr_matrix(rna, dtype=np.float32)
    mods = {
        "rna": anndata.AnnData(X=rna, obs=obs.copy(), var=source["rna"].var.copy()),
        "prot": anndata.AnnData(X=np.ascontiguousarray(prot, dtype=np.float32), obs=obs.copy(), var=source["prot"].var),
    }
    mdata = mudata.MuData(mods)
    mdata.obs = obs.copy()
    return mdata


def _shifted_poisson(rng, counts):
    """``1 + Poisson(x - 1)`` for every non-zero count ``x``, zeros kept; float32 like the source."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    out = np.zeros_like(counts)
    nonzero = counts > 0
    out[nonzero] = 1.0 + rng.poisson(counts[nonzero] - 1.0)
    return out.astype(np.float32)


def ensure_dataset(path: Path, source_fn, n_cells: int, seed: int, *, noise: bool, replace: bool) -> Path:
    """Write the data set of :func:`make_dataset` to ``path`` unless it is there.

    Parameters
    ----------
    path
        ``.h5mu`` file.
    source_fn
        Callable returning the source MuData (called only when the file has to be made).
    n_cells, seed, noise, replace
        See :func:`make_dataset`.

    Returns
    -------
    ``path``.
    """
    if path.is_file():
        return path
    start = time.perf_counter()
    mdata = make_dataset(source_fn(), n_cells, seed, noise=noise, replace=replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.part")
    mdata.write(tmp)
    tmp.replace(path)
    logger.info(
        "Wrote %s: %d cells, %d RNA non-zeros (%.0f per cell), %.1f s",
        path.name,
        mdata.n_obs,
        mdata["rna"].X.nnz,
        mdata["rna"].X.nnz / mdata.n_obs,
        time.perf_counter() - start,
    )
    return path


# --------------------------------------------------------------------------------------------- worker


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


def run_subprocess(spec: dict, threads: int) -> dict:
    """Run :func:`run_worker` in a fresh interpreter (``OMP_NUM_THREADS`` = ``threads``) and read its result.

    Parameters
    ----------
    spec
        The worker spec.
    threads
        Thread count for OpenMP / MKL in the subprocess (torch's is set from the spec).

    Returns
    -------
    The worker's measurements.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, os.fspath(Path(__file__).resolve()), "--worker", json.dumps(spec)]
        command += ["--result", os.fspath(out)]
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env)
        result = json.loads(out.read_text())
    result["process_s"] = time.perf_counter() - start
    logger.info(
        "  %s: %.2f s/epoch (%.0f cells/s, %s), peak RSS %.0f MiB, %d parameters, load %.1f-%.1f, process %.0f s",
        spec["model"],
        result["s_per_epoch"],
        result["cells_per_s"],
        result["timing"],
        result["peak_rss_mb"],
        result["parameters"],
        result["load_start"],
        result["load_end"],
        result["process_s"],
    )
    return result


# --------------------------------------------------------------------------------------------- tables


def _read_rows(path: Path):
    import pandas as pd

    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def _done(frame, key: dict) -> bool:
    if frame.empty:
        return False
    mask = True
    for column, value in key.items():
        if column not in frame:
            return False
        mask = mask & (frame[column].astype(str) == str(value))
    return bool(mask.any())


def _append_row(path: Path, row: dict) -> None:
    import pandas as pd

    frame = _read_rows(path)
    frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def _flat(result: dict) -> dict:
    """The worker's result as one CSV row (nested dicts as ``key_role`` columns, lists as JSON)."""
    row = {}
    for key, value in result.items():
        if isinstance(value, dict):
            for sub, item in value.items():
                row[f"{key}_{sub}"] = item
        elif isinstance(value, list):
            row[key] = json.dumps(value)
        else:
            row[key] = value
    return row


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _header(title: str, args: argparse.Namespace, frame) -> str:
    here = _versions()

    def recorded(column: str) -> str:  # the rows' own record; this process's for rows measured before it was kept
        if column in frame and frame[column].notna().all():
            return ", ".join(sorted(set(frame[column].astype(str))))
        return here[column]

    dates = sorted(set(frame["date"].astype(str))) if "date" in frame else []
    where = f"{int(frame['threads'].max())} thread(s) per model"
    if args.accelerator == "cuda":
        gpus = sorted(set(frame["device"].astype(str))) if "device" in frame else ["?"]
        where = f"training on one GPU: {', '.join(gpus)}; {where} on the CPU side"
    loads = f"{frame['load_start'].min():.1f}-{frame['load_end'].max():.1f}" if "load_start" in frame else "?"
    return (
        f"# {title}\n\n"
        f"Generated by `python benchmarks/scaling.py {portable_command(args.argv)}`; measured {', '.join(dates)} on "
        f"{recorded('host')}, Python {recorded('python')}, torch {recorded('torch')} ({where}), scvi-tools "
        f"{recorded('scvi_tools')}. "
        f"Load average (1 min) during the runs: {loads}. Every model in its own subprocess; batch size "
        f"{args.batch_size}. See the docstring of `benchmarks/scaling.py` for the protocol.\n\n"
    )


def _above(row) -> float:
    """Peak RSS minus the RSS after the imports (data + model + training), ``nan`` where not recorded."""
    if row is None or "rss_imports_mb" not in row or row["rss_imports_mb"] != row["rss_imports_mb"]:
        return float("nan")
    return row["peak_rss_mb"] - row["rss_imports_mb"]


def write_cells_md(path: Path, frame, args: argparse.Namespace) -> None:
    """The cells-axis summary: one line per size, NETWORKVI / TOTALVI (and the dense NETWORKVI) side by side.

    Parameters
    ----------
    path
        Markdown file to write.
    frame
        The rows of ``scaling_cells.csv``.
    args
        The command line (for the header).
    """
    import pandas as pd

    speed, memory = [], []
    for n_cells, group in frame.groupby("n_cells", sort=True):
        by = {row["model"]: row for _, row in group.iterrows()}
        nvi, tot, dense = by.get("networkvi"), by.get("totalvi"), by.get("networkvi-dense")

        def get(row, column, default=float("nan")):
            return default if row is None or column not in row or pd.isna(row[column]) else row[column]

        any_row = nvi if nvi is not None else tot if tot is not None else dense
        cells = f"{int(n_cells):,}"
        speed.append(
            {
                "cells": cells,
                "training cells": f"{int(get(any_row, 'train_cells')):,}",
                "timed": get(any_row, "timing", "-"),
                "s/epoch NETWORKVI / TOTALVI / dense": " / ".join(
                    _fmt(get(row, "s_per_epoch")) for row in (nvi, tot, dense)
                ),
                "cells/s NETWORKVI / TOTALVI / dense": " / ".join(
                    _fmt(get(row, "cells_per_s"), 0) for row in (nvi, tot, dense)
                ),
                "cells/s ratio": f"**{_fmt(get(nvi, 'cells_per_s') / get(tot, 'cells_per_s'))}**",
                "dense ratio": _fmt(get(dense, "cells_per_s") / get(tot, "cells_per_s")),
                "check: first-epoch rule s/epoch": " / ".join(
                    _fmt(get(row, "s_per_epoch_first_rule")) for row in (nvi, tot, dense)
                ),
            }
        )
        memory.append(
            {
                "cells": cells,
                "data in RSS MiB": _fmt(get(tot, "rss_data_mb", get(nvi, "rss_data_mb")), 0),
                "RSS before training NETWORKVI / TOTALVI / dense": " / ".join(
                    _fmt(get(row, "rss_before_train_mb"), 0) for row in (nvi, tot, dense)
                ),
                "peak RSS MiB NETWORKVI / TOTALVI / dense": " / ".join(
                    _fmt(get(row, "peak_rss_mb"), 0) for row in (nvi, tot, dense)
                ),
                "peak RSS ratio": f"**{_fmt(get(nvi, 'peak_rss_mb') / get(tot, 'peak_rss_mb'))}**",
                "dense ratio": _fmt(get(dense, "peak_rss_mb") / get(tot, "peak_rss_mb")),
                "peak above imports NETWORKVI / TOTALVI / dense": " / ".join(
                    _fmt(_above(row), 0) for row in (nvi, tot, dense)
                ),
                "above-imports ratio": _fmt(_above(nvi) / _above(tot)),
                "parameters NETWORKVI / TOTALVI / dense": " / ".join(
                    _fmt(get(row, "parameters"), 0) for row in (nvi, tot, dense)
                ),
            }
        )
        if args.accelerator == "cuda":  # torch's peak allocation on the GPU (the RSS columns are the host's)
            memory[-1]["peak GPU MiB NETWORKVI / TOTALVI / dense"] = " / ".join(
                _fmt(get(row, "peak_gpu_mb"), 0) for row in (nvi, tot, dense)
            )
            memory[-1]["peak GPU ratio"] = f"**{_fmt(get(nvi, 'peak_gpu_mb') / get(tot, 'peak_gpu_mb'))}**"
    text = _header("Scaling over cells: NETWORKVI vs TOTALVI", args, frame)
    text += "Training speed:\n\n" + md_table(pd.DataFrame(speed)) + "\n\n"
    text += "Memory:\n\n" + md_table(pd.DataFrame(memory)) + "\n\n"
    text += (
        "Ratios are NETWORKVI / TOTALVI (cells/s: > 1 means NETWORKVI is faster; peak RSS: > 1 means it needs more "
        "memory). 'dense' = NETWORKVI with `encoder=\"dense\"` (its ratio also against TOTALVI). Check column: the "
        "large-set timing rule (the first epoch timed after its first batches) applied to every set with enough "
        "batches, next to the counted epochs. 'data in RSS' = RSS growth from reading the `.h5mu`; 'RSS before "
        "training' = data + model + interpreter after construction; 'peak above imports' = peak RSS minus the RSS "
        "after importing torch / scvi-tools / scvi_networkvi (about 0.9 GiB of each peak is that interpreter).\n"
    )
    if args.accelerator == "cuda":
        text += (
            "\nOn the GPU the host's peak above imports also holds the CUDA context and libraries (about 1 GiB, the "
            "same for every model); 'peak GPU' = `torch.cuda.max_memory_allocated` of the training process.\n"
        )
    path.write_text(text)


def write_go_md(path: Path, frame, args: argparse.Namespace) -> None:
    """The GO-axis summary: one line per (GAF, depth) and the TOTALVI reference on the same cells.

    Parameters
    ----------
    path
        Markdown file to write.
    frame
        The rows of ``scaling_go.csv``.
    args
        The command line (for the header).
    """
    import pandas as pd

    tot = frame[frame["model"] == "totalvi"]
    tot_row = tot.iloc[-1] if len(tot) else None
    lines = []
    for _, row in (
        frame[frame["model"] == "networkvi"].sort_values(["gaf", "depth"], ascending=[False, True]).iterrows()
    ):
        tot_cps = tot_row["cells_per_s"] if tot_row is not None else float("nan")
        tot_rss = tot_row["peak_rss_mb"] if tot_row is not None else float("nan")
        tot_par = tot_row["parameters"] if tot_row is not None else float("nan")
        lines.append(
            {
                "annotations": row["gaf"],
                "depth": int(row["depth"]),
                "GO terms RNA / protein": f"{int(row['go_terms_rna'])} / {int(row['go_terms_protein'])}",
                "gene-term links RNA": _fmt(row.get("gene_term_rna"), 0),
                "parameters": f"{int(row['parameters']):,}",
                "param. ratio": _fmt(row["parameters"] / tot_par),
                "wiring cold s": _fmt(row.get("compile_cold_s")),
                "wiring cached s": _fmt(row.get("compile_cached_s"), 3),
                "construction (cached) s": _fmt(row["construct_s"]),
                "s/epoch": _fmt(row["s_per_epoch"]),
                "cells/s": _fmt(row["cells_per_s"], 0),
                "cells/s ratio": _fmt(row["cells_per_s"] / tot_cps),
                "peak RSS MiB": _fmt(row["peak_rss_mb"], 0),
                "peak RSS ratio": _fmt(row["peak_rss_mb"] / tot_rss),
                "peak above imports MiB": _fmt(_above(row), 0),
                "above-imports ratio": _fmt(_above(row) / _above(tot_row)),
            }
        )
    if tot_row is not None:
        lines.append(
            {
                "annotations": "TOTALVI (reference)",
                "depth": "-",
                "GO terms RNA / protein": "-",
                "gene-term links RNA": "-",
                "parameters": f"{int(tot_row['parameters']):,}",
                "param. ratio": "1.00",
                "wiring cold s": "-",
                "wiring cached s": "-",
                "construction (cached) s": _fmt(tot_row["construct_s"]),
                "s/epoch": _fmt(tot_row["s_per_epoch"]),
                "cells/s": _fmt(tot_row["cells_per_s"], 0),
                "cells/s ratio": "1.00",
                "peak RSS MiB": _fmt(tot_row["peak_rss_mb"], 0),
                "peak RSS ratio": "1.00",
                "peak above imports MiB": _fmt(_above(tot_row), 0),
                "above-imports ratio": "1.00",
            }
        )
    table = pd.DataFrame(lines)
    cells = int(frame["train_cells"].iloc[0]) if len(frame) else 0
    text = _header("Scaling over the GO wiring: NETWORKVI vs TOTALVI", args, frame)
    text += f"{args.go_cells} cells ({cells} in training), one warm-up + {args.go_epochs} counted epochs.\n\n"
    text += md_table(table) + "\n\n"
    text += (
        "`tutorial` = the tutorial's subsampled GAF with go-basic 2025-03-16; `full` = the full human GAF with "
        "go-2022-07-01. GO terms include the root and the UNKNOWN chain; gene-term links = (gene, term) input "
        "blocks of the RNA encoder's GO network (a gene annotated below the depth cut links to its nearest kept "
        "ancestors on every is_a path; unannotated genes to the deepest UNKNOWN node). Wiring = time in "
        "`compile_wirings` during construction, cold = empty cache folder. Ratios are NETWORKVI / TOTALVI on the "
        "same cells.\n"
    )
    path.write_text(text)


# --------------------------------------------------------------------------------------------- axes


def _suffix(args: argparse.Namespace) -> str:
    """File-name suffix of the results: none on the CPU (the original tables), ``_cuda`` on a GPU."""
    return "" if args.accelerator == "cpu" else f"_{args.accelerator}"


def _common_spec(args: argparse.Namespace) -> dict:
    return {
        "threads": args.threads,
        "seed": args.seed,
        "accelerator": args.accelerator,
        "batch_size": args.batch_size,
        "skip_batches": args.skip_batches,
    }


def _record(path: Path, key: dict, spec: dict, result: dict, work_dir: Path) -> None:
    row = {**key, "date": datetime.date.today().isoformat(), **_flat(result)}
    kept = {k: v for k, v in spec.items() if k not in ("obo", "gaf", "interactions")}
    kept["data"] = portable_path(spec["data"], {"<work-dir>": work_dir})  # no machine's folder in the table
    row["spec"] = json.dumps(kept)
    _append_row(path, row)


def run_cells_axis(args: argparse.Namespace) -> None:
    """Measure every (size, model) pair not yet in ``scaling_cells.csv``; rewrite ``scaling_cells.md``.

    Parameters
    ----------
    args
        The parsed command line.
    """
    csv = args.out_dir / f"scaling_cells{_suffix(args)}.csv"
    source = {}

    def source_fn():
        if "mdata" not in source:
            source["mdata"] = load_training_cells(args.data_dir)
        return source["mdata"]

    for n_cells in args.sizes:
        todo = [m for m in args.models if not _done(_read_rows(csv), {"n_cells": n_cells, "model": m})]
        if not todo:
            logger.info("cells %d: all models already in %s", n_cells, csv)
            continue
        data = ensure_dataset(
            args.work_dir / f"cells_{n_cells}_seed{args.seed}.h5mu",
            source_fn,
            n_cells,
            args.seed,
            noise=True,
            replace=True,
        )
        source.clear()  # do not keep the source around while the workers run
        n_train = int(round(0.9 * n_cells))
        large = n_cells >= args.large_from
        spec = {
            **_common_spec(args),
            "data": os.fspath(data),
            "warmup_epochs": 0 if large else 1,
            "epochs": args.epochs_large if large else max(1, math.ceil(args.min_timed_cells / n_train)),
            "depth": 2,
            "obo": os.fspath(args.data_dir / "go-basic.obo"),
            "gaf": os.fspath(args.data_dir / "ensembl2go.gaf"),
            "interactions": os.fspath(args.data_dir / "gene_interactions.csv"),
        }
        logger.info("cells %d: %d warm-up + %d counted epoch(s)", n_cells, spec["warmup_epochs"], spec["epochs"])
        for model in todo:
            spec["model"] = model
            result = run_subprocess(spec, args.threads)
            _record(csv, {"n_cells": n_cells, "model": model}, spec, result, args.work_dir)
            write_cells_md(csv.with_suffix(".md"), _read_rows(csv), args)
    if csv.is_file():
        write_cells_md(csv.with_suffix(".md"), _read_rows(csv), args)


def _full_annotations(args: argparse.Namespace) -> tuple[Path, Path]:
    """The ``full`` pair: ``get_human_go.sh``'s OBO and GAF in ``--human-go``, else the registry's human annotations.

    Without ``--human-go`` and without those files, the package's default human annotations are used by name:
    ``org.Hs.eg.db`` 3.16 (keyed by ENSEMBL id among others) with its GO release ``GO.db`` (2022-07-01), fetched
    from the resource cache (``SCVI_NETWORKVI_OFFLINE=1``: never downloaded). The workers get their file paths,
    so the empty wiring cache of the cold construction does not hide them.
    """
    folder = args.human_go or HUMAN_GO
    files = (folder / "go-2022-07-01.obo", folder / "ensembl2go-human-2022.gaf")
    if args.human_go is not None or all(path.is_file() for path in files):
        return files
    from scvi_networkvi import resources

    logger.info("%s has no full human GAF: the registry's org.Hs.eg.db with GO.db instead", folder)
    return resources.fetch("GO.db"), resources.fetch("org.Hs.eg.db")


def run_go_axis(args: argparse.Namespace) -> None:
    """Measure every (annotations, depth) NETWORKVI and the TOTALVI reference not yet in ``scaling_go.csv``.

    Parameters
    ----------
    args
        The parsed command line.
    """
    csv = args.out_dir / f"scaling_go{_suffix(args)}.csv"
    data = ensure_dataset(
        args.work_dir / f"go_{args.go_cells}_seed{args.seed}.h5mu",
        lambda: load_training_cells(args.data_dir),
        args.go_cells,
        args.seed,
        noise=False,
        replace=False,
    )
    pairs = {
        "tutorial": (args.data_dir / "go-basic.obo", args.data_dir / "ensembl2go.gaf"),
        "full": _full_annotations(args) if "full" in args.gafs else (None, None),
    }
    base = {**_common_spec(args), "data": os.fspath(data), "warmup_epochs": 1, "epochs": args.go_epochs}
    jobs = [("-", 0, "totalvi")] + [(gaf, depth, "networkvi") for gaf in args.gafs for depth in args.depths]
    for gaf, depth, model in jobs:
        key = {"gaf": gaf, "depth": depth, "model": model}
        if _done(_read_rows(csv), key):
            logger.info("go %s: already in %s", key, csv)
            continue
        spec = {**base, "model": model, "depth": depth or 2}
        if model == "networkvi":
            obo, gaf_path = pairs[gaf]
            for path in (obo, gaf_path):
                if not path.is_file():
                    raise SystemExit(f"{path} is missing: run get_human_go.sh / get_tutorial_data.sh first.")
            spec.update(
                obo=os.fspath(obo),
                gaf=os.fspath(gaf_path),
                interactions=os.fspath(args.data_dir / "gene_interactions.csv"),
            )
        logger.info("go: %s", key)
        result = run_subprocess(spec, args.threads)
        _record(csv, key, spec, result, args.work_dir)
        write_go_md(csv.with_suffix(".md"), _read_rows(csv), args)
    if csv.is_file():
        write_go_md(csv.with_suffix(".md"), _read_rows(csv), args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--axes", nargs="+", choices=("cells", "go"), default=["cells", "go"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 5000, 20000, 100000])
    parser.add_argument("--models", nargs="+", choices=CELL_MODELS, default=list(CELL_MODELS), help="cells axis")
    parser.add_argument("--depths", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument("--gafs", nargs="+", choices=("tutorial", "full"), default=["tutorial", "full"])
    parser.add_argument("--go-cells", type=int, default=2000)
    parser.add_argument("--go-epochs", type=int, default=3, help="counted epochs on the GO axis (after 1 warm-up)")
    parser.add_argument("--min-timed-cells", type=int, default=20000, help="cells axis: counted epochs cover this")
    parser.add_argument("--large-from", type=int, default=50000, help="sets this large use the large-set timing")
    parser.add_argument("--epochs-large", type=int, default=1, help="epochs for large sets (no warm-up epoch)")
    parser.add_argument("--skip-batches", type=int, default=20, help="warm-up batches of large sets")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads per model")
    parser.add_argument(
        "--accelerator", choices=("cpu", "cuda"), default="cpu", help="cuda: train on one GPU (*_cuda.csv / .md)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument(
        "--human-go",
        type=Path,
        default=None,
        help="folder of get_human_go.sh's files (default $NVI_HUMAN_GO or ~/.cache/nvi-human-go, if there; "
        "otherwise the registry's org.Hs.eg.db with GO.db)",
    )
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "nvi-scaling")
    parser.add_argument("--summarize", action="store_true", help="only rewrite the .md tables from the CSVs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # worker mode: a JSON spec
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    _quiet()
    if args.worker:
        warnings.filterwarnings("ignore")
        args.result.write_text(json.dumps(run_worker(json.loads(args.worker))))
        return

    if args.summarize:
        for axis, write in (("cells", write_cells_md), ("go", write_go_md)):
            csv = args.out_dir / f"scaling_{axis}{_suffix(args)}.csv"
            if axis in args.axes and csv.is_file():
                write(csv.with_suffix(".md"), _read_rows(csv), args)
                logger.info("Wrote %s", csv.with_suffix(".md"))
        return
    if args.accelerator == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--accelerator cuda: torch sees no CUDA device.")
    needed = ("cite_bmmc_5k.h5ad", "go-basic.obo", "ensembl2go.gaf", "gene_interactions.csv")
    missing = [name for name in needed if not (args.data_dir / name).is_file()]
    if missing:
        raise SystemExit(f"{missing} missing in {args.data_dir}: run get_tutorial_data.sh first.")
    warnings.filterwarnings("ignore", message=".*(var_names|obs_names).*")
    start = time.perf_counter()
    if "cells" in args.axes:
        run_cells_axis(args)
    if "go" in args.axes:
        run_go_axis(args)
    logger.info("Done in %.1f min; tables in %s", (time.perf_counter() - start) / 60, args.out_dir)


if __name__ == "__main__":
    main()
