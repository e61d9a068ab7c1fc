"""Which order of the GO terms names the biology specific to a cell type? Candidate rankings, scored on saved runs.

The importance table of each model (``get_importances(groupby="cell_type", null_sets=N)``) holds several numbers per
(GO term, cell type): the held-out AUROC of the probe on the term's neurons, its size- and width-matched reference
(``auroc_null``), the term's own gene set probed like the random sets (``auroc_set``, ``pval_set``). This script
orders the GO terms of every (cell type, modality) by each candidate ranking (``RANKINGS``) and scores the orders
with the evidence of issue "Importances that name specific biology", fixed before any run:

- keyword hits: the 12 cell types and keyword lists of ``interpretability.py`` (``EXPECTED``, not edited here): is a
  term whose name holds a keyword among the top ``--top-k`` (5), per modality, with its chance level;
- stability: per cell type (every tested one), the mean pairwise overlap of the top-10 sets between the seeds' models
  (identical wirings: same data, same resources), mean and spread over cell types, and the share at >= 0.7;
- what the top 10 are: their median gene count (all ranked terms: ~20) and the share passing the gene-set test
  (``pval_set <= 0.05``).

Input: the folders that ``python benchmarks/interpretability.py --models-dir DIR --seeds 0 1 2 [--depth D]`` writes
(one per seed: the saved model, and ``importances_null<N>.csv.gz``: the full table). ``parent_gain`` reads the GO
DAG of the saved model's wiring (``term_term``), so the model is loaded (no training, no inference).

The seeds' tables differ by their model and by their held-out split (each model's training seed); with
``interpretability.py --importance-seed 0`` every model is probed on the same split, and ``--split 0`` here reads
those tables: stability then measures the models alone.

``--splits S1 S2 ...`` (tables of ``interpretability.py --importance-seed S`` for every S and run) scores the
``--rankings`` under split designs instead (``--designs-out``): every model on one shared split (one row per S: the
importance seed fixed, as the package's default seed does), every model on a different split (model i on split i, and
on split i + 1), each model's scores averaged over all the splits (a repeated split, the same for every model), over
disjoint groups of splits when there are enough (model i on its own group), and one model on two splits (the split
noise alone). Next to the plain top-10 overlap it reports a tie-aware one (terms tied with the 10th count as top 10).

Usage::

    python benchmarks/importance_ranking.py --runs DIR/org-Hs-eg_depthdefault_epochs50_cellsNone_seed{0,1,2} \
        [--split 0] [--top-k 5] [--out benchmarks/results/importance_ranking.md]
    python benchmarks/importance_ranking.py --runs ... --splits 0 1 2 --rankings excess_set_min5 \
        --designs-out benchmarks/results/importance_stability.md
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import logging
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from _portable import portable_command, portable_text  # the sibling script (on sys.path)
from interpretability import EXPECTED, chance_hit, has_keyword, md_table

logger = logging.getLogger("benchmarks.importance_ranking")

SET_PASS = 0.05  # the gene-set test's threshold, as on the results page


def _parent_gain(group: pd.DataFrame, parents: dict[tuple[str, str], list[str]]) -> pd.Series:
    """AUROC minus the best AUROC among the term's parents in the kept GO DAG (root included) for this phenotype."""
    modality = str(group["modality"].iloc[0])
    auroc = dict(zip(group["node_id"], group["auroc"], strict=True))
    best = [
        max((auroc.get(p, np.nan) for p in parents.get((modality, node), [])), default=np.nan)
        for node in group["node_id"]
    ]
    return group["auroc"] - np.nan_to_num(np.asarray(best, dtype=float), nan=0.5)


