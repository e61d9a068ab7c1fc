"""The full workflow on the embedded example, offline: ``python -m scvi_networkvi demo`` / ``networkvi-demo``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TextIO

logger = logging.getLogger(__name__)

#: The gene the demo perturbs: CD74 (MHC class II chaperone of B cells, monocytes and dendritic cells), annotated in
#: the example's GO slice, so GO terms (not only the UNKNOWN path) depend on it.
DEMO_GENE = "CD74"


def run_demo(out_dir: str | Path, *, epochs: int = 60, top: int = 3, stream: TextIO, progress: bool = True) -> dict:
    """Train on the embedded example, embed, UMAP, importances, one perturbation; write figures to ``out_dir``.

    Returns a summary (figure paths, top terms per cell type, timings); the table of top GO terms per cell type is
    written to ``stream``.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: the demo must run on headless machines
    import anndata
    import scanpy as sc
    import scvi

    import scvi_networkvi as nvi
    from scvi_networkvi.model import quiet_lightning
    from scvi_networkvi.pl import shorten

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with quiet_lightning():  # no "Seed set to 0"
        scvi.settings.seed = 0
    mdata = nvi.datasets.example()
    mdata.obs["cell_type"] = mdata["rna"].obs["cell_type"].astype("category")
    mdata.obs["Site"] = mdata["rna"].obs["Site"].astype("category")
    resources = nvi.datasets.example_resources()
    stream.write(
        f"Embedded example: {mdata.n_obs} real CITE-seq cells (sites {', '.join(mdata.obs['Site'].cat.categories)}), "
        + ", ".join(f"{m}: {mdata[m].n_vars} features" for m in mdata.mod)
        + f"\nTraining NETWORKVI with GO-wired encoders for {epochs} epochs...\n"
    )
    start = time.perf_counter()
    model = nvi.tl.train(
        mdata,
        batch_key="Site",
        go=resources["go"],
        annotations=resources["annotations"],
        interactions=resources["interactions"],
        max_epochs=epochs,
        model_kwargs={"gene_size": 5, "go_size": 2},
        train_kwargs={"accelerator": "cpu", "enable_progress_bar": progress},
    )
    timings["train"] = time.perf_counter() - start

    start = time.perf_counter()
    nvi.tl.embed(mdata, model)
    cells = anndata.AnnData(
        obs=mdata.obs[["cell_type", "Site"]].copy(), obsm={"X_networkvi": mdata.obsm["X_networkvi"]}
    )
    sc.pp.neighbors(cells, use_rep="X_networkvi", random_state=0)
    sc.tl.umap(cells, random_state=0)
    figures = {}
    for color in ("cell_type", "Site"):
        fig = sc.pl.umap(cells, color=color, show=False, return_fig=True, title=f"NETWORKVI joint latent: {color}")
        figures[f"umap_{color}"] = out / f"umap_{color}.png"
        fig.savefig(figures[f"umap_{color}"], dpi=110, bbox_inches="tight")
        matplotlib.pyplot.close(fig)
    timings["embed_umap"] = time.perf_counter() - start

    start = time.perf_counter()
    table = nvi.tl.importances(mdata, model, groupby="cell_type", progress_bar=progress)
    timings["importances"] = time.perf_counter() - start
    rna = table[(table["modality"] == "rna") & (table["kind"] == "go")]
    best = rna[rna["rank"] <= top].sort_values(["phenotype", "rank"])
    stream.write(
        f"\nTop {top} GO terms per cell type (RNA encoder), most specific first. specificity: how much better the\n"
        "term's genes separate the cell type than random genes of the same number (AUROC difference); q: that\n"
        "test's Benjamini-Hochberg q-value; then the held-out AUROC of the term's neurons with its 95% interval:\n"
    )
    summary_rows = []
    for phenotype, rows in best.groupby("phenotype", observed=True):
        stream.write(f"  {phenotype}\n")
        for _, row in rows.iterrows():
            stream.write(
                f"    {row['rank']:>2}. {shorten(str(row['name']), 48):<48} {row['specificity']:+.3f}  "
                f"q={row['qval_set']:<7.2g} {row['auroc']:.3f} [{row['auroc_low']:.3f}, {row['auroc_high']:.3f}]  "
                f"{int(row['n_genes'])} genes\n"
            )
            summary_rows.append((str(phenotype), row["node_id"], float(row["specificity"]), float(row["auroc"])))
        if not (rows["qval_set"] < 0.05).any():
            stream.write("    (weak evidence: no term's genes beat random genes at q < 0.05)\n")
    stream.write(
        "  The embedded example carries the tutorial's subsampled annotations (few, broad GO terms), so weak evidence\n"
        "  is expected here; with the full annotations (the default for your own data) see the GO-analysis tutorial.\n"
    )
    figures["importances"] = out / "importances.png"
    nvi.pl.importances(mdata, modality="rna", top=15, show=False, save=figures["importances"])

    start = time.perf_counter()
    nvi.tl.perturb(mdata, model, genes=[DEMO_GENE], groupby="cell_type", progress_bar=progress)
    timings["perturbation"] = time.perf_counter() - start
    figures["perturbation"] = out / "perturbation.png"
    nvi.pl.perturbation(mdata, top=15, show=False, save=figures["perturbation"])
    matplotlib.pyplot.close("all")
    stream.write(
        f"\nIn-silico perturbation of {DEMO_GENE}: AUROC changes in mdata.uns['networkvi_perturbation'].\n"
        f"Figures written to {out.resolve()}:\n" + "".join(f"  {path.name}\n" for path in figures.values())
    )
    stream.write("Timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + "\n")
    return {"figures": figures, "top_terms": summary_rows, "timings": timings, "mdata": mdata}
