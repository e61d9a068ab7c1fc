"""Write and execute the documentation notebooks (``docs/notebooks/*.ipynb``), stored with their outputs.

The docs build does not execute notebooks (it must work offline and fast); run this script after a change that affects
them. It needs the tutorial data, fetched through the resource registry (from the package index, once).

    python scripts/make_notebooks.py [name ...]
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "docs" / "notebooks"

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

- **NK cells — strong evidence.** The most specific processes are *cytolysis* (10 genes, specificity +0.31, the only
  term of the three lists whose gene set beats random genes after correction, `qval_set` 0.008) and *cell killing*
  (30 genes, +0.24, `qval_set` 0.10). The genes that carry cell killing are the cytotoxic granule genes GNLY, NKG7,
  GZMB and PRF1 and the activating receptor KLRK1 (NKG2D). CTSG (cathepsin G, a myeloid protease) ranks among them
  too: a gene node's neurons also read its neighbours through the Hi-C gene–gene layer, and CTSG lies next to GZMB in
  the granzyme locus, so read a gene node as its locus as much as its gene.
- **cDC2 — the expected biology, evidence at the edge.** *Antigen processing and presentation* comes first (36
  genes, +0.25, `qval_set` 0.053, just above 0.05), carried by the MHC class II genes HLA-DQA1, HLA-DPB1, HLA-DRA,
  HLA-DPA1, HLA-DRB1 and their chaperone CD74. The next terms (*T cell selection*, which shares MHC class II genes,
  *embryo implantation*, *protein folding*) have `qval_set` near 1: nothing specific below the first term.
- **Naive CD8+ T cells — weak evidence.** *T cell selection*, *tolerance induction* and *somatic diversification of
  immune receptors* rank first, carried by the CD3 complex (CD3E, CD3G, CD3D), BCL11B and CCR7, the naive T cells'
  homing receptor: the right genes, but no term's gene set beats random genes after correction (`qval_set` 0.20-0.25),
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
cells (92 terms × the 34 cell types with enough cells in both splits), 470 change at all, 167 by more than their
95 % interval (the interval of the change excludes 0: 92 drops, 75 rises) and 85 have q < 0.05. The effects are
small: the largest is *biological process involved in symbiotic interaction* in CD16+ monocytes, 0.726 → 0.663
(−0.062, interval −0.088 to −0.036); the clearest drops are in CD14+ monocytes, which carry CD86: *cell activation*
0.867 → 0.849 (−0.018) and *immune response* 0.857 → 0.847 (−0.011), both q ≈ 4e-30.""",
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
by up to +0.416; it lies above the held-out 95 % interval in 221 of the 3128 cells (and below it in 118: the small
cell types make both numbers noisy). For CD86, the in-sample changes (the original's reading) follow the held-out
ones only in part: correlation 0.87 over the 476 cells the knock-out reaches, opposite signs in 94 of them, and 33
in-sample changes outside the held-out interval. Read in sample and without intervals, every reached cell shows a
change; held out, 167 change by more than their interval, 85 after correcting for multiple testing.

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

SETUP = """import numpy as np
import scanpy as sc
import scvi

import scvi_networkvi as nvi

scvi.settings.seed = 0
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
RESOURCES = {"go": "go-basic", "annotations": "ensembl2go-tutorial", "interactions": "k562-contact-domains"}"""

QUERY_MAPPING = [
    (
        "md",
        """# Query mapping and label transfer

Train a reference on three sites of the tutorial CITE-seq data, then map the fourth site (new donors, an unseen
batch) onto it scArches-style: the query model starts from the reference's weights, learns only the new batch's
parameters, and each query cell gets the label of its nearest reference cells with a confidence.""",
    ),
    ("code", SETUP),
    (
        "code",
        """cite = nvi.datasets.tutorial_cite()
reference = cite[(cite.obs["Site"] != "site1").to_numpy()].copy()
query = cite[(cite.obs["Site"] == "site1").to_numpy()].copy()
truth = query.obs["cell_type"].astype(str).to_numpy()
del query.obs["cell_type"]  # the query is unlabelled
for mod in query.mod.values():
    del mod.obs["cell_type"]
reference.n_obs, query.n_obs""",
    ),
    (
        "md",
        """## A reference to map onto

Whether a reference can be mapped onto is decided when it is trained: a query's new batch gets parameters to learn in
the encoders only if the reference's encoders see the batch. `nvi.tl.train(..., query_ready=True)` sets that up
(`encode_covariates=True` and `deeply_inject_covariates=True`; it needs `batch_key`). A reference trained with the
default `query_ready=False` says so in one INFO line at training; `nvi.tl.map_query` then applies its frozen encoders
to the query's new batches unchanged, adapts only the decoders, and warns. Such a reference has to be trained again
with `query_ready=True` to be mapped onto.""",
    ),
    (
        "code",
        """model = nvi.tl.train(
    reference,
    batch_key="Site",
    **RESOURCES,
    max_epochs=40,
    query_ready=True,  # encode_covariates=True, deeply_inject_covariates=True
    model_kwargs={"gene_size": 5, "go_size": 2},
    train_kwargs=TRAIN,
)
nvi.tl.embed(reference, model)""",
    ),
    (
        "code",
        """query_model = nvi.tl.map_query(query, model, groupby="cell_type", max_epochs=30, train_kwargs=TRAIN)
trainable = [n for n, p in query_model.module.named_parameters() if p.requires_grad]
print(f"{len(trainable)} trainable tensors in the query model, e.g. {trainable[:3]}")
predicted = query.obs["cell_type_predicted"].astype(str).to_numpy()
confident = query.obs["cell_type_confidence"].to_numpy() >= 0.8
print(
    f"label transfer accuracy on site1: {np.mean(predicted == truth):.3f} "
    f"({np.mean(predicted[confident] == truth[confident]):.3f} on the {confident.mean():.0%} confident cells)"
)""",
    ),
    (
        "md",
        """How far to trust this: the transferred labels are right for most confident cells and for far fewer of the rest.
On the same split with 50 reference epochs, `benchmarks/query_mapping.py` measures NETWORKVI (GO encoder) at
accuracy 0.60 / macro-F1 0.34 against TOTALVI + scArches at 0.71 / 0.41 with the same kNN label transfer, and
NETWORKVI's dense encoder at 0.70 / 0.40 (means of 3 seeds; the docs' results page has the table). Filter on
`cell_type_confidence` before using the predictions.""",
    ),
    (
        "code",
        """sc.pp.neighbors(query, use_rep="X_networkvi")
sc.tl.umap(query)
query.obs["cell_type_true"] = truth
sc.pl.umap(query, color=["cell_type_true", "cell_type_predicted", "cell_type_confidence"], ncols=1, legend_fontsize=6)""",
    ),
]

MOSAIC = [
    (
        "md",
        """# Mosaic integration: CITE-seq + multiome

One model for cells measured in different ways: CITE-seq cells have RNA and protein, multiome cells RNA and ATAC;
the RNA links them. In the MuData a cell that a modality does not measure is simply absent from that modality
(`MuData` keeps the mapping), not a row of zeros: its encoder is not run, and the joint posterior mixes the
modalities each cell has.""",
    ),
    ("code", SETUP),
    (
        "code",
        """import anndata
import mudata as md

cite = nvi.datasets.tutorial_cite()
multiome = nvi.datasets.tutorial_multiome()
rng = np.random.default_rng(0)
cite = cite[rng.choice(cite.n_obs, 2000, replace=False)].copy()
multiome = multiome[rng.choice(multiome.n_obs, 2000, replace=False)].copy()
shared = cite["rna"].var_names.intersection(multiome["rna"].var_names)
rna = anndata.concat([cite["rna"][:, shared], multiome["rna"][:, shared]], index_unique="-")
rna.var = cite["rna"].var.loc[shared].copy()
prot, atac = cite["prot"].copy(), multiome["atac"].copy()
prot.obs_names = prot.obs_names + "-0"
atac.obs_names = atac.obs_names + "-1"
mosaic = md.MuData({"rna": rna, "prot": prot, "atac": atac})
mosaic.obs["dataset"] = np.where(mosaic.obs_names.str.endswith("-0"), "CITE-seq", "multiome")
mosaic.obs["cell_type"] = rna.obs["cell_type"].reindex(mosaic.obs_names).astype(str).to_numpy()
mosaic""",
    ),
    (
        "code",
        """model = nvi.tl.train(
    mosaic,
    batch_key="dataset",
    **RESOURCES,
    max_epochs=25,
    model_kwargs={"gene_size": 5, "go_size": 2},
    train_kwargs=TRAIN,
)
nvi.tl.embed(mosaic, model, modality="all")
sorted(k for k in mosaic.obsm if k.startswith("X_networkvi"))""",
    ),
    (
        "code",
        """sc.pp.neighbors(mosaic, use_rep="X_networkvi")
sc.tl.umap(mosaic)
sc.pl.umap(mosaic, color=["dataset", "cell_type"], ncols=1, legend_fontsize=5)""",
    ),
    (
        "md",
        """The two datasets share part of their cell-type names (e.g. `CD14+ Mono`, `CD4+ T naive`; the CITE-seq
labels are finer elsewhere). On the shared labels, a kNN classifier trained on the CITE-seq cells predicts the
multiome cells' types: from the joint latent and from the RNA encoder's latent (the modality both have).""",
    ),
    (
        "code",
        """from sklearn.neighbors import KNeighborsClassifier

labels = mosaic.obs["cell_type"].to_numpy()
is_cite = (mosaic.obs["dataset"] == "CITE-seq").to_numpy()
shared_labels = set(labels[is_cite]) & set(labels[~is_cite])
train = is_cite & np.isin(labels, list(shared_labels))
test = ~is_cite & np.isin(labels, list(shared_labels))
print(f"{len(shared_labels)} shared labels, {test.sum()} multiome cells carry one")
for key in ("X_networkvi", "X_networkvi_rna"):
    knn = KNeighborsClassifier(15).fit(mosaic.obsm[key][train], labels[train])
    print(f"{key}: CITE-seq -> multiome label transfer accuracy {knn.score(mosaic.obsm[key][test], labels[test]):.3f}")""",
    ),
    (
        "md",
        """Read these numbers as they are: the two datasets differ in chemistry (whole-cell vs nuclear RNA) as well as
in their second modality, and with the dataset as the batch the joint latent still keeps them largely apart. The
joint posterior mixes, with equal weights, the posteriors of the modalities each cell has (`modality_mixing="mean"`;
the original's gating network put all the weight on protein for the CITE-seq cells and on RNA for the multiome
cells, and transferred labels far worse). `benchmarks/mosaic.py --cross` compares this setting with MULTIVI and
with NETWORKVI's dense encoder on the same cells; the results page of the docs has the numbers.""",
    ),
]

BOOKS = {"go_analysis": GO_ANALYSIS, "query_mapping": QUERY_MAPPING, "mosaic": MOSAIC}


def build(name: str, cells: list[tuple[str, str]], timeout: int = 3600) -> Path:
    """Write notebook ``name`` from ``cells`` and execute it in place."""
    from nbclient import NotebookClient  # only executing needs a kernel client (doc extra); cleaning does not

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src) for kind, src in cells
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    clean_outputs(nb)
    path = NOTEBOOKS / f"{name}.ipynb"
    nbformat.write(nb, path)
    logging.getLogger(__name__).info("%s executed in %.0f s", path, time.perf_counter() - start)
    return path