#: name -> (score of each GO term within one (phenotype, modality) group: higher first; what it means).
RANKINGS: dict[str, tuple[Callable[..., pd.Series], str]] = {
    "auroc": (lambda g, _: g["auroc"], "held-out AUROC (the package's order until now)"),
    "excess_null": (lambda g, _: g["auroc"] - g["auroc_null"], "AUROC minus its size-matched reference"),
    "excess_set": (
        lambda g, _: g["auroc_set"] - g["auroc_null"],
        "the term's gene set (probed like random sets) minus random sets of its size",
    ),
    "z_set": (
        lambda g, _: (g["auroc_set"] - g["auroc_null"]) / g["auroc_null_sd"],
        "the gene set's excess over random sets of its size, in the random sets' standard deviations",
    ),
    "z_term": (
        lambda g, _: (g["auroc"] - g["auroc_null"]) / g["auroc_null_sd"],
        "the term's AUROC minus its size-matched reference, in the random sets' standard deviations",
    ),
    "set_pval_then_excess": (
        lambda g, _: -100 * g["pval_set"] + g["auroc_set"] - g["auroc_null"],
        "gene-set test p-value, ties (100 random sets resolve 0.01) by the gene set's excess over random sets",
    ),
    "excess_set_min5": (
        lambda g, _: (g["n_genes"] >= 5).astype(float) * 10 + g["auroc_set"] - g["auroc_null"],
        "the gene set's excess over random sets, terms of >= 5 genes first",
    ),
    "z_set_min5": (
        lambda g, _: (g["n_genes"] >= 5).astype(float) * 100 + (g["auroc_set"] - g["auroc_null"]) / g["auroc_null_sd"],
        "z_set, terms of >= 5 genes first",
    ),
    "excess_set_min3": (
        lambda g, _: (g["n_genes"] >= 3).astype(float) * 10 + g["auroc_set"] - g["auroc_null"],
        "the gene set's excess over random sets, terms of >= 3 genes first",
    ),
    "excess_set_min10": (
        lambda g, _: (g["n_genes"] >= 10).astype(float) * 10 + g["auroc_set"] - g["auroc_null"],
        "the gene set's excess over random sets, terms of >= 10 genes first",
    ),
    "set_then_auroc": (
        lambda g, _: (g["pval_set"] <= SET_PASS).astype(float) * 10 + g["auroc"],
        "terms passing the gene-set test first, each part by AUROC",
    ),
    "set_then_excess": (
        lambda g, _: (g["pval_set"] <= SET_PASS).astype(float) * 10 + g["auroc"] - g["auroc_null"],
        "terms passing the gene-set test first, each part by AUROC minus the reference",
    ),
    "parent_gain": (_parent_gain, "AUROC minus the best of its GO parents' AUROCs"),
}


def term_parents(model) -> dict[tuple[str, str], list[str]]:
    """(modality role, GO id) -> the GO ids of its parents in the model's wiring."""
    parents: dict[tuple[str, str], list[str]] = {}
    for role, wiring in model.wirings_.items():
        for child, parent in wiring.term_term.T:
            parents.setdefault((role, str(wiring.term_ids[child])), []).append(str(wiring.term_ids[parent]))
    return parents


def ranked(table: pd.DataFrame, ranking: str, parents: dict) -> pd.DataFrame:
    """GO rows with a ``score`` column of ``ranking``, ordered best first within (phenotype, modality)."""
    go = table[(table["kind"] == "go") & table["auroc"].notna()].copy()
    score = RANKINGS[ranking][0]
    go["score"] = np.nan
    for _, index in go.groupby(["phenotype", "modality"], observed=True).groups.items():
        go.loc[index, "score"] = score(go.loc[index], parents).to_numpy()
    return go.sort_values(["phenotype", "modality", "score", "node_id"], ascending=[True, True, False, True])


def keyword_hits(order: pd.DataFrame, k: int) -> dict[str, float]:
    """Per modality: cell types of ``EXPECTED`` with a keyword term in the top k, and the chance expectation."""
    out: dict[str, float] = {}
    for modality, sub in order.groupby("modality", observed=True):
        hits, chance = 0, 0.0
        for cell_type, (_, keywords) in EXPECTED.items():
            terms = sub[sub["phenotype"] == cell_type]
            if terms.empty:
                continue
            matching = terms["name"].map(lambda n, kw=keywords: has_keyword(n, kw))
            hits += bool(matching.iloc[:k].any())
            chance += chance_hit(len(terms), int(matching.sum()), k)
        out[f"hits_{modality}"] = hits
        out[f"chance_{modality}"] = round(chance, 1)
    return out


def supported(order: pd.DataFrame, min_genes: int = 5, z: float = 1.0) -> dict[str, int]:
    """Per modality: cell types of ``EXPECTED`` with a keyword term whose gene set beats the random sets of its size.

    A keyword term of at least ``min_genes`` genes (the default order's ``rank_min_genes``) with ``specificity >= z``
    random-set standard deviations: the hits an order that follows the gene-set evidence can reach (a keyword term
    whose genes do no better than random genes is no evidence, wherever an order puts it).
    """
    out: dict[str, int] = {}
    for modality, sub in order.groupby("modality", observed=True):
        count = 0
        for cell_type, (_, keywords) in EXPECTED.items():
            terms = sub[(sub["phenotype"] == cell_type) & (sub["n_genes"] >= min_genes)]
            keyword = terms[terms["name"].map(lambda n, kw=keywords: has_keyword(n, kw)).astype(bool)]
            count += bool((keyword["specificity"] >= z * keyword["auroc_null_sd"]).any())
        out[f"supported_{modality}"] = count
    return out


