"""The planted-signal check of ``interpretability.py``: a known GO term's genes shifted in one cell type."""

from __future__ import annotations

import argparse
import logging
import math
import time

import numpy as np
import pandas as pd
from _interpretability_models import header
from _interpretability_scores import md_table
from _portable import portable_path  # the sibling script (on sys.path)

logger = logging.getLogger("benchmarks.interpretability")


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
