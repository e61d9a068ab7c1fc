"""NETWORKVI on the real CITE-seq and Multiome subsets of tests/data (NeurIPS 2021 bone marrow, 2 batches)."""

from __future__ import annotations

from pathlib import Path

import mudata as md
import numpy as np
import pytest
import scvi
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import scvi_networkvi as nvi
from scvi_networkvi.model import _networkvi, _wiring_settings
from scvi_networkvi.nn import LevelBatchNorm

DATA = Path(__file__).parent / "data"  # written by scripts/make_test_data.py (tests/data/README.md)
CITE, MULTIOME = DATA / "bmmc_cite.h5mu", DATA / "bmmc_multiome.h5mu"
EXAMPLE = nvi.datasets.example_resources()
CITE_MODS = {"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
MULTIOME_MODS = {"rna_layer": "rna", "atac_layer": "atac", "batch_key": "rna"}
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}


pytestmark = pytest.mark.usefixtures("offline_session_cache")


def read(path: Path) -> md.MuData:
    return md.read_h5mu(path)


def train(mdata, mods, *, epochs=10, seed=0, setup_kwargs=None, **model_kwargs):
    scvi.settings.seed = seed
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=mods, **(setup_kwargs or {}))
    kwargs = {**GO_KW, "gene_size": 5, "go_size": 2, **model_kwargs}
    model = nvi.NETWORKVI(mdata, **kwargs)
    model.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False, lr=3e-3)
    return model


def knn_accuracy(latent: np.ndarray, labels) -> float:
    return float(cross_val_score(KNeighborsClassifier(15), latent, np.asarray(labels), cv=3).mean())


@pytest.fixture(scope="module")
def cite_model():
    return train(read(CITE), CITE_MODS, epochs=25)


def test_cite_trains_and_separates_cell_types(cite_model):
    history = cite_model.history["reconstruction_loss_train"]["reconstruction_loss_train"].to_numpy()
    assert history[-1] < history[0] * 0.95
    latent = cite_model.get_latent_representation()
    assert latent.shape == (600, cite_model.module.n_latent) and np.isfinite(latent).all()
    labels = cite_model.adata["rna"].obs["cell_type"]
    majority = labels.value_counts(normalize=True).iloc[0]
    assert knn_accuracy(latent, labels) > 2 * majority  # 35 cell types, majority class 13%


def test_early_stopping_watches_the_validation_elbo(cite_model):
    """Like TOTALVI: the default early stopping monitors the ELBO, which the plan logs each epoch."""
    stoppers = [cb for cb in cite_model.trainer.callbacks if isinstance(cb, EarlyStopping)]
    assert [cb.monitor for cb in stoppers] == ["elbo_validation"]
    assert len(cite_model.history["elbo_validation"]) == 25


def test_an_unknown_early_stopping_monitor_is_refused_before_training(cite_model):
    state = {k: v.clone() for k, v in cite_model.module.state_dict().items()}
    with pytest.raises(ValueError, match=r"train\(early_stopping_monitor='elbo'\).*elbo_validation"):
        cite_model.train(max_epochs=1, early_stopping_monitor="elbo", accelerator="cpu")
    for key, value in cite_model.module.state_dict().items():
        assert torch.equal(value, state[key])


def test_modality_latents_by_role_or_name(cite_model):
    by_role = cite_model.get_latent_representation(modality="protein")
    by_name = cite_model.get_latent_representation(modality="adt")
    np.testing.assert_array_equal(by_role, by_name)
    assert not np.allclose(by_role, cite_model.get_latent_representation(modality="rna"))
    with pytest.raises(ValueError, match="modality must be"):
        cite_model.get_latent_representation(modality="atac")


def test_wiring_of_each_modality_is_part_of_the_model(cite_model):
    assert set(cite_model.wirings_) == {"rna", "protein"}
    assert cite_model.wirings_["rna"].n_features == 1000 and cite_model.wirings_["protein"].n_features == 134
    assert "GO terms" in cite_model._model_summary_string


