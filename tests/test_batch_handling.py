"""How the model keeps the batch out of the latent: batch-centred encoder inputs, totalVI's empirical protein
background prior and the per-modality adversary; on the embedded real CITE-seq example."""

from __future__ import annotations

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch
from scvi.train import AdversarialTrainingPlan

import scvi_networkvi as nvi
from scvi_networkvi.model import empirical_protein_background
from scvi_networkvi.model._training_plan import NetworkVITrainingPlan

MODS = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}


pytestmark = pytest.mark.usefixtures("offline_cache")


@pytest.fixture(scope="module")
def example():
    full = nvi.datasets.example()
    keep = np.sort(np.random.default_rng(0).choice(full.n_obs, 400, replace=False))
    return md.MuData({mod: full[mod][keep].copy() for mod in full.mod})


def setup(example) -> md.MuData:
    mdata = example.copy()
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MODS)
    return mdata


# ---- batch-centred encoder input -----------------------------------------------------------------------------------
def test_batch_means_are_the_log_counts_means_per_batch(example):
    mdata = setup(example)
    model = nvi.NETWORKVI(mdata, encoder="dense", batch_centered_input="all")
    sites = list(model.adata_manager.get_state_registry("batch").categorical_mapping)
    site_of_cell = mdata["rna"].obs["Site"].astype(str).to_numpy()
    for role, mod in (("rna", "rna"), ("protein", "prot")):
        counts = mdata[mod].X
        counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
        expected = np.stack([np.log1p(counts[site_of_cell == s]).mean(0) for s in sites])
        np.testing.assert_allclose(getattr(model.module, f"input_shift_{role}").numpy(), expected, rtol=1e-5)


def _protein_encoder_input(model, mdata) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """What the protein encoder reads for the first 50 cells, in eval mode, and the minibatch's registry tensors."""
    seen = {}
    hook = model.module.encoders["protein"].register_forward_pre_hook(lambda mod, args: seen.update(x=args[0]))
    tensors = next(iter(model._make_data_loader(mdata, batch_size=50)))
    model.module.eval()
    with torch.no_grad():
        model.module.inference(**model.module._get_inference_input(tensors))
    hook.remove()
    return seen["x"], tensors


def test_batch_centred_input_is_what_the_encoder_reads(example):
    mdata = setup(example)
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(mdata, encoder="dense", batch_centered_input=("protein",))
    assert model.module.centered_modalities == ["protein"]
    seen, tensors = _protein_encoder_input(model, mdata)
    batch = tensors["batch"].long().ravel()
    expected = torch.log1p(tensors["proteins"]) - model.module.input_shift_protein[batch]
    torch.testing.assert_close(seen, expected)


def test_batch_scaled_input_gives_every_batch_the_pooled_spread(example):
    mdata = setup(example)
    model = nvi.NETWORKVI(mdata, encoder="dense", batch_scaled_input=True)
    assert model.module.scaled_modalities == ["rna", "protein"] and model.init_settings["batch_scaled_input"] is True
    sites = list(model.adata_manager.get_state_registry("batch").categorical_mapping)
    site_of_cell = mdata["rna"].obs["Site"].astype(str).to_numpy()
    counts = np.log1p(mdata["prot"].X.toarray() if sp.issparse(mdata["prot"].X) else np.asarray(mdata["prot"].X))
    sd = np.stack([counts[site_of_cell == s].std(0) for s in sites])
    n = np.array([(site_of_cell == s).sum() for s in sites])
    pooled = np.sqrt((n[:, None] * sd**2).sum(0) / n.sum())
    np.testing.assert_allclose(model.module.input_sd_protein.numpy(), sd, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.module.input_target_sd_protein.numpy(), pooled, rtol=1e-4, atol=1e-6)
    every_batch = torch.arange(len(sites))
    expected = np.clip((pooled + 0.1) / (sd + 0.1), 0.2, 5.0)
    np.testing.assert_allclose(model.module.input_scale("protein", every_batch).numpy(), expected, rtol=1e-4)
    assert not np.allclose(expected, 1.0)
    # the encoder reads (log1p counts - batch mean) x batch scale
    seen, tensors = _protein_encoder_input(model, mdata)
    batch = tensors["batch"].long().ravel()
    shifted = torch.log1p(tensors["proteins"]) - model.module.input_shift_protein[batch]
    torch.testing.assert_close(seen, shifted * torch.as_tensor(expected, dtype=torch.float32)[batch])
    # off by default for the dense encoder (the GO encoder's default on paired CITE-seq: test_mosaic_defaults); with
    # nothing centred there is nothing to rescale
    assert nvi.NETWORKVI(mdata, encoder="dense").module.scaled_modalities == []
    with pytest.raises(ValueError, match=r"batch_scaled_input=True rescales the batch-centred inputs"):
        nvi.NETWORKVI(mdata, encoder="dense", batch_centered_input=(), batch_scaled_input=True)


