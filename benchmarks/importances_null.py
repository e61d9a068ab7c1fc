"""Time of the size-matched reference and the gene-set test (``get_importances(..., null_sets=100)``), fast path
against the first implementation, on the same trained model and seed in one process.

Data and model: the tutorial CITE-seq set (``nvi.datasets.tutorial_cite()``, 5000 cells), ``nvi.tl.train`` with
the tutorial settings (``gene_size=5, go_size=2``, GO depth ``--depth``, interactions ``k562-contact-domains``),
trained for ``--epochs`` epochs (the timing does not depend on how well it is trained), with either

- ``--wiring tutorial``: ``annotations="ensembl2go-tutorial"`` (the tutorial's subsampled GAF) and ``go-basic``, or
- ``--wiring full``: the full human annotations, ``annotations="org.Hs.eg.db"`` and ``go="GO.db"``.

Measured after one activation pass: the importance table of all GO terms x all cell types (one-vs-rest, 30 % held
out, ``seed``) with ``null_sets`` random sets per size bin and every term's own gene set, computed twice: with the
fast :func:`scvi_networkvi.interpret._null.null_probes` (what ``get_importances`` runs: batched PCA, the probes
fitted and scored by the compiled kernel of :mod:`scvi_networkvi.interpret._probe_kernel`) and with
:func:`scvi_networkvi.interpret._null_reference.null_probes_reference` (one scikit-learn PCA per set, the code before
this change). Seconds of each call (probes + reference), their ratio, and the agreement of the two tables'
``auroc_null``, ``pval_null``, ``auroc_set``, ``pval_set`` (largest absolute difference, Pearson correlation, share
identical) are logged and appended to ``--out`` (csv, with a markdown table next to it).

    python benchmarks/importances_null.py --wiring tutorial --threads 2
    python benchmarks/importances_null.py --wiring full --threads 2 --skip-reference

``null_only_s`` is the reference's share of the fast call (``fast_s - probes_only_s``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import platform
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _portable import portable_command  # the sibling script (on sys.path)

logger = logging.getLogger("benchmarks.importances_null")
WIRINGS = {
    "tutorial": {"go": "go-basic", "annotations": "ensembl2go-tutorial"},
    "full": {"go": "GO.db", "annotations": "org.Hs.eg.db"},
}
COLUMNS = ("auroc_null", "pval_null", "auroc_set", "pval_set")


def agreement(new: pd.DataFrame, old: pd.DataFrame) -> dict[str, float]:
    """Largest absolute difference, correlation and share of identical values per reference column."""
    out = {}
    for column in COLUMNS:
        a, b = new[column].to_numpy(float), old[column].to_numpy(float)
        both = np.isfinite(a) & np.isfinite(b)
        if (np.isfinite(a) != np.isfinite(b)).any():
            raise AssertionError(f"{column}: the two tables differ in which values are NaN")
        out[f"{column}_max_abs_diff"] = float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0
        out[f"{column}_corr"] = float(np.corrcoef(a[both], b[both])[0, 1]) if both.sum() > 1 else 1.0
        out[f"{column}_identical"] = float((a[both] == b[both]).mean()) if both.any() else 1.0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wiring", choices=sorted(WIRINGS), default="tutorial")
    parser.add_argument("--depth", type=int, default=2, help="GO depth (n_layers_encoder)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--null-sets", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-reference", action="store_true", help="time the fast path only")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "importances_null.csv")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # numpy / scipy BLAS (scikit-learn's PCA) too
    warnings.filterwarnings("ignore", message=".*var_names are not unique.*")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "scvi"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import scvi

    import scvi_networkvi as nvi
    from scvi_networkvi.interpret import ImportanceSettings, _importances, categorical_labels
    from scvi_networkvi.interpret._null import null_probes
    from scvi_networkvi.interpret._null_reference import null_probes_reference

    mdata = nvi.datasets.tutorial_cite()
    mdata.obs["cell_type"] = mdata.obs["cell_type"].astype("category")
    scvi.settings.seed = args.seed
    start = time.perf_counter()
    model = nvi.tl.train(
        mdata,
        batch_key="Site",
        interactions="k562-contact-domains",
        model_kwargs={"gene_size": 5, "go_size": 2, "n_layers_encoder": args.depth},
        max_epochs=args.epochs,
        train_kwargs={"accelerator": "cpu", "enable_progress_bar": False},
        **WIRINGS[args.wiring],
    )
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    activations = model.get_activations(mdata, genes=True)
    capture_s = time.perf_counter() - start
    design = _importances.design_probes(
        activations,
        categorical_labels(mdata, "cell_type"),
        ImportanceSettings(seed=args.seed, null_sets=args.null_sets),
        feature_names={role: model.adata[acts.modality].var_names for role, acts in activations.modalities.items()},
    )

    def timed(implementation) -> tuple[pd.DataFrame, float]:
        _importances.null_probes = implementation  # what term_reference calls
        try:
            start = time.perf_counter()
            table = _importances.importance_table(design, activations)
            return table, time.perf_counter() - start
        finally:
            _importances.null_probes = null_probes

    design_plain = dataclasses.replace(design, null_sets=0)
    start = time.perf_counter()
    _importances.importance_table(design_plain, activations)
    probes_s = time.perf_counter() - start
    new, new_s = timed(null_probes)
    logger.info("fast path: %.1f s per call (probes alone %.1f s)", new_s, probes_s)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    row = {
        "date": datetime.date.today().isoformat(),
        "commit": commit or "?",
        "wiring": args.wiring,
        "go": WIRINGS[args.wiring]["go"],
        "annotations": WIRINGS[args.wiring]["annotations"],
        "depth": args.depth,
        "go_terms": "/".join(f"{role}:{int(w.n_terms)}" for role, w in model.wirings_.items()),
        "cell_types": int(new["phenotype"].nunique()),
        "null_sets": args.null_sets,
        "seed": args.seed,
        "epochs": args.epochs,
        "train_s": round(train_s, 1),
        "activations_s": round(capture_s, 2),
        "probes_only_s": round(probes_s, 2),
        "fast_s": round(new_s, 2),
        "null_only_s": round(new_s - probes_s, 2),
        "reference_s": float("nan"),
        "speedup": float("nan"),
    }
    if not args.skip_reference:
        old, old_s = timed(null_probes_reference)
        row["reference_s"] = round(old_s, 2)
        row["speedup"] = round(old_s / new_s, 2)
        row.update({k: round(v, 9) for k, v in agreement(new, old).items()})
        logger.info("reference: %.1f s per call; reference / fast = %.2fx", old_s, old_s / new_s)
        logger.info("agreement: %s", {k: v for k, v in row.items() if k.startswith(COLUMNS)})
    row.update(
        {
            "machine": f"{platform.machine()} {platform.processor() or platform.platform()}",
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": "/".join(f"{v:.1f}" for v in os.getloadavg()),
            "command": "python benchmarks/importances_null.py " + portable_command(argv or __import__("sys").argv[1:]),
        }
    )
    logger.info("%s", row)
    frame = pd.DataFrame([row])
    if args.out.exists():
        frame = pd.concat([pd.read_csv(args.out), frame], ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    shown = ["date", "commit", "wiring", "go_terms", "cell_types", "torch_threads", "load_average", "probes_only_s"]
    shown += ["fast_s", "null_only_s", "reference_s", "speedup"]
    shown += [c for c in frame.columns if c.endswith(("_max_abs_diff", "_corr"))]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in frame[shown].itertuples(index=False)]
    args.out.with_suffix(".md").write_text(
        "# Size-matched reference and gene-set test: fast path vs first implementation\n\n"
        "Generated by `benchmarks/importances_null.py` (one row per run; machine, load and command in the csv). "
        "Seconds per `importance_table` call with `null_sets` (all GO terms x all cell types, after the activation "
        "pass); `probes_only_s`: the same without `null_sets`; `null_only_s`: their difference, the reference and "
        "gene-set test alone.\n\n" + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