def test_normalized_expression(cite_model):
    genes = list(cite_model.adata["rna"].var_names[:2])
    expr = cite_model.get_normalized_expression(gene_list=genes)
    assert expr.shape == (600, 2) and (expr.to_numpy() > 0).all()
    full = cite_model.get_normalized_expression(return_numpy=True)
    np.testing.assert_allclose(full.sum(1), 1.0, rtol=1e-4)
    other = cite_model.get_normalized_expression(gene_list=genes[:1], transform_batch="s1d3")
    assert other.shape == (600, 1)
    with pytest.raises(ValueError, match="not a registered batch"):
        cite_model.get_normalized_expression(transform_batch="site9")
    with pytest.raises(ValueError, match="does not know"):
        cite_model.get_normalized_expression(gene_list=["NOT_A_GENE"])


def test_save_load_identical_without_resource_files(cite_model, tmp_path, monkeypatch):
    cite_model.save(tmp_path / "model", save_anndata=False)

    def no_compile(*args, **kwargs):
        raise AssertionError("loading must not need the OBO/GAF/CSV files")

    monkeypatch.setattr(_wiring_settings, "compile_wirings", no_compile)
    loaded = nvi.NETWORKVI.load(tmp_path / "model", adata=read(CITE))
    np.testing.assert_array_equal(loaded.get_latent_representation(), cite_model.get_latent_representation())
    for role in ("rna", "protein"):
        assert loaded.wirings_[role].equals(cite_model.wirings_[role])


def test_multiome_trains_with_accessibility(tmp_path):
    model = train(read(MULTIOME), MULTIOME_MODS, epochs=4)
    assert set(model.module.modalities) == {"rna", "atac"}
    latent = model.get_latent_representation()
    assert latent.shape[0] == 500 and np.isfinite(latent).all()
    assert "reconstruction_loss_validation" in model.history


def test_go_level_batch_norm_keeps_the_encoders_from_collapsing():
    """Without GO-level normalisation the ATAC GO encoder's posterior falls back to the prior (the original's design).

    Measured on tests/data/bmmc_multiome.h5mu (30 epochs, seed 0): spread of the ATAC posterior means 1.00 vs 0.058,
    kNN cell-type accuracy of the ATAC latent 0.38 vs 0.16 (seed 1: 0.97 vs 0.004, 0.35 vs 0.15).
    """
    spread, accuracy = {}, {}
    for norm in ("batch", "none"):
        mdata = read(MULTIOME)
        model = train(mdata, MULTIOME_MODS, epochs=30, go_norm=norm)
        latent = model.get_latent_representation(modality="atac")
        spread[norm] = float(latent.std(0).mean())
        accuracy[norm] = knn_accuracy(latent, mdata["rna"].obs["cell_type"])
    assert spread["batch"] > 0.5 > 0.1 > spread["none"]
    assert accuracy["batch"] > accuracy["none"] + 0.1


def test_seeded_runs_are_identical():
    a = train(read(MULTIOME), MULTIOME_MODS, epochs=2, seed=3).get_latent_representation()
    b = train(read(MULTIOME), MULTIOME_MODS, epochs=2, seed=3).get_latent_representation()
    c = train(read(MULTIOME), MULTIOME_MODS, epochs=2, seed=4).get_latent_representation()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"encoder": "dense"},
        {"modality_mixing": "poe", "modality_penalty": "mmd"},
        {"modality_mixing": "moe", "modality_penalty": None, "gene_likelihood": "nb"},
        {"gene_likelihood": "poisson", "latent_distribution": "ln", "gene_layer": "none"},
        {"encode_covariates": True, "deeply_inject_covariates": True, "protein_dispersion": "protein-batch"},
        {"relations": ("is_a", "part_of"), "n_layers_encoder": 3, "gene_layer": "standard", "activation": "leaky_relu"},
    ],
    ids=["dense", "poe-mmd", "moe-nb", "poisson-ln-nogene", "covariates", "part_of-depth3"],
)
def test_model_options_train(kwargs):
    model = train(read(CITE), CITE_MODS, epochs=1, **kwargs)
    assert np.isfinite(model.get_latent_representation()).all()