def top_sets(order: pd.DataFrame, top: int = 10, *, ties: bool = False) -> dict[tuple[str, str], set[str]]:
    """(phenotype, modality) -> the node ids of its top terms (``ties``: with every term scored as the last one)."""
    out = {}
    for (p, m), sub in order.groupby(["phenotype", "modality"], observed=True):
        head = set(sub["node_id"].iloc[:top])
        if ties and len(sub) > top:
            head |= set(sub.loc[sub["score"] >= sub["score"].iloc[top - 1], "node_id"])
        out[(str(p), str(m))] = head
    return out


def overlap(a: set[str], b: set[str], top: int) -> float:
    """Shared terms of two top lists, as a share of ``top`` (tie-extended lists count at most ``top`` shared)."""
    return min(len(a & b), top) / top


def per_type_overlaps(
    sets: list[dict[tuple[str, str], set[str]]], modality: str, top: int, pairs: list[tuple[int, int]] | None = None
) -> np.ndarray:
    """Per cell type of ``modality``: the mean overlap over ``pairs`` of lists (default: every pair)."""
    pairs = list(itertools.combinations(range(len(sets)), 2)) if pairs is None else pairs
    per_type = []
    for key in sorted(k for k in sets[0] if k[1] == modality):
        values = [overlap(sets[i][key], sets[j][key], top) for i, j in pairs if key in sets[i] and key in sets[j]]
        if values:
            per_type.append(float(np.mean(values)))
    return np.asarray(per_type)


def summarise_overlaps(values: np.ndarray) -> str:
    """Mean ± sd (min) over cell types, and the share at >= 0.7 (``-`` without a pair of lists: a single run)."""
    if not len(values):
        return "-"
    return f"{values.mean():.2f} ± {values.std():.2f} (min {values.min():.2f}; {(values >= 0.7).mean():.0%} >= 0.7)"


def stability(orders: list[pd.DataFrame], top: int = 10) -> dict[str, float]:
    """Per modality over cell types: mean pairwise top-``top`` overlap between seeds (mean, sd, min, share >= 0.7)."""
    sets = [top_sets(o, top) for o in orders]
    out: dict[str, float] = {}
    for modality in sorted({m for s in sets for _, m in s}):
        values = per_type_overlaps(sets, modality, top)
        out[f"stability_{modality}"] = f"{values.mean():.2f} ± {values.std():.2f} (min {values.min():.2f})"
        out[f"stable_share_{modality}"] = round(float((values >= 0.7).mean()), 2)
    return out


def averaged(orders: list[pd.DataFrame]) -> pd.DataFrame:
    """One model's orders on several splits merged: each term's score (and gene-set numbers) is its mean over the
    splits, re-ordered."""
    keys = ["phenotype", "modality", "node_id"]
    first = orders[0].set_index(keys)
    for column in ("score", "specificity", "auroc_null_sd"):
        if column in first:
            values = pd.concat([o.set_index(keys)[column] for o in orders], axis=1)
            first[column] = values.reindex(first.index).mean(axis=1)
    return first.reset_index().sort_values(
        ["phenotype", "modality", "score", "node_id"], ascending=[True, True, False, True]
    )


