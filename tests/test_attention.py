"""GO covariate attention: the layer, and the model with attention (training, query mapping, bad input)."""

from __future__ import annotations

import numpy as np
import pytest
import scvi
import torch

import scvi_networkvi as nvi
from scvi_networkvi.nn._attention import CovariateAttention, covariate_vector, covariate_width


def test_covariate_vector_layout():
    batch = torch.tensor([[0], [2], [1]])
    single = torch.tensor([[0], [0], [0]])  # one category: no column, as in scvi-tools' FCLayers
    cont = torch.tensor([[0.5], [1.0], [-1.0]])
    u = covariate_vector([3, 1], [batch, single], cont)
    assert u.shape == (3, covariate_width([3, 1], 1)) == (3, 4)
    torch.testing.assert_close(u[:, :3], torch.eye(3)[[0, 2, 1]])
    torch.testing.assert_close(u[:, 3], cont[:, 0])
    assert covariate_vector([1], [single], None) is None


def test_attention_weights_are_a_distribution_over_covariates():
    torch.manual_seed(0)
    layer = CovariateAttention(n_neurons=6, n_covariates=4)
    x, u = torch.randn(5, 6), torch.rand(5, 4)
    weights = layer.weights(x, u)
    assert weights.shape == (5, 6, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 6))
    y = layer(x, u)
    assert y.shape == x.shape
    y.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_attention_output_depends_on_covariates():
    torch.manual_seed(0)
    layer = CovariateAttention(n_neurons=3, n_covariates=2)
    x = torch.randn(1, 3)
    a = layer(x, torch.tensor([[1.0, 0.0]]))
    b = layer(x, torch.tensor([[0.0, 1.0]]))
    assert not torch.allclose(a, b)


def test_attention_needs_covariates():
    with pytest.raises(ValueError, match="at least one covariate"):
        CovariateAttention(4, 0)


# ---- in the model ------------------------------------------------------------------------------------------------
MODS = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SCVI_NETWORKVI_OFFLINE", "1")


def build(mdata, **kwargs):
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MODS)
    res = nvi.datasets.example_resources()
    return nvi.NETWORKVI(mdata, go=res["go"], annotations=res["annotations"], gene_size=3, go_size=2, **kwargs)


def test_model_with_covariate_attention_trains_and_maps_queries(offline_cache, tmp_path, example_sites):
    scvi.settings.seed = 0
    model = build(example_sites(["site2", "site3"]), encode_covariates=True, covariate_attention="all")
    encoder = model.module.encoders["rna"]
    assert encoder.gene_attention is not None
    n_levels = len(encoder.go_network.levels)
    assert sorted(encoder.go_network.attention) == [str(i) for i in range(1, n_levels)]  # all but the deepest
    model.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False)
    assert np.isfinite(model.get_latent_representation()).all()
    ref_key = encoder.go_network.attention["1"].key.detach().clone()  # one-hot: site2, site3

    query = example_sites(["site4"])
    nvi.NETWORKVI.prepare_query_mudata(query, model)
    query_model = nvi.NETWORKVI.load_query_data(query, model)
    query_key = query_model.module.encoders["rna"].go_network.attention["1"].key
    assert query_key.shape == (3,)
    torch.testing.assert_close(query_key[:2].detach(), ref_key)
    trainable = {n for n, p in query_model.module.named_parameters() if p.requires_grad}
    assert any("attention" in n for n in trainable) and not any("go_network.levels" in n for n in trainable)
    query_model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    assert np.isfinite(query_model.get_latent_representation()).all()


def test_covariate_attention_needs_encoded_covariates(offline_cache, example_sites):
    with pytest.raises(ValueError, match="encode_covariates=True"):
        build(example_sites(["site2", "site3"]), covariate_attention="go")
    with pytest.raises(ValueError, match="covariate_attention must be"):
        build(example_sites(["site2", "site3"]), encode_covariates=True, covariate_attention="deep")
