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
    once on the same cells for the ratio. ``--go-sets N`` runs TOTALVI and every NETWORKVI row N times in turn (a
    ``set`` column): each row's ratio is against its own set's TOTALVI and the table adds each (annotations, depth)
    median, since on a shared 2-core VM single sets of the same code move by +-10 %. Wiring: the time spent in
    ``compile_wirings`` during model construction with an empty cache folder (``SCVI_NETWORKVI_DATA_DIR`` = a new
    temporary folder; the files are passed as paths, so nothing is downloaded: OBO + GAF + interaction table read
    and compiled) and again with the cache filled (content hashes checked, wiring loaded); the whole construction
    with the cache filled; GO terms kept per modality (incl. root and UNKNOWN chain); trainable parameters.

``--accelerator cuda``: every model trains on one GPU (``accelerator="gpu", devices=1``); the GPU is synchronised
before each batch end is timed (both models alike) and torch's peak GPU allocation is recorded next to the host's
peak RSS. Results go to ``scaling_<axis>_cuda.csv`` / ``.md`` beside the CPU tables (``benchmarks/gpu.sh`` runs the
cells axis this way).

Usage (about 11 minutes for everything with one thread per model on a 2-core AMD EPYC VM; the 100k-cell
``.h5mu`` takes 300 MB in ``--work-dir``)::

    python benchmarks/scaling.py [--axes cells go] [--sizes 1000 5000 20000 100000] [--depths 2 3 4]
        [--gafs tutorial full] [--go-sets 1] [--threads 1] [--accelerator cpu] [--out-dir benchmarks/results]
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
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _portable import portable_path  # the sibling scripts (on sys.path)
from _scaling_data import ensure_dataset, load_training_cells
from _scaling_report import (
    _append_row,
    _done,
    _flat,
    _read_rows,
    md_table,  # noqa: F401  (gene_selection.py and inference_speed.py import it from here)
    write_cells_md,
    write_go_md,
)
from _scaling_worker import (
    _quiet,
    cpu_name,  # noqa: F401  (as md_table)
    run_worker,
)

logger = logging.getLogger("benchmarks.scaling")

DATA = Path.home() / ".cache" / "nvi-tutorial-data"
HUMAN_GO = Path(os.environ.get("NVI_HUMAN_GO", Path.home() / ".cache" / "nvi-human-go"))
CELL_MODELS = ("networkvi", "totalvi", "networkvi-dense")
CELLS_KEY = ("n_cells", "model")
GO_KEY = ("gaf", "depth", "model")


# --------------------------------------------------------------------------------------------- helpers


# --------------------------------------------------------------------------------------------- data


# --------------------------------------------------------------------------------------------- worker


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
    # --go-sets N: the whole job list N times, so that each NETWORKVI row has a TOTALVI run of its own set beside it
    sets = range(1, args.go_sets + 1) if args.go_sets > 1 else [None]
    for set_number, (gaf, depth, model) in ((n, job) for n in sets for job in jobs):
        key = {"gaf": gaf, "depth": depth, "model": model, **({"set": set_number} if set_number else {})}
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
    parser.add_argument(
        "--go-sets", type=int, default=1, help="GO axis: run TOTALVI and every NETWORKVI row this many times in turn"
    )
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

    if args.go_sets < 1:
        raise SystemExit(f"--go-sets must be at least 1, got {args.go_sets}.")
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
