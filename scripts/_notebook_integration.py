"""The cells of the query-mapping and mosaic notebooks (``docs/notebooks/query_mapping.ipynb``, ``mosaic.ipynb``)."""

from __future__ import annotations

SETUP = """import warnings

import numpy as np
import scanpy as sc
import scvi

import scvi_networkvi as nvi

scvi.settings.seed = 0
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
# The tutorial's subsampled annotations, on purpose (fast): nvi warns that they cover few genes; your own data should
# use the full annotations of its species (annotations=None, the default).
RESOURCES = {"go": "go-basic", "annotations": "ensembl2go-tutorial", "interactions": "k562-contact-domains"}
warnings.filterwarnings("ignore", message="Only .* have a GO annotation")"""


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
in their second modality. On the UMAP above the two datasets share their cell types' regions, not evenly (some
regions are mostly one dataset's, as their labels and compositions differ). The
joint posterior is the product of the posteriors of the modalities each cell has (`modality_mixing="poe"`, the
default with proteins; the original's gating network put all the weight on protein for the CITE-seq cells and on RNA
for the multiome cells, and transferred labels far worse), and the modality penalty pulls each cell's posteriors
together at full weight from the first step (the GO encoder's default on mosaics with RNA and ATAC since 2026-12-06c).
With proteins the GO encoder reads its inputs centred and rescaled within each batch, here each dataset
(`batch_scaled_input`, its default on data with proteins since 2026-12-07f: the two datasets' RNA differ in depth,
and with the scales and the symmetric penalty the labels transferred better on every seed of the benchmark). The
peaks are read by scvi-tools' dense encoder while the RNA and protein encoders stay
GO-wired (`dense_modalities=("atac",)`, the GO encoder's default on mosaics with RNA and ATAC since 2026-12-07b: it
transferred labels and mixed the datasets better than a GO-wired ATAC encoder), so the model's GO terms and
importances are the RNA's and the proteins'. `benchmarks/mosaic.py --cross` and `benchmarks/mosaic_ablation.py`
compare these settings with MULTIVI and with NETWORKVI's dense encoder on the same cells; the results page of the
docs has the numbers.""",
    ),
]
