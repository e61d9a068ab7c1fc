"""Models saved by earlier releases load with the settings they were trained with, embed as before and map queries.

``tests/data/saved_model_<version>/`` was written by ``scripts/make_saved_model.py`` with that release's code.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mudata as md
import numpy as np
import pytest
import scvi
import torch

import scvi_networkvi as nvi

ROOT = Path(__file__).resolve().parents[1]
SAVED = sorted((ROOT / "tests" / "data").glob("saved_model_*"))


def as_saved(mdata: md.MuData, path: Path) -> md.MuData:
    """The example's features named as when the model was saved.

    Models saved before the example's antibodies named like a gene got the suffix ``_ADT`` (``CD4_ADT``) know them by
    the gene's name (``CD4``): the same features under their old names.
    """
    saved = torch.load(path / "model.pt", map_location="cpu", weights_only=False)["var_names"]
    for mod, names in saved.items():
        names = [str(n) for n in names]
        if list(mdata[mod].var_names) != names and list(mdata[mod].var_names.str.removesuffix("_ADT")) == names:
            mdata[mod].var_names = names
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="var_names are not unique")  # the old names repeat gene names
        mdata.update()
    return mdata


@pytest.fixture(scope="module")
def make_saved_model(load_script):
    return load_script("scripts/make_saved_model.py")


pytestmark = pytest.mark.usefixtures("offline_cache")


def test_there_is_a_saved_model_of_the_first_release():
    assert any(path.name == "saved_model_0.1.0.dev0" for path in SAVED)


@pytest.mark.parametrize("path", SAVED, ids=[p.name for p in SAVED])
def test_saved_model_loads_with_its_own_settings_and_embeds_as_before(path, make_saved_model):
    expected = np.load(path / "expected.npz")
    mdata = as_saved(make_saved_model.subset(), path)
    assert np.array_equal(np.asarray(mdata.obs_names, dtype=str), expected["obs_names"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = nvi.NETWORKVI.load(str(path), adata=mdata)
    # no deprecation notice a user cannot act on (mudata's mod_names one, raised inside scvi-tools' load)
    assert not [str(w.message) for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning)]
    saved = model.init_settings
    # the settings it was saved with, not today's defaults, build the module
    assert model.module.n_latent == (saved["n_latent"] or 10)
    assert model.module.encode_covariates == saved["encode_covariates"]
    assert model.module.mixer.mixing == (saved["modality_mixing"] or "poe")  # None: poe with proteins
    assert model.module.scaled_modalities == []  # saved before per-batch input scales: unscaled, as trained
    latent = model.get_latent_representation()
    np.testing.assert_allclose(latent, expected["latent"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path", SAVED, ids=[p.name for p in SAVED])
def test_saved_model_maps_a_query(path, make_saved_model):
    full = nvi.datasets.example()
    taken = set(make_saved_model.subset().obs_names)
    sites = full["rna"].obs["Site"].astype(str).to_numpy()
    keep = np.flatnonzero((sites == "site4") & ~full.obs_names.isin(list(taken)))[:60]
    query = as_saved(md.MuData({mod: full[mod][keep].copy() for mod in full.mod}), path)
    for mod in query.mod:
        query[mod].obs["Site"] = "site5"  # a batch the reference has not seen
    nvi.NETWORKVI.prepare_query_mudata(query, str(path))
    scvi.settings.seed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # saved with encode_covariates=False: the warning is expected
        model = nvi.NETWORKVI.load_query_data(query, str(path))
    assert model.summary_stats.n_batch == 4
    model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    latent = model.get_latent_representation()
    assert latent.shape == (60, model.module.n_latent) and np.isfinite(latent).all()
