"""Do GO-term importances mean something? Top terms per cell type, the in-sample gap, planted-signal recovery.

Four parts (``--parts``), each writing its tables to ``--out-dir`` (default ``benchmarks/results/``):

``top`` - top GO terms per cell type (``interpretability_top_terms.csv`` / ``.md``).
    Data: the NetworkVI tutorial CITE-seq set (``nvi.datasets.tutorial_cite()``: 5000 bone-marrow cells, ``rna``
    4000 genes with ENSEMBL ids in ``var["gene_stable_id"]``, ``prot`` 134 antibodies; obs ``cell_type``, ``Site``),
    optionally a seeded subsample of ``--n-cells`` cells. GO: the FULL human annotations, not the tutorial's
    subsampled GAF: the registry's ``org.Hs.eg.db`` with ``GO.db`` (Bioconductor 3.16, GO 2022-07-01; the same
    annotations by ENSEMBL id as the ``ensembl2go-human-2022.gaf`` of the earlier runs; ``--go`` / ``--gaf`` take
    other registry names or files). Model: ``nvi.tl.train(mdata, batch_key="Site", go=..., annotations=...,
    interactions="k562-contact-domains", model_kwargs={"gene_size": 5, "go_size": 2, "n_layers_encoder": --depth},
    max_epochs=--epochs)`` on CPU, one model per ``--seeds`` entry (``--depth``: the GO depth, default the package's).
    Importances: ``model.get_importances(groupby="cell_type")`` (one-vs-rest, held-out AUROC of an L2 logistic probe
    on each GO term's neurons, 30 % of each label's cells held out). For a fixed set of well-known cell types the
    ``--top-k`` GO terms by held-out AUROC are listed per modality, next to the terms one expects from biology and a
    keyword check: is a term whose name contains one of the cell type's keywords among the top k? Because the
    encoders keep only shallow (broad) GO terms, the check is put next to its chance level: how many ranked terms
    contain a keyword at all, the probability that k terms drawn at random include one, and the best rank a keyword
    term reaches. Nothing is tuned: the settings are the package's defaults plus the ones above.

``gap`` - held-out vs in-sample AUROC (``interpretability_gap.md``), from the same models.
    Over all ranked GO terms x cell types (one-vs-rest): mean / median of ``auroc_fit - auroc`` (in-sample minus
    held-out), the fraction of (term, cell type) pairs whose in-sample AUROC exceeds 0.9 while the held-out one does
    not, and how the top-10 terms per cell type differ when ranked by ``auroc_fit`` instead of ``auroc`` (overlap
    of the two lists, mean of both AUROCs over the in-sample top 10). The original NetworkVI reports in-sample
    AUROCs as its headline numbers: this is how much that inflates them.

``size`` - does importance follow term size? (``interpretability_size.md``), from the same models.
    ``get_importances(..., null_sets=--null-sets)`` adds each GO term's size- and width-matched reference (random
    sets of as many annotated genes, their gene-node activations summarised in the term's width by PCA, probed on
    the same split). Over all ranked GO terms x cell types: Spearman correlation of the held-out AUROC with the
    term's gene count, and of its excess over the reference (``auroc - auroc_null``); the share of pairs with
    ``pval_null <= 0.05``; per cell type the top 10 by AUROC: their median gene count next to all terms', how many
    beat their reference, and how many stay in the top 10 when ranked by the excess instead. The like-with-like
    gene-set test: each term's own genes summarised and probed as the random sets are (``auroc_set``), its
    agreement with the term's AUROC, and the share of pairs (and of the top 10) whose gene set beats the random sets
    (``pval_set <= 0.05``).

``planted`` - planted-signal recovery (``interpretability_planted.csv`` / ``.md``).
    The design of ``tests/test_interpret_planted.py``, repeated over ``--plant-seeds`` and several planted term
    pairs: real counts (``--starter``, default ``tests/data/bmmc_cite.h5mu``: 600 cells made from the registry's
    tutorial data by ``scripts/make_test_data.py``; the stored table was measured on an earlier 600-cell starter
    file), cells split at random into ``planted`` (35 %), ``decoy`` (35 %) and ``other``; in the
    planted cells the counts of every gene annotated to the two terms are multiplied by ``--factor`` (4). The pairs
    are chosen by the test's rule: depth-2 GO terms of 15-40 genes in the compiled wiring, no gene carrying more
    than half of the term's counts, ordered by their total counts (best expressed first); pair i is candidates
    (2i, 2i+1), ``--n-pairs`` pairs. The model is built as in the test (``NETWORKVI(..., gene_size=5, go_size=2,
    gene_layer="standard")``, ``--planted-epochs`` epochs, seed = plant seed); importances are planted-vs-other and
    decoy-vs-other on the RNA modality. Control: the same model at its initial weights (same seed, not trained),
    planted vs other - how much of the recovery the wiring alone gives. Per run and planted term: its rank among the GO terms and its q-value for
    both contrasts. A term is recovered when it ranks in the top 5 % (``ceil(0.05 * n_terms)``) with q < 0.05; a
    decoy hit is the same criterion met for decoy vs other (a false positive).

Usage (one command, everything; ~15-25 min on 2 busy cores)::

    python benchmarks/interpretability.py [--parts top gap size planted] [--epochs 50] [--seeds 0] [--n-cells N]
        [--null-sets 100]
        [--plant-seeds 0 1 2] [--n-pairs 2] [--planted-epochs 40] [--threads N] [--out-dir benchmarks/results]

Small smoke run::

    python benchmarks/interpretability.py --n-cells 1500 --epochs 3 --plant-seeds 0 --n-pairs 1 \
        --planted-epochs 3 --out-dir benchmarks/_out/interp
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _portable import portable_command, portable_path, portable_text  # the sibling script (on sys.path)

logger = logging.getLogger("benchmarks.interpretability")

STARTER = Path(__file__).resolve().parents[1] / "tests" / "data" / "bmmc_cite.h5mu"  # scripts/make_test_data.py
GENERIC_IMMUNE = ("immune", "leukocyte", "lymphocyte", "defense response")

#: Cell type -> (what biology leads one to expect, keywords whose presence in a top term's name counts as a hit).
#: Written before looking at any result; not to be edited to make the check pass.
EXPECTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "Naive CD20+ B IGKC+": (
        "B cell activation / receptor signalling, humoral immune response, antigen presentation (MHC II)",
        ("b cell", "humoral", "immunoglobulin", "antigen"),
    ),
    "B1 B IGKC+": (
        "B cell activation / receptor signalling, humoral immune response, antigen presentation (MHC II)",
        ("b cell", "humoral", "immunoglobulin", "antigen"),
    ),
    "CD14+ Mono": (
        "antigen processing and presentation, myeloid leukocyte activation, inflammatory / defense response",
        ("antigen", "myeloid", "inflammatory", "phagocyt", "defense response", "cytokine"),
    ),
    "CD16+ Mono": (
        "antigen processing and presentation, myeloid leukocyte activation, inflammatory / defense response",
        ("antigen", "myeloid", "inflammatory", "phagocyt", "defense response", "cytokine"),
    ),
    "cDC2": (
        "antigen processing and presentation (MHC II), dendritic cell / myeloid activation",
        ("antigen", "dendritic", "myeloid"),
    ),
    "pDC": (
        "type I interferon production, response to virus, antigen presentation",
        ("interferon", "virus", "viral", "antigen", "dendritic"),
    ),
    "CD4+ T naive": ("T cell activation / differentiation, lymphocyte activation", ("t cell", "lymphocyte")),
    "CD4+ T activated": ("T cell activation / differentiation, lymphocyte activation", ("t cell", "lymphocyte")),
    "CD8+ T naive": ("T cell activation, lymphocyte activation, cytotoxicity", ("t cell", "lymphocyte")),
    "NK": (
        "natural killer cell mediated cytotoxicity, cell killing, lymphocyte activation",
        ("natural killer", "cytotox", "killing", "lymphocyte"),
    ),
    "Erythroblast": (
        "erythrocyte differentiation, heme biosynthesis, oxygen / gas transport, iron homeostasis",
        ("erythrocyte", "heme", "oxygen", "hemoglobin", "gas transport", "iron", "porphyrin", "tetrapyrrole"),
    ),
    "Reticulocyte": (
        "erythrocyte differentiation, heme biosynthesis, oxygen / gas transport, iron homeostasis",
        ("erythrocyte", "heme", "oxygen", "hemoglobin", "gas transport", "iron", "porphyrin", "tetrapyrrole"),
    ),
}


# --------------------------------------------------------------------------------------------- helpers


def setup_torch(threads: int | None) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message=".*var_names are not unique.*")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "scvi"):
        logging.getLogger(name).setLevel(logging.WARNING)


def has_keyword(name: str, keywords: tuple[str, ...]) -> bool:
    """Does a keyword start a word of ``name``? (``"t cell"`` must not match ``"host cell"``; prefixes such as
    ``"phagocyt"`` still match ``"phagocytosis"``.)"""
    low = str(name).lower()
    return any(re.search(rf"\b{re.escape(k)}", low) for k in keywords)


def chance_hit(n_terms: int, n_matching: int, k: int) -> float:
    """Probability that k of n_terms terms drawn at random include at least one of the n_matching terms."""
    if n_matching == 0:
        return 0.0
    k = min(k, n_terms)
    return 1.0 - math.comb(n_terms - n_matching, k) / math.comb(n_terms, k)


def md_table(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "/") for v in row) + " |")
    return "\n".join(lines)


def header(title: str, args: argparse.Namespace, extra: str = "") -> str:
    import scvi
    import torch

    import scvi_networkvi as nvi

    return portable_text(  # stored results name no machine's folders
        f"# {title}\n\n"
        f"Generated by `python benchmarks/interpretability.py {portable_command(args.argv)}` on "
        f"{datetime.date.today().isoformat()}, {platform.machine()} ({os.cpu_count()} cores), "
        f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"scvi-tools {scvi.__version__}, scvi_networkvi {getattr(nvi, '__version__', '?')}.\n\n{extra}"
    )


# --------------------------------------------------------------------------------------------- parts 1 and 2


def model_path(args: argparse.Namespace, seed: int) -> Path | None:
    """Where ``--models-dir`` keeps (and finds) the model of ``seed`` and its full importance tables."""
    if args.models_dir is None:
        return None
    gaf = Path(args.gaf).stem.replace(".", "-")
    return args.models_dir / f"{gaf}_depth{args.depth or 'default'}_epochs{args.epochs}_cells{args.n_cells}_seed{seed}"


def train_tutorial_model(args: argparse.Namespace, seed: int):
    import scvi

    import scvi_networkvi as nvi
    from scvi_networkvi.interpret import ImportanceSettings

    mdata = nvi.datasets.tutorial_cite()
    if args.n_cells is not None and args.n_cells < mdata.n_obs:
        keep = np.sort(np.random.default_rng(seed).choice(mdata.n_obs, size=args.n_cells, replace=False))
        mdata = mdata[keep].copy()
    mdata.obs["cell_type"] = mdata.obs["cell_type"].astype("category")
    scvi.settings.seed = seed
    saved = model_path(args, seed)
    start = time.perf_counter()
    if saved is not None and (saved / "model.pt").is_file():
        model = nvi.NETWORKVI.load(str(saved), adata=mdata)
        train_s = float("nan")
        logger.info("seed %d: model loaded from %s", seed, saved)
    else:
        model = nvi.tl.train(
            mdata,
            batch_key="Site",
            go=args.go,
            annotations=args.gaf,
            interactions=args.interactions,
            model_kwargs={"gene_size": 5, "go_size": 2, **({"n_layers_encoder": args.depth} if args.depth else {})},
            max_epochs=args.epochs,
            train_kwargs={"accelerator": "cpu", "enable_progress_bar": False},
        )
        train_s = time.perf_counter() - start
        if saved is not None:
            model.save(str(saved), overwrite=True)
    start = time.perf_counter()
    null_sets = args.null_sets if "size" in args.parts else 0
    # the package's default importance seed unless --importance-seed names one (tables until 2026-12-05 used the
    # training seed and are stored without the _split suffix)
    split = ImportanceSettings().seed if args.importance_seed is None else args.importance_seed
    if args.null_seed is None:
        table = model.get_importances(groupby="cell_type", key_added=None, seed=split, null_sets=null_sets)
    else:
        table = null_draw_table(model, split, null_sets, args.null_seed)
    probe_s = time.perf_counter() - start
    if saved is not None:
        suffix = f"_split{split}" + ("" if args.null_seed is None else f"_draws{args.null_seed}")
        suffix += "" if args.pca_cells is None else f"_pca{args.pca_cells}"
        table.to_csv(saved / f"importances_null{null_sets}{suffix}.csv.gz", index=False)
    logger.info("seed %d: %d cells, trained %.0f s, importances %.0f s", seed, mdata.n_obs, train_s, probe_s)
    counts = mdata.obs["cell_type"].value_counts()
    wiring = {role: w.summary() for role, w in model.wirings_.items()}
    info = {
        "seed": seed,
        "n_cells": mdata.n_obs,
        "train_s": train_s,
        "importances_s": probe_s,
        "depth": model.init_params_["non_kwargs"]["n_layers_encoder"],
        "parameters": sum(p.numel() for p in model.module.parameters()),
        **{f"{role}_go_terms": w["go_terms"] for role, w in wiring.items()},
        **{f"{role}_terms_per_level": w["terms_per_level"] for role, w in wiring.items()},
    }
    return table, counts, info


def null_draw_table(model, split: int, null_sets: int, null_seed: int) -> pd.DataFrame:
    """The importance table on split ``split`` with the random gene sets drawn from ``null_seed`` instead.

    The package draws the held-out split and the random sets from one seed; fixing the split and changing the draws
    measures how far the random sets alone move the order (what more ``null_sets`` would reduce).
    """
    import dataclasses

    from scvi_networkvi.interpret import ImportanceSettings, capture_activations, categorical_labels
    from scvi_networkvi.interpret._importances import design_probes, importance_table

    settings = ImportanceSettings(seed=split, null_sets=null_sets)
    activations = capture_activations(model, genes=True)
    labels = categorical_labels(model.adata, "cell_type")
    names = {role: np.asarray(model.adata[a.modality].var_names) for role, a in activations.modalities.items()}
    design = design_probes(activations, labels, settings, feature_names=names)
    return importance_table(dataclasses.replace(design, seed=null_seed), activations)


def top_terms(table: pd.DataFrame, counts: pd.Series, seed: int, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long table of the top-k terms and one summary row per (cell type, modality)."""
    go = table[table["kind"] == "go"]
    rows, summary = [], []
    for cell_type, (expected, keywords) in EXPECTED.items():
        for modality, sub in go[go["phenotype"] == cell_type].groupby("modality", observed=True):
            sub = sub.sort_values(["rank", "node_id"])
            head = sub.head(k)
            for row in head.itertuples(index=False):
                rows.append(
                    {
                        "seed": seed,
                        "cell_type": cell_type,
                        "modality": modality,
                        "rank": int(row.rank),
                        "node_id": row.node_id,
                        "name": row.name,
                        "level": row.level,
                        "n_genes": row.n_genes,
                        "auroc": row.auroc,
                        "auroc_low": row.auroc_low,
                        "auroc_high": row.auroc_high,
                        "qval": row.qval,
                        "auroc_fit": row.auroc_fit,
                        "keyword_hit": has_keyword(row.name, keywords),
                        "generic_immune_hit": has_keyword(row.name, GENERIC_IMMUNE),
                        "expected": expected,
                    }
                )
            matching = sub["name"].map(lambda n, kw=keywords: has_keyword(n, kw))
            best = sub.loc[matching, "rank"].min() if matching.any() else pd.NA
            best_name = sub.loc[matching].iloc[0]["name"] if matching.any() else ""
            summary.append(
                {
                    "seed": seed,
                    "cell_type": cell_type,
                    "modality": modality,
                    "n_cells": int(counts.get(cell_type, 0)),
                    "n_cases_heldout": int(sub["n_cases_heldout"].iloc[0]),
                    "expected": expected,
                    "keywords": ", ".join(keywords),
                    f"top{k}": "; ".join(
                        f"{n} ({a:.2f} [{lo:.2f}, {hi:.2f}])"
                        for n, a, lo, hi in zip(
                            head["name"], head["auroc"], head["auroc_low"], head["auroc_high"], strict=True
                        )
                    ),
                    "keyword_in_topk": bool(matching.loc[head.index].any()),
                    "generic_immune_in_topk": bool(head["name"].map(lambda n: has_keyword(n, GENERIC_IMMUNE)).any()),
                    "keyword_terms": f"{int(matching.sum())}/{len(sub)}",
                    "terms_auroc_ge_0.95": int((sub["auroc"] >= 0.95).sum()),
                    "chance_p": round(chance_hit(len(sub), int(matching.sum()), k), 2),
                    "best_keyword_rank": best,
                    "best_keyword_term": best_name,
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(summary)


def gap_stats(table: pd.DataFrame, top: int = 10) -> dict[str, float]:
    go = table[(table["kind"] == "go") & table["auroc"].notna() & table["auroc_fit"].notna()]
    diff = go["auroc_fit"] - go["auroc"]
    fit_hi = go["auroc_fit"] > 0.9
    overlaps, fit_top_fit, fit_top_held, held_top_held, spearman = [], [], [], [], []
    for _, sub in go.groupby(["modality", "phenotype"], observed=True):
        if len(sub) < top:
            continue
        by_fit = sub.sort_values(["auroc_fit", "node_id"], ascending=[False, True]).head(top)
        by_held = sub.sort_values(["auroc", "node_id"], ascending=[False, True]).head(top)
        overlaps.append(len(set(by_fit["node_id"]) & set(by_held["node_id"])) / top)
        fit_top_fit.append(by_fit["auroc_fit"].mean())
        fit_top_held.append(by_fit["auroc"].mean())
        held_top_held.append(by_held["auroc"].mean())
        spearman.append(sub["auroc"].corr(sub["auroc_fit"], method="spearman"))
    return {
        "pairs (term x cell type)": len(go),
        "mean auroc_fit - auroc": diff.mean(),
        "median auroc_fit - auroc": diff.median(),
        "90th pct auroc_fit - auroc": diff.quantile(0.9),
        "fraction auroc_fit > auroc": (diff > 0).mean(),
        "fraction auroc_fit > 0.9": fit_hi.mean(),
        "fraction auroc > 0.9": (go["auroc"] > 0.9).mean(),
        "fraction auroc_fit > 0.9 but auroc < 0.9": (fit_hi & (go["auroc"] < 0.9)).mean(),
        "... of the pairs with auroc_fit > 0.9": (go.loc[fit_hi, "auroc"] < 0.9).mean() if fit_hi.any() else np.nan,
        f"top-{top} overlap, fit vs held-out ranking (mean)": np.mean(overlaps),
        f"top-{top} overlap (median)": np.median(overlaps),
        f"top-{top} overlap (min)": np.min(overlaps),
        f"in-sample top-{top}: mean auroc_fit": np.mean(fit_top_fit),
        f"in-sample top-{top}: mean held-out auroc of the same terms": np.mean(fit_top_held),
        f"held-out top-{top}: mean held-out auroc": np.mean(held_top_held),
        "Spearman(auroc, auroc_fit) per cell type (median)": np.nanmedian(spearman),
        "cell types compared": len(overlaps),
    }


def size_stats(table: pd.DataFrame, top: int = 10) -> dict[str, float]:
    """How the held-out AUROC and its excess over the size-matched reference follow the GO terms' gene counts."""
    go = table[(table["kind"] == "go") & table["auroc"].notna() & table["auroc_null"].notna()].copy()
    go["excess"] = go["auroc"] - go["auroc_null"]
    go["set_excess"] = go["auroc_set"] - go["auroc_null"]
    size_top, size_all, beat_top, kept, set_top = [], [], [], [], []
    for _, sub in go.groupby(["modality", "phenotype"], observed=True):
        if len(sub) < top:
            continue
        by_auroc = sub.sort_values(["auroc", "node_id"], ascending=[False, True]).head(top)
        by_excess = sub.sort_values(["excess", "node_id"], ascending=[False, True]).head(top)
        size_top.append(by_auroc["n_genes"].median())
        size_all.append(sub["n_genes"].median())
        beat_top.append((by_auroc["pval_null"] <= 0.05).mean())
        set_top.append((by_auroc["pval_set"] <= 0.05).mean())
        kept.append(len(set(by_auroc["node_id"]) & set(by_excess["node_id"])) / top)
    return {
        "pairs (term x cell type)": len(go),
        "Spearman(auroc, n_genes)": go["auroc"].corr(go["n_genes"], method="spearman"),
        "Spearman(auroc - auroc_null, n_genes)": go["excess"].corr(go["n_genes"], method="spearman"),
        "mean auroc_null": go["auroc_null"].mean(),
        "fraction pval_null <= 0.05": (go["pval_null"] <= 0.05).mean(),
        f"top-{top} by auroc: median n_genes (mean over cell types)": np.mean(size_top),
        "all ranked terms: median n_genes (mean over cell types)": np.mean(size_all),
        f"top-{top} by auroc: fraction with pval_null <= 0.05": np.mean(beat_top),
        f"top-{top} overlap, auroc vs excess ranking (mean)": np.mean(kept),
        "mean auroc_set": go["auroc_set"].mean(),
        "Spearman(auroc_set - auroc_null, n_genes)": go["set_excess"].corr(go["n_genes"], method="spearman"),
        "Spearman(auroc, auroc_set)": go["auroc"].corr(go["auroc_set"], method="spearman"),
        "fraction pval_set <= 0.05": (go["pval_set"] <= 0.05).mean(),
        f"top-{top} by auroc: fraction with pval_set <= 0.05": np.mean(set_top),
        "cell types compared": len(kept),
    }


def run_top_and_gap(args: argparse.Namespace) -> None:
    long_frames, summaries, gaps, sizes, examples, runs = [], [], [], [], [], []
    for seed in args.seeds:
        table, counts, info = train_tutorial_model(args, seed)
        runs.append(info)
        if "top" in args.parts:
            long, summary = top_terms(table, counts, seed, args.top_k)
            long_frames.append(long)
            summaries.append(summary)
            for row in summary.itertuples(index=False):
                logger.info(
                    "seed %d %-20s %-4s keyword in top-%d: %-5s (chance %.2f, best keyword rank %s) | %s",
                    seed,
                    row.cell_type,
                    row.modality,
                    args.top_k,
                    row.keyword_in_topk,
                    row.chance_p,
                    row.best_keyword_rank,
                    getattr(row, f"top{args.top_k}"),
                )
        if "gap" in args.parts:
            for modality, sub in [("all", table), *table.groupby("modality", observed=True)]:
                stats = gap_stats(sub)
                gaps.append({"seed": seed, "modality": modality, **stats})
                logger.info("seed %d gap (%s): %s", seed, modality, {k: round(float(v), 3) for k, v in stats.items()})
        if "size" in args.parts:
            for modality, sub in [("all", table), *table.groupby("modality", observed=True)]:
                stats = size_stats(sub)
                sizes.append({"seed": seed, "modality": modality, **stats})
                logger.info("seed %d size (%s): %s", seed, modality, {k: round(float(v), 3) for k, v in stats.items()})
            go = table[(table["kind"] == "go") & (table["modality"] == "rna") & table["phenotype"].isin(EXPECTED)]
            for cell_type, sub in go.groupby("phenotype", observed=True):
                head = sub.sort_values(["rank", "node_id"]).head(args.top_k)
                examples.append(
                    {
                        "seed": seed,
                        "cell_type": cell_type,
                        f"top {args.top_k} (rna): auroc / auroc_null / auroc_set, pval_null / pval_set, n_genes": (
                            "; ".join(
                                f"{r.name} ({r.auroc:.2f} / {r.auroc_null:.2f} / {r.auroc_set:.2f}, "
                                f"{r.pval_null:.2f} / {r.pval_set:.2f}, {r.n_genes})"
                                for r in head.itertuples(index=False)
                            )
                        ),
                    }
                )
    settings = (
        f"Data: tutorial CITE-seq ({runs[0]['n_cells']} cells), batch key `Site`. GO `{args.go}`, annotations "
        f"`{args.gaf}`, interactions `{args.interactions}`; `gene_size=5, go_size=2`, {args.epochs} epochs, CPU. "
        "Importances: `get_importances(groupby='cell_type'"
        + (f", null_sets={args.null_sets}" if "size" in args.parts else "")
        + ")`, one-vs-rest, 30 % held out, GO terms only "
        "(root / UNKNOWN nodes excluded). Runs: "
        + "; ".join(
            f"seed {r['seed']}: GO depth {r['depth']}, {r['parameters']:,} parameters, GO terms per level "
            f"{r.get('rna_terms_per_level')} (rna) / {r.get('protein_terms_per_level')} (protein), "
            + ("loaded from --models-dir" if math.isnan(r["train_s"]) else f"train {r['train_s']:.0f} s")
            + f", importances {r['importances_s']:.0f} s"
            for r in runs
        )
        + ".\n\n"
    )
    if "top" in args.parts:
        long = pd.concat(long_frames, ignore_index=True)
        summary = pd.concat(summaries, ignore_index=True)
        long.to_csv(args.out_dir / "interpretability_top_terms.csv", index=False)
        k = args.top_k
        parts = [
            header("Top GO terms per cell type (full human GO annotations)", args, settings),
            f"Per cell type and modality: the top {k} GO terms by held-out AUROC (95 % DeLong interval), the terms "
            "biology leads one to expect, and whether a top term's name contains one of the cell type's keywords. "
            "`keyword terms` = ranked GO terms whose name contains a keyword / all ranked GO terms; `chance` = "
            f"probability that {k} terms drawn at random include one; `best rank` = best rank of a keyword term; `terms AUROC >= 0.95` = how many GO terms "
            "separate the cell type almost perfectly (when many do, the order of the top k says little). "
            "`generic immune` = a top term contains immune / leukocyte / lymphocyte / defense response.\n",
        ]
        summary = summary.sort_values(
            ["seed", "modality"],
            key=lambda c: c.map({"rna": 0}).fillna(1) if c.name == "modality" else c,
            kind="stable",
        )
        for (seed, modality), sub in summary.groupby(["seed", "modality"], sort=False):
            hits = int(sub["keyword_in_topk"].sum())
            parts.append(
                f"\n## seed {seed}, modality `{modality}`: keyword in top {k} for {hits}/{len(sub)} cell types "
                f"(expected by chance: {sub['chance_p'].sum():.1f})\n"
            )
            view = sub[
                [
                    "cell_type",
                    "n_cells",
                    f"top{k}",
                    "expected",
                    "keyword_in_topk",
                    "generic_immune_in_topk",
                    "keyword_terms",
                    "terms_auroc_ge_0.95",
                    "chance_p",
                    "best_keyword_rank",
                    "best_keyword_term",
                ]
            ].rename(
                columns={
                    "keyword_in_topk": "keyword in top k",
                    "generic_immune_in_topk": "generic immune",
                    "keyword_terms": "keyword terms",
                    "terms_auroc_ge_0.95": "terms AUROC >= 0.95",
                    "chance_p": "chance",
                    "best_keyword_rank": "best rank",
                    "best_keyword_term": "best keyword term",
                }
            )
            parts.append(md_table(view) + "\n")
        (args.out_dir / "interpretability_top_terms.md").write_text("\n".join(parts))
        logger.info("wrote %s", args.out_dir / "interpretability_top_terms.md")
    if "gap" in args.parts:
        gap = pd.DataFrame(gaps)
        wide = gap.set_index(["seed", "modality"]).T
        wide.columns = [f"seed {s}, {m}" for s, m in wide.columns]
        wide = wide.map(lambda v: f"{v:.3f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}")
        wide.insert(0, "statistic", wide.index)
        text = header("Held-out vs in-sample AUROC of the GO-term probes", args, settings) + (
            "All ranked GO terms x all tested cell types (one-vs-rest). `auroc` is scored on the 30 % held-out "
            "cells, `auroc_fit` on the cells the probe was fitted on (what the original NetworkVI reports). "
            "Top-10 overlap: per cell type, shared terms between the 10 best by `auroc_fit` and the 10 best by "
            "`auroc`, divided by 10.\n\n" + md_table(wide) + "\n"
        )
        (args.out_dir / "interpretability_gap.md").write_text(text)
        logger.info("wrote %s", args.out_dir / "interpretability_gap.md")
    if "size" in args.parts:
        wide = pd.DataFrame(sizes).set_index(["seed", "modality"]).T
        wide.columns = [f"seed {s}, {m}" for s, m in wide.columns]
        wide = wide.map(lambda v: f"{v:.3f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}")
        wide.insert(0, "statistic", wide.index)
        text = header("Does GO-term importance follow term size?", args, settings) + (
            "All ranked GO terms x all tested cell types (one-vs-rest). `auroc_null`: mean held-out AUROC of "
            f"{args.null_sets} random sets of as many annotated genes as the term (log-spaced size bins of ratio 1.5 "
            "share their draws), their gene-node activations summarised in the term's width by PCA on fitting cells; "
            "`pval_null`: share of random sets at least as good, `(1 + count) / (1 + sets)`. Excess = `auroc - "
            "auroc_null`. Top-10 overlap: per cell type, shared terms between the 10 best by AUROC and the 10 best "
            "by excess, divided by 10. `auroc_set`: the term's own genes summarised and probed exactly like the "
            "random sets (untrained PCA of their gene-node activations); `pval_set`: share of random sets at least "
            "as good as `auroc_set`, a like-with-like test of the term's gene set against random genes of its "
            "size.\n\n"
            + md_table(wide)
            + "\n\n## Top terms of well-known cell types (RNA), with their reference\n\n"
            + md_table(pd.DataFrame(examples))
            + "\n"
        )
        (args.out_dir / "interpretability_size.md").write_text(text)
        logger.info("wrote %s", args.out_dir / "interpretability_size.md")


# --------------------------------------------------------------------------------------------- part 3


def planted_candidates(mdata, wiring, low: int = 15, high: int = 40, max_share: float = 0.5) -> pd.DataFrame:
    """Depth-2 GO terms of low..high genes, no gene above max_share of the term's counts, best expressed first."""
    import scipy.sparse as sp

    X = mdata["rna"].X
    gene_counts = np.asarray(X.sum(axis=0)).ravel() if sp.issparse(X) else np.asarray(X).sum(axis=0)
    feature, gene = wiring.feature_gene
    per_gene = np.zeros(len(wiring.gene_ids))
    np.add.at(per_gene, gene, gene_counts[feature])
    rows = []
    for t, term in enumerate(wiring.term_ids):
        if wiring.term_kind[t] != "go" or wiring.term_depth[t] != 2 or not low <= wiring.term_n_genes[t] <= high:
            continue
        genes = np.unique(wiring.gene_term[0][wiring.gene_term[1] == t])
        total = per_gene[genes].sum()
        share = per_gene[genes].max() / total if total > 0 else 1.0
        if share <= max_share:
            rows.append(
                {
                    "node_id": term,
                    "name": wiring.term_names[t],
                    "n_genes": int(wiring.term_n_genes[t]),
                    "counts_per_cell": total / mdata.n_obs,
                    "max_gene_share": share,
                }
            )
    return pd.DataFrame(rows).sort_values("counts_per_cell", ascending=False, ignore_index=True)


def planted_run(args: argparse.Namespace, plant_seed: int, terms: tuple[str, ...], wiring) -> list[dict]:
    import mudata as md
    import scipy.sparse as sp
    import scvi

    import scvi_networkvi as nvi

    mdata = md.read_h5mu(args.starter)
    rng = np.random.default_rng(plant_seed)
    mdata.obs["group"] = pd.Categorical(
        rng.choice(["planted", "decoy", "other"], size=mdata.n_obs, p=[0.35, 0.35, 0.3])
    )
    index = [list(wiring.term_ids).index(t) for t in terms]
    genes = np.unique(wiring.gene_term[0][np.isin(wiring.gene_term[1], index)])
    features = np.unique(wiring.feature_gene[0][np.isin(wiring.feature_gene[1], genes)])
    counts = mdata["rna"].X.toarray() if sp.issparse(mdata["rna"].X) else np.array(mdata["rna"].X)
    counts[np.ix_((mdata.obs["group"] == "planted").to_numpy(), features)] *= args.factor
    mdata["rna"].X = sp.csr_matrix(counts)
    scvi.settings.seed = plant_seed
    nvi.NETWORKVI.setup_mudata(
        mdata, batch_key="batch", modalities={"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
    )
    start = time.perf_counter()
    model = nvi.NETWORKVI(mdata, go=args.go, annotations=args.gaf, gene_size=5, go_size=2, gene_layer="standard")
    model.train(max_epochs=args.planted_epochs, accelerator="cpu", enable_progress_bar=False)
    table = model.get_importances(groupby="group", reference="other", modalities="rna", key_added=None)
    elapsed = time.perf_counter() - start
    if args.models_dir is not None:  # the full table, to study the runs without training again
        args.models_dir.mkdir(parents=True, exist_ok=True)
        name = f"planted_seed{plant_seed}_{'_'.join(t.replace(':', '') for t in terms)}.csv.gz"
        table.to_csv(args.models_dir / name, index=False)
    rank_by = table.attrs["networkvi"]["rank_by"]
    table = table[table["kind"] == "go"]
    # Control: the same model at its initial weights (same seed, never trained). The planted genes reach their
    # terms through the wiring alone, so part of the signal is visible without training.
    scvi.settings.seed = plant_seed
    untrained = nvi.NETWORKVI(mdata, go=args.go, annotations=args.gaf, gene_size=5, go_size=2, gene_layer="standard")
    control = untrained.get_importances(groupby="group", reference="other", modalities="rna", key_added=None)
    control = control[(control["kind"] == "go") & (control["phenotype"] == "planted")].set_index("node_id")
    out = []
    for term in terms:
        row = {
            "plant_seed": plant_seed,
            "pair": " + ".join(terms),
            "node_id": term,
            "n_planted_features": len(features),
            "rank_by": rank_by,
        }
        for phenotype in ("planted", "decoy"):
            sub = table[table["phenotype"] == phenotype].set_index("node_id")
            top = math.ceil(0.05 * len(sub))
            hit = sub.loc[term]
            row.update(
                {
                    "name": hit["name"],
                    "n_genes": int(hit["n_genes"]),
                    "n_terms": len(sub),
                    "top_5pct": top,
                    f"{phenotype}_rank": int(hit["rank"]),
                    f"{phenotype}_auroc": round(float(hit["auroc"]), 3),
                    f"{phenotype}_auroc_low": round(float(hit["auroc_low"]), 3),
                    f"{phenotype}_qval": float(hit["qval"]),
                    f"{phenotype}_hit": bool(hit["rank"] <= top and hit["qval"] < 0.05),
                    # the heatmap's default star: the term's own genes beat the random gene sets (BH q)
                    f"{phenotype}_pval_set": float(hit["pval_set"]),
                    f"{phenotype}_qval_set": float(hit["qval_set"]),
                    f"{phenotype}_set_hit": bool(hit["rank"] <= top and hit["qval_set"] < 0.05),
                }
            )
        row["untrained_planted_rank"] = int(control.loc[term, "rank"])
        row["untrained_planted_auroc"] = round(float(control.loc[term, "auroc"]), 3)
        row["untrained_planted_hit"] = bool(
            control.loc[term, "rank"] <= row["top_5pct"] and control.loc[term, "qval"] < 0.05
        )
        decoy = table[table["phenotype"] == "decoy"]
        row["decoy_fraction_q<0.05"] = round(float((decoy["qval"] < 0.05).mean()), 3)
        row["seconds"] = round(elapsed)
        out.append(row)
        logger.info(
            "plant seed %d, %s (%s): planted rank %d/%d (q %.1e), decoy rank %d (q %.2f) -> recovered %s",
            plant_seed,
            term,
            row["name"],
            row["planted_rank"],
            row["n_terms"],
            row["planted_qval"],
            row["decoy_rank"],
            row["decoy_qval"],
            row["planted_hit"],
        )
    return out


def run_planted(args: argparse.Namespace) -> None:
    import mudata as md

    from scvi_networkvi.wiring import compile_wirings

    base = md.read_h5mu(args.starter)
    wiring = compile_wirings(
        {"rna": base["rna"].var["gene_stable_id"].tolist()}, go=args.go, annotations=args.gaf, gene_size=5, term_size=2
    )["rna"]
    candidates = planted_candidates(base, wiring)
    logger.info("planted-term candidates (best expressed first):\n%s", candidates.head(2 * args.n_pairs + 4))
    if len(candidates) < 2 * args.n_pairs:
        raise RuntimeError(f"only {len(candidates)} candidate terms for {args.n_pairs} pairs")
    pairs = [tuple(candidates["node_id"].iloc[[2 * i, 2 * i + 1]]) for i in range(args.n_pairs)]
    rows = []
    for pair in pairs:
        for plant_seed in args.plant_seeds:
            rows.extend(planted_run(args, plant_seed, pair, wiring))
    result = pd.DataFrame(rows)
    result.to_csv(args.out_dir / "interpretability_planted.csv", index=False)
    n = len(result)
    recovered = int(result["planted_hit"].sum())
    decoy_hits = int(result["decoy_hit"].sum())
    set_recovered, set_decoy = int(result["planted_set_hit"].sum()), int(result["decoy_set_hit"].sum())
    view = result[
        [
            "plant_seed",
            "node_id",
            "name",
            "n_genes",
            "planted_rank",
            "top_5pct",
            "n_terms",
            "planted_auroc",
            "planted_qval",
            "planted_hit",
            "planted_pval_set",
            "planted_qval_set",
            "planted_set_hit",
            "decoy_rank",
            "decoy_qval",
            "decoy_hit",
            "decoy_pval_set",
            "decoy_qval_set",
            "decoy_set_hit",
            "decoy_fraction_q<0.05",
            "untrained_planted_rank",
            "untrained_planted_auroc",
        ]
    ].copy()
    view["planted_qval"] = view["planted_qval"].map(lambda q: f"{q:.1e}")
    view["decoy_qval"] = view["decoy_qval"].map(lambda q: f"{q:.2f}")
    text = header(
        "Planted-signal recovery",
        args,
        f"Starter counts `{portable_path(args.starter)}` (600 cells, 1000 genes); GO `{portable_path(args.go)}`, "
        f"annotations `{portable_path(args.gaf)}`; "
        f"factor {args.factor} in 35 % of the cells; {args.planted_epochs} epochs; plant seeds {args.plant_seeds}.\n\n"
        "Candidate terms (depth 2, 15-40 genes, no gene above half of the term's counts, best expressed first):\n\n"
        + md_table(candidates.head(2 * args.n_pairs + 4).round(3))
        + "\n\n"
        f"**Recovered (planted vs other: rank <= top 5 % and q < 0.05): {recovered}/{n} planted terms x runs "
        f"({recovered / n:.0%}).** Decoy hits (the same criterion for decoy vs other, false positives): "
        f"{decoy_hits}/{n}. Median fraction of GO terms with q < 0.05 for decoy vs other: "
        f"{result['decoy_fraction_q<0.05'].median():.3f}. Control, the same models untrained (initial weights, "
        f"planted vs other): {int(result['untrained_planted_hit'].sum())}/{n} recovered (the wiring alone routes "
        "the planted genes to their terms: what the untrained models recover is not owed to training). "
        f"With the gene-set test as the significance (the heatmap's default star: rank <= top 5 % and `qval_set` < "
        f"0.05): {set_recovered}/{n} recovered, decoy hits {set_decoy}/{n}. Ranks by "
        f"{', '.join(map(repr, result['rank_by'].unique()))} (the importance table's default order).\n\n"
        + md_table(view)
        + "\n",
    )
    (args.out_dir / "interpretability_planted.md").write_text(text)
    logger.info("recovered %d/%d, decoy hits %d/%d", recovered, n, decoy_hits, n)
    logger.info("wrote %s", args.out_dir / "interpretability_planted.md")


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parts = ["top", "gap", "size", "planted"]
    parser.add_argument("--parts", nargs="+", choices=parts, default=parts)
    parser.add_argument("--null-sets", type=int, default=100, help="random gene sets per term size (part size)")
    parser.add_argument("--epochs", type=int, default=50, help="training epochs of the tutorial model (parts 1, 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one tutorial model per seed")
    parser.add_argument("--n-cells", type=int, default=None, help="seeded subsample of the tutorial cells")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--go", default="GO.db", help="GO DAG: registry name or OBO / GO.db file")
    parser.add_argument("--gaf", default="org.Hs.eg.db", help="annotations: registry name or GAF / org.*.eg.db file")
    parser.add_argument("--depth", type=int, default=None, help="GO depth (n_layers_encoder); default the package's")
    parser.add_argument("--interactions", default="k562-contact-domains")
    parser.add_argument("--starter", type=Path, default=STARTER)
    parser.add_argument("--plant-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-pairs", type=int, default=2, help="planted term pairs")
    parser.add_argument("--planted-epochs", type=int, default=40, help="epochs of each planted model (the test's)")
    parser.add_argument("--factor", type=float, default=4.0, help="count multiplier in the planted cells")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--importance-seed",
        type=int,
        default=None,
        help="seed of the importances' held-out split and random sets (default: the package's, 0)",
    )
    parser.add_argument(
        "--null-seed",
        type=int,
        default=None,
        help="draw the random gene sets from this seed, the split staying --importance-seed's (the draws' noise)",
    )
    parser.add_argument(
        "--pca-cells",
        type=int,
        default=None,
        help="fit the random and own gene sets' PCA summaries on this many fitting cells (default: the package's)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="save each seed's model and full importance table here, and load a saved model instead of training",
    )
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    setup_torch(args.threads)
    import scvi_networkvi

    if args.pca_cells is not None:
        from scvi_networkvi.interpret import _null

        _null.PCA_CELLS = args.pca_cells  # read at call time
    logger.info("scvi_networkvi from %s", Path(scvi_networkvi.__file__).parent)
    start = time.perf_counter()
    if {"top", "gap", "size"} & set(args.parts):
        run_top_and_gap(args)
    if "planted" in args.parts:
        if not args.starter.is_file():
            parser.error(f"{args.starter} not found: run scripts/make_test_data.py or pass --starter")
        run_planted(args)
    logger.info("done in %.0f s", time.perf_counter() - start)


if __name__ == "__main__":
    main()