def test_default_sizes_and_the_originals_heuristic():
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    default = nvi.NETWORKVI(mdata, **GO_KW)
    assert default.module.n_latent == 10 and default.wirings_["rna"].term_size[-1] == 128  # GO root = n_hidden
    original = nvi.NETWORKVI(mdata, n_hidden="sqrt", n_latent="sqrt", **GO_KW)  # 1000 genes -> 31 -> 5
    assert original.module.n_latent == 5 and original.wirings_["rna"].term_size[-1] == 31
    assert nvi.NETWORKVI(mdata, n_hidden=40, n_latent="sqrt", encoder="dense").module.n_latent == 6
    with pytest.raises(ValueError, match="n_hidden must be"):
        nvi.NETWORKVI(mdata, n_hidden="auto", encoder="dense")
    assert _networkvi._layer_sizes({"rna": 1000, "atac": 40000}, None, None) == (200, 10)  # PeakVI's sqrt(regions)
    assert _networkvi._layer_sizes({"rna": 1000, "atac": 600}, "sqrt", "sqrt") == (24, 4)


def test_unknown_chain_width_is_a_model_setting():
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    widths = {}
    for size in (12, 7):
        wiring = nvi.NETWORKVI(mdata, unknown_size=size, **GO_KW).wirings_["rna"]
        widths[size] = set(wiring.term_size[wiring.term_kind == "unknown"].tolist())
        assert set(wiring.term_size[wiring.term_kind == "go"].tolist()) == {6}  # GO terms keep go_size
    assert widths == {12: {12}, 7: {7}}  # the second model did not reuse the first one's cached wiring
    with pytest.raises(ValueError, match="unknown_size must be a positive integer"):
        nvi.NETWORKVI(mdata, unknown_size=0, **GO_KW)


def test_heads_reading_every_go_level_train_save_and_load(tmp_path):
    mdata = read(CITE)
    model = train(mdata, CITE_MODS, epochs=1, head_input="levels")
    encoder = model.module.encoders["rna"]
    levels = sum(b - a for a, b in encoder.go_network.level_slices)
    assert encoder.mean_encoder.in_features == levels > model.wirings_["rna"].term_size[-1]
    latent = model.get_latent_representation()
    model.save(tmp_path / "model", save_anndata=False)
    loaded = nvi.NETWORKVI.load(tmp_path / "model", adata=mdata)
    assert loaded.init_settings["head_input"] == "levels"
    np.testing.assert_allclose(loaded.get_latent_representation(), latent, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="head_input"):
        nvi.NETWORKVI(mdata, head_input="all", **GO_KW)


