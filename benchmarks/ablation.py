"""Multiome ablation: which part of the GO encoder holds NETWORKVI below MULTIVI on the tutorial multiome data.

On the tutorial multiome set (RNA + ATAC) the GO-wired NETWORKVI places cell types less well than its own dense
encoder and than scvi-tools' MULTIVI (``integration.py``, ``mosaic.py``). This script trains variants that each
change one part of the GO encoder, on the same cells, seeds and epoch budget, and compares how well their latents
separate the cell types.

Data: ``--n-cells`` (default 1000) cells of the tutorial multiome set (``get_tutorial_data.sh``, read through
``nvi.datasets.tutorial_multiome``), drawn once without replacement (``default_rng(0)``): every run sees the same
cells. Batch key ``Site``; all cells paired.

Variants (``--variants``): ``go``: the tutorial settings (go-basic, the tutorial GAF, the K562 contact-domain
interactions, ``gene_size=5, go_size=2``, everything else NETWORKVI's defaults); each of the following changes one
thing: ``no-interactions`` (``gene_layer="standard"``), ``no-linear-path`` (``linear_path=False``), ``no-dropout``
(``dropout_rate=0``), ``go-size-6`` (``go_size=6``), ``unknown-64`` (``unknown_size=64``: the chain that carries
the unannotated genes, 94 % of the ATAC gene nodes), ``full-gaf`` (the full human GAF with go-2022-07-01 from
``get_human_go.sh`` instead of the tutorial's subsampled GAF); ``dense`` (``encoder="dense"``) and ``multivi``
(``scvi.model.MULTIVI`` defaults) are the references. Every model: ``--epochs`` (default 20) epochs, learning rate
4e-3 (NETWORKVI's default; MULTIVI's own 1e-4 leaves it far from trained at tens of epochs, see ``mosaic.py``), no
early stopping, CPU, one thread per run.

Per run: 3-fold stratified cross-validated kNN-15 cell-type accuracy on the joint, RNA and ATAC latents (posterior
means; MULTIVI's ``expression`` / ``accessibility`` latents), and the last epoch's training reconstruction loss and
local KL divergence as each model logs them (per cell; NETWORKVI's and MULTIVI's KL terms differ in what they
include, so compare those columns within NETWORKVI's variants). Runs go to ``--jobs`` worker processes; rows are
appended to the CSV as they finish (``--out``; runs already there are skipped) and ``--summarize`` writes the
markdown table (mean +- sd over seeds, the worst seed of the ATAC accuracy, and the difference of each mean to
``go``).

    python benchmarks/ablation.py [--variants ...] [--seeds 0 1 2] [--epochs 20] [--n-cells 1000] [--jobs 2]
        [--out benchmarks/results/ablation_multiome.csv]
    python benchmarks/ablation.py --summarize [--out CSV]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from mosaic import knn_cv_accuracy, load_paired  # the sibling script (on sys.path)

logger = logging.getLogger("benchmarks.ablation")
OUT = Path(__file__).parent / "results" / "ablation_multiome.csv"
HUMAN_GO = Path(os.environ.get("NVI_HUMAN_GO", Path.home() / ".cache" / "nvi-human-go"))
TUTORIAL = {
    "go": "go-basic",
    "annotations": "ensembl2go-tutorial",
    "interactions": "k562-contact-domains",
    "gene_size": 5,
    "go_size": 2,
}
#: NETWORKVI settings of each variant, on top of the tutorial settings; ``None``: not a NETWORKVI variant.
VARIANTS: dict[str, dict | None] = {
    "go": {},
    "no-interactions": {"gene_layer": "standard"},
    "no-linear-path": {"linear_path": False},
    "no-dropout": {"dropout_rate": 0.0},
    "go-size-6": {"go_size": 6},
    "unknown-64": {"unknown_size": 64},
    "full-gaf": {
        "go": HUMAN_GO / "go-2022-07-01.obo",
        "annotations": HUMAN_GO / "ensembl2go-human-2022.gaf",
    },
    "dense": {"encoder": "dense"},
    "multivi": None,
}
KEYS = ["variant", "seed", "epochs", "n_cells"]
LATENTS = ("joint", "rna", "atac")


def run_one(variant: str, seed: int, epochs: int, n_cells: int) -> dict:
    """Train one variant with one seed in this (worker) process; its row of the CSV."""
    import scvi
    import torch

    import scvi_networkvi as nvi

    warnings.filterwarnings("ignore")
    logging.getLogger("scvi").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    mdata = load_paired("multiome", n_cells, seed=0)  # the same cells for every run
    labels = mdata["rna"].obs["cell_type"].astype(str).to_numpy()
    modalities = {"rna_layer": "rna", "atac_layer": "atac", "batch_key": "rna"}
    train_kwargs = {"max_epochs": epochs, "lr": 4e-3, "early_stopping": False, "accelerator": "cpu"}
    train_kwargs["enable_progress_bar"] = False
    scvi.settings.seed = seed
    start = time.perf_counter()
    if VARIANTS[variant] is None:
        scvi.model.MULTIVI.setup_mudata(mdata, batch_key="Site", modalities=modalities)
        model = scvi.model.MULTIVI(mdata)
        model.train(**train_kwargs)
        names = {"joint": "joint", "rna": "expression", "atac": "accessibility"}
    else:
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=modalities)
        model = nvi.NETWORKVI(mdata, **{**TUTORIAL, **VARIANTS[variant]})
        model.train(**train_kwargs)
        names = {latent: latent for latent in LATENTS}
    row = {"variant": variant, "seed": seed, "epochs": epochs, "n_cells": mdata.n_obs}
    row["train_s"] = time.perf_counter() - start
    for latent in LATENTS:
        row[f"knn_{latent}"] = knn_cv_accuracy(model.get_latent_representation(modality=names[latent]), labels)
    history = model.history
    for key in ("reconstruction_loss_train", "kl_local_train"):
        row[key] = float(history[key].iloc[-1, 0]) if key in history else float("nan")
    row["parameters"] = sum(p.numel() for p in model.module.parameters())
    row.update(host=f"{platform.machine()} {os.cpu_count()} CPUs", torch=torch.__version__, scvi=scvi.__version__)
    row["date"] = time.strftime("%Y-%m-%d")
    return row


def run(args: argparse.Namespace) -> None:
    """Every (variant, seed) not yet in the CSV, ``--jobs`` at a time; rows appended as they finish."""
    done = set()
    if args.out.exists():
        previous = pd.read_csv(args.out)
        done = set(map(tuple, previous[KEYS].astype(str).to_numpy()))
    todo = [
        (variant, seed)
        for seed in args.seeds
        for variant in args.variants
        if (variant, str(seed), str(args.epochs), str(args.n_cells)) not in done
    ]
    if "full-gaf" in args.variants and not (HUMAN_GO / "ensembl2go-human-2022.gaf").is_file():
        raise SystemExit(f"full-gaf needs {HUMAN_GO}: run get_human_go.sh or set NVI_HUMAN_GO.")
    logger.info("%d run(s) to do, %d job(s) at a time", len(todo), args.jobs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # spawn: each run starts from a clean interpreter (no torch state, thread pool or seed shared with the parent)
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_one, v, s, args.epochs, args.n_cells): (v, s) for v, s in todo}
        for future in as_completed(futures):
            row = future.result()
            pd.DataFrame([row]).to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
            logger.info(
                "%s seed %d: kNN joint / rna / atac %.3f / %.3f / %.3f (%.0f s)",
                row["variant"],
                row["seed"],
                row["knn_joint"],
                row["knn_rna"],
                row["knn_atac"],
                row["train_s"],
            )


def summarize(path: Path) -> pd.DataFrame:
    """Mean +- sd over seeds per variant; writes ``<csv stem>.md`` next to the CSV."""
    table = pd.read_csv(path).drop_duplicates(KEYS, keep="last")
    metrics = [f"knn_{latent}" for latent in LATENTS] + ["reconstruction_loss_train", "kl_local_train"]
    order = [v for v in VARIANTS if v in set(table["variant"])]
    lines = []
    for (epochs, n_cells), block in table.groupby(["epochs", "n_cells"]):
        stats = block.groupby("variant")[metrics].agg(["mean", "std"])
        reference = stats.loc["go"] if "go" in stats.index else None
        lines += [
            f"## {n_cells} cells, {epochs} epochs",
            "",
            "| variant | seeds | kNN joint | kNN RNA | kNN ATAC | worst ATAC | joint - go | ATAC - go | "
            "reconstruction | KL | s/run |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for variant in [v for v in order if v in stats.index]:
            runs = block[block["variant"] == variant]
            cells = [variant, str(len(runs))]
            for metric in metrics[:3]:
                mean, sd = stats.loc[variant, (metric, "mean")], stats.loc[variant, (metric, "std")]
                cells.append(f"{mean:.3f} ± {_sd(sd)}")
            cells.append(f"{runs['knn_atac'].min():.3f}")
            for metric in ("knn_joint", "knn_atac"):
                diff = (
                    np.nan if reference is None else stats.loc[variant, (metric, "mean")] - reference[(metric, "mean")]
                )
                cells.append(f"{diff:+.3f}")
            cells += [f"{stats.loc[variant, (m, 'mean')]:.0f}" for m in metrics[3:]]
            cells.append(f"{runs['train_s'].mean():.0f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    first = table.iloc[0]
    header = [
        f"# Multiome ablation of the GO encoder: `{path.name}`",
        "",
        "Generated by `python benchmarks/ablation.py --summarize`. kNN = 3-fold cross-validated kNN-15 cell-type "
        "accuracy on the latent (MULTIVI: its expression / accessibility latents); mean ± sd over seeds; worst ATAC "
        "= the lowest seed; reconstruction and KL = last training epoch, per cell, as each model logs them (compare "
        "them across NETWORKVI's variants, not with MULTIVI). Each variant changes one thing of `go` (the tutorial "
        "settings), see the script's docstring.",
        "",
        f"Machine: {first['host']}, torch {first['torch']}, scvi-tools {first['scvi']}, one thread per run; "
        f"{', '.join(sorted(set(table['date'].astype(str))))}.",
        "",
    ]
    path.with_suffix(".md").write_text("\n".join(header + lines))
    return table


def _sd(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.3f}"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-cells", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at the same time (one thread each)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--summarize", action="store_true", help="only write the markdown table from the CSV")
    args = parser.parse_args(argv)
    if not args.summarize:
        run(args)
    summarize(args.out)
    logger.info("wrote %s", args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