def test_a_batch_scaled_model_saves_and_loads_with_its_spreads(example, tmp_path):
    mdata = setup(example)
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(mdata, encoder="dense", batch_scaled_input=True)
    model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    model.save(str(tmp_path / "model"))
    loaded = nvi.NETWORKVI.load(str(tmp_path / "model"), adata=mdata)
    assert loaded.module.scaled_modalities == ["rna", "protein"]
    torch.testing.assert_close(loaded.module.input_sd_rna, model.module.input_sd_rna)
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-5)


def test_state_saved_without_the_spreads_loads_as_an_unscaled_encoder(example):
    mdata = setup(example)
    model = nvi.NETWORKVI(mdata, encoder="dense", batch_scaled_input=True)
    state = {k: v for k, v in model.module.state_dict().items() if "_sd_" not in k}
    model.module.load_state_dict(state)
    scale = model.module.input_scale("rna", torch.arange(model.summary_stats.n_batch))
    assert torch.equal(scale, torch.ones_like(scale))


def test_batch_centred_input_names_known_roles(example):
    mdata = setup(example)
    with pytest.raises(ValueError, match=r"batch_centered_input names \['atac'\]"):
        nvi.NETWORKVI(mdata, encoder="dense", batch_centered_input=("atac",))


def test_state_saved_without_the_shift_loads_as_an_uncentred_encoder(example):
    mdata = setup(example)
    model = nvi.NETWORKVI(mdata, encoder="dense", batch_centered_input=("protein",))
    state = {k: v for k, v in model.module.state_dict().items() if not k.startswith("input_shift_")}
    model.module.load_state_dict(state)
    assert torch.count_nonzero(model.module.input_shift_protein) == 0


# ---- empirical protein background prior ----------------------------------------------------------------------------
def test_empirical_background_is_the_lower_mode_per_batch():
    rng = np.random.default_rng(0)
    n_proteins = 40
    background = {0: 5.0, 1: 40.0}  # batch 1 has far more ambient protein
    cells, batch = [], []
    for b, level in background.items():
        for _ in range(150):
            counts = rng.poisson(level, n_proteins)
            counts[:10] = rng.poisson(level * 30, 10)  # ten expressed proteins per cell
            cells.append(counts)
            batch.append(b)
    mean, scale = empirical_protein_background(np.array(cells), np.array(batch), n_batch=3, seed=0)
    assert mean.shape == scale.shape == (n_proteins, 3)
    assert np.allclose(mean[:, 0], mean[0, 0]) and np.allclose(mean[:, 1], mean[0, 1])  # one value per batch
    assert abs(mean[0, 0] - np.log1p(5.0)) < 0.25 and abs(mean[0, 1] - np.log1p(40.0)) < 0.25
    assert (scale[:, :2] > 0).all() and mean[0, 2] == 0.0  # batch 2 has no cells: the neutral prior
    again = empirical_protein_background(np.array(cells), np.array(batch), n_batch=3, seed=0)
    np.testing.assert_array_equal(again[0], mean)  # seeded
    with pytest.raises(ValueError, match="300 cells but batch has 2"):
        empirical_protein_background(np.array(cells), np.array([0, 1]), n_batch=2)


def test_model_starts_the_protein_prior_from_the_data_or_at_random(example):
    mdata = setup(example)
    scvi.settings.seed = 0
    # None: totalVI's rule, empirical with more than 10 proteins (the example has 134)
    empirical = nvi.NETWORKVI(mdata, encoder="dense", empirical_protein_background_prior=None)
    random = nvi.NETWORKVI(mdata, encoder="dense")  # the default: a random start, as the original
    alpha = empirical.module.background_pro_alpha.detach()
    assert torch.allclose(alpha, alpha[:1].expand_as(alpha))  # the same start for every protein of a batch
    assert not torch.allclose(random.module.background_pro_alpha[:1], random.module.background_pro_alpha[1:2])


# ---- adversary on every modality -----------------------------------------------------------------------------------
def test_modality_adversary_adds_one_term_per_modality(example):
    mdata = setup(example)
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(mdata, encoder="dense")
    plans = {
        flag: NetworkVITrainingPlan(model.module, adversarial_classifier=True, adversarial_modalities=flag)
        for flag in (False, True)
    }
    plans[True].adversarial_classifier.load_state_dict(plans[False].adversarial_classifier.state_dict())
    tensors = next(iter(model._make_data_loader(mdata, batch_size=64)))
    model.module.train()
    losses = {}
    for flag, plan in plans.items():
        plan.train()
        plan.adversarial_classifier.eval()  # no dropout: the same classifier output in every call
        outputs, _, _ = plan.forward(tensors)
        losses[flag] = plan.loss_adversarial_classifier(outputs["z"], tensors["batch"].long(), False)
        expected = AdversarialTrainingPlan.loss_adversarial_classifier(
            plan, outputs["z"], tensors["batch"].long(), False
        )
        if flag:
            for i in range(2):  # every cell has both modalities here
                expected = expected + AdversarialTrainingPlan.loss_adversarial_classifier(
                    plan, outputs["means"][:, i], tensors["batch"].long(), False
                )
        torch.testing.assert_close(losses[flag], expected)
    assert losses[True] > losses[False]


