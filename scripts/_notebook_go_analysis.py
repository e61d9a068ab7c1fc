"""The cells of the GO-analysis notebook (``docs/notebooks/go_analysis.ipynb``), as (``"md"`` or ``"code"``, source)."""

from __future__ import annotations

GO_ANALYSIS = [
    (
        "md",
        """# GO analysis of CITE-seq cell types

The NetworkVI tutorial's GO analysis, done the MuData way: train NETWORKVI on the tutorial CITE-seq data (bone
marrow, NeurIPS 2021; 44 cell types, 4 sites), embed, and ask which GO processes are specific to each cell type:
whose genes separate it from the other cells better than random genes do, with held-out numbers, intervals and
multiple-testing-corrected q-values. Then look inside a term at the genes that carry it, and knock out a gene in
silico to see which terms depend on it.

With your own data, start from `mdata = mudata.read_h5mu("my_data.h5mu")`: modalities named `rna` / `prot` (or `adt`) /
`atac` are found automatically, and the gene ids (ENSEMBL, symbols or Entrez, human or mouse) are detected.""",
    ),
    (
        "code",
        """import pandas as pd
import scanpy as sc
import scvi

import scvi_networkvi as nvi

scvi.settings.seed = 0
mdata = nvi.datasets.tutorial_cite()  # fetched once from the registry, then cached
mdata = mdata[(mdata.obs["Site"] != "site1").to_numpy()].copy()  # site1 is the tutorial's query
mdata""",
    ),
    (
        "md",
        """## Train

`nvi.tl.train` reads the modalities and gene ids from the MuData. Without `go=` / `annotations=` it wires the
encoders with the species' full GO annotations (here human: Bioconductor's `org.Hs.eg.db` with the GO release of
`GO.db`, dated and hash-checked downloads) at the default GO depth 2. The tutorial's settings otherwise: Hi-C
contact domains as gene–gene interactions, 5 neurons per gene and 2 per GO term, covariates encoded. (The
original tutorial's subsampled GAF stays available as `annotations="ensembl2go-tutorial"`; it annotates 650 of the
4000 genes and keeps few, broad terms, too few to name specific processes.)""",
    ),
    (
        "code",
        """model = nvi.tl.train(
    mdata,
    batch_key="Site",
    interactions="k562-contact-domains",
    max_epochs=40,
    model_kwargs={"gene_size": 5, "go_size": 2, "encode_covariates": True},
    train_kwargs={"accelerator": "cpu", "enable_progress_bar": False},
)
model""",
    ),
    (
        "code",
        """nvi.tl.embed(mdata, model)
sc.pp.neighbors(mdata, use_rep="X_networkvi")
sc.tl.umap(mdata)
sc.pl.umap(mdata, color=["cell_type", "Site"], ncols=1, legend_fontsize=6)""",
    ),
    (
        "md",
        """## Which GO processes are specific to each cell type?

For every GO term and cell type (one against the rest), the term's own genes are summarised and probed like 100
random sets of as many genes: a logistic probe is fitted on 70 % of the cells and scored on the held-out 30 %.
`specificity` is how much higher the term's gene set scores than the random sets (held-out AUROC difference), and
`rank` orders each cell type's terms by it (terms of fewer than 5 genes last); `qval_set` is that gene-set test's
Benjamini–Hochberg q-value across the cell type's terms. Next to it, `auroc` is the held-out AUROC of a probe on
the term's own neurons in the trained encoder, with a DeLong 95 % interval: it is high for any broad term once the
latent separates the cell types, which is why it does not set the order (`rank_by="auroc"` restores that order).""",
    ),
    (
        "code",
        """table = nvi.tl.importances(mdata, model, groupby="cell_type")
rna = table[(table["modality"] == "rna") & (table["kind"] == "go")]
shown = ["NK", "cDC2", "CD8+ T naive"]
rna[rna["phenotype"].isin(shown) & (rna["rank"] <= 5)].sort_values(["phenotype", "rank"])[
    ["phenotype", "rank", "name", "n_genes", "specificity", "qval_set", "auroc", "auroc_low", "auroc_high"]
]""",
    ),
    (
        "md",
        """## The genes inside a term

Which of a term's genes carry it? Probe each gene node (its 5 neurons in the gene layer) the same way,
`node_types=("gene",)`, and keep the genes that reach the term in the model's wiring.""",
    ),
    (
        "code",
        '''wiring = model.wirings_["rna"]
reach = wiring.term_genes()  # genes x terms: which gene nodes reach which GO term
genes = nvi.tl.importances(
    mdata, model, groupby="cell_type", targets=shown, modalities="rna", node_types=("gene",), key_added=None
)


def drivers(phenotype, term, top=6):
    """The ``top`` genes of ``term`` that best tell ``phenotype`` apart (held-out AUROC of their gene nodes)."""
    column = list(wiring.term_names).index(term)
    members = set(wiring.gene_ids[reach[:, column].indices])
    rows = genes[(genes["phenotype"] == phenotype) & genes["node_id"].isin(members)]
    return rows.sort_values("auroc", ascending=False).head(top)[["phenotype", "name", "auroc", "auroc_low", "qval"]]


pd.concat(
    [
        drivers("NK", "cell killing"),
        drivers("cDC2", "antigen processing and presentation"),
        drivers("CD8+ T naive", "T cell selection"),
    ]
)''',
    ),
    (
        "md",
        """**What the model says about three cell types** (this run's held-out numbers):

- **NK cells — strong evidence.** The most specific processes are *cytolysis* (10 genes, specificity +0.32, a gene
  set that beats random genes after correction, `qval_set` 0.019) and *cell killing* (30 genes, +0.25, `qval_set`
  0.09). The genes that carry cell killing are the cytotoxic granule genes GNLY, NKG7,
  GZMB and PRF1 and the activating receptor KLRK1 (NKG2D). CTSG (cathepsin G, a myeloid protease) ranks among them
  too: a gene node's neurons also read its neighbours through the Hi-C gene–gene layer, and CTSG lies next to GZMB in
  the granzyme locus, so read a gene node as its locus as much as its gene.
- **cDC2 — the expected biology, evidence at the edge.** *Antigen processing and presentation* comes first (36
  genes, +0.25, `qval_set` 0.045, just below 0.05), carried by the MHC class II genes HLA-DQA1, HLA-DRA, HLA-DPB1,
  HLA-DRB1, HLA-DPA1 and their chaperone CD74. The next terms (*T cell selection*, which shares MHC class II genes,
  *protein folding*, *embryo implantation*) have `qval_set` 0.57-0.83: nothing specific below the first term.
- **Naive CD8+ T cells — weak evidence.** *T cell selection*, *tolerance induction* and *somatic diversification of
  immune receptors* rank first, carried by the CD3 complex (CD3E, CD3G, CD3D), BCL11B and CCR7, the naive T cells'
  homing receptor: the right genes, but no term's gene set beats random genes after correction (`qval_set` 0.12-0.15),
  so these cells alone do not establish the processes.

Depth-2 GO has no finer terms than these (no *B cell activation*, no erythroid terms); `n_layers_encoder=3` keeps
deeper ones at 1.5-2 times the training time, with fewer expected terms at the top on the results page's benchmark.""",
    ),
    ("code", """nvi.pl.importances(mdata, modality="rna", top=20)"""),
    (
        "md",
        """## In-silico perturbation

Zero a gene's features (here CD74, the MHC class II chaperone of B cells, monocytes and dendritic cells, in the RNA)
and probe again on the same cells and split: `delta` is the change in held-out AUROC with a paired DeLong interval.""",
    ),
    (
        "code",
        """change = nvi.tl.perturb(mdata, model, genes=["CD74"], groupby="cell_type")
go_terms = change[change["kind"] == "go"]
go_terms.sort_values("delta").head(8)[
    ["phenotype", "name", "auroc_before", "auroc_after", "delta", "delta_low", "qval"]
]""",
    ),
    ("code", """nvi.pl.perturbation(mdata, top=15)"""),
    (
        "md",
        """## The original tutorial's analysis: CD86 in the protein data

The NetworkVI tutorial ends with a sensitivity analysis: it zeroes CD86 (ENSG00000114013; the co-stimulatory ligand
of monocytes, dendritic cells and activated B cells) in the protein modality only and shows, per cell type, how much
each protein GO term's AUROC drops (unperturbed minus perturbed) as a heatmap. The same here:
`perturb_modalities=["prot"]` zeroes the CD86 antibody and leaves the RNA's CD86 as it is, and the protein
encoder's GO terms are probed on the same cells and split as before. Positive (red) is a drop after the knock-out;
a star marks q < 0.05 (paired DeLong test, Benjamini–Hochberg per cell type).""",
    ),
    (
        "code",
        """import numpy as np

cd86 = nvi.tl.perturb(
    mdata,
    model,
    genes={"CD86 (protein)": ["ENSG00000114013"]},
    groupby="cell_type",
    perturb_modalities=["prot"],
    key_added="networkvi_perturbation_cd86",
)
cd86["AUROC unperturbed - perturbed"] = cd86["auroc_before"] - cd86["auroc_after"]
nvi.pl.perturbation(cd86, value="AUROC unperturbed - perturbed", top=None)""",
    ),
    (
        "code",
        """go = cd86[cd86["kind"] == "go"]
outside = (go["delta_low"] > 0) | (go["delta_high"] < 0)
largest = go.loc[go["delta"].abs().idxmax()]
print(f"{go['node_id'].nunique()} protein GO terms x {go['phenotype'].nunique()} cell types = {len(go)} cells")
print(
    f"AUROC changed at all: {(go['delta'] != 0).sum()}; 95 % interval excludes 0: {outside.sum()} "
    f"({(go['delta_high'] < 0).sum()} drops, {(go['delta_low'] > 0).sum()} rises); q < 0.05: {(go['qval'] < 0.05).sum()}"
)
print(
    f"largest change: {largest['name']} in {largest['phenotype']}, {largest['auroc_before']:.3f} -> "
    f"{largest['auroc_after']:.3f} (change {largest['delta']:+.3f}, {largest['delta_low']:+.3f} to "
    f"{largest['delta_high']:+.3f})"
)
go[outside].sort_values("qval").head(8)[
    ["phenotype", "name", "auroc_before", "auroc_after", "delta", "delta_low", "delta_high", "qval"]
]""",
    ),
    (
        "md",
        """With the full annotations the protein encoder keeps 92 GO terms; CD86 reaches some of them, directly or
through the GO graph, and every other term keeps its activations and its AUROC exactly. Of the 3128 term × cell-type
cells (92 terms × the 34 cell types with enough cells in both splits), 474 change at all, 198 by more than their
95 % interval (the interval of the change excludes 0: 96 drops, 102 rises) and 101 have q < 0.05. Most effects are
small: the largest is *biological process involved in symbiotic interaction* in CD16+ monocytes, 0.673 → 0.536
(−0.137, interval −0.252 to −0.023); the clearest (smallest q) are in the monocytes, which carry CD86: the same term
rises in CD14+ monocytes, 0.607 → 0.732 (+0.125, q ≈ 1e-75), and *immune response* drops in CD16+ monocytes,
0.743 → 0.700 (−0.042, q ≈ 3e-16). A knock-out can raise an AUROC: zeroing CD86 in every cell also changes what
sets a cell type apart from the others in a term's neurons.""",
    ),
    (
        "md",
        """### What differs from the original's method

**In-sample vs held-out AUROC.** The original's heatmap reads `predictors_label_valid_roc`, which despite its name
is the AUROC of each probe on the cells it was fitted on (90 % of them), before and after; there is no interval, so
every non-zero difference looks like an effect. Here the probes are scored on held-out cells and the change comes
with a paired interval; the in-sample numbers are kept (`auroc_fit` in the importances, `auroc_fit_before` /
`auroc_fit_after` in the perturbation table) to compare.""",
    ),
    (
        "code",
        """prot = table[(table["modality"] == "prot") & (table["kind"] == "go")]
optimism = prot["auroc_fit"] - prot["auroc"]
print(
    f"unperturbed, in-sample minus held-out AUROC: median {optimism.median():+.3f}, largest {optimism.max():+.3f}; "
    f"in-sample above the held-out interval in {(prot['auroc_fit'] > prot['auroc_high']).sum()} of {len(prot)} "
    f"cells, below it in {(prot['auroc_fit'] < prot['auroc_low']).sum()}"
)
change_fit = go["auroc_fit_after"] - go["auroc_fit_before"]  # the original's reading, as after - before
changed = (change_fit != 0) | (go["delta"] != 0)
print(
    f"CD86: in-sample change vs held-out change over the {changed.sum()} changed cells: correlation "
    f"{np.corrcoef(change_fit[changed], go['delta'][changed])[0, 1]:.2f}, opposite signs in "
    f"{(np.sign(change_fit) * np.sign(go['delta']) < 0).sum()}, in-sample change outside the held-out interval in "
    f"{((change_fit < go['delta_low']) | (change_fit > go['delta_high'])).sum()}"
)""",
    ),
    (
        "md",
        """Without a perturbation, the protein terms' in-sample AUROC exceeds the held-out one by +0.007 at the median and
by up to +0.406; it lies above the held-out 95 % interval in 221 of the 3128 cells (and below it in 106: the small
cell types make both numbers noisy). For CD86, the in-sample changes (the original's reading) follow the held-out
ones only in part: correlation 0.82 over the 476 cells the knock-out reaches, opposite signs in 99 of them, and 45
in-sample changes outside the held-out interval. Read in sample and without intervals, every reached cell shows a
change; held out, 198 change by more than their interval, 101 after correcting for multiple testing.

**Cumulative vs one at a time.** The original copies the data once per gene and then zeroes the gene's
features modality set by modality set without resetting the copy, so with `calculate_perturbations_modality=
["expression", "protein"]` its protein run had CD86 zeroed in the RNA as well. Here every perturbation starts from
the original data and zeroes only the modalities named in `perturb_modalities`. Zeroing CD86 in both modalities and
probing the protein terms again shows what the accumulation does to these numbers:""",
    ),
    (
        "code",
        """both = nvi.tl.perturb(
    mdata,
    model,
    genes={"CD86 (RNA + protein)": ["ENSG00000114013"]},
    groupby="cell_type",
    perturb_modalities=["rna", "prot"],
    modalities=["prot"],
    key_added=None,
)
keys = ["node_id", "phenotype"]
paired = cd86[keys + ["delta"]].merge(both[keys + ["delta"]], on=keys, suffixes=("_prot", "_both"))
print(
    f"{len(paired)} node x cell-type cells; largest |difference| of the change: "
    f"{(paired['delta_prot'] - paired['delta_both']).abs().max():.3g}"
)""",
    ),
    (
        "md",
        """The change is identical in all 3230 protein node × cell-type cells (GO terms, root and UNKNOWN nodes; largest
difference 0): each encoder reads only its own modality's features, so zeroing CD86 in the RNA as well cannot move
the protein encoder's activations, and the original's accumulation left its per-modality numbers as they were too.
It would matter for anything read from several modalities at once (the joint latent), which neither implementation
probes. Several genes are one perturbation each, every one from the original data: `genes=["CD74", "CD86"]` gives
two independent knock-outs, `genes={"both": ["CD74", "CD86"]}` one joint knock-out. So of the two differences, the
one that changes conclusions is the first: in sample and without intervals, the original's heatmap showed every
reached cell as an effect.""",
    ),
    (
        "md",
        """Everything is in the MuData: `obsm["X_networkvi"]`, `uns["networkvi_importances"]`,
`uns["networkvi_perturbation"]` and the parameters in `uns["networkvi"]`; `model.save(...)` keeps the wiring, so a
loaded model needs none of the resource files.""",
    ),
]
