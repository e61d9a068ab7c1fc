"""``nvi.tl.train(..., query_ready=True)``: a reference that ``nvi.tl.map_query`` adapts to new batches, by choice.

tests/data/bmmc_cite.h5mu split by batch: s1d1 (270 cells) is the reference, s1d3 (330 cells) the query.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import pytest
import scvi

import scvi_networkvi as nvi

CITE = Path(__file__).parent / "data" / "bmmc_cite.h5mu"
EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
NOT_READY = "This reference is not query-ready"


pytestmark = pytest.mark.usefixtures("offline_session_cache")


@pytest.fixture(scope="module")
def cite() -> md.MuData:
    return md.read_h5mu(CITE)


def split(cite: md.MuData, batch: str) -> md.MuData:
    """The cells of one batch, with ``batch`` (plain strings: the other batch is no category) and ``cell_type``."""
    keep = (cite["rna"].obs["batch"] == batch).to_numpy()
    mdata = md.MuData({mod: cite[mod][keep].copy() for mod in cite.mod})
    mdata.obs["batch"] = mdata["rna"].obs["batch"].astype(str).to_numpy()
    mdata.obs["cell_type"] = mdata["rna"].obs["cell_type"].astype(str).to_numpy()
    return mdata


def not_ready_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if NOT_READY in r.getMessage()]


def encoder_parameters_training(query_model) -> list[str]:
    return [n for n, p in query_model.module.named_parameters() if p.requires_grad and n.startswith("encoders.")]


def test_query_ready_reference_maps_a_new_batch(cite, caplog):
    scvi.settings.seed = 0
    reference = split(cite, "s1d1")
    with caplog.at_level(logging.INFO, logger="scvi_networkvi"):
        model = nvi.tl.train(
            reference,
            batch_key="batch",
            **GO_KW,
            max_epochs=2,
            query_ready=True,
            model_kwargs={"gene_size": 3, "go_size": 2, "encode_covariates": True},  # agreeing: no conflict
            train_kwargs=TRAIN,
        )
    assert not not_ready_lines(caplog)
    settings = model.init_settings  # what a saved model keeps
    assert settings["encode_covariates"] is True and settings["deeply_inject_covariates"] is True
    assert model.module.encode_covariates
    assert reference.uns["networkvi"]["train"]["params"]["query_ready"] is True

    query = split(cite, "s1d3")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        query_model = nvi.tl.map_query(query, model, groupby="cell_type", max_epochs=1, train_kwargs=TRAIN)
    assert not [w for w in caught if "encode_covariates" in str(w.message)]  # no "not adapted" warning
    assert query_model.summary_stats.n_batch == 2  # s1d3 is a new batch
    assert encoder_parameters_training(query_model)  # the encoders learn the new batch's columns
    latent = query.obsm["X_networkvi"]
    assert latent.shape == (query.n_obs, model.module.n_latent) and np.isfinite(latent).all()
    assert query.obs["cell_type_predicted"].notna().all()


def test_default_reference_says_at_training_that_it_is_not_query_ready(cite, caplog):
    scvi.settings.seed = 0
    reference = split(cite, "s1d1")
    with caplog.at_level(logging.INFO, logger="scvi_networkvi"):
        model = nvi.tl.train(reference, batch_key="batch", encoder="dense", max_epochs=1, train_kwargs=TRAIN)
    lines = not_ready_lines(caplog)
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert "nvi.tl.map_query" in lines[0].getMessage() and "query_ready=True" in lines[0].getMessage()
    assert reference.uns["networkvi"]["train"]["params"]["query_ready"] is False
    # what the line says: map_query applies the reference's encoders unchanged, and warns
    query = split(cite, "s1d3")
    with pytest.warns(UserWarning, match=re.escape("nvi.tl.train(..., query_ready=True)")):
        query_model = nvi.tl.map_query(query, model, max_epochs=1, train_kwargs=TRAIN)
    assert not encoder_parameters_training(query_model)

    caplog.clear()  # covariates encoded by hand: query-ready without the flag, so no line
    with caplog.at_level(logging.INFO, logger="scvi_networkvi"):
        nvi.tl.train(
            split(cite, "s1d1"),
            batch_key="batch",
            encoder="dense",
            max_epochs=1,
            model_kwargs={"encode_covariates": True},
            train_kwargs=TRAIN,
        )
    assert not not_ready_lines(caplog)


def snapshot(mdata: md.MuData) -> dict:
    return {
        "uns": sorted(mdata.uns),
        "obs": list(mdata.obs.columns),
        "mods": {name: (id(a), list(a.obs.columns), sorted(a.uns)) for name, a in mdata.mod.items()},
    }


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"model_kwargs": {"encode_covariates": False}},
            ValueError,
            r"query_ready=True sets encode_covariates=True, deeply_inject_covariates=True \(what nvi\.tl\.map_query "
            r"needs .*\), but model_kwargs sets encode_covariates=False\. Drop \['encode_covariates'\] from "
            r"model_kwargs, or pass query_ready=False",
        ),
        (
            {"model_kwargs": {"deeply_inject_covariates": False, "n_latent": 5}},
            ValueError,
            r"but model_kwargs sets deeply_inject_covariates=False\. Drop \['deeply_inject_covariates'\]",
        ),
        ({"batch_key": None}, ValueError, r"query_ready=True prepares the encoders .* pass batch_key="),
        ({"query_ready": "yes"}, TypeError, r"query_ready must be True or False, got 'yes'"),
    ],
)
def test_query_ready_conflicts_are_errors_before_any_work(cite, kwargs, error, message):
    mdata = split(cite, "s1d1")
    before = snapshot(mdata)
    arguments = {"batch_key": "batch", "encoder": "dense", "max_epochs": 1, "query_ready": True, "train_kwargs": TRAIN}
    with pytest.raises(error, match=message):
        nvi.tl.train(mdata, **{**arguments, **kwargs})
    assert snapshot(mdata) == before
