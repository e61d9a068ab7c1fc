"""The constructor in the scvi-tools manner: module and encoder options through ``**model_kwargs``, checked early.

The options of the module (``NetworkVAE``) and of the GO encoders (``WiredEncoder``) are documented and checked there
once; ``NETWORKVI`` passes them on, refuses an unknown name or a bad value before any work, and saves every option
resolved. Models saved before, with every option a named argument (``non_kwargs``), load as they were trained.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import mudata as md
import numpy as np
import pytest
import scvi
import torch

import scvi_networkvi as nvi
from scvi_networkvi.module import NetworkVAE
from scvi_networkvi.nn import WiredEncoder, check_choices, keyword_defaults
from scvi_networkvi.wiring import WiringConfig

DATA = Path(__file__).parent / "data"
CITE = DATA / "bmmc_cite.h5mu"
CITE_MODS = {"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}


pytestmark = pytest.mark.usefixtures("offline_session_cache")


def registered() -> md.MuData:
    mdata = md.read_h5mu(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    return mdata


def test_the_constructor_keeps_only_what_the_model_uses():
    explicit = [p for p in inspect.signature(nvi.NETWORKVI.__init__).parameters if p not in ("self", "model_kwargs")]
    # TOTALVI 8, MULTIVI 21; the data-derived ones (batch means and scales) and the wiring (dense_modalities
    # included: which modalities get one) stay here
    assert len(explicit) == 19
    assert "dense_modalities" in explicit and "dense_modalities" not in NetworkVAE.options()
    options = NetworkVAE.options()
    moved = ["gene_likelihood", "modality_penalty", "encode_covariates", "n_layers_decoder", "gene_layer"]
    encoder = ["activation", "linear_path", "covariate_attention", "go_norm", "n_interaction_layers"]
    assert not set(explicit) & {*moved, *encoder}
    assert "head_input" in explicit and "head_input" in options  # resolved by the model from the data type
    assert set(moved + encoder) <= set(options)  # the encoder's options reach the model through the module
    assert not set(options) & set(NetworkVAE.DATA_ARGUMENTS)


def test_an_unknown_keyword_is_named_before_any_work():
    mdata = md.read_h5mu(CITE)  # not registered: the check comes before scvi-tools reads the registry
    with pytest.raises(TypeError, match=r"NETWORKVI\(\) got unexpected keyword argument\(s\) 'gene_likelyhood'") as e:
        nvi.NETWORKVI(mdata, gene_likelyhood="nb")
    assert "gene_likelihood" in str(e.value) and "head_input" in str(e.value) and "n_hidden" in str(e.value)
    for set_by_the_model in ("n_batch", "input_shifts"):
        with pytest.raises(TypeError, match=set_by_the_model):
            nvi.NETWORKVI(mdata, **{set_by_the_model: None})
    with pytest.raises(TypeError, match=r"NetworkVAE\(\) got unexpected keyword argument\(s\) 'depth'"):
        NetworkVAE({"rna": 10}, depth=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gene_likelihood": "zip"}, "gene_likelihood must be 'zinb', 'nb' or 'poisson', got 'zip'"),
        ({"modality_penalty": "kl"}, "modality_penalty must be 'jeffreys', 'mmd' or None"),
        ({"go_norm": "layer"}, "go_norm must be 'batch' or 'none'"),
        ({"activation": "gelu"}, "activation must be 'relu', 'leaky_relu' or 'hardswish'"),
        ({"modality_mixing": "sum"}, "modality_mixing must be 'moe', 'poe', 'mean', 'auto' or None"),
        ({"encoder": "wide"}, "encoder must be 'go' or 'dense'"),
        ({"log_variational": "no"}, r"log_variational='no'\): give True \(log1p counts\) or False"),
        ({"covariate_attention": "go"}, "encode_covariates=True"),
        ({"covariate_attention": "go", "encode_covariates": True, "encoder": "dense"}, "needs encoder='go'"),
    ],
)
def test_a_bad_value_is_refused_before_any_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nvi.NETWORKVI(md.read_h5mu(CITE), **kwargs)  # unregistered: nothing was read or compiled


def test_wiring_options_by_config_or_keyword():
    mdata = registered()
    config = WiringConfig(gene_size=3, term_size=2, unknown_size=5, relations=("is_a", "part_of"))
    by_config = nvi.NETWORKVI(mdata, wiring_config=config, **GO_KW)
    by_keyword = nvi.NETWORKVI(mdata, gene_size=3, go_size=2, unknown_size=5, relations=["part_of"], **GO_KW)
    for role, wiring in by_config.wirings_.items():
        for name, value in wiring.to_dict().items():
            other = by_keyword.wirings_[role].to_dict()[name]
            assert np.array_equal(value, other) if isinstance(value, np.ndarray) else value == other, name
    saved = by_config.init_params_["non_kwargs"]["wiring_config"]
    assert saved == by_keyword.init_params_["non_kwargs"]["wiring_config"]
    assert saved["gene_size"] == 3 and saved["max_depth"] == 2 and saved["root_size"] == 128  # resolved
    assert "gene_size" not in by_keyword.init_params_["kwargs"]["model_kwargs"]
    over = nvi.NETWORKVI(mdata, wiring_config={"gene_size": 3}, gene_size=2, **GO_KW)  # the keyword wins
    assert over.wirings_["rna"].gene_size == 2
    unregistered = md.read_h5mu(CITE)
    with pytest.raises(TypeError, match=r"wiring_config has no field\(s\) \['go_size'\]"):
        nvi.NETWORKVI(unregistered, wiring_config={"go_size": 2})
    with pytest.raises(ValueError, match="differs from n_layers_encoder=2"):
        nvi.NETWORKVI(unregistered, wiring_config=WiringConfig(max_depth=3))
    with pytest.raises(ValueError, match="gene_size must be a positive integer"):
        nvi.NETWORKVI(unregistered, gene_size=0)


def test_options_reach_the_module_and_the_encoders_and_are_saved_resolved():
    model = nvi.NETWORKVI(
        registered(), gene_likelihood="nb", n_layers_decoder=1, head_input="levels", linear_path=False, **GO_KW
    )
    assert model.module.gene_likelihood == "nb"
    encoder = model.module.encoders["rna"]
    assert (
        isinstance(encoder, WiredEncoder)
        and encoder.head_input == "levels"
        and not encoder.gene_layer.layer.linear_path
    )
    saved = model.init_params_["kwargs"]["model_kwargs"]
    assert set(saved) == set(NetworkVAE.options()) - set(model.init_params_["non_kwargs"])
    assert saved["gene_likelihood"] == "nb" and saved["go_norm"] == "batch"  # defaults saved too
    settings = model.init_settings
    assert settings["n_layers_decoder"] == 1 and settings["modality_mixing"] == "poe" and "wirings" not in settings


def test_a_model_saved_with_every_option_named_loads_as_trained(tmp_path):
    """The layout of models saved before this change: every option in ``non_kwargs``, ``kwargs`` empty."""
    scvi.settings.seed = 0
    mdata = registered()
    options = {"gene_likelihood": "nb", "head_input": "levels", "modality_penalty": "mmd", "gene_size": 3}
    model = nvi.NETWORKVI(mdata, go_size=2, **options, **GO_KW)
    model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    latent = model.get_latent_representation()
    settings = model.init_settings
    model.init_params_ = {
        "kwargs": {},
        "non_kwargs": {**settings, "wirings": model.init_params_["non_kwargs"]["wirings"]},
    }
    model.save(tmp_path / "old", save_anndata=False)
    loaded = nvi.NETWORKVI.load(str(tmp_path / "old"), adata=mdata)
    assert loaded.init_settings == settings
    assert set(loaded.init_params_["kwargs"]["model_kwargs"]) >= {"gene_likelihood", "modality_penalty"}  # new layout
    assert loaded.init_params_["non_kwargs"]["head_input"] == "levels"  # resolved by the model, a named argument
    np.testing.assert_allclose(loaded.get_latent_representation(), latent, rtol=1e-5, atol=1e-6)
    query = md.read_h5mu(CITE)
    nvi.NETWORKVI.prepare_query_mudata(query, str(tmp_path / "old"))
    with pytest.warns(UserWarning, match="encode_covariates=False"):
        mapped = nvi.NETWORKVI.load_query_data(query, str(tmp_path / "old"))
    assert mapped.module.gene_likelihood == "nb" and mapped.module.encoders["rna"].head_input == "levels"
    torch.testing.assert_close(
        mapped.module.encoders["rna"].mean_encoder.weight, loaded.module.encoders["rna"].mean_encoder.weight
    )


def test_shared_option_helpers_name_the_allowed_values_and_read_keyword_defaults():
    choices = {"mode": ("a", "b", None), "one": ("x",)}
    check_choices({"mode": None, "other": 5}, choices)  # allowed, and unlisted names are not checked
    with pytest.raises(ValueError, match=r"mode must be 'a', 'b' or None, got 'c'\."):
        check_choices({"mode": "c"}, choices)
    with pytest.raises(ValueError, match=r"one must be 'x', got 'y'\."):
        check_choices({"one": "y"}, choices)

    def build(data, size: int = 3, *, kind: str = "k", skip=None):
        return data, size, kind, skip

    assert keyword_defaults(build) == {"size": 3, "kind": "k", "skip": None}
    assert keyword_defaults(build, exclude=("skip",)) == {"size": 3, "kind": "k"}


def test_wiring_fields_by_modality_change_that_modality_only_and_are_saved(tmp_path):
    mdata = registered()
    shared = nvi.NETWORKVI(mdata, gene_size=3, **GO_KW)
    narrow = nvi.NETWORKVI(mdata, gene_size=3, wiring_by_modality={"protein": {"gene_size": 1}}, **GO_KW)
    assert narrow.wirings_["protein"].gene_size == 1 and shared.wirings_["protein"].gene_size == 3
    assert narrow.wirings_["rna"].gene_size == 3
    for name, value in narrow.wirings_["rna"].to_dict().items():  # the other modality's wiring is untouched
        other = shared.wirings_["rna"].to_dict()[name]
        assert np.array_equal(value, other) if isinstance(value, np.ndarray) else value == other, name
    n_params = [sum(p.numel() for p in m.module.encoders["protein"].parameters()) for m in (shared, narrow)]
    assert n_params[1] < n_params[0]
    assert narrow.init_params_["non_kwargs"]["wiring_by_modality"] == {"protein": {"gene_size": 1}}
    scvi.settings.seed = 0
    narrow.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    narrow.save(tmp_path / "narrow", save_anndata=False)
    loaded = nvi.NETWORKVI.load(str(tmp_path / "narrow"), adata=mdata)
    assert loaded.wirings_["protein"].gene_size == 1 and loaded.wirings_["rna"].gene_size == 3
    np.testing.assert_allclose(loaded.get_latent_representation(), narrow.get_latent_representation(), atol=1e-6)
    alias = nvi.NETWORKVI(mdata, wiring_by_modality={"protein": {"go_size": 1}}, **GO_KW)  # keyword names work
    go_terms = shared.wirings_["protein"].term_size == 6  # same terms; UNKNOWN nodes and root keep their widths
    assert go_terms.sum() > 5 and set(alias.wirings_["protein"].term_size[go_terms]) == {1}
    assert np.array_equal(alias.wirings_["rna"].term_size, shared.wirings_["rna"].term_size)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ({"protein": {"max_depth": 3}}, TypeError, r"no field\(s\) \['max_depth'\].*n_layers_encoder"),
        ({"protein": 1}, TypeError, r"wiring_by_modality\['protein'\] must be a mapping"),
        ([("protein", {})], TypeError, "must map modality roles to wiring fields"),
    ],
)
def test_bad_wiring_by_modality_is_refused_before_any_work(value, error, message):
    with pytest.raises(error, match=message):
        nvi.NETWORKVI(md.read_h5mu(CITE), wiring_by_modality=value)  # unregistered: nothing was read or compiled


def test_wiring_by_modality_must_name_the_models_modalities_and_valid_values():
    mdata = registered()
    with pytest.raises(ValueError, match=r"names \['atac'\].*roles are \['rna', 'protein'\]"):
        nvi.NETWORKVI(mdata, wiring_by_modality={"atac": {"gene_size": 1}}, **GO_KW)
    with pytest.raises(ValueError, match=r"wiring_by_modality\['rna'\]: gene_size must be a positive integer"):
        nvi.NETWORKVI(mdata, wiring_by_modality={"rna": {"gene_size": 0}}, **GO_KW)
    with pytest.raises(ValueError, match="encoder='dense' has no wiring"):
        nvi.NETWORKVI(mdata, encoder="dense", wiring_by_modality={"rna": {"gene_size": 1}})
