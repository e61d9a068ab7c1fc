"""Inference speed on many genes: NETWORKVI's latent, ``nvi.tl.embed`` and importance activations against TOTALVI.

One process per gene count trains, for ``--epochs`` epochs on the same cells, TOTALVI (scvi-tools defaults),
NETWORKVI with the package defaults (``encoder="go"``, the full human annotations ``org.Hs.eg.db`` with ``GO.db``,
GO depth 2) and NETWORKVI with ``encoder="dense"``, then times, ``--repeats`` times in alternation (medians):

- TOTALVI ``get_latent_representation()`` (the reference of every ratio);
- NETWORKVI ``get_latent_representation()``, ``nvi.tl.embed(mdata, model)`` (joint latent into ``obsm``) and the
  importance activations (``NETWORKVI.get_activations``: the inference pass with every GO term's
  activations kept, what ``nvi.tl.importances`` runs before its probes), for the GO and the dense encoder (the dense
  encoder has no GO terms: no activations);
- NETWORKVI's latent once more with the sparse inference path of the GO levels switched off
  (``BlockSparseLinear.inference_csr = False``: the training code path, i.e. before that change).

Every call uses the default inference batch size (``scvi.settings.batch_size``, 128). Ratio = TOTALVI latent seconds /
the measurement's seconds (>= 1: at least as fast as TOTALVI's latent). Training s/epoch (median of the epochs after
the first, validation excluded) is recorded too.

Cells: the tutorial CITE-seq data (registry ``tutorial-cite``: 5000 bone-marrow cells, 4000 genes, 134 proteins),
batch key ``Site``. Gene counts (``--genes``): ``4000`` is the real data. A larger count N is the tutorial's 4000
real genes plus N - 4000 **synthetic** genes, because no real 15-20k-gene CITE-seq data is reachable here: each extra
gene carries a real human ENSEMBL id drawn (seeded, without replacement) from ``org.Hs.eg.db``'s ENSEMBL table among
the ids not in the data, so that the GO wiring has the structure (annotated share, genes per term) of real genes;
its counts are the column of a randomly drawn real gene with the cells permuted (same count distribution, no cell-type
signal). Those counts are as dense as the tutorial's selected genes, denser than most genes of a real full
transcriptome: the inference cost of the encoders does not depend on the counts' values, the data loading does a
little. The CSV says ``synthetic`` for these rows.

Results: rows appended to ``--out-dir``/``inference_speed.csv`` and a summary written to ``inference_speed.md``, with
machine, date, versions and the command.

Usage (about 3 minutes for 4000 genes and 8 for 16000 on one thread of a 2-core AMD EPYC VM)::

    python benchmarks/inference_speed.py [--genes 4000 16000] [--epochs 3] [--repeats 3] [--threads 1]
        [--out-dir benchmarks/results]

Smoke run::

    python benchmarks/inference_speed.py --genes 4000 --epochs 1 --repeats 1 --cells 1000 --out-dir benchmarks/_out/inf-smoke
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shlex
import sqlite3
import statistics
import sys
import time
import warnings
from pathlib import Path

from _portable import portable_command
from integration import _quiet  # the sibling scripts (on sys.path)
from scaling import cpu_name, md_table
from train_throughput import _epoch_timer

logger = logging.getLogger("benchmarks.inference_speed")

MODALITIES = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}
BATCH_KEY = "Site"


def orgdb_ensembl_ids() -> list[str]:
    """Every human ENSEMBL gene id of ``org.Hs.eg.db`` (fetched into the package's cache on first use), sorted.

    Returns
    -------
    The ids.
    """
    from scvi_networkvi.resources import fetch

    path = fetch("org.Hs.eg.db")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        ids = {row[0] for row in db.execute("SELECT ensembl_id FROM ensembl")}
    return sorted(ids)


def with_extra_genes(mdata, n_genes: int, seed: int):
    """The MuData with ``n_genes`` RNA features: its real genes plus synthetic ones with real ENSEMBL ids.

    Parameters
    ----------
    mdata
        Tutorial MuData (``rna`` with ENSEMBL ids in ``var["gene_stable_id"]``, ``prot``).
    n_genes
        Total number of RNA features (at least the real ones).
    seed
        Seed of the id draw, the source columns and the cell permutations.

    Returns
    -------
    A new MuData; ``rna.var["synthetic"]`` marks the added genes.
    """
    import anndata
    import mudata
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    rna = mdata["rna"]
    n_extra = n_genes - rna.n_vars
    if n_extra < 0:
        raise ValueError(f"--genes {n_genes} is below the data's {rna.n_vars} real genes.")
    var = rna.var.copy()
    var["synthetic"] = False
    if n_extra == 0:
        out = mdata.copy()
        out["rna"].var["synthetic"] = False
        return out
    rng = np.random.default_rng([seed, n_genes])
    known = set(var["gene_stable_id"].astype(str))
    pool = [g for g in orgdb_ensembl_ids() if g not in known]
    ids = sorted(rng.choice(pool, size=n_extra, replace=False))
    counts = sp.csc_matrix(rna.X)
    source = rng.integers(0, rna.n_vars, size=n_extra)
    columns = []
    for j in source:
        column = counts[:, [j]].tocoo()
        perm = rng.permutation(rna.n_obs)
        columns.append(sp.csc_matrix((column.data, (perm[column.row], column.col)), shape=(rna.n_obs, 1)))
    x = sp.hstack([counts, *columns], format="csr").astype(np.float32)
    extra = pd.DataFrame({"gene_stable_id": ids, "synthetic": True}, index=pd.Index(ids))
    new_rna = anndata.AnnData(x, obs=rna.obs.copy(), var=pd.concat([var, extra]))
    out = mudata.MuData({"rna": new_rna, "prot": mdata["prot"].copy()})
    out.obs = out.obs.join(mdata.obs[[c for c in mdata.obs.columns if c not in out.obs.columns]])
    for key in ("cell_type", BATCH_KEY):
        out.obs[key] = mdata.obs[key].to_numpy()
    return out


def median_seconds(function, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``function``.

    Parameters
    ----------
    function
        Called without arguments.
    repeats
        Number of calls.

    Returns
    -------
    One duration per call.
    """
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        out.append(time.perf_counter() - start)
    return out


def _set_inference_csr(model, enabled: bool | None, saved: dict) -> None:
    """Switch the GO levels' sparse inference path off (``False``) or back to each layer's own setting (``None``)."""
    from scvi_networkvi.nn._block_sparse import BlockSparseLinear

    for module in model.module.modules():
        if isinstance(module, BlockSparseLinear) and hasattr(module, "inference_csr"):
            saved.setdefault(id(module), module.inference_csr)
            module.inference_csr = saved[id(module)] if enabled is None else enabled


def measure(n_genes: int, args: argparse.Namespace) -> list[dict]:
    """Train the three models on one gene count and time their inference; one row per measurement."""
    import numpy as np
    import scvi
    import torch

    import scvi_networkvi as nvi

    source = nvi.datasets.tutorial_cite()
    if args.cells and args.cells < source.n_obs:
        keep = np.sort(np.random.default_rng(args.seed).choice(source.n_obs, size=args.cells, replace=False))
        source = source[keep].copy()
    mdata = with_extra_genes(source, n_genes, args.seed)
    synthetic = int(mdata["rna"].var["synthetic"].sum())
    train = {
        "max_epochs": args.epochs,
        "batch_size": 128,
        "accelerator": "cpu",
        "early_stopping": False,
        "enable_progress_bar": False,
        "train_size": 0.9,
    }
    models = {}
    timers = {}
    for name in ("TOTALVI", "NETWORKVI (go)", "NETWORKVI (dense)"):
        scvi.settings.seed = args.seed
        data = mdata.copy()
        timer = _epoch_timer()
        start = time.perf_counter()
        if name == "TOTALVI":
            scvi.model.TOTALVI.setup_mudata(data, batch_key=BATCH_KEY, modalities=MODALITIES)
            model = scvi.model.TOTALVI(data)
        else:
            nvi.NETWORKVI.setup_mudata(data, batch_key=BATCH_KEY, modalities=MODALITIES)
            model = nvi.NETWORKVI(data, encoder="go" if "go" in name else "dense")
        construct = time.perf_counter() - start
        model.train(**train, callbacks=[timer])
        models[name] = (model, data, construct)
        timers[name] = timer.seconds
        logger.info("%s: trained %d epochs on %d genes (%.1f s construction)", name, args.epochs, n_genes, construct)

    calls = {
        ("TOTALVI", "latent"): lambda: models["TOTALVI"][0].get_latent_representation(),
    }
    for name in ("NETWORKVI (go)", "NETWORKVI (dense)"):
        model, data, _ = models[name]
        calls[(name, "latent")] = model.get_latent_representation
        calls[(name, "embed")] = lambda model=model, data=data: nvi.tl.embed(data, model)
        if "go" in name:
            calls[(name, "activations")] = lambda model=model: model.get_activations()
    saved: dict = {}
    go_model = models["NETWORKVI (go)"][0]

    def latent_training_path():
        _set_inference_csr(go_model, False, saved)
        try:
            go_model.get_latent_representation()
        finally:
            _set_inference_csr(go_model, None, saved)

    calls[("NETWORKVI (go)", "latent, training code path")] = latent_training_path
    for function in calls.values():  # warm-up: first-call costs (plans, caches) are not what is compared
        function()
    seconds = {key: [] for key in calls}
    for _ in range(args.repeats):  # alternating, so that the models share the machine's load
        for key, function in calls.items():
            seconds[key].extend(median_seconds(function, 1))
    reference = statistics.median(seconds[("TOTALVI", "latent")])
    wiring = go_model.wirings_["rna"]
    annotated = int(wiring.gene_annotated.sum())
    base = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} ({os.cpu_count()} cores, {cpu_name()})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "scvi_tools": scvi.__version__,
        "cells": mdata.n_obs,
        "genes": n_genes,
        "synthetic_genes": synthetic,
        "genes_annotated": annotated,
        "go_terms_rna": int(wiring.n_terms),
        "gene_term_links": int(wiring.gene_term.shape[1]),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "command": portable_command(shlex.quote(a) for a in sys.argv),
    }
    rows = []
    for (name, what), values in seconds.items():
        rows.append(
            {
                **base,
                "model": name,
                "measurement": what,
                "seconds": statistics.median(values),
                "seconds_min": min(values),
                "seconds_max": max(values),
                "ratio_vs_totalvi_latent": reference / statistics.median(values),
            }
        )
    for name, epochs in timers.items():
        counted = epochs[1:] or epochs
        rows.append(
            {
                **base,
                "model": name,
                "measurement": "training s/epoch",
                "seconds": statistics.median(counted) if counted else float("nan"),
                "seconds_min": min(counted) if counted else float("nan"),
                "seconds_max": max(counted) if counted else float("nan"),
                "ratio_vs_totalvi_latent": float("nan"),
            }
        )
    return rows


