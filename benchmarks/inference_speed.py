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
  (``BlockSparseLinear.inference_csr = False``: the training code path, i.e. before that change), on dense counts;
- NETWORKVI (go)'s latent, embed and activations with the GO encoder's inference from the nonzero counts switched
  off (``WiredEncoder.sparse_counts = False``, ``..., dense counts``): every count through the input transform, the
  gene layer and the GO levels' products, the code before that change;
- NETWORKVI (go)'s latent, embed and activations on the **previous code path** (``..., previous``): the inference-only
  kernels switched off (``eval_kernel = False`` on every ``BlockSparseLinear`` and ``_TwoPathBlockLayer``: the
  autograd kernels' forward passes), the encoders' input transform in torch (``torch.log1p``, shift, scale,
  transposed copy) and scvi-tools' 128-cell minibatches
  for the latent and embed: the code before the inference changes of issue 27, item 3, timed in the same run.

Every call uses its method's default minibatch: TOTALVI ``scvi.settings.batch_size`` (128), NETWORKVI's latent and
embed ``INFERENCE_BATCH_SIZE`` (256, ``scvi_networkvi/model/_outputs.py``), ``get_activations`` 256. Ratio = TOTALVI
latent seconds / the measurement's seconds (>= 1: at least as fast as TOTALVI's latent). Memory: the process RSS is
sampled every 2 ms during each timed call; ``peak_rss_mib`` is the highest sample over the repeats and
``rss_growth_mib`` the highest rise above the RSS at the call's start (what the call itself allocates), both also as
ratios to TOTALVI's latent. Training s/epoch (median of the epochs after the first, validation excluded) is recorded
too.

Cells: the tutorial CITE-seq data (registry ``tutorial-cite``: 5000 bone-marrow cells, 4000 genes, 134 proteins),
batch key ``Site``. Gene counts (``--genes``): ``4000`` is the real data. A larger count N is the tutorial's 4000
real genes plus N - 4000 **synthetic** genes, because no real 15-20k-gene CITE-seq data is reachable here: each extra
gene carries a real human ENSEMBL id drawn (seeded, without replacement) from ``org.Hs.eg.db``'s ENSEMBL table among
the ids not in the data, so that the GO wiring has the structure (annotated share, genes per term) of real genes;
its counts are the column of a randomly drawn real gene with the cells permuted (same count distribution, no cell-type
signal). Those counts are as dense as the tutorial's selected genes, denser than most genes of a real full
transcriptome: the inference cost of the encoders does not depend on the counts' values, the data loading does a
little. The CSV says ``synthetic`` for these rows.

Results: rows appended to ``--out-dir``/``NAME.csv`` and a summary written to ``NAME.md`` (``--name``, default
``inference_speed``), with machine, date, versions and the command.

Usage (about 3 minutes for 4000 genes and 8 for 16000 on one thread of a 2-core AMD EPYC VM)::

    python benchmarks/inference_speed.py [--genes 4000 16000] [--epochs 3] [--repeats 3] [--threads 1]
        [--out-dir benchmarks/results] [--name inference_speed]

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
import threading
import time
import warnings
from contextlib import contextmanager
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


