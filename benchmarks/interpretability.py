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
import logging
import math
import sys
import time
from pathlib import Path

import pandas as pd
from _interpretability_models import STARTER, header, setup_torch, train_tutorial_model
from _interpretability_planted import run_planted
from _interpretability_scores import (  # importance_ranking.py imports the keyword check from here
    EXPECTED,
    chance_hit,  # noqa: F401
    gap_stats,
    has_keyword,  # noqa: F401
    md_table,
    size_stats,
    top_terms,
)

logger = logging.getLogger("benchmarks.interpretability")


# --------------------------------------------------------------------------------------------- parts 1 and 2


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
        "--pca-stratified",
        action="store_true",
        help="draw the PCA cells in equal shares from the cell types instead of at random (the package's default)",
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
    from scvi_networkvi.interpret import _null

    if args.pca_cells is not None:
        _null.PCA_CELLS = args.pca_cells  # read at call time
    _null.PCA_STRATIFIED = args.pca_stratified
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
