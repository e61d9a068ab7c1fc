"""``NETWORKVI.setup_anndata``: scvi-tools' CITE-seq AnnData layout (proteins in ``obsm``) as the registered MuData.

The AnnData is made from tests/data/bmmc_cite.h5mu (600 bone-marrow cells, 1000 genes, 134 proteins, 2 batches) in
the layout of ``scvi.model.TOTALVI.setup_anndata``: RNA counts in ``X``, protein counts in
``obsm["protein_expression"]`` as a DataFrame or as an array named by ``uns["protein_names"]``.
"""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
from scvi import REGISTRY_KEYS

import scvi_networkvi as nvi
from scvi_networkvi.module import MASK_KEY

CITE = Path(__file__).parent / "data" / "bmmc_cite.h5mu"
EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
NAME = "NETWORKVI.setup_anndata"


pytestmark = pytest.mark.usefixtures("offline_session_cache")


@pytest.fixture(scope="module")
def cite() -> md.MuData:
    return md.read_h5mu(CITE)


def scvi_layout(cite: md.MuData, proteins: str = "dataframe") -> ad.AnnData:
    """The CITE-seq cells as scvi-tools' AnnData: RNA counts in X, proteins in obsm (``dataframe``, ``array``:
    names in uns as a list, ``table``: names and gene ids in uns as the proteins' var table)."""
    rna, adt = cite["rna"], cite["adt"]
    adata = ad.AnnData(X=rna.X.copy(), obs=rna.obs.copy(), var=rna.var.copy())
    counts = adt.X.toarray()
    if proteins == "dataframe":
        adata.obsm["protein_expression"] = pd.DataFrame(counts, index=adata.obs_names, columns=adt.var_names)
    else:
        adata.obsm["protein_expression"] = counts
        adata.uns["protein_names"] = list(adt.var_names) if proteins == "array" else adt.var.copy()
    return adata


def fingerprint(adata: ad.AnnData) -> dict:
    """Everything setup_anndata could change on the AnnData."""
    obsm = {k: (v.copy() if isinstance(v, pd.DataFrame) else np.array(v)) for k, v in adata.obsm.items()}
    x = adata.X.toarray() if sp.issparse(adata.X) else np.array(adata.X)
    return {
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "uns": sorted(adata.uns),
        "obsm": obsm,
        "layers": sorted(k for k in adata.layers if k is not None),
        "x": x,
    }


def assert_unchanged(adata: ad.AnnData, before: dict) -> None:
    after = fingerprint(adata)
    pd.testing.assert_frame_equal(after["obs"], before["obs"])
    pd.testing.assert_frame_equal(after["var"], before["var"])
    assert after["uns"] == before["uns"] and after["layers"] == before["layers"]
    assert after["obsm"].keys() == before["obsm"].keys()
    for key, value in before["obsm"].items():
        np.testing.assert_array_equal(np.asarray(after["obsm"][key]), np.asarray(value))
    np.testing.assert_array_equal(after["x"], before["x"])


def registered(mdata: md.MuData) -> dict:
    """What setup_mudata registered: setup arguments, fields, summary statistics and the data served."""
    manager = nvi.NETWORKVI._get_most_recent_anndata_manager(mdata, required=True)
    fields = {key: dict(entry) for key, entry in manager.data_registry.items()}
    data = {}
    for key in (REGISTRY_KEYS.X_KEY, REGISTRY_KEYS.PROTEIN_EXP_KEY, REGISTRY_KEYS.BATCH_KEY, MASK_KEY):
        if key in manager.data_registry:
            value = manager.get_from_registry(key)
            data[key] = value.toarray() if sp.issparse(value) else np.asarray(value)
    mapping = list(manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping)
    return {
        "setup_method": manager.registry["setup_method_name"],
        "setup_args": manager.registry["setup_args"],
        "fields": fields,
        "summary": dict(manager.summary_stats),
        "batches": mapping,
        "data": data,
    }


