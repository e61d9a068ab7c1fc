"""Covariate-attention statistics: a model built with covariate attention, and one without (``conftest.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import scvi

import scvi_networkvi as nvi

EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}
MODS = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False, "lr": 3e-3}


pytestmark = pytest.mark.usefixtures("offline_session_cache")


@pytest.fixture(scope="module")
def model(example_probe_model):
    return example_probe_model


@pytest.fixture(scope="module")
def attention_model():
    scvi.settings.seed = 0
    mdata = nvi.datasets.example()
    mdata.obs["cell_type"] = mdata["rna"].obs["cell_type"].astype("category")
    age = mdata["rna"].obs["DonorAge"].astype(float)
    mdata["rna"].obs["age"] = (age - age.mean()) / age.std()  # raw ages (~50) make training diverge at this lr
    nvi.NETWORKVI.setup_mudata(
        mdata,
        batch_key="Site",
        continuous_covariate_keys=["age"],
        modalities={**MODS, "continuous_covariate_keys": "rna"},
    )
    attending = nvi.NETWORKVI(mdata, **GO_KW, gene_size=5, go_size=2, encode_covariates=True, covariate_attention="all")
    attending.train(max_epochs=2, **TRAIN)
    return attending


def test_attention_statistics(attention_model):
    stats = attention_model.get_attention_statistics(groupby="cell_type", key_added=None)
    assert set(stats["node_type"]) == {"gene", "go_term"}
    columns = stats[~stats["covariate"].str.endswith("(all)")]
    # attention is a distribution over the covariate columns: the means over cells sum to one per node
    sums = columns.groupby(["modality", "node_id", "phenotype"], observed=True)["mean"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-9)
    assert set(columns["covariate_group"]) == {"Site", "age"}
    totals = stats[stats["covariate"] == "Site (all)"].set_index(["modality", "node_id", "phenotype"])["mean"]
    by_site = (
        columns[columns["covariate_group"] == "Site"]
        .groupby(["modality", "node_id", "phenotype"], observed=True)["mean"]
        .sum()
    )
    np.testing.assert_allclose(totals.loc[by_site.index].to_numpy(), by_site.to_numpy(), atol=1e-9)
    counts = stats[(stats["node_id"] == stats["node_id"].iloc[0]) & (stats["covariate"] == stats["covariate"].iloc[0])]
    overall = counts.loc[counts["phenotype"] == "all", "n_cells"].iloc[0]
    assert overall == attention_model.adata.n_obs == counts.loc[counts["phenotype"] != "all", "n_cells"].sum()
    assert (stats["low"] <= stats["mean"] + 1e-12).all() and (stats["mean"] <= stats["high"] + 1e-12).all()
    # streaming: the minibatch size does not change the numbers
    small = attention_model.get_attention_statistics(groupby="cell_type", key_added=None, batch_size=97)
    np.testing.assert_allclose(small["mean"], stats["mean"], atol=1e-9)


def test_attention_statistics_need_attention(model):
    with pytest.raises(ValueError, match="no covariate attention"):
        model.get_attention_statistics()
