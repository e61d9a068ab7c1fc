"""Bad input fails early and clearly, in the words of the function the user called, and leaves the data unchanged.

Missing batch / categorical covariate values, non-count data: ``nvi.tl.train`` names its own arguments
(``layers=``), ``NETWORKVI.setup_mudata`` its own (``rna_layer=``), ``nvi.tl.map_query`` the query.
"""

from __future__ import annotations

import re

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scvi_networkvi as nvi

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
RNA_ONLY = {"rna_layer": "rna"}


pytestmark = pytest.mark.usefixtures("offline_cache")


@pytest.fixture
def cells(example_sites):
    """Factory: n cells of the example's given sites, ``Site`` and ``DonorID`` also in the global obs."""

    def make(sites=("site2", "site3"), n=120) -> md.MuData:
        mdata = example_sites(list(sites))[:n].copy()
        for key in ("Site", "DonorID"):
            mdata.obs[key] = mdata["rna"].obs[key].astype(str).astype("category")
        return mdata

    return make


def fingerprint(mdata: md.MuData) -> dict:
    """Everything a failed call could have changed: obs tables, uns, obsm, the modalities, features and data."""
    state = {"obs": mdata.obs.copy(), "uns": sorted(mdata.uns), "obsm": sorted(mdata.obsm), "mod": {}}
    for name, adata in mdata.mod.items():
        x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
        state["mod"][name] = (id(adata), adata.obs.copy(), sorted(adata.uns), list(adata.var_names), x.copy())
    return state


def assert_unchanged(mdata: md.MuData, before: dict) -> None:
    after = fingerprint(mdata)
    pd.testing.assert_frame_equal(after["obs"], before["obs"])
    assert after["uns"] == before["uns"] and after["obsm"] == before["obsm"]
    assert after["mod"].keys() == before["mod"].keys()
    for name, (ident, obs, uns, var_names, x) in before["mod"].items():
        ident2, obs2, uns2, var_names2, x2 = after["mod"][name]
        assert ident2 == ident and uns2 == uns and var_names2 == var_names
        pd.testing.assert_frame_equal(obs2, obs)
        np.testing.assert_array_equal(x2, x)


def blank(obs: pd.DataFrame, key: str, n: int) -> None:
    """Set the first n cells' value of a categorical obs column to missing."""
    values = np.array(obs[key].astype(object), dtype=object)
    values[:n] = np.nan
    obs[key] = pd.Categorical(values)


# ---- missing batch / categorical covariate values ----------------------------------------------------------------------
def test_train_names_the_batch_column_with_missing_values(cells):
    mdata = cells()
    blank(mdata.obs, "Site", 7)
    before = fingerprint(mdata)
    with pytest.raises(ValueError, match=r"nvi\.tl\.train: batch_key 'Site' has no value \(NaN\) for 7 of 120 cells"):
        nvi.tl.train(mdata, batch_key="Site", encoder="dense", max_epochs=1, train_kwargs=TRAIN)
    assert_unchanged(mdata, before)


def test_train_names_a_modality_batch_column_with_missing_values(cells):
    mdata = cells()
    del mdata.obs["Site"]  # only in the modalities' obs: train reads it from there
    blank(mdata["rna"].obs, "Site", 3)
    before = fingerprint(mdata)
    with pytest.raises(ValueError, match=r"3 of 120 cells in mdata\['rna'\]\.obs\['Site'\].*drop those cells"):
        nvi.tl.train(mdata, batch_key="Site", encoder="dense", max_epochs=1, train_kwargs=TRAIN)
    assert_unchanged(mdata, before)


def test_setup_mudata_names_the_batch_column_with_missing_values(cells):
    mdata = cells()
    blank(mdata.obs, "Site", 2)
    before = fingerprint(mdata)
    with pytest.raises(ValueError, match=r"NETWORKVI\.setup_mudata: batch_key 'Site' has no value \(NaN\) for 2 of"):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=RNA_ONLY)
    assert_unchanged(mdata, before)


@pytest.mark.parametrize("entry", ["train", "setup_mudata"])
def test_categorical_covariate_with_missing_values(cells, entry):
    mdata = cells()
    blank(mdata.obs, "DonorID", 4)
    before = fingerprint(mdata)
    expected = r"categorical_covariate_keys 'DonorID' has no value \(NaN\) for 4 of 120 cells in mdata\.obs"
    with pytest.raises(ValueError, match=expected):
        if entry == "train":
            nvi.tl.train(mdata, categorical_covariate_keys=["DonorID"], encoder="dense", train_kwargs=TRAIN)
        else:
            nvi.NETWORKVI.setup_mudata(mdata, categorical_covariate_keys=["DonorID"], modalities=RNA_ONLY)
    assert_unchanged(mdata, before)


