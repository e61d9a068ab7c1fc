"""``nvi.tl``: the muon-style functions on MuData (train, embed, importances, perturb, attention, map_query).

A model is trained once on the embedded real CITE-seq example (sites 2 and 3); site 4 is the query of map_query.
"""

from __future__ import annotations

import json

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scvi

import scvi_networkvi as nvi
from scvi_networkvi.tl._train import default_modalities

EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False, "lr": 3e-3}
MODEL = {"gene_size": 5, "go_size": 2, "encode_covariates": True}


pytestmark = pytest.mark.usefixtures("offline_session_cache")


def subset(sites) -> md.MuData:
    full = nvi.datasets.example()
    keep = full["rna"].obs["Site"].isin(sites).to_numpy()
    mdata = md.MuData({mod: full[mod][keep].copy() for mod in full.mod})
    mdata.obs["cell_type"] = mdata["rna"].obs["cell_type"].astype(str).astype("category")
    mdata.obs["Site"] = mdata["rna"].obs["Site"].astype(str).astype("category")
    mdata.obs["DonorAge"] = mdata["rna"].obs["DonorAge"].astype(float)
    return mdata


def snapshot(mdata: md.MuData) -> dict:
    state = {
        "uns": sorted(mdata.uns),
        "obs": list(mdata.obs.columns),
        "obsm": sorted(mdata.obsm),
        "mods": {name: id(adata) for name, adata in mdata.mod.items()},
    }
    for name, adata in mdata.mod.items():
        state[name] = (list(adata.obs.columns), sorted(adata.uns), list(adata.var_names))
    return state


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    scvi.settings.seed = 0
    mdata = subset(["site2", "site3"])
    model = nvi.tl.train(mdata, batch_key="Site", **GO_KW, max_epochs=15, model_kwargs=MODEL, train_kwargs=TRAIN)
    return mdata, model


# ---- train ---------------------------------------------------------------------------------------------------------
def test_train_reads_defaults_and_records_its_parameters(trained, tmp_path):
    mdata, model = trained
    assert model.is_trained_ and model.modality_roles == ["rna", "protein"]
    assert model.registry_["setup_args"]["modalities"] == {"rna_layer": "rna", "protein_layer": "prot"}
    assert model.registry_["setup_args"]["batch_key"] == "Site" and model.summary_stats.n_batch == 2
    params = mdata.uns["networkvi"]["train"]["params"]
    assert params["modalities"] == {"rna_layer": "rna", "protein_layer": "prot"}
    assert params["n_epochs_trained"] == 15 and params["encoder"] == "go"
    assert params["model_kwargs"] == MODEL and params["annotations"] == str(EXAMPLE["annotations"])
    json.dumps(params)  # plain JSON types
    with ad.settings.override(allow_write_nullable_strings=True):  # pandas 3 string indexes on anndata 0.11
        ad.AnnData(uns={"networkvi": mdata.uns["networkvi"]}).write_h5ad(tmp_path / "uns.h5ad")  # h5ad-writable
    back = ad.read_h5ad(tmp_path / "uns.h5ad")
    assert back.uns["networkvi"]["train"]["params"]["batch_key"] == "Site"


def test_default_modalities_from_names():
    full = nvi.datasets.example()
    renamed = md.MuData({"gex": full["rna"], "adt": full["prot"]})
    assert default_modalities(renamed) == {"rna_layer": "gex", "protein_layer": "adt"}
    with pytest.raises(ValueError, match="Found no modality"):
        default_modalities(md.MuData({"x": full["rna"]}))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"annotations": None}, RuntimeError, "Resource 'org.Hs.eg.db' is not in the cache"),  # the species' default
        ({"modalities": {"rna_layer": "rna2"}}, ValueError, "does not have"),
        ({"modalities": {"atac": "rna", "peaks": "x"}}, ValueError, "unknown key"),
        ({"batch_key": "Sitee"}, ValueError, "neither a column"),
        ({"gene_id_key": "ensembl"}, ValueError, "no var\\['ensembl'\\]"),
        ({"layers": {"rna": "counts"}}, ValueError, "no layer 'counts'"),
        ({"max_epochs": 0}, ValueError, "max_epochs"),
        ({"model_kwargs": {"go": "x"}}, ValueError, "must not set"),
        ({"annotations": "/nonexistent/annotations.gaf"}, Exception, None),  # found by the model, after registration
        ({"train_kwargs": {"not_a_trainer_argument": 1}}, Exception, None),  # found by Lightning, after the model
    ],
)
def test_train_errors_leave_mdata_unchanged(kwargs, error, message):
    mdata = subset(["site2"])
    before = snapshot(mdata)
    arguments = {"batch_key": "Site", **GO_KW, "max_epochs": 1, "model_kwargs": MODEL, "train_kwargs": TRAIN}
    with pytest.raises(error, match=message):
        nvi.tl.train(mdata, **{**arguments, **kwargs})
    assert snapshot(mdata) == before


