"""Defaults by data type: mosaics and CITE-seq keep a steady adversary and centre every input, and so does the GO
encoder on paired multiome; every model of two or more modalities trains without dropout; one modality keeps dropout
and the fading adversary; equal-weight mixing on mosaics on request.

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
import torch

import scvi_networkvi as nvi
from scvi_networkvi.model._defaults import data_type_defaults, rebuilding_saved_model
from scvi_networkvi.model._training import _adversarial_scale

DATA = Path(__file__).parent / "data"
MOSAIC_MODS = {"rna_layer": "rna", "protein_layer": "adt", "atac_layer": "atac"}
CITE_MODS = {"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
MULTIOME_MODS = {"rna_layer": "rna", "atac_layer": "atac", "batch_key": "rna"}
TRAIN = {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False}


pytestmark = pytest.mark.usefixtures("offline_cache")


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


def test_adversary_fades_with_the_warm_up_on_paired_data_without_proteins(multiome):
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(paired(multiome, MULTIOME_MODS), encoder="dense")
    model.train(**TRAIN)
    assert model.trainer.lightning_module.scale_adversarial_loss == "auto"


def test_adversary_keeps_its_weight_on_paired_cite_seq(cite):
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(paired(cite, CITE_MODS), encoder="dense")
    model.train(**TRAIN)
    assert model.trainer.lightning_module.scale_adversarial_loss == 1.0


def test_adversarial_scale_values():
    assert _adversarial_scale(None, full_weight=True) == 1.0 and _adversarial_scale(None, full_weight=False) == "auto"
    assert _adversarial_scale(2, full_weight=False) == 2.0 and _adversarial_scale("auto", full_weight=True) == "auto"
    for bad in (-1.0, "always", True):
        with pytest.raises(ValueError, match="adversarial_scale"):
            _adversarial_scale(bad, full_weight=True)


def _save_as_before_the_option(model, path: Path, *keys: str) -> None:
    """Save ``model`` at ``path`` as a model saved before an option existed: without ``init_params_[keys...]``."""
    model.save(path)
    saved = torch.load(path / "model.pt", map_location="cpu", weights_only=False)
    params = saved["attr_dict"]["init_params_"]
    for key in keys[:-1]:
        params = params[key]
    del params[keys[-1]]
    torch.save(saved, path / "model.pt")


def _shifted(model) -> set[str]:
    return {name.removeprefix("input_shift_") for name, _ in model.module.named_buffers() if "input_shift_" in name}


@pytest.mark.parametrize("which", ["cite", "mosaic"])
def test_data_with_proteins_centre_every_input_and_train_without_dropout(cite, multiome, which):
    mdata = paired(cite, CITE_MODS) if which == "cite" else mosaic(cite, multiome)
    model = nvi.NETWORKVI(mdata, encoder="dense")
    assert _shifted(model) == set(model.modality_roles)
    assert all(m.p == 0.0 for m in model.module.encoders.modules() if isinstance(m, torch.nn.Dropout))
    params = model.init_params_["non_kwargs"]
    assert params["batch_centered_input"] == "all" and params["dropout_rate"] == 0.0  # saved resolved


def test_the_go_encoder_on_data_with_proteins_scales_its_centred_inputs_per_batch(cite, multiome, tmp_path):
    example = nvi.datasets.example_resources()
    resources = {key: example[key] for key in ("go", "annotations", "interactions")}
    go = nvi.NETWORKVI(paired(cite, CITE_MODS), gene_size=2, go_size=2, **resources)
    assert go.module.scaled_modalities == ["rna", "protein"] and go.init_params_["non_kwargs"]["batch_scaled_input"]
    assert nvi.NETWORKVI(paired(cite, CITE_MODS), encoder="dense").module.scaled_modalities == []
    cross = nvi.NETWORKVI(mosaic(cite, multiome), gene_size=2, go_size=2, **resources)  # mosaics with proteins too
    assert cross.module.scaled_modalities == list(cross.modality_roles)
    assert nvi.NETWORKVI(mosaic(cite, multiome), encoder="dense").module.scaled_modalities == []
    uncentred = nvi.NETWORKVI(paired(cite, CITE_MODS), gene_size=2, go_size=2, batch_centered_input=(), **resources)
    assert uncentred.module.scaled_modalities == [] and not uncentred.init_params_["non_kwargs"]["batch_scaled_input"]
    # a mosaic model saved unscaled (the default until 2026-12-07f) loads unscaled, with the latents it had
    scvi.settings.seed = 0
    before = nvi.NETWORKVI(mosaic(cite, multiome), gene_size=2, go_size=2, batch_scaled_input=False, **resources)
    before.train(**TRAIN)
    before.save(tmp_path / "unscaled")
    loaded = nvi.NETWORKVI.load(str(tmp_path / "unscaled"), adata=before.adata)
    assert loaded.module.scaled_modalities == [] and not loaded.init_params_["non_kwargs"]["batch_scaled_input"]
    np.testing.assert_allclose(loaded.get_latent_representation(), before.get_latent_representation(), rtol=1e-5)


def test_paired_multiome_trains_without_dropout_on_uncentred_inputs(multiome):
    model = nvi.NETWORKVI(paired(multiome, MULTIOME_MODS), encoder="dense")
    assert _shifted(model) == set()
    assert model.init_params_["non_kwargs"]["dropout_rate"] == 0.0
    assert all(m.p == 0.0 for m in model.module.encoders.modules() if isinstance(m, torch.nn.Dropout))


def test_the_go_encoder_on_paired_multiome_centres_every_input_and_keeps_the_adversary(multiome):
    example = nvi.datasets.example_resources()
    resources = {key: example[key] for key in ("go", "annotations", "interactions")}
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(paired(multiome, MULTIOME_MODS), gene_size=2, go_size=2, **resources)
    assert _shifted(model) == {"rna", "atac"}
    assert model.init_params_["non_kwargs"]["dropout_rate"] == 0.0
    model.train(**TRAIN)
    assert model.trainer.lightning_module.scale_adversarial_loss == 1.0


def _gene_sizes(model) -> dict[str, int]:
    return {role: wiring.gene_size for role, wiring in model.wirings_.items()}


def test_the_go_encoder_on_paired_multiome_gives_atac_gene_nodes_one_neuron_and_saves_it(multiome, tmp_path):
    example = nvi.datasets.example_resources()
    resources = {key: example[key] for key in ("go", "annotations", "interactions")}
    data = paired(multiome, MULTIOME_MODS)
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(data, gene_size=2, go_size=2, **resources)
    assert _gene_sizes(model) == {"rna": 2, "atac": 1}  # the shared gene_size stays the RNA's
    assert model.init_params_["non_kwargs"]["wiring_by_modality"] == {"atac": {"gene_size": 1}}
    model.train(**TRAIN)
    model.save(tmp_path / "model")
    loaded = nvi.NETWORKVI.load(str(tmp_path / "model"), adata=data)
    assert _gene_sizes(loaded) == {"rna": 2, "atac": 1}
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-5)
    # the behaviour until 2026-12-06: every modality at the shared sizes; an explicit width wins over the rule
    shared = nvi.NETWORKVI(data, gene_size=2, go_size=2, wiring_by_modality={}, **resources)
    assert _gene_sizes(shared) == {"rna": 2, "atac": 2}
    wide = nvi.NETWORKVI(data, gene_size=2, go_size=2, wiring_by_modality={"atac": {"gene_size": 3}}, **resources)
    assert _gene_sizes(wide) == {"rna": 2, "atac": 3}
    # a model saved before the rule (None) and rebuilt from its settings alone keeps the shared width
    with rebuilding_saved_model():
        before = nvi.NETWORKVI(data, gene_size=2, go_size=2, wiring_by_modality=None, **resources)
    assert _gene_sizes(before) == {"rna": 2, "atac": 2}


@pytest.mark.parametrize(
    ("roles", "mosaic_data", "encoder", "expected"),
    [
        (["rna"], False, "go", (0.1, (), False, "root", None, False, ())),
        (["rna", "protein"], False, "dense", (0.0, "all", True, "root", None, False, ())),
        (["rna", "protein"], False, "go", (0.0, "all", True, "root", None, True, ())),
        (["rna", "protein"], True, "go", (0.0, "all", True, "root", None, True, ())),
        (["rna", "protein", "atac"], True, "go", (0.0, "all", True, "root", None, True, ())),
        (["rna", "protein", "atac"], True, "dense", (0.0, "all", True, "root", None, False, ())),
        (["rna", "atac"], False, "go", (0.0, "all", True, "levels", None, False, ())),
        (["rna", "atac"], False, "dense", (0.0, (), False, "root", None, False, ())),
        (["rna", "atac"], True, "go", (0.0, (), True, "root", "rna", False, ("rna", "atac"))),
        (["rna", "atac"], True, "dense", (0.0, (), True, "root", None, False, ())),
        (["protein", "atac"], True, "go", (0.0, "all", True, "root", None, True, ())),
    ],
)
def test_the_data_type_rules(roles, mosaic_data, encoder, expected):
    rule = data_type_defaults(roles, mosaic_data, encoder)
    got = (rule.dropout_rate, rule.batch_centered_input, rule.full_weight_adversary, rule.head_input)
    assert (*got, rule.penalty_anchor, rule.batch_scaled_input, rule.depth_normalized) == expected
    # the penalty at full weight from the first step on GO mosaics with RNA and ATAC, proteins or not
    assert rule.penalty_warmup == (not (mosaic_data and encoder == "go" and {"rna", "atac"} <= set(roles)))
    # one neuron per ATAC gene node for the GO encoder on paired RNA + ATAC; two per ATAC GO term on its mosaics
    paired_go_atac = encoder == "go" and not mosaic_data and roles == ["rna", "atac"]
    go_atac_mosaic = encoder == "go" and mosaic_data and roles == ["rna", "atac"]
    expected_fields = (
        {"atac": {"gene_size": 1}} if paired_go_atac else {"atac": {"go_size": 2}} if go_atac_mosaic else {}
    )
    assert rule.wiring_by_modality == expected_fields
    # a dense ATAC encoder (the others GO-wired) for the GO encoder on mosaics with RNA and ATAC, proteins or not
    rna_atac_go_mosaic = encoder == "go" and mosaic_data and {"rna", "atac"} <= set(roles)
    assert rule.dense_modalities == (("atac",) if rna_atac_go_mosaic else ())
    # a 16-dimensional latent for the GO encoder on RNA + ATAC mosaics without proteins, 10 elsewhere
    assert rule.n_latent == (16 if go_atac_mosaic else 10)


def test_a_single_modality_keeps_dropout_and_the_fading_adversary(multiome):
    rna = md.MuData({"rna": multiome["rna"].copy()})
    nvi.NETWORKVI.setup_mudata(rna, batch_key="batch", modalities={"rna_layer": "rna", "batch_key": "rna"})
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(rna, encoder="dense")
    assert _shifted(model) == set() and model.init_params_["non_kwargs"]["dropout_rate"] == 0.1
    assert any(m.p == 0.1 for m in model.module.encoders.modules() if isinstance(m, torch.nn.Dropout))
    model.train(**TRAIN)
    assert model.trainer.lightning_module.scale_adversarial_loss == "auto"


def test_a_mosaic_model_saved_with_the_previous_defaults_loads_with_them(cite, multiome, tmp_path):
    mdata = mosaic(cite, multiome)
    scvi.settings.seed = 0
    # what the defaults of 2026-12-05 resolved to on a mosaic with proteins
    model = nvi.NETWORKVI(mdata, encoder="dense", dropout_rate=0.1, batch_centered_input=("protein",))
    model.train(**TRAIN)
    model.save(tmp_path / "model")
    loaded = nvi.NETWORKVI.load(str(tmp_path / "model"), adata=mdata)
    assert _shifted(loaded) == {"protein"} and loaded.init_params_["non_kwargs"]["dropout_rate"] == 0.1
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-5)


def test_explicit_settings_win_over_the_paired_cite_seq_defaults(cite):
    model = nvi.NETWORKVI(paired(cite, CITE_MODS), encoder="dense", dropout_rate=0.2, batch_centered_input=("protein",))
    assert _shifted(model) == {"protein"}
    assert model.init_params_["non_kwargs"]["dropout_rate"] == 0.2


def test_a_model_saved_before_head_input_existed_loads_and_maps_queries_with_root_heads(multiome, tmp_path):
    example = nvi.datasets.example_resources()
    resources = {key: example[key] for key in ("go", "annotations", "interactions")}
    mdata = paired(multiome, MULTIOME_MODS)
    assert data_type_defaults(["rna", "atac"], False, "go").head_input == "levels"
    assert (
        nvi.NETWORKVI(mdata, gene_size=2, go_size=2, **resources).init_params_["non_kwargs"]["head_input"] == "levels"
    )
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(mdata, gene_size=2, go_size=2, head_input="root", **resources)
    model.train(**TRAIN)
    # what the saved file of a model from before the option holds: no head_input among its parameters
    _save_as_before_the_option(model, tmp_path / "model", "non_kwargs", "head_input")
    loaded = nvi.NETWORKVI.load(str(tmp_path / "model"), adata=mdata)
    assert loaded.init_params_["non_kwargs"]["head_input"] == "root"
    assert {e.head_input for e in loaded.module.encoders.values()} == {"root"}
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-5)
    query = multiome.copy()
    nvi.NETWORKVI.prepare_query_mudata(query, str(tmp_path / "model"))
    with pytest.warns(UserWarning, match="do not take the batch"):  # a reference built without encode_covariates
        mapped = nvi.NETWORKVI.load_query_data(query, str(tmp_path / "model"))
    assert {e.head_input for e in mapped.module.encoders.values()} == {"root"}
    # outside loading, an unset head_input is the data type's default again
    assert (
        nvi.NETWORKVI(mdata, gene_size=2, go_size=2, **resources).init_params_["non_kwargs"]["head_input"] == "levels"
    )


def _anchor(model) -> str | None:
    return model.init_params_["kwargs"]["model_kwargs"]["modality_penalty_anchor"]


def test_the_go_rna_atac_mosaic_anchors_the_penalty_on_rna_and_older_models_load_as_saved(cite, multiome, tmp_path):
    data, resources = _rna_atac_mosaic(multiome)
    sizes = {"gene_size": 2, "go_size": 2}
    rna_atac = nvi.NETWORKVI(data, **sizes, **resources).module
    assert rna_atac.penalty_anchor == "rna" and rna_atac.penalty_warmup is False  # the penalty at full weight
    # with proteins (CITE-seq + multiome) the penalty is symmetric, at full weight, on raw counts
    cross = nvi.NETWORKVI(mosaic(cite, multiome), **sizes, **resources).module
    assert cross.penalty_anchor is None and cross.penalty_warmup is False
    assert cross.depth_normalized_modalities == ()
    assert nvi.NETWORKVI(data, encoder="dense").module.penalty_anchor is None
    assert nvi.NETWORKVI(paired(cite, CITE_MODS), **sizes, **resources).module.penalty_anchor is None
    # an explicit choice wins, and is what the model saves: the cross mosaic anchored on RNA (its default until
    # 2026-12-07f) loads anchored
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(mosaic(cite, multiome), modality_penalty_anchor="rna", **sizes, **resources)
    assert model.module.penalty_anchor == "rna" and _anchor(model) == "rna"
    model.train(**TRAIN)
    model.save(tmp_path / "anchored")
    assert nvi.NETWORKVI.load(str(tmp_path / "anchored"), adata=model.adata).module.penalty_anchor == "rna"
    # a model saved before the option existed has no such keyword: it loads as it was trained, without an anchor
    scvi.settings.seed = 0
    symmetric = nvi.NETWORKVI(data, modality_penalty_anchor=None, **sizes, **resources)
    assert symmetric.module.penalty_anchor is None and _anchor(symmetric) is None
    symmetric.train(**TRAIN)
    symmetric.save(tmp_path / "model")
    saved = torch.load(tmp_path / "model" / "model.pt", map_location="cpu", weights_only=False)
    del saved["attr_dict"]["init_params_"]["kwargs"]["model_kwargs"]["modality_penalty_anchor"]
    torch.save(saved, tmp_path / "model" / "model.pt")
    loaded = nvi.NETWORKVI.load(str(tmp_path / "model"), adata=data)
    assert loaded.module.penalty_anchor is None and _anchor(loaded) is None
    np.testing.assert_allclose(loaded.get_latent_representation(), symmetric.get_latent_representation(), rtol=1e-5)
    assert _anchor(nvi.NETWORKVI(data, **sizes, **resources)) == "rna"


def _depth(model) -> tuple[str, ...]:
    return model.init_params_["kwargs"]["model_kwargs"]["depth_normalized_input"]


def _rna_atac_mosaic(multiome: md.MuData) -> tuple[md.MuData, dict]:
    """The multiome subset with ATAC for half of the cells (the other half RNA only), registered; the example GO."""
    example = nvi.datasets.example_resources()
    resources = {key: example[key] for key in ("go", "annotations", "interactions")}
    data = multiome.copy()
    data.mod["atac"] = data["atac"][: data.n_obs // 2].copy()
    data.update()
    data.obs["batch"] = multiome["rna"].obs["batch"].to_numpy()
    nvi.NETWORKVI.setup_mudata(data, batch_key="batch", modalities={"rna_layer": "rna", "atac_layer": "atac"})
    return data, resources


def _go_term_sizes(model) -> dict[str, set[int]]:
    return {role: set(w.term_size[w.term_kind == "go"].tolist()) for role, w in model.wirings_.items()}


def test_the_go_rna_atac_mosaic_gives_atac_go_terms_two_neurons_and_models_saved_before_keep_the_shared_width(
    multiome, tmp_path
):
    data, resources = _rna_atac_mosaic(multiome)
    sizes = {"gene_size": 2, "go_size": 3}
    model = nvi.NETWORKVI(data, dense_modalities=(), **sizes, **resources)  # a GO-wired ATAC encoder
    assert _go_term_sizes(model) == {"rna": {3}, "atac": {2}}  # the shared go_size stays the RNA's
    assert model.init_params_["non_kwargs"]["wiring_by_modality"] == {"atac": {"term_size": 2}}  # the field's own name
    # explicit settings win over the rule; paired multiome is not affected
    shared_width = nvi.NETWORKVI(data, wiring_by_modality={}, dense_modalities=(), **sizes, **resources)
    assert _go_term_sizes(shared_width) == {"rna": {3}, "atac": {3}}
    assert _go_term_sizes(nvi.NETWORKVI(paired(multiome, MULTIOME_MODS), **sizes, **resources))["atac"] == {3}
    # a model saved with the shared width (the default until 2026-12-07) loads with it
    scvi.settings.seed = 0
    shared = nvi.NETWORKVI(data, wiring_by_modality={}, dense_modalities=(), **sizes, **resources)
    shared.train(**TRAIN)
    shared.save(tmp_path / "shared")
    loaded = nvi.NETWORKVI.load(str(tmp_path / "shared"), adata=data)
    assert _go_term_sizes(loaded) == {"rna": {3}, "atac": {3}}
    np.testing.assert_allclose(loaded.get_latent_representation(), shared.get_latent_representation(), rtol=1e-5)


def test_the_go_rna_atac_mosaic_reads_depth_normalized_counts_with_a_full_penalty_and_older_models_load_without(
    multiome, tmp_path
):
    data, resources = _rna_atac_mosaic(multiome)
    sizes = {"gene_size": 2, "go_size": 2}
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(data, **sizes, **resources)
    assert model.is_mosaic and model.module.depth_normalized_modalities == ("rna", "atac")
    assert _depth(model) == ("rna", "atac") and model.module.penalty_warmup is False
    assert model.init_params_["kwargs"]["model_kwargs"]["modality_penalty_warmup"] is False
    assert nvi.NETWORKVI(data, modality_penalty_warmup=True, **sizes, **resources).module.penalty_warmup is True
    dense = nvi.NETWORKVI(data, encoder="dense").module
    assert dense.depth_normalized_modalities == () and dense.penalty_warmup is True
    assert nvi.NETWORKVI(paired(multiome, MULTIOME_MODS), **sizes, **resources).module.depth_normalized_modalities == ()
    model.train(**TRAIN)
    model.save(tmp_path / "model")
    assert nvi.NETWORKVI.load(str(tmp_path / "model"), adata=data).module.depth_normalized_modalities == ("rna", "atac")
    # a model saved before the option existed has no such keyword: it loads as it was trained, on raw counts
    scvi.settings.seed = 0
    raw = nvi.NETWORKVI(data, depth_normalized_input=(), **sizes, **resources)
    raw.train(**TRAIN)
    raw.save(tmp_path / "raw")
    saved = torch.load(tmp_path / "raw" / "model.pt", map_location="cpu", weights_only=False)
    del saved["attr_dict"]["init_params_"]["kwargs"]["model_kwargs"]["depth_normalized_input"]
    torch.save(saved, tmp_path / "raw" / "model.pt")
    loaded = nvi.NETWORKVI.load(str(tmp_path / "raw"), adata=data)
    assert loaded.module.depth_normalized_modalities == () and _depth(loaded) == ()
    np.testing.assert_allclose(loaded.get_latent_representation(), raw.get_latent_representation(), rtol=1e-5)


def test_the_go_rna_atac_mosaic_reads_atac_with_a_dense_encoder_and_saves_it(multiome, tmp_path):
    data, resources = _rna_atac_mosaic(multiome)
    sizes = {"gene_size": 2, "go_size": 2}
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(data, **sizes, **resources)
    assert set(model.wirings_) == {"rna"} and set(model.gene_ids_) == {"rna"}
    assert isinstance(model.module.encoders["atac"], scvi.nn.Encoder)
    assert isinstance(model.module.encoders["rna"], nvi.nn.WiredEncoder)
    params = model.init_params_["non_kwargs"]
    assert params["dense_modalities"] == ("atac",) and params["wiring_by_modality"] == {}  # saved resolved
    assert "atac dense" in model._model_summary_string
    # a 16-dimensional latent, saved resolved; an explicit width wins; paired multiome keeps 10
    assert model.module.n_latent == 16 and params["n_latent"] == 16
    assert nvi.NETWORKVI(data, n_latent=10, **sizes, **resources).module.n_latent == 10
    assert nvi.NETWORKVI(paired(multiome, MULTIOME_MODS), **sizes, **resources).module.n_latent == 10
    with rebuilding_saved_model():  # a model saved without its width was built with 10
        assert nvi.NETWORKVI(data, n_latent=None, **sizes, **resources).module.n_latent == 10
    # the other defaults of the data type stay: depth-normalised RNA and ATAC, the penalty anchored on RNA
    assert model.module.depth_normalized_modalities == ("rna", "atac") and model.module.penalty_anchor == "rna"
    model.train(**TRAIN)
    model.save(tmp_path / "model")
    loaded = nvi.NETWORKVI.load(str(tmp_path / "model"), adata=data)
    assert isinstance(loaded.module.encoders["atac"], scvi.nn.Encoder) and set(loaded.wirings_) == {"rna"}
    assert loaded.init_params_["non_kwargs"]["dense_modalities"] == ("atac",)
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-5)
    # importances name the wired modality; asking for the dense one says why it has none, before any work
    assert model._interpretable_roles(None) == ["rna"]
    data.obs["group"] = data.obs["batch"].astype(str).to_numpy()
    with pytest.raises(ValueError, match="'atac' has a dense encoder"):
        nvi.tl.importances(data, model, groupby="group", modalities="atac")
    assert "networkvi_importances" not in data.uns
    # paired multiome keeps every modality wired
    assert set(nvi.NETWORKVI(paired(multiome, MULTIOME_MODS), **sizes, **resources).wirings_) == {"rna", "atac"}


def test_the_go_cite_seq_and_multiome_mosaic_reads_atac_with_a_dense_encoder(cite, multiome):
    example = nvi.datasets.example_resources()
    resources = {key: example[key] for key in ("go", "annotations", "interactions")}
    model = nvi.NETWORKVI(mosaic(cite, multiome), gene_size=2, go_size=2, **resources)
    assert set(model.wirings_) == {"rna", "protein"} and isinstance(model.module.encoders["atac"], scvi.nn.Encoder)
    assert model.init_params_["non_kwargs"]["dense_modalities"] == ("atac",)
    wired = nvi.NETWORKVI(mosaic(cite, multiome), gene_size=2, go_size=2, dense_modalities=(), **resources)
    assert set(wired.wirings_) == {"rna", "protein", "atac"}


def test_a_go_rna_atac_mosaic_saved_with_a_wired_atac_encoder_loads_with_it(multiome, tmp_path):
    data, resources = _rna_atac_mosaic(multiome)
    scvi.settings.seed = 0
    wired = nvi.NETWORKVI(data, gene_size=2, go_size=2, dense_modalities=(), **resources)
    wired.train(**TRAIN)
    # a model saved before the option has no such keyword: its saved wirings say every modality was wired
    _save_as_before_the_option(wired, tmp_path / "wired", "non_kwargs", "dense_modalities")
    loaded = nvi.NETWORKVI.load(str(tmp_path / "wired"), adata=data)
    assert set(loaded.wirings_) == {"rna", "atac"} and loaded.init_params_["non_kwargs"]["dense_modalities"] == ()
    np.testing.assert_allclose(loaded.get_latent_representation(), wired.get_latent_representation(), rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dense_modalities": ("protein",)}, ValueError, r"dense_modalities names \['protein'\]"),
        ({"dense_modalities": ("rna", "atac")}, ValueError, "use encoder='dense'"),
        ({"dense_modalities": ("atac",), "encoder": "dense"}, ValueError, "every encoder dense"),
        ({"dense_modalities": 3}, TypeError, "sequence of modality roles"),
        ({"dense_modalities": ("atac",), "wiring_by_modality": {"atac": {"gene_size": 1}}}, ValueError, "as given"),
        ({"wiring_by_modality": {"atac": {"gene_size": 1}}}, ValueError, r"the default for this data\): to wire"),
    ],
)
def test_dense_modalities_are_checked_before_anything_is_built(multiome, kwargs, error, match):
    data, resources = _rna_atac_mosaic(multiome)
    encoder_resources = {} if kwargs.get("encoder") == "dense" else resources
    with pytest.raises(error, match=match):
        nvi.NETWORKVI(data, **kwargs, **encoder_resources)


def test_dense_modalities_must_agree_with_given_wirings(multiome):
    data, resources = _rna_atac_mosaic(multiome)
    model = nvi.NETWORKVI(data, gene_size=2, go_size=2, dense_modalities=(), **resources)
    only_rna = {"rna": model.wirings_["rna"]}
    rebuilt = nvi.NETWORKVI(data, wirings=only_rna)
    assert rebuilt.init_params_["non_kwargs"]["dense_modalities"] == ("atac",)
    with pytest.raises(ValueError, match="disagrees with the given wirings"):
        nvi.NETWORKVI(data, wirings=only_rna, dense_modalities=())
    assert nvi.NETWORKVI(data, wirings=model.wirings_).init_params_["non_kwargs"]["dense_modalities"] == ()


def test_a_go_rna_atac_mosaic_with_a_dense_atac_encoder_maps_a_query(multiome):
    data, resources = _rna_atac_mosaic(multiome)
    batches = data.obs["batch"].astype(str).to_numpy()
    reference, query = data[batches != batches[-1]].copy(), data[batches == batches[-1]].copy()
    nvi.NETWORKVI.setup_mudata(reference, batch_key="batch", modalities={"rna_layer": "rna", "atac_layer": "atac"})
    scvi.settings.seed = 0
    model = nvi.NETWORKVI(reference, gene_size=2, go_size=2, encode_covariates=True, **resources)
    model.train(**TRAIN)
    nvi.NETWORKVI.prepare_query_mudata(query, model)
    mapped = nvi.NETWORKVI.load_query_data(query, model)
    assert mapped.is_mosaic  # the query has cells with and without ATAC, so both encoders run on it
    assert set(mapped.wirings_) == {"rna"} and isinstance(mapped.module.encoders["atac"], scvi.nn.Encoder)
    mapped.train(**TRAIN)
    latent = mapped.get_latent_representation()
    assert latent.shape == (query.n_obs, model.module.n_latent) and np.isfinite(latent).all()