@pytest.mark.parametrize(("warmup", "scale"), [(True, 1.0), (False, 1.0), (True, 5.0)])
def test_modality_penalty_follows_the_kl_warmup_and_its_scale(warmup, scale):
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    model = nvi.NETWORKVI(mdata, encoder="dense", modality_penalty_warmup=warmup, modality_penalty_scale=scale)
    module = model.module.eval()
    tensors = next(iter(model._make_data_loader(adata=mdata, indices=np.arange(32))))
    with torch.no_grad():
        inference = module.inference(**module._get_inference_input(tensors))
        generative = module.generative(**module._get_generative_input(tensors, inference))
        losses = {w: module.loss(tensors, inference, generative, kl_weight=w) for w in (0.0, 0.5)}
    penalty = losses[0.0].kl_local["kl_divergence_paired"]
    assert (penalty > 0).all()
    qz = inference["qz"]  # the closed-form KL to the prior equals torch's
    expected_kl = torch.distributions.kl_divergence(qz, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    np.testing.assert_allclose(losses[0.0].kl_local["kl_divergence_z"], expected_kl, rtol=1e-5, atol=1e-6)
    recon = sum(losses[0.0].reconstruction_loss.values())
    for w, loss in losses.items():
        np.testing.assert_array_equal(loss.kl_local["kl_divergence_paired"], penalty)  # logged unweighted
        kl = loss.kl_local["kl_divergence_z"] + loss.kl_local["kl_divergence_background"]
        expected = recon + w * kl + (w if warmup else 1.0) * scale * penalty
        np.testing.assert_allclose(float(loss.loss), float(expected.mean()), rtol=1e-5)


def test_the_penalty_anchor_modality_gets_no_gradient_from_the_penalty():
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    tensors = next(iter(nvi.NETWORKVI(mdata, encoder="dense")._make_data_loader(adata=mdata, indices=np.arange(32))))
    values, grads = {}, {}
    for anchor in (None, "rna"):
        scvi.settings.seed = 0
        module = nvi.NETWORKVI(mdata, encoder="dense", modality_penalty_anchor=anchor).module.eval()
        inference = module.inference(**module._get_inference_input(tensors))
        generative = module.generative(**module._get_generative_input(tensors, inference))
        penalty = module.loss(tensors, inference, generative, kl_weight=1.0).kl_local["kl_divergence_paired"].sum()
        module.zero_grad()
        penalty.backward()
        values[anchor] = float(penalty.detach())
        grads[anchor] = {
            role: sum(float(p.grad.abs().sum()) for p in module.encoders[role].parameters() if p.grad is not None)
            for role in module.modalities
        }
    assert values[None] == pytest.approx(values["rna"], rel=1e-6)  # same value, other gradients
    assert grads[None]["rna"] > 0 and grads[None]["protein"] > 0
    assert grads["rna"]["rna"] == 0 and grads["rna"]["protein"] > 0
    with pytest.raises(ValueError, match="modality_penalty_anchor='atac' is not a modality"):
        nvi.NETWORKVI(mdata, encoder="dense", modality_penalty_anchor="atac")
    with pytest.raises(ValueError, match="modality_penalty_anchor"):
        nvi.NETWORKVI(mdata, encoder="dense", modality_penalty_anchor="genes")


def test_modality_dropout_places_some_paired_cells_by_one_modality_in_training_only():
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    model = nvi.NETWORKVI(mdata, encoder="dense", modality_dropout=0.5)
    assert model.module.modality_dropout == 0.5
    tensors = next(iter(model._make_data_loader(adata=mdata, indices=np.arange(64))))
    module = model.module
    torch.manual_seed(0)
    with torch.no_grad():
        module.train()
        trained = module.inference(**module._get_inference_input(tensors))
        module.eval()
        evaluated = module.inference(**module._get_inference_input(tensors))
    torch.testing.assert_close(trained["means"], evaluated["means"])  # the experts themselves are unchanged
    assert (evaluated["masks"] == 1).all() and (trained["masks"] == 1).all()  # every modality is reconstructed
    # product of experts with a standard-normal prior: a cell placed by one expert has 1 / (1 + 1 / var) as variance
    single = [1.0 / (1.0 + 1.0 / trained["variances"][:, i]) for i in range(2)]
    by_one = [torch.isclose(trained["qz_v"], s, rtol=1e-5).all(1) for s in single]
    n_one = int((by_one[0] | by_one[1]).sum())
    assert by_one[0].any() and by_one[1].any() and 16 <= n_one <= 48
    both = 1.0 / (1.0 + (1.0 / evaluated["variances"]).sum(1))
    torch.testing.assert_close(evaluated["qz_v"], both)  # inference: every cell by both modalities


@pytest.mark.parametrize("rate", [-0.1, 1.0, "0.5", True])
def test_a_bad_modality_dropout_is_refused_before_registration(rate):
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    registered = set(mdata.uns)
    with pytest.raises(ValueError, match=r"NETWORKVI\(modality_dropout=.*probability in \[0, 1\)"):
        nvi.NETWORKVI(mdata, encoder="dense", modality_dropout=rate)
    assert set(mdata.uns) == registered


@pytest.mark.parametrize("scale", [-1.0, "5", True])
def test_a_bad_modality_penalty_scale_is_refused_before_registration(scale):
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    registered = set(mdata.uns)
    with pytest.raises(ValueError, match="modality_penalty_scale must be a number >= 0"):
        nvi.NETWORKVI(mdata, encoder="dense", modality_penalty_scale=scale)
    assert set(mdata.uns) == registered


@pytest.mark.parametrize("encoder", ["go", "dense"])
def test_depth_normalized_input_leaves_a_cells_depth_out_of_its_encoder(encoder):
    mdata = read(MULTIOME)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=MULTIOME_MODS)
    kwargs = {**GO_KW, "gene_size": 5, "go_size": 2} if encoder == "go" else {}
    experts = {}
    for roles in ((), ("rna", "atac")):
        scvi.settings.seed = 0
        model = nvi.NETWORKVI(mdata, encoder=encoder, depth_normalized_input=roles, **kwargs)
        assert model.init_settings["depth_normalized_input"] == roles
        module = model.module.eval()
        tensors = next(iter(model._make_data_loader(adata=mdata, indices=np.arange(32))))
        deeper = {
            k: v * 3 if k in (nvi.module.DATA_KEYS["rna"], nvi.module.DATA_KEYS["atac"]) else v
            for k, v in tensors.items()
        }
        with torch.no_grad():
            experts[roles] = [module.inference(**module._get_inference_input(t))["means"] for t in (tensors, deeper)]
    same, tripled = experts[("rna", "atac")]
    torch.testing.assert_close(tripled, same, rtol=1e-4, atol=1e-5)  # three times the depth: the same posteriors
    raw, raw_tripled = experts[()]
    assert not torch.allclose(raw_tripled, raw, rtol=1e-3, atol=1e-3)  # raw counts: depth moves them


