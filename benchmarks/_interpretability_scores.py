"""How ``interpretability.py`` scores an importance table: expected biology per cell type, keyword hits, gaps."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

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
