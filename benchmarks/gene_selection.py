"""Highly variable genes or all genes: NETWORKVI's cost and latent quality over the number of RNA features.

On the tutorial CITE-seq data (registry ``tutorial-cite``: 5000 bone-marrow cells, 4000 genes, 134 proteins; batch
key ``Site``, labels ``cell_type``), NETWORKVI with the package defaults (``encoder="go"``, the full human annotations
``org.Hs.eg.db`` with ``GO.db``, GO depth 2) is trained on all 4000 genes and on the top ``--hvg`` highly variable
genes (default 2000 and 1000: scanpy ``highly_variable_genes(flavor="seurat_v3", batch_key="Site")`` on the raw
counts), all proteins kept, each for the same fixed budget of ``--epochs`` epochs (batch size 128, no early
stopping, seeded). TOTALVI (scvi-tools defaults) on all 4000 genes with the same budget is the reference row.

Per run: training s/epoch (median of the epochs after the first, validation excluded), the joint latent's inference
time (``get_latent_representation``, all cells), kNN-15 cell-type accuracy of the joint latent (stratified 3-fold,
``benchmarks/integration.py``'s ``knn_accuracy``), and the GO coverage of the RNA modality (share of features with a
GO annotation, GO terms and gene-term links of the wiring). One model at a time, in this process.

Results: rows appended to ``--out-dir``/``gene_selection.csv`` and a summary in ``gene_selection.md`` (machine,
date, versions, command).

Usage (about 8 minutes with 30 epochs on one thread of a 2-core AMD EPYC VM)::

    python benchmarks/gene_selection.py [--hvg 2000 1000] [--epochs 30] [--threads 1] [--out-dir benchmarks/results]

Smoke run::

    python benchmarks/gene_selection.py --hvg 1000 --epochs 2 --cells 1000 --out-dir benchmarks/_out/hvg-smoke
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path

from _portable import portable_command
from integration import _quiet, knn_accuracy  # the sibling scripts (on sys.path)
from scaling import cpu_name, md_table
from train_throughput import _epoch_timer

logger = logging.getLogger("benchmarks.gene_selection")

MODALITIES = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}
LABEL_KEY, BATCH_KEY = "cell_type", "Site"


def select_hvg(mdata, n_top: int):
    """The MuData restricted to the ``n_top`` highly variable genes (seurat_v3 on counts, per batch), proteins kept.

    Parameters
    ----------
    mdata
        MuData with raw counts in ``rna`` and the batch in ``obs[BATCH_KEY]``.
    n_top
        Number of genes to keep.

    Returns
    -------
    A new MuData (genes in their original order).
    """
    import mudata
    import scanpy as sc

    rna = mdata["rna"].copy()
    rna.obs[BATCH_KEY] = mdata.obs[BATCH_KEY].to_numpy()
    sc.pp.highly_variable_genes(rna, flavor="seurat_v3", n_top_genes=n_top, batch_key=BATCH_KEY)
    keep = rna.var["highly_variable"].to_numpy()
    out = mudata.MuData({"rna": mdata["rna"][:, keep].copy(), "prot": mdata["prot"].copy()})
    for key in (LABEL_KEY, BATCH_KEY):
        out.obs[key] = mdata.obs[key].to_numpy()
    return out


def run(name: str, mdata, args: argparse.Namespace) -> dict:
    """Train one model on ``mdata`` and measure it; one result row."""
    import numpy as np
    import scvi
    import torch

    import scvi_networkvi as nvi

    scvi.settings.seed = args.seed
    data = mdata.copy()
    timer = _epoch_timer()
    start = time.perf_counter()
    if name == "TOTALVI":
        scvi.model.TOTALVI.setup_mudata(data, batch_key=BATCH_KEY, modalities=MODALITIES)
        model = scvi.model.TOTALVI(data)
    else:
        nvi.NETWORKVI.setup_mudata(data, batch_key=BATCH_KEY, modalities=MODALITIES)
        model = nvi.NETWORKVI(data)
    construct = time.perf_counter() - start
    model.train(
        max_epochs=args.epochs,
        batch_size=128,
        accelerator="cpu",
        early_stopping=False,
        enable_progress_bar=False,
        train_size=0.9,
        callbacks=[timer],
    )
    model.get_latent_representation()  # warm-up
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        latent = model.get_latent_representation()
        seconds.append(time.perf_counter() - start)
    labels = data.obs[LABEL_KEY].astype(str).to_numpy()
    row = {
        "model": name,
        "genes": data["rna"].n_vars,
        "construction_s": construct,
        "train_s_per_epoch": statistics.median(timer.seconds[1:] or timer.seconds),
        "latent_s": statistics.median(seconds),
        "knn15": knn_accuracy(np.asarray(latent), labels, seed=args.seed),
        "annotated_share": float("nan"),
        "go_terms_rna": float("nan"),
        "gene_term_links": float("nan"),
        "parameters": int(sum(p.numel() for p in model.module.parameters() if p.requires_grad)),
        "threads": torch.get_num_threads(),
    }
    if name != "TOTALVI":
        wiring = model.wirings_["rna"]
        row.update(
            annotated_share=float(wiring.gene_annotated.mean()),
            go_terms_rna=int(wiring.n_terms),
            gene_term_links=int(wiring.gene_term.shape[1]),
        )
    logger.info("%s", row)
    return row


def summarize(frame) -> str:
    """Markdown summary of every run (grouped by date and command)."""
    lines = ["# Highly variable genes or all genes (NETWORKVI defaults, tutorial CITE-seq)", ""]
    for (date, command), part in frame.groupby(["date", "command"], sort=False):
        first = part.iloc[0]
        lines += [
            f"## {date}: {first['cells']} cells, {first['epochs']} epochs",
            "",
            f"{first['machine']}, {first['threads']} thread(s), torch {first['torch']}, scvi-tools "
            f"{first['scvi_tools']}, scanpy {first['scanpy']}. Command: `{command}`",
            "",
        ]
        table = part[
            ["model", "genes_selected", "train_s_per_epoch", "latent_s", "knn15", "annotated_share", "go_terms_rna"]
        ].copy()
        table["train_s_per_epoch"] = table["train_s_per_epoch"].map(lambda v: f"{v:.2f}")
        table["latent_s"] = table["latent_s"].map(lambda v: f"{v:.2f}")
        table["knn15"] = table["knn15"].map(lambda v: f"{v:.3f}")
        table["annotated_share"] = table["annotated_share"].map(lambda v: "-" if v != v else f"{100 * v:.0f} %")
        table["go_terms_rna"] = table["go_terms_rna"].map(lambda v: "-" if v != v else f"{int(v)}")
        table.columns = ["model", "genes", "s/epoch", "latent s", "kNN-15", "RNA annotated", "RNA GO terms"]
        lines += [md_table(table), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hvg", type=int, nargs="*", default=[2000, 1000], help="numbers of HVGs to compare")
    parser.add_argument("--epochs", type=int, default=30, help="fixed training budget of every model")
    parser.add_argument("--repeats", type=int, default=3, help="timed latent calls (median)")
    parser.add_argument("--cells", type=int, default=0, help="subsample cells (0: all 5000)")
    parser.add_argument("--no-totalvi", action="store_true", help="skip the TOTALVI reference row")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd
    import scanpy
    import scvi
    import torch

    import scvi_networkvi as nvi

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _quiet()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    source = nvi.datasets.tutorial_cite()
    if args.cells and args.cells < source.n_obs:
        keep = np.sort(np.random.default_rng(args.seed).choice(source.n_obs, size=args.cells, replace=False))
        source = source[keep].copy()
    runs = [("NETWORKVI", "all", source)]
    runs += [("NETWORKVI", f"top {n} HVG", select_hvg(source, n)) for n in args.hvg]
    if not args.no_totalvi:
        runs.append(("TOTALVI", "all", source))
    base = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} ({os.cpu_count()} cores, {cpu_name()})",
        "torch": torch.__version__,
        "scvi_tools": scvi.__version__,
        "scanpy": scanpy.__version__ if hasattr(scanpy, "__version__") else "",
        "cells": source.n_obs,
        "epochs": args.epochs,
        "seed": args.seed,
        "command": portable_command(shlex.quote(a) for a in sys.argv),
    }
    rows = [{**base, "genes_selected": selected, **run(name, data, args)} for name, selected, data in runs]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv = args.out_dir / "gene_selection.csv"
    pd.DataFrame(rows).to_csv(csv, mode="a", header=not csv.exists(), index=False)
    frame = pd.read_csv(csv)
    (args.out_dir / "gene_selection.md").write_text(summarize(frame) + "\n")
    logger.info("Wrote %s and %s", csv, args.out_dir / "gene_selection.md")


if __name__ == "__main__":
    main()
