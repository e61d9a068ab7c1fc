"""Mosaic data (cells that differ in their modalities): a steady adversary by default, equal-weight mixing on request.

On the real CITE-seq and multiome subsets of tests/data, combined into a CITE-seq + multiome mosaic as in
``benchmarks/mosaic.py --cross``.
"""

from __future__ import annotations

from pathlib import Path

import anndata
import mudata as md
import numpy as np
import pytest
import scvi

import scvi_networkvi as nvi
from scvi_networkvi.model._networkvi import _adversarial_scale

DATA = Path(__file__).parent / "data"
MOSAIC_MODS = {"rna_layer": "rna", "protein_layer": "adt", "atac_layer": "atac"}
CITE_MODS = {"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
MULTIOME_MODS = {"rna_layer": "rna", "atac_layer": "atac", "batch_key": "rna"}
TRAIN = {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False}


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SCVI_NETWORKVI_OFFLINE", "1")


@pytest.fixture(scope="module")
def cite() -> md.MuData:
    return md.read_h5mu(DATA / "bmmc_cite.h5mu")


@pytest.fixture(scope="module")
def multiome() -> md.MuData:
    return md.read_h5mu(DATA / "bmmc_multiome.h5mu")


def mosaic(cite: md.MuData, multiome: md.MuData) -> md.MuData:
    """CITE-seq cells (rna + protein) and multiome cells (rna + atac) on their common genes, batch = dataset."""
    shared = cite["rna"].var_names.intersection(multiome["rna"].var_names)
    rna = anndata.concat([cite["rna"][:, shared], multiome["rna"][:, shared]])
    rna.var = cite["rna"].var.loc[shared].copy()
    mdata = md.MuData({"rna": rna, "adt": cite["adt"].copy(), "atac": multiome["atac"].copy()})
    mdata.obs["dataset"] = np.where(mdata.obs_names.isin(cite.obs_names), "cite", "multiome")
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="dataset", modalities=MOSAIC_MODS)
    return mdata


def paired(data: md.MuData, mods: dict) -> md.MuData:
    mdata = data.copy()
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=mods)
    return mdata


def test_auto_mixes_mosaic_data_with_equal_weights(cite, multiome):
    model = nvi.NETWORKVI(mosaic(cite, multiome), encoder="dense", modality_mixing="auto")
    assert model.is_mosaic
    assert model.module.mixer.mixing == "mean"
    assert model.init_params_["non_kwargs"]["modality_mixing"] == "mean"  # saved resolved: loads as trained


@pytest.mark.parametrize(
    ("which", "mods", "expected"), [("cite", CITE_MODS, "poe"), ("multiome", MULTIOME_MODS, "mean")]
)
def test_auto_keeps_the_mixing_of_paired_data(cite, multiome, which, mods, expected):
    model = nvi.NETWORKVI(paired(cite if which == "cite" else multiome, mods), encoder="dense", modality_mixing="auto")
    assert not model.is_mosaic
    assert model.module.mixer.mixing == expected


def test_the_default_mixing_is_the_rule_for_paired_data(cite, multiome):
    model = nvi.NETWORKVI(mosaic(cite, multiome), encoder="dense")
    assert model.module.mixer.mixing == "poe"  # proteins: product of experts, mosaic or not


def test_a_mosaic_model_saved_with_the_old_mixing_loads_with_it(cite, multiome, tmp_path):
    mdata = mosaic(cite, multiome)
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(mdata, encoder="dense", modality_mixing=None)  # what the previous default built
    model.train(**TRAIN)
    model.save(tmp_path / "model")
    loaded = nvi.NETWORKVI.load(str(tmp_path / "model"), adata=mdata)
    assert loaded.module.mixer.mixing == "poe"
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-5)


def test_adversary_keeps_its_weight_on_mosaic_data(cite, multiome):
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(mosaic(cite, multiome), encoder="dense")
    model.train(**TRAIN)
    assert model.trainer.lightning_module.scale_adversarial_loss == 1.0
    model = nvi.NETWORKVI(mosaic(cite, multiome), encoder="dense")
    model.train(adversarial_scale="auto", **TRAIN)  # the behaviour until 2026-12
    assert model.trainer.lightning_module.scale_adversarial_loss == "auto"


def test_adversary_fades_with_the_warm_up_on_paired_data(cite):
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(paired(cite, CITE_MODS), encoder="dense")
    model.train(**TRAIN)
    assert model.trainer.lightning_module.scale_adversarial_loss == "auto"


def test_adversarial_scale_values():
    assert _adversarial_scale(None, mosaic=True) == 1.0 and _adversarial_scale(None, mosaic=False) == "auto"
    assert _adversarial_scale(2, mosaic=False) == 2.0 and _adversarial_scale("auto", mosaic=True) == "auto"
    for bad in (-1.0, "always", True):
        with pytest.raises(ValueError, match="adversarial_scale"):
            _adversarial_scale(bad, mosaic=True)
