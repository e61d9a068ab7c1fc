"""The data NETWORKVI takes: bad input refused before registration, mosaic and partially paired data, gene ids."""

from __future__ import annotations

from pathlib import Path

import anndata
import mudata as md
import numpy as np
import pytest
import scipy.sparse as sp
import scvi
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import scvi_networkvi as nvi
from scvi_networkvi.model import _data

DATA = Path(__file__).parent / "data"  # written by scripts/make_test_data.py (tests/data/README.md)
CITE, MULTIOME = DATA / "bmmc_cite.h5mu", DATA / "bmmc_multiome.h5mu"
EXAMPLE = nvi.datasets.example_resources()
CITE_MODS = {"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}


pytestmark = pytest.mark.usefixtures("offline_session_cache")


def read(path: Path) -> md.MuData:
    return md.read_h5mu(path)


def knn_accuracy(latent: np.ndarray, labels) -> float:
    return float(cross_val_score(KNeighborsClassifier(15), latent, np.asarray(labels), cv=3).mean())


# ---- bad input ---------------------------------------------------------------------------------------------------
def snapshot(mdata):
    return set(mdata.uns), set(mdata["rna"].uns), list(mdata["rna"].obs.columns)


@pytest.mark.parametrize(
    ("mods", "message"),
    [
        ({"rna_layer": "gex", "batch_key": "rna"}, "does not have"),
        ({"batch_key": "rna"}, "at least one"),
        ({"rna_layer": "rna", "typo_layer": "adt"}, "typo_layer"),
    ],
)
def test_wrong_modality_names(mods, message):
    mdata = read(CITE)
    before = snapshot(mdata)
    with pytest.raises(ValueError, match=message):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=mods)
    assert snapshot(mdata) == before


def _corrupt(mdata, kind):
    x = mdata["rna"].X.toarray().astype(np.float32)
    if kind == "non-integer":
        x[0, 0] = 0.5
    elif kind == "negative":
        x[0, 0] = -1
    elif kind == "nan":
        x[0, 0] = np.nan
    elif kind == "inf":
        x[0, 0] = np.inf
    mdata["rna"].X = sp.csr_matrix(x)


@pytest.mark.parametrize(
    ("kind", "message"),
    [("non-integer", "non-integer"), ("negative", "negative"), ("nan", "NaN"), ("inf", "infinite")],
)
def test_non_count_data_is_rejected_before_registration(kind, message):
    mdata = read(CITE)
    _corrupt(mdata, kind)
    before = snapshot(mdata)
    with pytest.raises(ValueError, match=message):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    assert snapshot(mdata) == before


def test_empty_modality_is_rejected():
    full = read(CITE)
    mdata = md.MuData({"rna": full["rna"], "adt": full["adt"][:, []].copy()})
    with pytest.raises(ValueError, match="empty"):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)


def mosaic() -> md.MuData:
    """CITE-seq cells (rna + protein) and multiome cells (rna + atac) sharing RNA on their 100 common genes."""
    cite, multiome = read(CITE), read(MULTIOME)
    shared = cite["rna"].var_names.intersection(multiome["rna"].var_names)
    rna = anndata.concat([cite["rna"][:, shared], multiome["rna"][:, shared]])
    rna.var = cite["rna"].var.loc[shared].copy()
    mdata = md.MuData({"rna": rna, "adt": cite["adt"].copy(), "atac": multiome["atac"].copy()})
    mdata.obs["dataset"] = np.where(mdata.obs_names.isin(cite.obs_names), "cite", "multiome")
    mdata.obs["cell_type"] = rna.obs["cell_type"].reindex(mdata.obs_names).astype(str).to_numpy()
    return mdata


MOSAIC_MODS = {"rna_layer": "rna", "protein_layer": "adt", "atac_layer": "atac"}


def test_mosaic_cite_plus_multiome_trains_and_embeds_every_cell():
    mdata = mosaic()
    scvi.settings.seed = 0
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="dataset", modalities=MOSAIC_MODS)
    model = nvi.NETWORKVI(mdata, **GO_KW, gene_size=5, go_size=2)
    mask = model.adata_manager.get_from_registry(_data.MASK_KEY)
    assert mask.shape == (1100, 3) and mask[:, 0].all()
    assert mask[:600, 1].all() and not mask[600:, 1].any() and mask[600:, 2].all() and not mask[:600, 2].any()
    model.train(max_epochs=15, accelerator="cpu", enable_progress_bar=False, lr=3e-3)
    history = model.history["reconstruction_loss_train"]["reconstruction_loss_train"].to_numpy()
    assert history[-1] < history[0]
    latent = model.get_latent_representation()
    assert latent.shape == (1100, model.module.n_latent) and np.isfinite(latent).all()
    protein_latent = model.get_latent_representation(modality="protein")
    assert np.all(protein_latent[600:] == 0)  # multiome cells have no protein posterior
    # The two datasets name cell types differently: cell types must separate within each of them.
    for cells in (slice(0, 600), slice(600, 1100)):
        labels = mdata.obs["cell_type"].iloc[cells]
        assert knn_accuracy(latent[cells], labels) > labels.value_counts(normalize=True).iloc[0] + 0.05