@pytest.fixture(scope="module")
def reference(example_sites):
    full = example_sites(["site2", "site3"])[:150].copy()
    full.obs["Site"] = full["rna"].obs["Site"].astype("category")
    model = nvi.tl.train(
        full,
        batch_key="Site",
        encoder="dense",
        max_epochs=1,
        model_kwargs={"encode_covariates": True},
        train_kwargs=TRAIN,
    )
    return model


def test_map_query_names_the_query_cells_with_missing_batch(cells, reference):
    query = cells(["site4"], 40)
    blank(query.obs, "Site", 5)
    before = fingerprint(query)
    with pytest.raises(ValueError, match=r"nvi\.tl\.map_query: the reference's batch_key 'Site' .* 5 of 40 cells"):
        nvi.tl.map_query(query, reference, max_epochs=1, train_kwargs=TRAIN)
    assert_unchanged(query, before)


# ---- non-count data: the fix in the caller's arguments ---------------------------------------------------------------
def lognormalise(mdata: md.MuData, mod: str) -> None:
    x = mdata[mod].X.toarray() if sp.issparse(mdata[mod].X) else np.asarray(mdata[mod].X, dtype=float)
    mdata[mod].X = np.log1p(x / np.maximum(x.sum(axis=1, keepdims=True), 1) * 1e4).astype(np.float32)


def test_train_suggests_its_own_layers_argument_for_log_data(cells):
    mdata = cells()
    lognormalise(mdata, "rna")
    before = fingerprint(mdata)
    with pytest.raises(ValueError, match=re.escape("layers={'rna': 'counts'}")) as error:
        nvi.tl.train(mdata, batch_key="Site", encoder="dense", max_epochs=1, train_kwargs=TRAIN)
    assert "rna_layer" not in str(error.value)
    assert_unchanged(mdata, before)


def test_setup_mudata_suggests_the_argument_of_the_modality_role(cells):
    mdata = cells()
    lognormalise(mdata, "prot")
    with pytest.raises(ValueError, match=re.escape("protein_layer='counts'")) as error:
        nvi.NETWORKVI.setup_mudata(mdata, modalities={"rna_layer": "rna", "protein_layer": "prot"})
    assert "rna_layer='counts'" not in str(error.value) and "layers=" not in str(error.value)
    with pytest.raises(ValueError, match=re.escape("layers={'protein': 'counts'}")):
        nvi.tl.train(mdata, encoder="dense", train_kwargs=TRAIN)


LEAVE_OUT = "leave the protein modality out (NETWORKVI runs on the others alone): "


def test_normalised_proteins_offer_leaving_the_protein_modality_out(cells):
    mdata = cells()
    lognormalise(mdata, "prot")
    before = fingerprint(mdata)
    mods = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}
    with pytest.raises(ValueError, match="non-integer") as error:
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=mods)
    # in setup_mudata's own keys, the user's other entries kept
    assert str(error.value).endswith(LEAVE_OUT + "modalities={'rna_layer': 'rna', 'batch_key': 'rna'}.")
    with pytest.raises(ValueError, match="non-integer") as error:
        nvi.tl.train(mdata, batch_key="Site", encoder="dense", max_epochs=1, train_kwargs=TRAIN)
    assert str(error.value).endswith(LEAVE_OUT + "modalities={'rna': 'rna'}.")  # nvi.tl.train's role keys
    assert_unchanged(mdata, before)
    # the fix works: without the protein modality, the same call trains
    model = nvi.tl.train(
        mdata, batch_key="Site", modalities={"rna": "rna"}, encoder="dense", max_epochs=1, train_kwargs=TRAIN
    )
    assert model.modality_roles == ["rna"]


def test_leaving_a_modality_out_is_offered_only_where_it_is_a_fix(cells, reference):
    mdata = cells()
    lognormalise(mdata, "rna")  # the RNA: leaving it out is not the fix
    with pytest.raises(ValueError, match="non-integer") as error:
        nvi.NETWORKVI.setup_mudata(mdata, modalities={"rna_layer": "rna", "protein_layer": "prot"})
    assert "leave the" not in str(error.value)
    mdata = cells()
    lognormalise(mdata, "prot")  # the only modality registered
    with pytest.raises(ValueError, match="non-integer") as error:
        nvi.NETWORKVI.setup_mudata(mdata, modalities={"protein_layer": "prot"})
    assert "leave the" not in str(error.value)
    query = cells(["site4"], 40)  # a query must have the reference's modalities
    lognormalise(query, "prot")
    with pytest.raises(ValueError, match="give the query raw counts") as error:
        nvi.tl.map_query(query, reference, max_epochs=1, train_kwargs=TRAIN)
    assert "leave the" not in str(error.value)