class RssSampler:
    """The process RSS sampled every ``interval`` seconds on a thread while a ``with`` block runs (Linux /proc)."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.start = self.peak = 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") / 2**20

    def _rss(self) -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.start = self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


@contextmanager
def previous_code_path(model):
    """The NETWORKVI GO encoder's inference as before issue 27 item 3: autograd kernels' forward, torch's input transform.

    The transform (``torch.log1p``, shift, scale, the encoder's transposed copy) replaces the table ``log1p`` and
    the one-pass transform of ``NetworkVAE._encode``.
    """
    import torch

    from scvi_networkvi.module import _networkvae
    from scvi_networkvi.nn._block_sparse import BlockSparseLinear
    from scvi_networkvi.nn._two_path import _TwoPathBlockLayer

    layers = [m for m in model.module.modules() if isinstance(m, (BlockSparseLinear, _TwoPathBlockLayer))]
    fast = _networkvae.log1p, _networkvae.log1p_shift_scale_t
    for layer in layers:
        layer.eval_kernel = False
    _networkvae.log1p, _networkvae.log1p_shift_scale_t = torch.log1p, lambda *args: None
    try:
        yield
    finally:
        _networkvae.log1p, _networkvae.log1p_shift_scale_t = fast
        for layer in layers:
            layer.eval_kernel = True


def _set_inference_csr(model, enabled: bool | None, saved: dict) -> None:
    """Switch the GO levels' sparse inference path off (``False``) or back to each layer's own setting (``None``)."""
    from scvi_networkvi.nn._block_sparse import BlockSparseLinear

    for module in model.module.modules():
        if isinstance(module, BlockSparseLinear) and hasattr(module, "inference_csr"):
            saved.setdefault(id(module), module.inference_csr)
            module.inference_csr = saved[id(module)] if enabled is None else enabled


@contextmanager
def dense_counts(model):
    """Every GO encoder of ``model`` without its inference from the nonzero counts (``sparse_counts = False``)."""
    from scvi_networkvi.nn import WiredEncoder

    encoders = [m for m in model.module.modules() if isinstance(m, WiredEncoder)]
    for encoder in encoders:
        encoder.sparse_counts = False
    try:
        yield
    finally:
        for encoder in encoders:
            encoder.sparse_counts = True


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
            with dense_counts(go_model):
                go_model.get_latent_representation()
        finally:
            _set_inference_csr(go_model, None, saved)

    calls[("NETWORKVI (go)", "latent, training code path")] = latent_training_path
    go_data = models["NETWORKVI (go)"][1]

    def previous(function):
        def call():
            with previous_code_path(go_model), dense_counts(go_model):
                function()

        return call

    def without_sparse_counts(function):
        def call():
            with dense_counts(go_model):
                function()

        return call

    for what in ("latent", "embed", "activations"):
        calls[("NETWORKVI (go)", f"{what}, dense counts")] = without_sparse_counts(calls[("NETWORKVI (go)", what)])

    calls[("NETWORKVI (go)", "latent, previous")] = previous(lambda: go_model.get_latent_representation(batch_size=128))
    calls[("NETWORKVI (go)", "embed, previous")] = previous(lambda: nvi.tl.embed(go_data, go_model, batch_size=128))
    calls[("NETWORKVI (go)", "activations, previous")] = previous(go_model.get_activations)
    for function in calls.values():  # warm-up: first-call costs (plans, caches) are not what is compared
        function()
    seconds = {key: [] for key in calls}
    peak = dict.fromkeys(calls, 0.0)
    growth = dict.fromkeys(calls, 0.0)
    for _ in range(args.repeats):  # alternating, so that the models share the machine's load
        for key, function in calls.items():
            with RssSampler() as rss:
                seconds[key].extend(median_seconds(function, 1))
            peak[key] = max(peak[key], rss.peak)
            growth[key] = max(growth[key], rss.peak - rss.start)
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
                "peak_rss_mib": peak[(name, what)],
                "rss_growth_mib": growth[(name, what)],
                "peak_rss_vs_totalvi": peak[(name, what)] / peak[("TOTALVI", "latent")],
                "rss_growth_vs_totalvi": growth[(name, what)] / max(growth[("TOTALVI", "latent")], 1.0),
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
        columns = ["model", "measurement", "seconds", "ratio_vs_totalvi_latent"]
        memory = "peak_rss_mib" in part.columns and part["peak_rss_mib"].notna().any()
        if memory:
            columns += ["peak_rss_mib", "peak_rss_vs_totalvi", "rss_growth_mib"]
        table = part[columns].copy()
        table["seconds"] = table["seconds"].map(lambda v: f"{v:.2f}")
        for column in columns[3:]:
            digits = 0 if column.endswith("mib") else 2
            table[column] = table[column].map(lambda v, d=digits: "-" if v != v else f"{v:.{d}f}")
        table.columns = ["model", "measurement", "seconds", "TOTALVI latent / this"] + (
            ["peak RSS MiB", "peak RSS / TOTALVI's", "RSS rise in call MiB"] if memory else []
        )
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
    parser.add_argument("--name", default="inference_speed", help="file stem of the CSV and markdown summary")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _quiet()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv = args.out_dir / f"{args.name}.csv"
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
    summary = args.out_dir / f"{args.name}.md"
    summary.write_text(summarize(frame) + "\n")
    logger.info("Wrote %s and %s", csv, summary)


if __name__ == "__main__":
    main()
