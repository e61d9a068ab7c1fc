"""Continuous covariates: checked at setup, standardised by the model, carried to saved and query models.

Data: the embedded real CITE-seq example (donor age 22-41 years and BMI 21-35 per cell); sites 2-3 as reference,
site 4 as query.
"""

from __future__ import annotations

import numpy as np
import pytest
import scvi
import torch
from scvi import REGISTRY_KEYS

import scvi_networkvi as nvi

EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "gene_size": 3, "go_size": 2}
KEYS = ["DonorAge", "DonorBMI"]
MODS = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna", "continuous_covariate_keys": "rna"}


pytestmark = pytest.mark.usefixtures("offline_session_cache")


def build(mdata, **kwargs) -> nvi.NETWORKVI:
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", continuous_covariate_keys=KEYS, modalities=MODS)
    return nvi.NETWORKVI(mdata, **GO_KW, encode_covariates=True, **kwargs)


def module_covariates(model: nvi.NETWORKVI) -> torch.Tensor:
    """The continuous covariates of every cell as the module reads them."""
    manager = model.adata_manager
    tensors = {
        REGISTRY_KEYS.BATCH_KEY: torch.as_tensor(np.array(manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY))),
        REGISTRY_KEYS.CONT_COVS_KEY: torch.as_tensor(
            np.asarray(manager.get_from_registry(REGISTRY_KEYS.CONT_COVS_KEY)), dtype=torch.float32
        ),
    }
    return model.module._covariates(tensors)[2]


def raw_covariates(mdata) -> np.ndarray:
    return mdata["rna"].obs[KEYS].to_numpy(dtype=np.float64)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, example_sites):
    scvi.settings.seed = 0
    model = build(example_sites(["site2", "site3"]), covariate_attention="all")
    model.train(max_epochs=5, accelerator="cpu", enable_progress_bar=False)
    path = tmp_path_factory.mktemp("reference") / "model"
    model.save(path)
    return model, path


def test_raw_covariates_train_through_encoders_and_attention(reference):
    """Raw ages and BMIs made this model's loss NaN within 5 epochs before the model standardised them."""
    model, _ = reference
    elbo = model.history["elbo_train"]["elbo_train"].astype(float).to_numpy()
    assert np.isfinite(elbo).all() and elbo[-1] < elbo[0]
    assert np.isfinite(model.get_latent_representation()).all()
    raw = raw_covariates(model.adata)
    torch.testing.assert_close(model.module.continuous_covariate_loc, torch.tensor(raw.mean(0), dtype=torch.float32))
    torch.testing.assert_close(model.module.continuous_covariate_scale, torch.tensor(raw.std(0), dtype=torch.float32))
    seen = module_covariates(model).numpy()
    np.testing.assert_allclose(seen.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(seen.std(0), 1.0, atol=1e-5)


def test_raw_values_on_request_and_constant_covariates(example_sites):
    mdata = example_sites(["site2", "site3"])
    mdata["rna"].obs["DonorBMI"] = 25.0  # constant: centred, not divided by a zero spread
    model = build(mdata)
    np.testing.assert_allclose(module_covariates(model).numpy()[:, 1], 0.0, atol=1e-6)
    assert model.module.continuous_covariate_scale[1].item() == 1.0
    raw = build(example_sites(["site2", "site3"]), standardize_continuous_covariates=False)
    np.testing.assert_allclose(module_covariates(raw).numpy(), raw_covariates(raw.adata), rtol=1e-6)


def test_saved_and_query_models_keep_the_reference_statistics(reference, example_sites):
    model, path = reference
    loc, scale = model.module.continuous_covariate_loc, model.module.continuous_covariate_scale
    other = example_sites(["site2"])  # other cells, other statistics: the saved ones must win
    assert not np.allclose(raw_covariates(other).mean(0), loc.numpy())
    loaded = nvi.NETWORKVI.load(path, adata=other)
    torch.testing.assert_close(loaded.module.continuous_covariate_loc, loc)
    torch.testing.assert_close(loaded.module.continuous_covariate_scale, scale)

    query = example_sites(["site4"])
    nvi.NETWORKVI.prepare_query_mudata(query, model)
    query_model = nvi.NETWORKVI.load_query_data(query, model)
    torch.testing.assert_close(query_model.module.continuous_covariate_loc, loc)
    torch.testing.assert_close(query_model.module.continuous_covariate_scale, scale)
    expected = (raw_covariates(query_model.adata) - loc.numpy()) / scale.numpy()
    np.testing.assert_allclose(module_covariates(query_model).numpy(), expected, rtol=1e-5, atol=1e-5)
    query_model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    assert np.isfinite(query_model.get_latent_representation()).all()


@pytest.mark.parametrize(
    ("value", "message"),
    [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), ("forty", "not numbers"), (None, "not a column")],
)
def test_bad_continuous_covariates_are_rejected_before_registration(value, message, example_sites):
    mdata = example_sites(["site2", "site3"])
    obs = mdata["rna"].obs
    if value is None:
        obs.drop(columns="DonorAge", inplace=True)
    elif isinstance(value, str):
        obs["DonorAge"] = obs["DonorAge"].astype(str)
    else:
        obs["DonorAge"] = obs["DonorAge"].astype(float)
        obs.iloc[3, obs.columns.get_loc("DonorAge")] = value
    before = set(mdata.uns), set(mdata["rna"].uns), list(obs.columns)
    with pytest.raises(ValueError, match=message):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", continuous_covariate_keys=KEYS, modalities=MODS)
    assert (set(mdata.uns), set(mdata["rna"].uns), list(obs.columns)) == before


@pytest.mark.parametrize(
    "stats", [([0.0, 0.0], [1.0, 0.0]), ([0.0], [1.0]), ([0.0, 0.0], [1.0, -2.0])], ids=["zero", "short", "negative"]
)
def test_module_refuses_unusable_covariate_statistics(stats):
    from scvi_networkvi.module import NetworkVAE

    with pytest.raises(ValueError, match="positive scales"):
        NetworkVAE({"rna": 10}, n_continuous_cov=2, continuous_covariate_stats=stats)
    module = NetworkVAE({"rna": 10}, n_continuous_cov=2)  # no statistics: raw values
    assert module.continuous_covariate_loc.tolist() == [0.0, 0.0]
    assert module.continuous_covariate_scale.tolist() == [1.0, 1.0]


def test_module_dropouts_use_the_fast_cpu_mask():
    """scvi-tools' FCLayers bring plain torch Dropout (decoders, covariate layers): replaced, same rates, same effect."""
    from scvi_networkvi.module import NetworkVAE
    from scvi_networkvi.nn._wired_encoder import WideDropout

    module = NetworkVAE({"rna": 10, "protein": 4}, n_batch=2, dropout_rate=0.3)
    dropouts = [m for m in module.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(type(m) is WideDropout for m in dropouts)
    assert {m.p for m in dropouts if m.p > 0} == {0.3, 0.1}  # the protein decoder keeps its own fixed 0.1
    layer = next(m for m in dropouts if m.p == 0.3).train()
    torch.manual_seed(0)
    y = layer(torch.ones(200, 50))
    assert torch.allclose(y.unique(), torch.tensor([0.0, 1 / 0.7]))
    assert abs((y == 0).float().mean().item() - 0.3) < 0.03