def split_designs(
    orders: dict[tuple[int, int], pd.DataFrame],
    n_runs: int,
    splits: list[int],
    k: int,
    top: int = 10,
    redrawn: dict[int, pd.DataFrame] | None = None,
) -> list[dict[str, object]]:
    """Keyword hits and top-10 overlap between the runs' models under each split design.

    ``orders[(run, split)]``: the ranked GO rows of a run's table on a split. Designs: every model on split ``s``;
    model i on split i and on split i + 1 (different splits); every model averaged over all splits; model i averaged
    over its own disjoint group of ``len(splits) // n_runs`` splits (when at least 2); and the same model on two
    splits (split noise alone; pairs within each run, averaged over the runs). ``redrawn[run]``: the run's order on
    ``splits[0]`` with the random gene sets drawn from another seed; adds that design and the draw noise alone.
    """
    designs: list[tuple[str, list[pd.DataFrame]]] = [
        (f"every model on split {s}", [orders[(r, s)] for r in range(n_runs)]) for s in splits
    ]
    if len(splits) >= n_runs:
        designs.append(("model i on split i (different splits)", [orders[(r, splits[r])] for r in range(n_runs)]))
        designs.append(
            (
                "model i on split i + 1 (different splits)",
                [orders[(r, splits[(r + 1) % n_runs])] for r in range(n_runs)],
            )
        )
    designs.append(
        (
            f"mean over splits {splits} (same for every model)",
            [averaged([orders[(r, s)] for s in splits]) for r in range(n_runs)],
        )
    )
    if redrawn:
        designs.append((f"every model on split {splits[0]}, random sets redrawn", [redrawn[r] for r in range(n_runs)]))
    group = len(splits) // n_runs
    if group >= 2:
        designs.append(
            (
                f"model i: mean over its own {group} splits (different splits)",
                [averaged([orders[(r, s)] for s in splits[r * group : (r + 1) * group]]) for r in range(n_runs)],
            )
        )
    rows = []
    for name, design in designs:
        row: dict[str, object] = {"design": name}
        hits = [keyword_hits(o, k) for o in design]
        plain = [top_sets(o, top) for o in design]
        tied = [top_sets(o, top, ties=True) for o in design]
        evidence = [supported(o) for o in design] if {"specificity", "auroc_null_sd"} <= set(design[0]) else None
        for modality in sorted({m for _, m in plain[0]}):
            row[f"hits_{modality}"] = " / ".join(f"{h[f'hits_{modality}']:g}" for h in hits)
            if evidence is not None:
                row[f"supported_{modality}"] = " / ".join(str(e[f"supported_{modality}"]) for e in evidence)
            row[f"overlap_{modality}"] = summarise_overlaps(per_type_overlaps(plain, modality, top))
            row[f"overlap_ties_{modality}"] = summarise_overlaps(per_type_overlaps(tied, modality, top))
        rows.append(row)
    modalities = sorted({str(m) for m in orders[(0, splits[0])]["modality"].unique()})
    if len(splits) >= 2:  # the same model on two splits: what the split alone moves
        pairs = [(orders[(r, a)], orders[(r, b)]) for r in range(n_runs) for a, b in itertools.combinations(splits, 2)]
        rows.append({"design": "one model on two splits (split noise alone)"} | same_model(pairs, modalities, top))
    if redrawn:  # the same model and split, other random sets: what more null_sets would reduce
        pairs = [(orders[(r, splits[0])], redrawn[r]) for r in range(n_runs)]
        rows.append(
            {"design": f"one model on split {splits[0]}, two draws of the random sets (draw noise alone)"}
            | same_model(pairs, modalities, top)
        )
    return rows


def same_model(
    pairs: list[tuple[pd.DataFrame, pd.DataFrame]], modalities: list[str], top: int = 10
) -> dict[str, object]:
    """Top-10 overlap between two orders of one model (mean over the pairs per cell type), per modality."""
    row: dict[str, object] = {}
    for modality in modalities:
        values = [per_type_overlaps([top_sets(a, top), top_sets(b, top)], modality, top) for a, b in pairs]
        row[f"overlap_{modality}"] = summarise_overlaps(np.mean(values, axis=0))
    return row