def test_train_dense_needs_no_resources():
    scvi.settings.seed = 0
    mdata = subset(["site2"])
    model = nvi.tl.train(mdata, encoder="dense", modalities={"rna": "rna"}, max_epochs=1, train_kwargs=TRAIN)
    assert model.modality_roles == ["rna"] and model.wirings_ == {}
    assert mdata.uns["networkvi"]["train"]["params"]["modalities"] == {"rna_layer": "rna"}


# ---- embed ---------------------------------------------------------------------------------------------------------
def test_embed_writes_joint_and_modality_latents(trained):
    mdata, model = trained
    nvi.tl.embed(mdata, model, modality="all")
    n_latent = model.module.n_latent
    for key in ("X_networkvi", "X_networkvi_rna", "X_networkvi_prot"):
        assert mdata.obsm[key].shape == (mdata.n_obs, n_latent) and np.isfinite(mdata.obsm[key]).all()
    np.testing.assert_allclose(mdata.obsm["X_networkvi"], model.get_latent_representation())
    np.testing.assert_allclose(mdata.obsm["X_networkvi_prot"], model.get_latent_representation(modality="protein"))
    assert not np.allclose(mdata.obsm["X_networkvi_rna"], mdata.obsm["X_networkvi_prot"])
    assert mdata.uns["networkvi"]["embed"]["params"]["keys"]["prot"] == "X_networkvi_prot"
    copied = nvi.tl.embed(mdata, model, modality="rna", key_added="X_rna_only", copy=True)
    assert "X_rna_only_rna" in copied.obsm and "X_rna_only_rna" not in mdata.obsm
    np.testing.assert_allclose(copied.obsm["X_rna_only_rna"], mdata.obsm["X_networkvi_rna"], rtol=1e-5, atol=1e-6)


def test_embed_mosaic_cells_without_a_modality_get_nan(trained):
    _, model = trained
    mdata = subset(["site2", "site3"])
    drop = mdata.obs_names[:50]
    mosaic = md.MuData({"rna": mdata["rna"].copy(), "prot": mdata["prot"][~mdata.obs_names.isin(drop)].copy()})
    mosaic.obs["Site"] = mdata.obs["Site"]
    nvi.tl.embed(mosaic, model, modality=["joint", "protein"])
    prot = mosaic.obsm["X_networkvi_prot"]
    absent = mosaic.obs_names.isin(drop)
    assert np.isnan(prot[absent]).all() and np.isfinite(prot[~absent]).all()
    assert np.isfinite(mosaic.obsm["X_networkvi"]).all()


@pytest.mark.parametrize("case", ["other_features", "unknown_modality", "untrained", "other_order"])
def test_embed_errors_leave_mdata_unchanged(trained, case):
    mdata, model = trained
    kwargs = {}
    if case == "other_features":
        mdata = subset(["site2"])
        mdata["prot"].var_names = [f"x{i}" for i in range(mdata["prot"].n_vars)]
        message = "other features"
    elif case == "other_order":
        mdata = subset(["site2"])
        mdata.mod["rna"] = mdata["rna"][:, ::-1].copy()
        mdata.update()
        message = "other features"
    elif case == "unknown_modality":
        kwargs, message = {"modality": "atac"}, "modality must be"
    else:
        model = nvi.NETWORKVI(mdata, **GO_KW, gene_size=5, go_size=2)
        message = "not trained"
    before = snapshot(mdata)
    with pytest.raises(ValueError, match=message):
        nvi.tl.embed(mdata, model, key_added="X_failed", **kwargs)
    assert snapshot(mdata) == before


