"""Query mapping (scArches-style): the embedded real CITE-seq example, sites 2-3 as reference, site 4 as query."""

from __future__ import annotations

import warnings

import mudata as md
import numpy as np
import pytest
import scvi
import torch
from sklearn.neighbors import KNeighborsClassifier

import scvi_networkvi as nvi

EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}
MODS = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}


pytestmark = pytest.mark.usefixtures("offline_session_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, example_sites):
    scvi.settings.seed = 0
    mdata = example_sites(["site2", "site3"])
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MODS)
    model = nvi.NETWORKVI(mdata, **GO_KW, gene_size=5, go_size=2, encode_covariates=True)
    model.train(max_epochs=15, accelerator="cpu", enable_progress_bar=False, lr=3e-3)
    path = tmp_path_factory.mktemp("reference") / "model"
    model.save(path)
    return model, path


@pytest.mark.parametrize("from_path", [False, True])
def test_unseen_batch_maps_onto_the_reference(reference, from_path, example_sites):
    ref_model, path = reference
    query = example_sites(["site4"])
    nvi.NETWORKVI.prepare_query_mudata(query, path if from_path else ref_model)
    scvi.settings.seed = 1  # the query's new weights and its training do not depend on the tests run before
    model = nvi.NETWORKVI.load_query_data(query, path if from_path else ref_model)
    assert model.summary_stats.n_batch == 3
    go_before = {k: v.clone() for k, v in model.module.encoders["rna"].go_network.state_dict().items()}
    trainable = [n for n, p in model.module.named_parameters() if p.requires_grad]
    assert trainable and all("go_network" not in n and "gene_layer" not in n for n in trainable)
    model.train(max_epochs=5, accelerator="cpu", enable_progress_bar=False, lr=3e-3)
    for key, value in model.module.encoders["rna"].go_network.state_dict().items():
        torch.testing.assert_close(value, go_before[key])  # the GO encoder is the reference's
    latent = model.get_latent_representation()
    assert latent.shape == (query.n_obs, ref_model.module.n_latent) and np.isfinite(latent).all()
    # Label transfer: a classifier on the reference latent predicts the query's cell types as well as when the
    # query is passed through the reference as if it were a reference site, and far above the majority rate.
    ref_latent = ref_model.get_latent_representation()
    clf = KNeighborsClassifier(15).fit(ref_latent, ref_model.adata["rna"].obs["cell_type"].astype(str).to_numpy())
    truth = query["rna"].obs["cell_type"].astype(str).to_numpy()
    accuracy = float((clf.predict(latent) == truth).mean())
    as_reference = example_sites(["site4"])
    as_reference["rna"].obs["Site"] = "site3"
    baseline = float((clf.predict(ref_model.get_latent_representation(as_reference)) == truth).mean())
    majority = query["rna"].obs["cell_type"].value_counts(normalize=True).iloc[0]
    assert accuracy > majority + 0.05
    assert accuracy > baseline - 0.1


def test_seen_and_unseen_batches_together(reference, example_sites):
    ref_model, _ = reference
    query = example_sites(["site3", "site4"])
    nvi.NETWORKVI.prepare_query_mudata(query, ref_model)
    model = nvi.NETWORKVI.load_query_data(query, ref_model)
    assert model.summary_stats.n_batch == 3
    model.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False)
    assert np.isfinite(model.get_latent_representation()).all()


def test_reference_cells_decode_as_before_until_the_query_trains(reference, example_sites):
    ref_model, _ = reference
    query = example_sites(["site3", "site4"])
    nvi.NETWORKVI.prepare_query_mudata(query, ref_model)
    model = nvi.NETWORKVI.load_query_data(query, ref_model)
    ref_cells = np.flatnonzero(query["rna"].obs["Site"].to_numpy() == "site3")
    before = ref_model.get_normalized_expression(
        indices=np.flatnonzero(ref_model.adata["rna"].obs["Site"].to_numpy() == "site3"), return_numpy=True
    )
    after = model.get_normalized_expression(indices=ref_cells, return_numpy=True)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-7)


def test_query_errors(reference, example_sites):
    ref_model, _ = reference
    full = example_sites(["site4"])
    query = md.MuData({"rna": full["rna"][:, ::-1].copy(), "prot": full["prot"].copy()})
    with pytest.raises(ValueError, match="prepare_query_mudata"):
        nvi.NETWORKVI.load_query_data(query, ref_model)  # features in another order: not prepared yet
    nvi.NETWORKVI.prepare_query_mudata(query, ref_model)
    assert list(query["rna"].var_names) == list(ref_model.adata["rna"].var_names)
    renamed = example_sites(["site4"])
    renamed["prot"].var_names = [f"x{i}" for i in range(renamed["prot"].n_vars)]
    with pytest.raises(ValueError, match="shares no feature"):
        nvi.NETWORKVI.prepare_query_mudata(renamed, ref_model)
    with pytest.raises(ValueError, match="site4"):
        ref_model.get_latent_representation(example_sites(["site4"]))  # a batch the model never saw


def test_query_warns_when_the_encoders_ignore_the_batch(reference, example_sites):
    ref_model, _ = reference
    mdata = example_sites(["site2", "site3"])
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MODS)
    plain = nvi.NETWORKVI(mdata, **GO_KW, gene_size=5, go_size=2)  # encode_covariates=False: zero-shot mapping
    query = example_sites(["site4"])
    nvi.NETWORKVI.prepare_query_mudata(query, plain)
    with pytest.warns(UserWarning, match="encode_covariates=False"):
        nvi.NETWORKVI.load_query_data(query, plain)
    query = example_sites(["site4"])
    nvi.NETWORKVI.prepare_query_mudata(query, ref_model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nvi.NETWORKVI.load_query_data(query, ref_model)
    assert not [w for w in caught if "encode_covariates" in str(w.message)]