def summarize(frame) -> str:
    """Markdown summary: one table per gene count, the ratios against TOTALVI's latent of the same run."""
    lines = ["# Inference speed: NETWORKVI vs TOTALVI's latent on the same cells", ""]
    for (date, genes, command), part in frame.groupby(["date", "genes", "command"], sort=False):
        first = part.iloc[0]
        kind = (
            "real genes"
            if first["synthetic_genes"] == 0
            else f"{genes - first['synthetic_genes']} real + {first['synthetic_genes']} synthetic genes (see script)"
        )
        lines += [
            f"## {genes} genes ({kind}), {first['cells']} cells - {date}",
            "",
            f"{first['machine']}, {first['threads']} thread(s), torch {first['torch']}, scvi-tools "
            f"{first['scvi_tools']}; {first['epochs']} training epochs, medians of {first['repeats']} alternating "
            f"repeats; RNA wiring: {first['genes_annotated']} of {genes} genes annotated, {first['go_terms_rna']} "
            f"terms, {first['gene_term_links']} gene-term links. Command: `{command}`",
            "",
        ]
        table = part[["model", "measurement", "seconds", "ratio_vs_totalvi_latent"]].copy()
        table["seconds"] = table["seconds"].map(lambda v: f"{v:.2f}")
        table["ratio_vs_totalvi_latent"] = table["ratio_vs_totalvi_latent"].map(lambda v: "-" if v != v else f"{v:.2f}")
        table.columns = ["model", "measurement", "seconds", "TOTALVI latent / this"]
        lines += [md_table(table), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, nargs="+", default=[4000, 16000], help="RNA features per run")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs before timing (speed only)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (medians)")
    parser.add_argument("--cells", type=int, default=0, help="subsample cells (0: all 5000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _quiet()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv = args.out_dir / "inference_speed.csv"
    for n_genes in args.genes:
        rows = pd.DataFrame(measure(n_genes, args))
        rows.to_csv(csv, mode="a", header=not csv.exists(), index=False)
        for row in rows.itertuples():
            logger.info(
                "%d genes, %s %s: %.2f s (ratio %.2f)",
                n_genes,
                row.model,
                row.measurement,
                row.seconds,
                row.ratio_vs_totalvi_latent,
            )
    frame = pd.read_csv(csv)
    (args.out_dir / "inference_speed.md").write_text(summarize(frame) + "\n")
    logger.info("Wrote %s and %s", csv, args.out_dir / "inference_speed.md")


if __name__ == "__main__":
    main()