# ---- importances / perturb / attention -----------------------------------------------------------------------------
def test_importances_stored_and_equal_to_the_model_method(trained):
    mdata, model = trained
    types = list(mdata.obs["cell_type"].cat.categories)[:3]
    table = nvi.tl.importances(mdata, model, groupby="cell_type", targets=types, seed=0)
    assert mdata.uns["networkvi_importances"] is table
    assert set(table["phenotype"]) == set(types) and set(table["modality"]) == {"rna", "prot"}
    params = mdata.uns["networkvi"]["networkvi_importances"]["params"]
    assert params["groupby"] == "cell_type" and params["targets"] == types
    direct = model.get_importances(groupby="cell_type", targets=types, seed=0, key_added=None)
    pd.testing.assert_frame_equal(table, direct)
    other = nvi.tl.importances(mdata, model, groupby="cell_type", targets=types[:1], key_added="imp_small", seed=0)
    assert mdata.uns["imp_small"] is other and mdata.uns["networkvi_importances"] is table


def test_importances_settings_and_keyword_overrides(trained):
    mdata, model = trained
    types = list(mdata.obs["cell_type"].cat.categories)[:3]
    settings = nvi.interpret.ImportanceSettings(targets=types, seed=0, reference=types[2])
    table = nvi.tl.importances(
        mdata, model, groupby="cell_type", settings=settings, targets=types[:1], key_added="imp_s"
    )
    params = mdata.uns["networkvi"]["imp_s"]["params"]
    assert params["targets"] == types[:1] and params["reference"] == types[2]  # the keyword won, the rest is kept
    assert set(table["phenotype"]) == set(types[:1]) and set(table["reference"]) == {types[2]}
    before = snapshot(mdata)
    with pytest.raises(TypeError, match=r"importances\(\) got unexpected keyword argument\(s\) 'seeds'.*seed"):
        nvi.tl.importances(mdata, model, groupby="cell_type", seeds=1)
    with pytest.raises(ValueError, match="min_cells must be at least 2"):
        nvi.tl.importances(mdata, model, groupby="cell_type", settings=settings, min_cells=1)
    with pytest.raises(TypeError, match="'null_sets'"):
        nvi.tl.perturb(mdata, model, genes=["X"], groupby="cell_type", null_sets=3)
    assert snapshot(mdata) == before


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"groupby": "celltype"}, ValueError, "is not a column"),
        ({"groupby": "DonorAge"}, ValueError, "is numeric"),
        ({"groupby": "cell_type", "modalities": "atac"}, ValueError, "modality must be"),
        ({"groupby": "cell_type", "key_added": ""}, ValueError, "key_added"),
        ({"groupby": "cell_type", "targets": ["Alien"]}, ValueError, "no selected cell"),
    ],
)
def test_importances_errors_leave_mdata_unchanged(trained, kwargs, error, message):
    mdata, model = trained
    before = snapshot(mdata)
    with pytest.raises(error, match=message):
        nvi.tl.importances(mdata, model, **kwargs)
    assert snapshot(mdata) == before


def test_importances_on_data_of_another_model_fail(trained):
    _, model = trained
    other = subset(["site2"])
    other.mod["prot"] = other["prot"][:, :100].copy()
    other.update()
    before = snapshot(other)
    with pytest.raises(ValueError, match="other features"):
        nvi.tl.importances(other, model, groupby="cell_type")
    assert snapshot(other) == before