@pytest.mark.parametrize("proteins", ["dataframe", "array"])
def test_setup_anndata_registers_what_setup_mudata_registers(cite, proteins):
    adata = scvi_layout(cite, proteins)
    before = fingerprint(adata)
    converted = nvi.NETWORKVI.setup_anndata(
        adata, batch_key="batch", protein_names_uns_key="protein_names" if proteins == "array" else None
    )
    assert_unchanged(adata, before)
    assert isinstance(converted, md.MuData) and list(converted.mod) == ["rna", "protein"]
    assert list(converted["protein"].var_names) == list(cite["adt"].var_names)
    assert converted["rna"].X is adata.X  # the counts are shared, not copied
    # the same cells' data as a MuData, registered by hand
    by_hand = md.MuData({"rna": cite["rna"].copy(), "protein": cite["adt"].copy()})
    by_hand.obs["batch"] = cite["rna"].obs["batch"].copy()
    nvi.NETWORKVI.setup_mudata(by_hand, batch_key="batch", modalities={"rna_layer": "rna", "protein_layer": "protein"})
    got, expected = registered(converted), registered(by_hand)
    assert got["setup_method"] == expected["setup_method"] == "setup_mudata"
    assert got["setup_args"] == expected["setup_args"]
    assert got["fields"] == expected["fields"] and got["summary"] == expected["summary"]
    assert (
        got["summary"]["n_batch"] == 2 and got["summary"]["n_proteins"] == 134 and got["batches"] == expected["batches"]
    )
    assert got["data"].keys() == expected["data"].keys() == {"X", "proteins", "batch", MASK_KEY}
    for key, value in expected["data"].items():
        np.testing.assert_array_equal(got["data"][key], value)


def test_converted_mudata_trains_and_embeds(cite):
    scvi.settings.seed = 0
    adata = scvi_layout(cite, "table")  # the proteins' var table in uns: their gene ids reach the GO wiring
    mdata = nvi.NETWORKVI.setup_anndata(adata, batch_key="batch", protein_names_uns_key="protein_names")
    assert mdata["protein"].var["gene_stable_id"].equals(cite["adt"].var["gene_stable_id"])
    model = nvi.NETWORKVI(mdata, **GO_KW, gene_size=3, go_size=2)
    assert model.gene_ids_["protein"]["source"] == "gene_stable_id"
    assert model.modality_roles == ["rna", "protein"] and model.wirings_["protein"].n_genes > 0
    model.train(max_epochs=1, **TRAIN)
    latent = model.get_latent_representation()
    assert latent.shape == (adata.n_obs, 10) and np.isfinite(latent).all()
    assert latent.std(axis=0).min() > 0  # cells differ in the latent
    proteins = model.get_protein_foreground_probability()
    assert proteins.shape == (adata.n_obs, 134)


def test_nvi_tl_train_on_the_converted_mudata(cite):
    scvi.settings.seed = 0
    adata = scvi_layout(cite)
    with pytest.raises(TypeError, match=re.escape("nvi.NETWORKVI.setup_anndata(adata, ...) returns")):
        nvi.tl.train(adata, batch_key="batch", encoder="dense")
    with pytest.raises(TypeError, match=re.escape("mdata = NETWORKVI.setup_anndata(adata, ...); NETWORKVI(mdata)")):
        nvi.NETWORKVI(adata)
    mdata = nvi.NETWORKVI.setup_anndata(adata, batch_key="batch")
    model = nvi.tl.train(mdata, batch_key="batch", encoder="dense", max_epochs=1, train_kwargs=TRAIN)
    assert model.registry_["setup_args"]["modalities"] == {"rna_layer": "rna", "protein_layer": "protein"}
    nvi.tl.embed(mdata, model)
    assert mdata.obsm["X_networkvi"].shape == (adata.n_obs, 10)
    assert "X_networkvi" not in adata.obsm


def test_counts_in_a_layer_and_rna_alone(cite):
    adata = scvi_layout(cite)
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    mdata = nvi.NETWORKVI.setup_anndata(adata, layer="counts", protein_expression_obsm_key=None, batch_key="batch")
    assert list(mdata.mod) == ["rna"] and "counts" in mdata["rna"].layers
    manager = nvi.NETWORKVI._get_most_recent_anndata_manager(mdata, required=True)
    assert manager.registry["setup_args"]["rna_layer"] == "counts"
    assert manager.registry["setup_args"]["modalities"] == {"rna_layer": "rna"}
    np.testing.assert_array_equal(manager.get_from_registry(REGISTRY_KEYS.X_KEY).toarray(), cite["rna"].X.toarray())


def _missing_obsm(a):
    del a.obsm["protein_expression"]


def _array_without_names(a):
    a.uns["protein_names"] = list(a.obsm["protein_expression"].columns)
    a.obsm["protein_expression"] = a.obsm["protein_expression"].to_numpy()


