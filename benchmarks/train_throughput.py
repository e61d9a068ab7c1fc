"""Training throughput on CPU or one GPU: NETWORKVI (tutorial settings) next to scvi-tools' peer on the same cells.

Data: the tutorial CITE-seq set (``cite_bmmc_5k.h5ad``, 4000 genes + 134 proteins); site1 is held out as in the
tutorial (it is the query there), the other three sites (4129 cells) are the training data, batch key ``Site``.
``--dataset multiome``: the tutorial multiome set (``multiome_bmmc_5k.h5ad``, 4000 genes + 20,001 peaks, site1 held
out likewise) next to scvi-tools' MULTIVI (defaults, ``MULTIVI.setup_mudata`` with ``rna_layer`` / ``atac_layer``):
NETWORKVI's RNA and ATAC encoders are both GO-wired, so the ratio measures the ATAC encoder's cost (issue: "the ATAC
encoder's step at least as fast as MULTIVI's").

NETWORKVI: tutorial settings (go-basic, the tutorial GAF and interaction table, ``gene_size=5, go_size=2,
gene_layer="interaction", encode_covariates=True``), ``adversarial_mixing=False``; ``--settings default``: what
``NETWORKVI(mdata)`` gives (the full human annotations of the registry, the package's sizes); on multiome either gives
the ATAC gene nodes one neuron since 2026-12-06g (the paired-multiome rule); ``--atac-gene-size N`` adds
``wiring_by_modality={"atac": {"gene_size": N}}`` (neurons per ATAC gene node) to either. TOTALVI:
``TOTALVI(mdata)`` defaults (its adversarial classifier included). Both: batch size 128 (``--batch-size``), ``accelerator="cpu"``
(``--accelerator cuda``: ``accelerator="gpu", devices=1``), no early stopping, ``epochs + 1`` epochs of which the
first is a warm-up and not counted.

Reported per model, each trained in a fresh subprocess (this script re-invokes itself with ``--model``) so that the
peak resident memory (``VmHWM``: data, model and training together) belongs to that model alone:

- cells/s: training cells / wall time of one training epoch (first batch start to last batch end: data loading,
  forward, backward and optimiser steps; validation excluded), median over the counted epochs; also the process CPU
  time over the same span (all threads: about threads x wall time on an idle machine, less when others compete);
  on CUDA the GPU is synchronised at both ends of the span, so queued kernels are counted;
- peak RSS; on CUDA also the peak GPU memory allocated by torch (``torch.cuda.max_memory_allocated``);
- kNN-15 cell-type accuracy of the joint latent (posterior means of all training-site cells, 3-fold CV), for context
  only: a few epochs are far from a trained model;
- construction time; for NETWORKVI cold (empty wiring cache) and again with the cache filled.

    python benchmarks/train_throughput.py [--epochs 5] [--threads N] [--repeats 1] [--data-dir DIR]
        [--dataset {cite,multiome}] [--settings {tutorial,default}]
        [--accelerator {cpu,cuda}] [--batch-size 128] [--atac-gene-size N] [--json FILE]

Defaults: the files of ``get_tutorial_data.sh`` in ``~/.cache/nvi-tutorial-data``; torch's default thread count;
CPU. ``--json`` also writes the settings, the summary and every run's measurements to FILE. The ratio NETWORKVI /
peer is the number to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _portable import portable_path, portable_text  # the sibling script (on sys.path)

logger = logging.getLogger("benchmarks.train_throughput")
DATA = Path.home() / ".cache" / "nvi-tutorial-data"
PEERS = {"cite": "totalvi", "multiome": "multivi"}
MODALITIES = {
    "cite": {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"},
    "multiome": {"rna_layer": "rna", "atac_layer": "atac", "batch_key": "rna"},
}
DATA_FILES = {"cite": "cite_bmmc_5k.h5ad", "multiome": "multiome_bmmc_5k.h5ad"}


def construct_cold_and_cached(mdata, settings: dict):
    """Build NETWORKVI twice on registered ``mdata``: with an empty wiring cache, then with it filled.

    Returns the second model and the two construction times in seconds. The cache is a temporary folder
    (``SCVI_NETWORKVI_DATA_DIR``), so the user's cache is neither read nor written.
    """
    import scvi_networkvi as nvi

    with tempfile.TemporaryDirectory() as cache:
        os.environ["SCVI_NETWORKVI_DATA_DIR"] = cache
        start = time.perf_counter()
        nvi.NETWORKVI(mdata, **settings)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        model = nvi.NETWORKVI(mdata, **settings)
        return model, cold_s, time.perf_counter() - start


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``; ``ru_maxrss`` where there is no ``/proc``)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def device_name(accelerator: str) -> str:
    """The GPU's name for ``"cuda"``, else the CPU's (``/proc/cpuinfo``'s model name where there is one)."""
    if accelerator == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_training_cells(data_dir: Path, dataset: str = "cite"):
    """The tutorial CITE-seq (or multiome) MuData without site1 (the tutorial's query site)."""
    import anndata

    try:
        from scvi_networkvi.datasets import cite_to_mudata, multiome_to_mudata
    except ImportError:  # not re-exported in every version
        from scvi_networkvi.datasets._tutorial import cite_to_mudata, multiome_to_mudata

    convert = cite_to_mudata if dataset == "cite" else multiome_to_mudata
    mdata = convert(anndata.read_h5ad(data_dir / DATA_FILES[dataset]))
    return mdata[(mdata.obs["Site"] != "site1").to_numpy()].copy()


def _epoch_timer(cuda: bool = False):
    """A Lightning callback recording each training epoch's wall time (first batch start to last batch end).

    Parameters
    ----------
    cuda
        Synchronise the GPU at the epoch's start and after its last batch, so that the span ends when the queued
        kernels have run rather than when the host has queued them (the batches between are not synchronised).
    """
    import torch
    from lightning.pytorch.callbacks import Callback

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    class EpochTimer(Callback):
        def __init__(self):
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []
            self._start = self._last = None

        def on_train_epoch_start(self, trainer, pl_module):
            synchronize()
            self._start = (time.perf_counter(), time.process_time())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx + 1 >= trainer.num_training_batches:  # the epoch's last batch
                synchronize()
            self._last = (time.perf_counter(), time.process_time())

        def on_validation_epoch_start(self, trainer, pl_module):
            self._close()

        def on_train_epoch_end(self, trainer, pl_module):
            self._close()

        def _close(self):
            if self._start is not None and self._last is not None:  # validation runs before on_train_epoch_end
                self.seconds.append(self._last[0] - self._start[0])
                self.cpu_seconds.append(self._last[1] - self._start[1])
            self._start = self._last = None

    return EpochTimer()


def run_model(name: str, args: argparse.Namespace) -> dict:
    """Build and train one model in this process; the measurements as a JSON-compatible dict."""
    import numpy as np
    import scvi
    import torch
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    import scvi_networkvi as nvi

    _quiet()
    scvi.settings.verbosity = logging.WARNING
    if args.threads:
        torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    cuda = args.accelerator == "cuda"
    mdata = load_training_cells(args.data_dir, args.dataset)
    modalities = MODALITIES[args.dataset]
    result = {
        "model": name,
        "cells": mdata.n_obs,
        "threads": torch.get_num_threads(),
        "accelerator": args.accelerator,
        "device": device_name(args.accelerator),
        "batch_size": args.batch_size,
    }
    train_kwargs = {
        "max_epochs": args.epochs + 1,
        "batch_size": args.batch_size,
        "accelerator": "cpu",
        "early_stopping": False,
        "enable_progress_bar": False,
    }
    if cuda:
        train_kwargs.update(accelerator="gpu", devices=1)
    if name == "networkvi":
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=modalities)
        settings = {}
        if args.settings == "tutorial":
            settings = {
                "go": args.data_dir / "go-basic.obo",
                "annotations": args.data_dir / "ensembl2go.gaf",
                "interactions": args.data_dir / "gene_interactions.csv",
                "gene_size": 5,
                "go_size": 2,
                "gene_layer": "interaction",
                "encode_covariates": True,
            }
        if args.atac_gene_size is not None:
            settings["wiring_by_modality"] = {"atac": {"gene_size": args.atac_gene_size}}
        if args.settings == "default":  # the registry's annotations: build once here, time the cached build
            nvi.NETWORKVI(mdata, **settings)
            start = time.perf_counter()
            model = nvi.NETWORKVI(mdata, **settings)
            result["construct_cold_s"] = result["construct_s"] = time.perf_counter() - start
        else:
            model, result["construct_cold_s"], result["construct_s"] = construct_cold_and_cached(mdata, settings)
        train_kwargs["adversarial_mixing"] = False
    else:
        peer = scvi.model.TOTALVI if name == "totalvi" else scvi.model.MULTIVI
        peer.setup_mudata(mdata, batch_key="Site", modalities=modalities)
        start = time.perf_counter()
        model = peer(mdata)
        result["construct_s"] = time.perf_counter() - start
    result["parameters"] = sum(p.numel() for p in model.module.parameters())
    timer = _epoch_timer(cuda)
    model.train(callbacks=[timer], **train_kwargs)
    n_train = len(model.train_indices)
    counted = timer.seconds[1:] or timer.seconds
    result.update(
        train_cells=n_train,
        epoch_s=[round(s, 3) for s in timer.seconds],
        median_epoch_s=statistics.median(counted),
        median_epoch_cpu_s=statistics.median(timer.cpu_seconds[1:] or timer.cpu_seconds),
        cells_per_s=n_train / statistics.median(counted),
    )
    latent = model.get_latent_representation()
    labels = np.asarray(mdata.obs["cell_type"].astype(str))
    result["knn15_accuracy"] = float(cross_val_score(KNeighborsClassifier(n_neighbors=15), latent, labels, cv=3).mean())
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    result["versions"] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "scvi-tools": scvi.__version__,
        "numpy": np.__version__,
    }
    if cuda:
        result["versions"]["cuda"] = torch.version.cuda
    return result