#: Stream-output lines that are no output of the notebook: a library's advertising (Lightning's "Tip" line) and
#: tqdm's warning that the build machine lacks ipywidgets (with the source line it quotes).
ADVERTISING = (
    "\N{ELECTRIC LIGHT BULB} Tip:",
    "TqdmWarning: IProgress not found",
    "from .autonotebook import tqdm as notebook_tqdm",
)

#: Where the build machine installed a package, as warnings print it: stored as ``.../site-packages/``.
SITE_PACKAGES = re.compile(r"[^\s\"']*/(?:site|dist)-packages/")
#: A progress-bar redraw (tqdm's "name:  35%|███▌      | 6/17 [00:06<00:13,  1.20s/it]"): a live display, nothing
#: to keep once the notebook is stored.
PROGRESS_BAR = re.compile(r"\d+%\|.*\| *\d+/\d+ \[")


def rewrite_markdown(name: str, cells: list[tuple[str, str]]) -> Path:
    """Replace the markdown cells of the stored notebook ``name`` by ``cells``' (prose edits need no re-execution).

    Raises when the stored notebook's cells do not have ``cells``' kinds and code: then it must be executed again.
    """
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    kinds = [("md" if c.cell_type == "markdown" else "code") for c in nb.cells]
    if kinds != [kind for kind, _ in cells] or any(
        c.source != src for c, (kind, src) in zip(nb.cells, cells, strict=True) if kind == "code"
    ):
        raise SystemExit(f"{path.name}: its code differs from this script's: run it again without --markdown-only")
    for cell, (kind, src) in zip(nb.cells, cells, strict=True):
        if kind == "md":
            cell.source = src
    nbformat.write(nb, path)
    return path