def test_depth_normalized_centred_input_is_centred_on_the_normalized_counts():
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    model = nvi.NETWORKVI(mdata, encoder="dense", batch_centered_input="all", depth_normalized_input=("rna",))
    counts = mdata["rna"].X
    counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    scaled = counts * (nvi.module.DEPTH_TARGET / np.maximum(counts.sum(1, keepdims=True), 1.0))
    batch = mdata["rna"].obs["batch"].astype("category").cat.codes.to_numpy()
    first = np.log1p(scaled[batch == 0]).mean(0)
    np.testing.assert_allclose(model.module.input_shift_rna[0].numpy(), first, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ("rna", r"NETWORKVI\(depth_normalized_input='rna'\): give a tuple of modality roles"),
        (("genes",), r"give a tuple of modality roles"),
        (3, r"NETWORKVI\(depth_normalized_input=3\): give a tuple of modality roles"),
        (("atac",), r"depth_normalized_input=\('atac',\) names a role this model does not have"),
    ],
)
def test_a_bad_depth_normalized_input_is_refused_before_the_model_is_built(roles, message):
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    registered = set(mdata.uns)
    with pytest.raises(ValueError, match=message):
        nvi.NETWORKVI(mdata, encoder="dense", depth_normalized_input=roles)
    assert set(mdata.uns) == registered


class _EpochCounter(Callback):
    def __init__(self):
        self.epochs = 0

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs += 1


class _TrainingModes(Callback):
    def __init__(self):
        self.modes = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.modes.append(all(m.training for m in pl_module.module.modules()))