def test_perturb_stored(trained):
    mdata, model = trained
    types = list(mdata.obs["cell_type"].cat.categories)[:2]
    gene = str(mdata["rna"].var_names[np.flatnonzero(model.wirings_["rna"].gene_annotated)[0]])
    table = nvi.tl.perturb(mdata, model, genes=[gene], groupby="cell_type", targets=types, modalities="rna", seed=0)
    assert mdata.uns["networkvi_perturbation"] is table
    assert set(table["perturbation"]) == {gene} and set(table["phenotype"]) == set(types)
    np.testing.assert_allclose(table["delta"], table["auroc_after"] - table["auroc_before"], atol=1e-12)
    assert (table["delta"] != 0).any()
    before = snapshot(mdata)
    with pytest.raises(ValueError, match="match no feature"):
        nvi.tl.perturb(mdata, model, genes=["NOT_A_GENE"], groupby="cell_type", key_added="ko2")
    with pytest.raises(ValueError, match="modality must be"):
        nvi.tl.perturb(mdata, model, genes=[gene], groupby="cell_type", perturb_modalities=["atac"])
    assert snapshot(mdata) == before


def test_attention(trained):
    mdata, model = trained
    before = snapshot(mdata)
    with pytest.raises(ValueError, match="no covariate attention"):
        nvi.tl.attention(mdata, model)
    assert snapshot(mdata) == before
    scvi.settings.seed = 0
    small = subset(["site2", "site3"])
    attending = nvi.tl.train(
        small,
        batch_key="Site",
        **GO_KW,
        max_epochs=1,
        model_kwargs={**MODEL, "covariate_attention": "go"},
        train_kwargs=TRAIN,
    )
    stats = nvi.tl.attention(small, attending, groupby="cell_type")
    assert small.uns["networkvi_attention"] is stats
    assert set(stats["phenotype"]) == {"all", *small.obs["cell_type"].cat.categories}
    assert set(stats["covariate_group"]) == {"Site"}


# ---- map_query -----------------------------------------------------------------------------------------------------
def test_map_query_transfers_labels(trained):
    mdata, model = trained
    query = subset(["site4"])
    truth = query.obs["cell_type"].astype(str).to_numpy()
    query.obs = query.obs.drop(columns=["cell_type"])
    scvi.settings.seed = 1
    query_model = nvi.tl.map_query(query, model, max_epochs=5, groupby="cell_type", train_kwargs=TRAIN)
    assert query_model.summary_stats.n_batch == 3
    assert query.obsm["X_networkvi"].shape == (query.n_obs, model.module.n_latent)
    predicted = query.obs["cell_type_predicted"]
    assert isinstance(predicted.dtype, pd.CategoricalDtype)
    assert set(predicted.cat.categories) <= set(mdata.obs["cell_type"].cat.categories)
    confidence = query.obs["cell_type_confidence"].to_numpy()
    assert ((confidence > 0) & (confidence <= 1)).all()
    accuracy = float((predicted.astype(str).to_numpy() == truth).mean())
    majority = pd.Series(truth).value_counts(normalize=True).iloc[0]
    assert accuracy > majority + 0.2
    # confident predictions are the better ones
    sure = confidence >= np.median(confidence)
    assert (predicted.astype(str).to_numpy() == truth)[sure].mean() >= accuracy
    assert query.uns["networkvi"]["map_query"]["params"]["groupby"] == "cell_type"


@pytest.mark.parametrize("case", ["groupby_missing", "groupby_numeric", "no_prot", "no_batch", "bad_epochs"])
def test_map_query_errors_leave_query_unchanged(trained, case):
    _, model = trained
    query = subset(["site4"])
    kwargs = {"max_epochs": 1, "groupby": "cell_type", "train_kwargs": TRAIN}
    if case == "groupby_missing":
        kwargs["groupby"], message = "celltype", "is not a column"
    elif case == "groupby_numeric":
        kwargs["groupby"], message = "DonorAge", "is numeric"
    elif case == "no_prot":
        query = md.MuData({"rna": query["rna"].copy()})
        query.obs["Site"] = query["rna"].obs["Site"].astype(str)
        message = "lacks modalities"
    elif case == "no_batch":
        query.obs = query.obs.drop(columns=["Site"])
        message = "no batch column"
    else:
        kwargs["max_epochs"], message = 0, "max_epochs"
    before = snapshot(query)
    with pytest.raises(ValueError, match=message):
        nvi.tl.map_query(query, model, **kwargs)
    assert snapshot(query) == before