def _quiet() -> None:
    """Only warnings from the libraries (Lightning sets its own loggers to INFO when imported)."""
    for name in ("scvi", "scvi_networkvi", "lightning", "lightning.pytorch", "lightning.fabric", "py.warnings"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False


def run_subprocess(name: str, args: argparse.Namespace) -> dict:
    """Run :func:`run_model` in a fresh interpreter and read its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, os.fspath(Path(__file__).resolve()), "--model", name, "--result", os.fspath(out)]
        command += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
        command += ["--data-dir", os.fspath(args.data_dir), "--accelerator", args.accelerator]
        command += ["--dataset", args.dataset, "--settings", args.settings]
        if args.atac_gene_size is not None:
            command += ["--atac-gene-size", str(args.atac_gene_size)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        logger.info("Training %s in a subprocess ...", name)
        subprocess.run(command, check=True)
        result = json.loads(out.read_text())
    gpu = f", peak GPU {result['peak_gpu_mb']:.0f} MiB" if result["peak_gpu_mb"] is not None else ""
    logger.info(
        "%s: %.3f s/epoch (%.0f cells/s), epochs %s, peak RSS %.0f MiB%s",
        name,
        result["median_epoch_s"],
        result["cells_per_s"],
        result["epoch_s"],
        result["peak_rss_mb"],
        gpu,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="counted epochs (one warm-up epoch is added)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two models this many times")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--accelerator", choices=("cpu", "cuda"), default="cpu", help="cuda: one GPU (devices=1)")
    parser.add_argument("--dataset", choices=tuple(PEERS), default="cite", help="peer: TOTALVI (cite), MULTIVI")
    parser.add_argument(
        "--settings", choices=("tutorial", "default"), default="tutorial", help="NETWORKVI's: tutorial or package"
    )
    parser.add_argument("--atac-gene-size", type=int, default=None, help="neurons per ATAC gene node (multiome)")
    parser.add_argument("--json", type=Path, help="also write settings, summary and all runs to this file")
    parser.add_argument("--model", choices=("networkvi", *PEERS.values()), help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _quiet()

    if args.model:
        warnings.filterwarnings("ignore")
        args.result.write_text(json.dumps(run_model(args.model, args)))
        return

    needed = (DATA_FILES[args.dataset], "go-basic.obo", "ensembl2go.gaf", "gene_interactions.csv")
    missing = [name for name in needed if not (args.data_dir / name).is_file()]
    if missing:
        raise SystemExit(f"{missing} missing in {args.data_dir}: run get_tutorial_data.sh first.")
    if args.accelerator == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--accelerator cuda: torch sees no CUDA device.")

    import pandas as pd

    models = ("networkvi", PEERS[args.dataset])
    peer = models[1].upper()
    runs = {name: [] for name in models}
    for _ in range(args.repeats):
        for name in models:
            runs[name].append(run_subprocess(name, args))
    rows = []
    for name, results in runs.items():
        best = min(results, key=lambda r: r["median_epoch_s"])
        rows.append(
            {
                "model": name.upper(),
                "s/epoch": statistics.median(r["median_epoch_s"] for r in results),
                "CPU s/epoch": statistics.median(r["median_epoch_cpu_s"] for r in results),
                "cells/s": statistics.median(r["cells_per_s"] for r in results),
                "peak RSS MiB": max(r["peak_rss_mb"] for r in results),
                "peak GPU MiB": max(r["peak_gpu_mb"] or 0.0 for r in results),
                "kNN-15 acc": best["knn15_accuracy"],
                "parameters": best["parameters"],
                "construct s": statistics.median(r["construct_s"] for r in results),
            }
        )
    table = pd.DataFrame(rows).set_index("model")
    if args.accelerator != "cuda":
        table = table.drop(columns="peak GPU MiB")
    first = runs["networkvi"][0]
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items())
    pd.set_option("display.width", 160)
    logger.info(
        "%s: %d training cells (of %d, site1 held out), batch size %d, %d counted epochs after 1 warm-up, %d threads",
        args.dataset,
        first["train_cells"],
        first["cells"],
        args.batch_size,
        args.epochs,
        first["threads"],
    )
    logger.info("Machine: %s, %d CPUs; versions: %s", platform.machine(), os.cpu_count(), versions)
    logger.info("Accelerator: %s (%s)", args.accelerator, first["device"])
    for name, results in runs.items():
        logger.info("%s epoch seconds: %s", name, [r["epoch_s"] for r in results])
    logger.info("\n%s", table.round(3).to_string())
    ratio = table.loc["NETWORKVI", "cells/s"] / table.loc[peer, "cells/s"]
    logger.info("Throughput ratio NETWORKVI / %s: %.2f (target >= 1.0)", peer, ratio)
    cold = statistics.median(r["construct_cold_s"] for r in runs["networkvi"])
    cached = statistics.median(r["construct_s"] for r in runs["networkvi"])
    logger.info("NETWORKVI construction: %.2f s with an empty wiring cache, %.2f s cached", cold, cached)
    if args.json:
        summary = {
            "settings": {k: portable_path(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "device": first["device"],
            "summary": table.reset_index().to_dict(orient="records"),
            f"ratio_networkvi_{peer.lower()}": ratio,
            "construct_cold_s": cold,
            "construct_s": cached,
            "runs": runs,
        }
        args.json.write_text(portable_text(json.dumps(summary, indent=1, default=str)))  # no machine's folders
        logger.info("Results written to %s", args.json)


if __name__ == "__main__":
    main()