def test_partially_paired_data_and_encoders_run_only_on_present_cells():
    full = read(CITE)
    keep = full.obs_names[:360]  # 60 % of the cells keep their proteins
    mdata = md.MuData({"rna": full["rna"].copy(), "adt": full["adt"][keep].copy()})
    mdata.obs["batch"] = full["rna"].obs["batch"].reindex(mdata.obs_names).to_numpy()
    adt = mdata["adt"].X.toarray() if sp.issparse(mdata["adt"].X) else mdata["adt"].X.copy()
    adt[0] = 0  # measured, all zero: present, not missing
    mdata["adt"].X = adt
    scvi.settings.seed = 0
    with pytest.warns(UserWarning, match="1 of 360 cells have zero counts in modality 'adt'"):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities={"rna_layer": "rna", "protein_layer": "adt"})
    model = nvi.NETWORKVI(mdata, **GO_KW, gene_size=5, go_size=2)
    mask = model.adata_manager.get_from_registry(_data.MASK_KEY)
    assert mask[:, 1].sum() == 360 and mask[0, 1] == 1
    model.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False)
    seen = []
    encoder = model.module.encoders["protein"]
    original = encoder.forward
    # inference may hand the encoder its input feature-major (features x cells)
    encoder.forward = lambda x, *a, **k: (
        seen.append(x.shape[1 if k.get("feature_major") else 0]) or original(x, *a, **k)
    )
    model.get_latent_representation()
    assert sum(seen) == 360


def test_mosaic_keys_must_come_from_the_global_obs():
    mdata = mosaic()
    with pytest.raises(ValueError, match="global"):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities={**MOSAIC_MODS, "batch_key": "rna"})
    with pytest.raises(ValueError, match="pull_obs"):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MOSAIC_MODS)


def test_cells_in_no_registered_modality_are_refused():
    mdata = mosaic()
    before = snapshot(mdata)
    with pytest.raises(ValueError, match="in none of the registered modalities"):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="dataset", modalities={"protein_layer": "adt"})
    assert snapshot(mdata) == before


def test_missing_gene_id_column_and_unmatched_ids():
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS, gene_id_key="ensembl")
    with pytest.raises(ValueError, match="gene_id_key"):
        nvi.NETWORKVI(mdata, **GO_KW)
    mdata = read(CITE)
    gene_id_key = {"rna": "modality", "protein": "symbol"}  # columns that hold no ENSEMBL ids
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS, gene_id_key=gene_id_key)
    with pytest.raises(ValueError, match="no gene ids of a known type .* modality 'rna'.*var\\['modality'\\]"):
        nvi.NETWORKVI(mdata, **GO_KW)
    mdata = read(CITE)
    gene_id_key = {"protein": "symbol"}  # symbols, while the annotations are keyed by ENSEMBL ids
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS, gene_id_key=gene_id_key)
    with pytest.raises(ValueError, match="Fewer than 20% of the features of modality 'adt'.*ENSEMBL"):
        nvi.NETWORKVI(mdata, **GO_KW)


def test_go_encoder_without_annotations_asks_for_the_species_default_and_choices_are_checked(monkeypatch):
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    monkeypatch.setenv("SCVI_NETWORKVI_OFFLINE", "1")  # human ENSEMBL ids: the full human annotations, not cached
    with pytest.raises(RuntimeError, match="Resource 'org.Hs.eg.db' is not in the cache"):
        nvi.NETWORKVI(mdata, go=EXAMPLE["go"])
    with pytest.raises(ValueError, match="modality_mixing"):
        nvi.NETWORKVI(mdata, modality_mixing="equal", **GO_KW)
    with pytest.raises(ValueError, match="encoder"):
        nvi.NETWORKVI(mdata, encoder="linear", **GO_KW)


def test_unreachable_go_resource_offline_is_a_clear_error():
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    with pytest.raises(RuntimeError, match="SCVI_NETWORKVI_OFFLINE"):
        nvi.NETWORKVI(mdata, go="go-basic", annotations=EXAMPLE["annotations"])
