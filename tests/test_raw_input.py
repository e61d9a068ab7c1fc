"""Encoders that read raw counts (``log_variational=False``, as the original's encoders and MULTIVI's RNA encoder do):
what they read, the refused combinations, and that the choice is saved; on the real CITE-seq subset of tests/data."""

from __future__ import annotations

from pathlib import Path

import mudata as md
import numpy as np
import pytest
import scvi
import torch

import scvi_networkvi as nvi
from scvi_networkvi.module import NetworkVAE

DATA = Path(__file__).parent / "data"
CITE_MODS = {"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
TRAIN = {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False}
RAW = {"log_variational": False, "batch_centered_input": ()}

pytestmark = pytest.mark.usefixtures("offline_cache")


@pytest.fixture(scope="module")
def cite() -> md.MuData:
    mdata = md.read_h5mu(DATA / "bmmc_cite.h5mu")
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    return mdata


@pytest.fixture(scope="module")
def resources() -> dict:
    example = nvi.datasets.example_resources()
    return {key: example[key] for key in ("go", "annotations", "interactions")}


def _encoder_inputs(model) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """What each encoder reads for the first 40 cells in eval mode, and the minibatch's registry tensors."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        encoder.register_forward_pre_hook(lambda mod, args, role=role: seen.setdefault(role, args[0]))
        for role, encoder in model.module.encoders.items()
    ]
    tensors = next(iter(model._make_data_loader(model.adata, batch_size=40)))
    model.module.eval()
    with torch.no_grad():
        model.module.inference(**model.module._get_inference_input(tensors))
    for hook in hooks:
        hook.remove()
    return seen, tensors


@pytest.mark.parametrize("encoder", ["go", "dense"])
def test_raw_input_encoders_read_the_counts(cite, resources, encoder):
    kwargs = {"gene_size": 2, "go_size": 2, **resources} if encoder == "go" else {"encoder": "dense"}
    model = nvi.NETWORKVI(cite, **RAW, **kwargs)
    assert model.module.log_variational is False and model.init_settings["log_variational"] is False
    seen, tensors = _encoder_inputs(model)
    torch.testing.assert_close(seen["rna"], tensors["X"])
    torch.testing.assert_close(seen["protein"], tensors["proteins"])
    # the default reads log1p counts (here uncentred, so exactly log1p; the GO encoder's fast CPU path feature-major)
    logged, tensors = _encoder_inputs(nvi.NETWORKVI(cite, batch_centered_input=(), **kwargs))
    rna = logged["rna"] if logged["rna"].shape == tensors["X"].shape else logged["rna"].t()
    torch.testing.assert_close(rna, torch.log1p(tensors["X"]))


def test_raw_input_refuses_centred_and_depth_normalised_inputs(cite, resources):
    before = (dict(cite.uns), cite["rna"].X.sum(), list(cite["rna"].obs.columns))
    # the CITE-seq defaults centre every input: the error names the argument that turns centring off
    with pytest.raises(ValueError, match=r"log_variational=False .* pass batch_centered_input=\(\)"):
        nvi.NETWORKVI(cite, log_variational=False, gene_size=2, go_size=2, **resources)
    with pytest.raises(ValueError, match=r"log_variational=False .* centred"):
        nvi.NETWORKVI(cite, encoder="dense", log_variational=False, batch_centered_input=("protein",))
    with pytest.raises(ValueError, match=r"depth_normalized_input=\('rna',\) .* pass depth_normalized_input=\(\)"):
        nvi.NETWORKVI(cite, encoder="dense", depth_normalized_input=("rna",), **RAW)
    after = (dict(cite.uns), cite["rna"].X.sum(), list(cite["rna"].obs.columns))
    assert after[0].keys() == before[0].keys() and after[1:] == before[1:]  # the registered data is left as it was
    # the module refuses the combination too, for those who build it directly
    with pytest.raises(ValueError, match=r"log_variational=False .* input_shifts / depth_normalized_input"):
        NetworkVAE({"rna": 5}, depth_normalized_input=("rna",), log_variational=False)
    with pytest.raises(ValueError, match=r"log_variational=False"):
        NetworkVAE({"rna": 5}, n_batch=2, input_shifts={"rna": np.zeros((2, 5))}, log_variational=False)


def test_a_raw_input_model_trains_saves_and_loads_reading_raw_counts(cite, resources, tmp_path):
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(cite, gene_size=2, go_size=2, **RAW, **resources)
    model.train(**TRAIN)
    latent = model.get_latent_representation()
    assert np.isfinite(latent).all()
    model.save(str(tmp_path / "raw"))
    loaded = nvi.NETWORKVI.load(str(tmp_path / "raw"), adata=cite)
    assert loaded.module.log_variational is False
    np.testing.assert_allclose(loaded.get_latent_representation(), latent, rtol=1e-5)
    # the same weights reading log1p counts place the cells elsewhere: the option reaches the encoders
    loaded.module.log_variational = True
    assert not np.allclose(loaded.get_latent_representation(), latent, atol=1e-3)