def test_modality_adversary_trains(example):
    mdata = setup(example)
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(mdata, encoder="dense")
    model.train(
        max_epochs=2, accelerator="cpu", enable_progress_bar=False, plan_kwargs={"adversarial_modalities": True}
    )
    assert np.isfinite(model.get_latent_representation()).all()


def test_query_keeps_the_reference_batch_means_and_centres_new_batches_by_their_own(example):
    sites = example["rna"].obs["Site"].astype(str).to_numpy()

    def part(keep):
        mdata = md.MuData({mod: example[mod][keep].copy() for mod in example.mod})
        for mod in mdata.mod:
            mdata[mod].obs["Site"] = mdata[mod].obs["Site"].astype(str)
        return mdata

    reference = part(sites != "site4")
    nvi.NETWORKVI.setup_mudata(reference, batch_key="Site", modalities=MODS)
    scvi.settings.seed = 0
    ref_model = nvi.NETWORKVI(
        reference,
        encoder="dense",
        encode_covariates=True,
        batch_centered_input=("protein",),
        batch_scaled_input=True,
    )
    ref_model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    query = part(sites == "site4")
    nvi.NETWORKVI.prepare_query_mudata(query, ref_model)
    model = nvi.NETWORKVI.load_query_data(query, ref_model)
    shift = model.module.input_shift_protein
    torch.testing.assert_close(shift[:2], ref_model.module.input_shift_protein)
    counts = query["prot"].X
    counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    np.testing.assert_allclose(shift[2].numpy(), np.log1p(counts).mean(0), rtol=1e-5)
    # the spreads likewise: the reference's for its batches; the new batch is scaled to the reference's target spread
    ref_sd = ref_model.module.input_sd_protein
    torch.testing.assert_close(model.module.input_sd_protein[:2], ref_sd)
    torch.testing.assert_close(model.module.input_target_sd_protein, ref_model.module.input_target_sd_protein)
    own_sd = torch.as_tensor(np.log1p(counts).std(0), dtype=torch.float32)
    torch.testing.assert_close(model.module.input_sd_protein[2], own_sd, rtol=1e-4, atol=1e-6)
    target = ref_model.module.input_target_sd_protein
    expected = ((target + 0.1) / (own_sd + 0.1)).clamp(0.2, 5.0)
    torch.testing.assert_close(model.module.input_scale("protein", torch.tensor([2]))[0], expected)
    assert not torch.allclose(expected, torch.ones_like(expected))


def test_query_centres_a_batch_category_the_reference_registered_without_cells(example):
    # Subsetting a MuData keeps the batch column's unused categories: the reference registers the query's site with no
    # cell (an all-zero row of means); the query's cells must still be centred by their own means, not left uncentred.
    sites = example["rna"].obs["Site"].astype(str).to_numpy()

    def part(keep):
        mdata = md.MuData({mod: example[mod][keep].copy() for mod in example.mod})
        for mod in mdata.mod:
            mdata[mod].obs["Site"] = pd.Categorical(sites[keep], categories=sorted(set(sites)))
        return mdata

    reference = part(sites != "site4")
    nvi.NETWORKVI.setup_mudata(reference, batch_key="Site", modalities=MODS)
    scvi.settings.seed = 0
    ref_model = nvi.NETWORKVI(reference, encoder="dense", encode_covariates=True)
    ref_model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    unused = list(reference["rna"].obs["Site"].cat.categories).index("site4")
    assert ref_model.summary_stats.n_batch == 3 and not ref_model.module.input_shift_protein[unused].any()
    query = part(sites == "site4")
    nvi.NETWORKVI.prepare_query_mudata(query, ref_model)
    model = nvi.NETWORKVI.load_query_data(query, ref_model)
    shift = model.module.input_shift_protein
    counts = query["prot"].X
    counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    np.testing.assert_allclose(shift[unused].numpy(), np.log1p(counts).mean(0), rtol=1e-5)
    seen = [i for i in range(3) if i != unused]
    torch.testing.assert_close(shift[seen], ref_model.module.input_shift_protein[seen])


def test_default_mixing_is_the_product_of_experts_with_proteins_and_the_mean_without(example):
    mdata = setup(example)
    assert nvi.NETWORKVI(mdata, encoder="dense").module.mixer.mixing == "poe"
    assert nvi.NETWORKVI(mdata, encoder="dense", modality_mixing="mean").module.mixer.mixing == "mean"
    rna_only = example.copy()
    nvi.NETWORKVI.setup_mudata(rna_only, batch_key="Site", modalities={"rna_layer": "rna", "batch_key": "rna"})
    model = nvi.NETWORKVI(rna_only, encoder="dense")
    assert model.module.mixer.mixing == "mean" and model.module.centered_modalities == []