def _short_names(a):
    a.uns["protein_names"] = list(a.obsm["protein_expression"].columns[:-1])
    a.obsm["protein_expression"] = a.obsm["protein_expression"].to_numpy()


def _normalised_proteins(a):
    table = a.obsm["protein_expression"]
    a.obsm["protein_expression"] = np.log1p(table)  # a DataFrame of log counts


def _normalised_rna(a):
    a.X = sp.csr_matrix(np.log1p(a.X.toarray()))


def _duplicated_genes(a):
    names = list(a.var_names)
    names[3] = names[0]
    a.var_names = names


def _duplicated_proteins(a):
    table = a.obsm["protein_expression"]
    a.obsm["protein_expression"] = table.set_axis([table.columns[0], *table.columns[1:-1], table.columns[0]], axis=1)


def _duplicated_cells(a):
    names = list(a.obs_names)
    names[1] = names[0]
    a.obs_names = names


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "message"),
    [
        (
            _missing_obsm,
            {},
            ValueError,
            r"adata\.obsm has no 'protein_expression' \(keys: \[\]\)\. .*protein_expression_obsm_key=None to model "
            r"the RNA alone",
        ),
        (None, {"protein_expression_obsm_key": "adt"}, ValueError, r"adata\.obsm has no 'adt' \(keys: \['protein_exp"),
        (
            _array_without_names,
            {},
            ValueError,
            r"is an array without protein names.*\(e\.g\. protein_names_uns_key='protein_names'\)",
        ),
        (_short_names, {"protein_names_uns_key": "names"}, ValueError, r"'names' is not a key of adata\.uns"),
        (
            _short_names,
            {"protein_names_uns_key": "protein_names"},
            ValueError,
            r"adata\.uns\['protein_names'\] holds 133 protein names but adata\.obsm\['protein_expression'\] has 134 "
            r"columns: give one name per column",
        ),
        (
            _normalised_proteins,
            {},
            ValueError,
            r"adata\.obsm\['protein_expression'\] contains non-integer values .*give the raw antibody counts; or, "
            r"without them, leave the protein modality out \(NETWORKVI runs on the RNA alone\): "
            r"protein_expression_obsm_key=None",
        ),
        (_normalised_rna, {}, ValueError, r"adata\.X contains non-integer values .*\(e\.g\. layer='counts'\)"),
        (None, {"layer": "counts"}, ValueError, r"adata has no layer 'counts'"),
        (_duplicated_genes, {}, ValueError, r"1 duplicated names \('ISG15' x2\).*adata\.var_names_make_unique\(\)"),
        (_duplicated_proteins, {}, ValueError, r"the proteins have 1 duplicated names \('CD86' x2\)"),
        (_duplicated_cells, {}, ValueError, r"adata\.obs_names_make_unique\(\)"),
        (None, {"batch_key": "sample"}, ValueError, r"batch_key names \['sample'\], not a column of adata\.obs"),
        (None, {"categorical_covariate_keys": "Site"}, TypeError, r"must be a list of adata\.obs columns"),
        (None, {"species": "rat"}, ValueError, r"species must be 'human', 'mouse' or None"),
    ],
)
def test_errors_name_the_fix_and_leave_the_anndata_unchanged(cite, change, kwargs, error, message):
    adata = scvi_layout(cite)
    if change is not None:
        change(adata)
    before = fingerprint(adata)
    with pytest.raises(error, match=re.escape(NAME) + ".*" + message if error is ValueError else message):
        nvi.NETWORKVI.setup_anndata(adata, **kwargs)
    assert_unchanged(adata, before)
    assert "_scvi_uuid" not in adata.uns and "_scvi_batch" not in adata.obs


def test_leaving_normalised_proteins_out_is_the_fix(cite):
    adata = scvi_layout(cite)
    _normalised_proteins(adata)
    with pytest.raises(ValueError, match="protein_expression_obsm_key=None"):
        nvi.NETWORKVI.setup_anndata(adata, batch_key="batch")
    mdata = nvi.NETWORKVI.setup_anndata(adata, batch_key="batch", protein_expression_obsm_key=None)
    assert list(mdata.mod) == ["rna"]


def test_a_mudata_is_pointed_to_setup_mudata(cite):
    with pytest.raises(TypeError, match=r"takes an AnnData; register a MuData with NETWORKVI\.setup_mudata"):
        nvi.NETWORKVI.setup_anndata(cite)