def test_training_again_after_inference_trains_in_training_mode():
    """scvi-tools leaves the module in eval mode after training; a second ``train`` must not run with frozen batch
    norms (Lightning no longer switches modules back, and warns)."""
    import warnings

    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    model = nvi.NETWORKVI(mdata, **GO_KW, gene_size=5, go_size=2)
    model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    model.get_latent_representation()
    assert not model.module.training
    norms = [m for m in model.module.modules() if isinstance(m, LevelBatchNorm)]
    assert norms  # the GO levels' batch norm: frozen statistics in eval mode
    before = [m.running_mean.clone() for m in norms]
    modes = _TrainingModes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False, callbacks=modes)
    assert modes.modes and all(modes.modes)
    assert not [w for w in caught if "eval mode" in str(w.message)]
    assert any(not torch.equal(m.running_mean, b) for m, b in zip(norms, before, strict=True))


def test_a_diverged_training_stops_with_an_error_that_names_the_fix():
    """Distributions skip torch's argument checks (GPU syncs); a non-finite epoch loss is caught at the epoch's end."""
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    model = nvi.NETWORKVI(mdata, **GO_KW, gene_size=5, go_size=2)
    counter = _EpochCounter()
    with torch.no_grad():
        model.module.px_r.fill_(float("nan"))  # every RNA likelihood term is NaN from the first step
    with pytest.raises(FloatingPointError, match=r"training loss became nan in epoch 0.*Lower the learning rate"):
        model.train(  # one step per epoch, no validation: the first NaN update is the only one
            max_epochs=3,
            accelerator="cpu",
            enable_progress_bar=False,
            callbacks=counter,
            train_size=1.0,
            early_stopping=False,
            limit_train_batches=1,
        )
    assert counter.epochs == 1  # the user's own callback (passed alone, not in a list) still ran


def test_finite_training_passes_the_check_and_keeps_user_callbacks():
    mdata = read(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    model = nvi.NETWORKVI(mdata, encoder="dense")
    counter = _EpochCounter()
    model.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False, callbacks=[counter])
    assert counter.epochs == 2
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()


def test_training_plan_logs_the_same_history_as_scvi_tools_plan_with_one_registration_per_epoch(monkeypatch):
    """The ELBO metric objects are handed to Lightning once per epoch; every logged value stays scvi-tools' own."""
    from scvi.train import AdversarialTrainingPlan

    from scvi_networkvi.model._training_plan import NetworkVITrainingPlan

    histories, registrations = {}, []
    original = AdversarialTrainingPlan.log_dict

    def spy(self, dictionary, *args, **kwargs):
        if self.training:
            registrations.append(sorted(dictionary))
        return original(self, dictionary, *args, **kwargs)

    monkeypatch.setattr(AdversarialTrainingPlan, "log_dict", spy)
    for plan in (NetworkVITrainingPlan, AdversarialTrainingPlan):
        mdata = read(CITE)
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
        scvi.settings.seed = 0
        model = nvi.NETWORKVI(mdata, encoder="dense")
        monkeypatch.setattr(model, "_training_plan_cls", plan)
        registrations.clear()
        # no gradient guard: scvi-tools' plan has none, and the guard's count is a history entry of its own
        model.train(
            max_epochs=3, accelerator="cpu", enable_progress_bar=False, batch_size=64, gradient_spike_factor=None
        )
        histories[plan.__name__] = model.history
        if plan is NetworkVITrainingPlan:
            assert len(registrations) == 3  # one per epoch
            assert registrations[0] == ["elbo_train", "kl_global_train", "kl_local_train", "reconstruction_loss_train"]
        else:
            assert len(registrations) > 3 * 5  # scvi-tools' plan logs them in every step
    ours, reference = histories["NetworkVITrainingPlan"], histories["AdversarialTrainingPlan"]
    assert sorted(ours) == sorted(reference)
    for key in reference:
        np.testing.assert_array_equal(ours[key].to_numpy(), reference[key].to_numpy(), err_msg=key)
