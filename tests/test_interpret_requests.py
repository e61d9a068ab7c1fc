"""Interpretation requests refused before any work (no inference pass, nothing stored), and the probes' device."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from scvi_networkvi.interpret import ImportanceSettings, fit_logistic

pytestmark = pytest.mark.usefixtures("offline_session_cache")


@pytest.fixture(scope="module")
def model(example_probe_model):
    return example_probe_model


@pytest.fixture(scope="module")
def importances(example_importances):
    return example_importances


def test_unknown_keyword_or_bad_field_fails_before_any_work(model, monkeypatch):
    import scvi_networkvi.model._capture as capture_module

    def no_pass(*args, **kwargs):
        raise AssertionError("the inference pass ran before the arguments were checked")

    monkeypatch.setattr(capture_module, "inference_pass", no_pass)  # what every inference pass runs
    uns_before = set(model.adata.uns)
    with pytest.raises(
        TypeError, match=r"get_importances\(\) got unexpected keyword argument\(s\) 'heldout'.*heldout_size"
    ):
        model.get_importances(groupby="cell_type", heldout=0.2)
    with pytest.raises(ValueError, match="C must be positive"):
        model.get_importances(groupby="cell_type", settings=ImportanceSettings(), C=-1)
    with pytest.raises(TypeError, match="'gene_groups'"):  # not a perturbation setting
        model.get_perturbation_importances(genes=["X"], groupby="cell_type", gene_groups={"g": ["A", "B"]})
    with pytest.raises(ValueError, match="does not use the settings"):
        model.get_perturbation_importances(
            genes=["X"], groupby="cell_type", settings=ImportanceSettings(cells_with=["rna"])
        )
    assert set(model.adata.uns) == uns_before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"groupby": "celltype"}, "is not a column"),
        ({"groupby": "DonorAge"}, "is numeric"),
        ({"groupby": "cell_type", "targets": ["Alien"]}, "no selected cell carries"),
        ({"groupby": "cell_type", "reference": "Alien"}, "no selected cell carries"),
        ({"groupby": "cell_type", "restrict": {"Site": "site9"}}, "values no selected cell has"),
        ({"groupby": "cell_type", "modalities": "atac"}, "must be 'joint'"),
        ({"groupby": "cell_type", "node_types": ["pathway"]}, "node_types"),
        ({"groupby": "cell_type", "node_types": ["gene_group"]}, "need gene_groups"),
        ({"groupby": "cell_type", "heldout_size": 1.0}, "heldout_size"),
        ({"groupby": "cell_type", "C": 0}, "C must be positive"),
        ({"groupby": "cell_type", "min_cells": 1}, "min_cells must be at least 2"),
        ({"groupby": "cell_type", "save_path": "table.xlsx"}, "must end in"),
    ],
)
def test_bad_requests_fail_before_anything_is_stored(model, kwargs, message):
    if kwargs["groupby"] == "DonorAge":
        model.adata.obs["DonorAge"] = model.adata["rna"].obs["DonorAge"].astype(float)
    uns_before = set(model.adata.uns)
    with pytest.raises(ValueError, match=message):
        model.get_importances(**kwargs)
    assert set(model.adata.uns) == uns_before


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu9", "is not a torch device"),
        ("mps", "need float64"),
        ("meta", "probes run on 'cpu' or 'cuda'"),
        pytest.param(
            "cuda", "no CUDA GPU", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
        ),
    ],
)
def test_unusable_probe_device_fails_before_the_inference_pass(model, monkeypatch, device, message):
    import scvi_networkvi.model._capture as capture_module

    def no_pass(*args, **kwargs):
        raise AssertionError("the inference pass ran before the device was checked")

    monkeypatch.setattr(capture_module, "inference_pass", no_pass)  # what every inference pass runs
    with pytest.raises(ValueError, match=message):
        model.get_importances(groupby="cell_type", device=device)
    genes = [str(model.adata["rna"].var_names[0])]
    with pytest.raises(ValueError, match=message):
        model.get_perturbation_importances(genes=genes, groupby="cell_type", device=device)


def test_probes_are_fitted_on_the_requested_device(model, importances, monkeypatch):
    import scvi_networkvi.interpret._probe as probe_module

    seen = []

    def recording_fit(*args, **kwargs):
        seen.append(kwargs["device"])
        return fit_logistic(*args, **kwargs)

    monkeypatch.setattr(probe_module, "fit_logistic", recording_fit)
    table = model.get_importances(groupby="cell_type", key_added=None, seed=0, device="cpu")
    pd.testing.assert_frame_equal(table, importances)
    assert seen and all(d == torch.device("cpu") for d in seen)
    seen.clear()
    genes = [str(model.adata["rna"].var_names[0])]
    kwargs = {"targets": list(model.adata.obs["cell_type"].cat.categories)[:1], "key_added": None}
    model.get_perturbation_importances(genes=genes, groupby="cell_type", device=torch.device("cpu"), **kwargs)
    assert len(seen) >= 2 and all(d == torch.device("cpu") for d in seen)  # probes before and after (refit)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"null_sets": -1}, "non-negative integer"),
        ({"null_sets": 2.5}, "non-negative integer"),
        ({"null_sets": True}, "non-negative integer"),
        ({"null_sets": 0, "rank_by": "specificity"}, "pass null_sets > 0"),
        ({"rank_by": "pval_set"}, "rank_by must be"),
    ],
)
def test_bad_null_sets_fail_before_the_inference_pass(model, monkeypatch, kwargs, message):
    import scvi_networkvi.model._capture as capture_module

    def no_pass(*args, **kwargs):
        raise AssertionError("the inference pass ran before null_sets was checked")

    monkeypatch.setattr(capture_module, "inference_pass", no_pass)
    with pytest.raises(ValueError, match=message):
        model.get_importances(groupby="cell_type", key_added=None, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_probes_on_a_gpu_give_the_cpu_table(model, importances):
    table = model.get_importances(groupby="cell_type", key_added=None, seed=0, device="cuda")
    np.testing.assert_allclose(table["auroc"], importances["auroc"], atol=1e-6)
    pd.testing.assert_series_equal(table["node_id"], importances["node_id"])