def top_profile(order: pd.DataFrame, top: int = 10) -> dict[str, float]:
    """Per modality: median gene count of the top terms and their share passing the gene-set test."""
    out: dict[str, float] = {}
    for modality, sub in order.groupby("modality", observed=True):
        head = sub.groupby("phenotype", observed=True).head(top)
        out[f"median_genes_{modality}"] = float(head["n_genes"].median())
        out[f"set_pass_{modality}"] = round(float((head["pval_set"] <= SET_PASS).mean()), 2)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders of interpretability.py")
    parser.add_argument("--null-sets", type=int, default=100, help="which saved table: importances_null<N>.csv.gz")
    parser.add_argument(
        "--split",
        type=int,
        default=None,
        help="read the tables made with interpretability.py --importance-seed S (importances_null<N>_split<S>.csv.gz)",
    )
    parser.add_argument(
        "--splits",
        type=int,
        nargs="+",
        default=None,
        help="score split designs on the tables of interpretability.py --importance-seed S for each S",
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=None,
        help="with --splits: also read the tables of the first split with the random sets of interpretability.py "
        "--null-seed D",
    )
    parser.add_argument(
        "--suffix", default="", help="with --splits: the tables' name suffix (e.g. _pca3000 of interpretability.py)"
    )
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--rankings", nargs="+", choices=list(RANKINGS), default=list(RANKINGS))
    parser.add_argument("--out", type=Path, default=None, help="markdown table (default: log only)")
    parser.add_argument("--designs-out", type=Path, default=None, help="markdown table of --splits (default: log only)")
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    import scvi_networkvi as nvi

    if args.splits is not None:
        run_designs(args, nvi)
        return

    tables, parents = [], []
    for run in args.runs:
        suffix = "" if args.split is None else f"_split{args.split}"
        tables.append(pd.read_csv(run / f"importances_null{args.null_sets}{suffix}.csv.gz"))
        parents.append(term_parents(nvi.NETWORKVI.load(str(run), adata=nvi.datasets.tutorial_cite())))
    rows = []
    for ranking in args.rankings:
        orders = [ranked(t, ranking, p) for t, p in zip(tables, parents, strict=True)]
        per_seed = [keyword_hits(o, args.top_k) | top_profile(o) for o in orders]
        row: dict[str, object] = {"ranking": ranking, "meaning": RANKINGS[ranking][1]}
        for key in per_seed[0]:
            values = [s[key] for s in per_seed]
            row[key] = " / ".join(f"{v:g}" for v in values)
        row.update(stability(orders) if len(orders) > 1 else {})
        rows.append(row)
        logger.info("%s", row)
    frame = pd.DataFrame(rows)
    if args.out is not None:
        text = portable_text(
            "# GO-term rankings against the evidence of specific biology\n\n"
            f"Generated by `python benchmarks/importance_ranking.py {portable_command(list(argv or sys.argv[1:]))}` "
            f"on {datetime.date.today().isoformat()}, {platform.machine()}. One value per run (seed order) where "
            f"separated by ` / `. `hits_<modality>`: of the 12 cell types of `interpretability.py`'s EXPECTED, those "
            f"with a keyword term in the top {args.top_k} (`chance_*`: expected at random); `median_genes_*` and "
            f"`set_pass_*`: the top 10 per cell type, median gene count and share with `pval_set <= {SET_PASS}`; "
            "`stability_*`: per cell type, mean pairwise top-10 overlap between the seeds' models, mean ± sd (min) "
            "over cell types, `stable_share_*` the share of cell types at >= 0.7.\n\n" + md_table(frame) + "\n"
        )
        args.out.write_text(text)
        logger.info("wrote %s", args.out)


def run_designs(args: argparse.Namespace, nvi) -> None:
    """``--splits``: every ranking of ``--rankings`` under the split designs of :func:`split_designs`."""
    parents = [term_parents(nvi.NETWORKVI.load(str(run), adata=nvi.datasets.tutorial_cite())) for run in args.runs]
    tables = {
        (r, s): pd.read_csv(run / f"importances_null{args.null_sets}_split{s}{args.suffix}.csv.gz")
        for r, run in enumerate(args.runs)
        for s in args.splits
    }
    other_draws = {
        r: pd.read_csv(
            run / f"importances_null{args.null_sets}_split{args.splits[0]}_draws{args.draws}{args.suffix}.csv.gz"
        )
        for r, run in enumerate(args.runs)
        if args.draws is not None
    }
    frames = []
    for ranking in args.rankings:
        orders = {key: ranked(table, ranking, parents[key[0]]) for key, table in tables.items()}
        redrawn = {r: ranked(t, ranking, parents[r]) for r, t in other_draws.items()}
        rows = split_designs(orders, len(args.runs), list(args.splits), args.top_k, redrawn=redrawn)
        frame = pd.DataFrame(rows)
        frame.insert(0, "ranking", ranking)
        frames.append(frame)
        for row in rows:
            logger.info("%s %s", ranking, row)
    if args.designs_out is not None:
        text = portable_text(
            "# Stability of the GO-term order under split designs\n\n"
            f"Generated by `python benchmarks/importance_ranking.py {portable_command(args.argv)}` on "
            f"{datetime.date.today().isoformat()}, {platform.machine()}. Tables of `interpretability.py "
            "--importance-seed S` (the held-out split and the random gene sets' draws), one per run and S. "
            f"`hits_<modality>`: cell types of EXPECTED with a keyword term in the top {args.top_k}, per model (run "
            "order). `overlap_<modality>`: per cell type, the mean pairwise top-10 overlap between the models, then "
            "mean ± sd (min; share of cell types at >= 0.7) over cell types; `overlap_ties_*`: the same with every "
            "term tied with the 10th counted in the top 10; `supported_*`: per model, cell types with a keyword term of >= 5 "
            "genes whose gene set beats random sets of its size by >= 1 of their standard deviations (the hits an "
            "order following the gene-set evidence can reach).\n\n"
            + md_table(pd.concat(frames, ignore_index=True).fillna(""))
            + "\n"
        )
        args.designs_out.write_text(text)
        logger.info("wrote %s", args.designs_out)


if __name__ == "__main__":
    main()