def test_map_query_says_the_query_needs_counts_where_the_reference_had_them(cells, reference):
    query = cells(["site4"], 40)
    lognormalise(query, "rna")
    before = fingerprint(query)
    with pytest.raises(ValueError, match="give the query raw counts") as error:
        nvi.tl.map_query(query, reference, max_epochs=1, train_kwargs=TRAIN)
    message = str(error.value)
    assert "give the query raw counts in mdata['rna'].X" in message
    assert "rna_layer" not in message and "layers=" not in message
    assert_unchanged(query, before)


def test_continuous_covariate_error_names_the_function_called(cells):
    mdata = cells()
    mdata.obs["DonorAge"] = mdata["rna"].obs["DonorAge"].astype(float).to_numpy()
    mdata.obs.iloc[0, mdata.obs.columns.get_loc("DonorAge")] = np.nan
    with pytest.raises(ValueError, match=r"drop those cells before nvi\.tl\.train"):
        nvi.tl.train(mdata, continuous_covariate_keys=["DonorAge"], encoder="dense", train_kwargs=TRAIN)
    with pytest.raises(ValueError, match=r"drop those cells before NETWORKVI\.setup_mudata"):
        nvi.NETWORKVI.setup_mudata(mdata, continuous_covariate_keys=["DonorAge"], modalities=RNA_ONLY)


# ---- duplicated feature names, cells without counts --------------------------------------------------------------------
def test_duplicated_feature_names_are_named_before_any_work(cells):
    mdata = cells()
    names = list(mdata["prot"].var_names)
    names[5], names[9] = names[0], names[0]
    mdata["prot"].var_names = names
    before = fingerprint(mdata)
    expected = (
        rf"nvi\.tl\.train: modality 'prot' has 1 duplicated feature names \('{re.escape(names[0])}' x3\).*"
        r"mdata\['prot'\]\.var_names_make_unique\(\)"
    )
    with pytest.raises(ValueError, match=expected):
        nvi.tl.train(mdata, batch_key="Site", encoder="dense", max_epochs=1, train_kwargs=TRAIN)
    assert_unchanged(mdata, before)
    with pytest.raises(ValueError, match=r"NETWORKVI\.setup_mudata: modality 'prot' has 1 duplicated"):
        nvi.NETWORKVI.setup_mudata(mdata, modalities={"rna_layer": "rna", "protein_layer": "prot"})
    assert_unchanged(mdata, before)


def test_many_duplicated_names_are_counted_not_all_listed(cells):
    mdata = cells()
    mdata["rna"].var_names = [f"g{i // 2}" for i in range(mdata["rna"].n_vars)]  # every name twice
    with pytest.raises(ValueError, match=r"has 500 duplicated feature names \('g0' x2, .* and 495 more\)"):
        nvi.NETWORKVI.setup_mudata(mdata, modalities=RNA_ONLY)


def zero_cells(mdata: md.MuData, mod: str, n: int) -> None:
    x = mdata[mod].X.toarray() if sp.issparse(mdata[mod].X) else np.array(mdata[mod].X)
    x[:n] = 0
    mdata[mod].X = sp.csr_matrix(x)


def test_cells_without_counts_warn_with_their_number_and_what_happens(cells):
    mdata = cells()
    zero_cells(mdata, "prot", 6)
    with pytest.warns(UserWarning) as record:
        nvi.NETWORKVI.setup_mudata(mdata, modalities={"rna_layer": "rna", "protein_layer": "prot"})
    messages = [str(w.message) for w in record if "zero counts" in str(w.message)]
    assert len(messages) == 1
    message = messages[0]
    assert message.startswith(
        "NETWORKVI.setup_mudata: 6 of 120 cells have zero counts in modality 'prot' (mdata['prot'].X)"
    )
    assert "keeps them as measured zeros, not as missing" in message and "the other modalities and the batch" in message
    assert "remove them from modality 'prot' only" in message


def test_cells_without_counts_in_the_only_modality(cells):
    mdata = cells()
    zero_cells(mdata, "rna", 2)
    with pytest.warns(
        UserWarning,
        match=r"nvi\.tl\.train: 2 of 120 cells have zero counts in modality 'rna'.*"
        r"carries nothing about the cell",
    ):
        nvi.tl.train(mdata, modalities=RNA_ONLY, batch_key="Site", encoder="dense", max_epochs=1, train_kwargs=TRAIN)


def test_an_error_of_the_same_call_comes_without_the_zero_count_warning(cells, recwarn):
    mdata = cells()
    zero_cells(mdata, "prot", 3)
    blank(mdata.obs, "Site", 2)
    with pytest.raises(ValueError, match="has no value"):
        nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities={"rna_layer": "rna", "protein_layer": "prot"})
    assert not [w for w in recwarn if "zero counts" in str(w.message)]


def test_data_without_empty_cells_or_duplicates_registers_quietly(cells, recwarn):
    mdata = cells()
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities={"rna_layer": "rna", "protein_layer": "prot"})
    assert not [w for w in recwarn if "zero counts" in str(w.message) or "duplicated" in str(w.message)]