def clean_outputs(nb) -> None:
    """Drop advertising lines and this machine's install paths from the stream outputs of a notebook (in place)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                lines = output["text"].splitlines(keepends=True)
                kept = "".join(
                    line
                    for line in lines
                    if not any(ad in line for ad in ADVERTISING) and not PROGRESS_BAR.search(line)
                )
                output["text"] = SITE_PACKAGES.sub(".../site-packages/", kept)
    for cell in nb.cells:  # a stream emptied of everything (an stderr one left with blank lines) is dropped
        if "outputs" in cell:
            cell["outputs"] = [
                o
                for o in cell["outputs"]
                if o.get("output_type") != "stream" or (o["text"].strip() if o.get("name") == "stderr" else o["text"])
            ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names", nargs="*", default=list(BOOKS), help=f"notebooks to build (default all: {list(BOOKS)})"
    )
    parser.add_argument("--clean-only", action="store_true", help="only clean the stored notebooks' outputs")
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="only rewrite the stored notebooks' markdown cells from this script (their code cells must be unchanged)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    NOTEBOOKS.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        if args.markdown_only:
            rewrite_markdown(name, BOOKS[name])
        elif args.clean_only:
            path = NOTEBOOKS / f"{name}.ipynb"
            nb = nbformat.read(path, as_version=4)
            clean_outputs(nb)
            nbformat.write(nb, path)
        else:
            build(name, BOOKS[name])


if __name__ == "__main__":
    main()
