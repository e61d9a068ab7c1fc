"""The packaged example dataset and the tutorial loaders."""

from __future__ import annotations

import re
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scvi_networkvi.datasets import example, example_resources, tutorial_cite, tutorial_multiome
from scvi_networkvi.datasets._tutorial import (
    _unscale_counts,
    cite_to_mudata,
    multiome_to_mudata,
    unique_protein_names,
)
from scvi_networkvi.resources import DATA_DIR_ENV, OFFLINE_ENV
from scvi_networkvi.wiring import compile_wirings, parse_feature_gene_ids

OBS_COLUMNS = ["cell_type", "Site", "DonorID", "DonorSmoker", "DonorBMI", "DonorAge"]
EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "scvi_networkvi" / "datasets" / "example"
TEST_DATA = Path(__file__).resolve().parent / "data"  # written by scripts/make_test_data.py


@pytest.fixture
def offline_cache(monkeypatch, tmp_path):
    """An empty resource cache in tmp_path and no network."""
    monkeypatch.setenv(OFFLINE_ENV, "1")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    return tmp_path


def _assert_counts(x) -> None:
    values = x.data if sp.issparse(x) else np.asarray(x)
    assert np.issubdtype(values.dtype, np.integer) or np.all(values == np.round(values))
    assert values.min() >= 0


# ---- example() -------------------------------------------------------------------------------------------------------
def test_example_loads_offline_with_promised_contents(offline_cache):
    mdata = example()
    assert set(mdata.mod) == {"rna", "prot"}
    assert mdata.n_obs == 2000
    assert mdata["rna"].shape == (2000, 1000)
    assert mdata["prot"].shape == (2000, 134)
    for table in (mdata.obs, mdata["rna"].obs, mdata["prot"].obs):
        assert list(table.columns) == OBS_COLUMNS
        assert table.index.equals(mdata.obs.index)
    assert isinstance(mdata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert mdata.obs["Site"].nunique() >= 2
    assert mdata.obs["cell_type"].nunique() >= 5
    assert (mdata.obs["cell_type"].value_counts() > 0).all()  # no unused categories
    assert np.issubdtype(mdata.obs["DonorAge"].dtype, np.integer)
    assert np.issubdtype(mdata.obs["DonorBMI"].dtype, np.floating)

    rna, prot = mdata["rna"], mdata["prot"]
    assert sp.issparse(rna.X) and rna.X.format == "csr"
    _assert_counts(rna.X)
    _assert_counts(prot.X)
    assert rna.X.sum() > 0 and np.asarray(prot.X).sum() > 0
    assert rna.var_names.is_unique and prot.var_names.is_unique
    assert rna.var["gene_stable_id"].astype(str).str.match(r"^ENSG\d{11}$").all()
    prot_ids = parse_feature_gene_ids(list(prot.var["gene_stable_id"]))
    assert sum(bool(ids) for ids in prot_ids) == 129  # 5 antibodies without a gene id
    assert all(re.fullmatch(r"ENSG\d{11}", gene) for ids in prot_ids for gene in ids)
    assert prot_ids[list(prot.var_names).index("CD3")] == ["ENSG00000167286", "ENSG00000198851"]
    assert {"CD86_ADT", "CD4_ADT", "CD274"} <= set(prot.var_names)  # _ADT: the antibodies named like a gene
    assert mdata.var_names.is_unique


def test_example_loads_and_subsets_without_warnings(offline_cache, recwarn):
    mdata = example()
    mdata[:100].copy()
    assert not [str(w.message) for w in recwarn if "not unique" in str(w.message)]


def test_example_calls_are_independent(offline_cache):
    first, second = example(), example()
    assert first is not second
    first["rna"].X.data[:] = 0
    first["prot"].X[:] = -1
    first.obs["cell_type"] = "changed"
    first["rna"].var["gene_stable_id"] = "changed"
    assert second["rna"].X.sum() > 0
    assert np.asarray(second["prot"].X).min() >= 0
    assert "changed" not in set(second.obs["cell_type"].astype(str))
    assert second["rna"].var["gene_stable_id"].astype(str).str.startswith("ENSG").all()
    assert example()["rna"].X.sum() == second["rna"].X.sum()


def test_example_files_are_small_and_complete():
    paths = [*example_resources().values(), EXAMPLE_DIR / "cite_example.h5mu"]
    assert all(path.is_file() for path in paths)
    assert sum(path.stat().st_size for path in paths) <= 3_000_000
    readme = (EXAMPLE_DIR / "README.md").read_text()
    for path in paths:
        assert path.name in readme
    assert "GSE194122" in readme and "CC-BY-4.0" in readme


def test_example_resources_are_valid_files():
    resources = example_resources()
    assert set(resources) == {"go", "annotations", "interactions"}
    obo = resources["go"].read_text().splitlines()
    assert obo[0] == "format-version: 1.2"
    assert "data-version: releases/2025-03-16" in obo
    assert sum(line == "[Term]" for line in obo) > 50
    assert not any(line == "is_obsolete: true" for line in obo)
    gaf = resources["annotations"].read_text().splitlines()
    assert gaf[0].startswith("!gaf-version: 2.2")
    assert all(len(line.split("\t")) >= 15 for line in gaf if not line.startswith("!"))
    edges = pd.read_csv(resources["interactions"])
    assert list(edges.columns) == ["gene1", "gene2", "combined_score"]
    assert len(edges) > 0


def test_example_wiring(offline_cache):
    mdata = example()
    features = {mod: list(mdata[mod].var["gene_stable_id"]) for mod in ("rna", "prot")}
    wirings = compile_wirings(features, cache=False, **example_resources())
    rna = wirings["rna"]
    summary = rna.summary()
    assert summary["go_terms"] > 10
    assert summary["features"] == 1000 and summary["genes"] == 1000
    assert summary["gene_gene_edges"] > summary["genes"]  # self loops plus interactions

    # The annotated genes are exactly those with a usable biological_process line in the GAF.
    gaf = pd.read_csv(
        example_resources()["annotations"], sep="\t", comment="!", header=None, dtype=str, usecols=range(9)
    )
    usable = gaf.loc[(gaf[8] == "P") & (gaf[6] != "ND") & ~gaf[3].fillna("").str.contains("NOT")]
    expected = np.isin(rna.gene_ids, usable[1].unique())
    np.testing.assert_array_equal(rna.gene_annotated, expected)
    assert 0.3 < rna.gene_annotated.mean() < 0.9

    prot = wirings["prot"]
    assert prot.gene_placeholder.sum() == int(mdata["prot"].var["gene_stable_id"].isna().sum())
    assert prot.summary()["go_terms"] > 5


# ---- tutorial loaders ------------------------------------------------------------------------------------------------
def test_unscale_counts_recovers_integer_counts():
    rng = np.random.default_rng(0)
    dense = rng.integers(1, 9, size=(30, 50)) * (rng.random((30, 50)) < 0.2)
    dense[np.arange(29), np.arange(29)] = 1  # every cell but the last has a count of one
    dense[29] = 0  # an empty cell
    counts = sp.csr_matrix(dense)
    size_factor = rng.uniform(0.2, 3.0, size=30)
    scaled = sp.csr_matrix(sp.diags(size_factor) @ counts, dtype=np.float32)
    recovered = _unscale_counts(scaled)
    assert recovered.dtype == np.float32
    np.testing.assert_array_equal(recovered.toarray(), counts.toarray())


def test_multiome_conversion_on_synthetic_data():
    counts = np.array([[1, 0, 3, 1, 0], [0, 2, 1, 0, 1], [0, 0, 0, 1, 1]], dtype=np.float32)
    scaled = counts.copy()
    scaled[:, :3] *= np.array([[0.5], [1.7], [1.0]], dtype=np.float32)
    var = pd.DataFrame(
        {
            "gene_stable_id": ["ENSG1", "ENSG2", "ENSG3", "ENSG1", "ENSG3"],
            "modality": ["Gene Expression"] * 3 + ["Peaks"] * 2,
        },
        index=["A", "B", "C", "chr1-1-2", "chr1-5-9"],
    )
    obs = pd.DataFrame({"Site": pd.Categorical(["s1", "s2", "s1"])}, index=["c1", "c2", "c3"])
    mdata = multiome_to_mudata(anndata.AnnData(X=sp.csr_matrix(scaled), obs=obs, var=var))
    assert set(mdata.mod) == {"rna", "atac"}
    np.testing.assert_array_equal(mdata["rna"].X.toarray(), counts[:, :3])
    np.testing.assert_array_equal(mdata["atac"].X.toarray(), counts[:, 3:])
    assert list(mdata["rna"].var.columns) == ["gene_stable_id"]
    assert list(mdata["atac"].var_names) == ["chr1-1-2", "chr1-5-9"]
    assert list(mdata.obs["Site"]) == ["s1", "s2", "s1"]
    assert list(mdata["atac"].obs["Site"]) == ["s1", "s2", "s1"]
    binary = multiome_to_mudata(anndata.AnnData(X=sp.csr_matrix(scaled), obs=obs, var=var), binarize_atac=True)
    assert set(np.unique(binary["atac"].X.toarray())) <= {0.0, 1.0}


# ---- the tutorial loaders: samples of the two files in tests/data here, the files of the registry in slow tests ----
def _check_cite(mdata, n_cells: int) -> None:
    assert set(mdata.mod) == {"rna", "prot"}
    assert mdata["rna"].shape == (n_cells, 4000)
    assert mdata["prot"].shape == (n_cells, 134)
    for table in (mdata.obs, mdata["rna"].obs, mdata["prot"].obs):
        assert set(OBS_COLUMNS) <= set(table.columns)
    _assert_counts(mdata["rna"].X)
    _assert_counts(mdata["prot"].X)
    assert mdata["rna"].var["gene_stable_id"].astype(str).str.startswith("ENSG").all()
    assert mdata["prot"].var["gene_stable_id"].isna().sum() == 5
    prot_ids = parse_feature_gene_ids(list(mdata["prot"].var["gene_stable_id"]))
    assert prot_ids[list(mdata["prot"].var_names).index("CD3")] == ["ENSG00000167286", "ENSG00000198851"]
    assert mdata.var_names.is_unique
    example_prot = example()["prot"].var_names
    assert list(mdata["prot"].var_names) == list(example_prot)  # one naming rule for both


def test_cite_to_mudata_gives_unique_var_names(recwarn):
    genes = ["CD4", "LYZ", "CD14"]
    adata = anndata.AnnData(
        X=sp.csr_matrix(np.ones((3, 3), dtype=np.float32)),
        obs=pd.DataFrame({"Site": ["a", "b", "a"]}, index=["c1", "c2", "c3"]),
        var=pd.DataFrame({"gene_stable_id": ["ENSG1", "ENSG2", "ENSG3"]}, index=genes),
    )
    adata.obsm["protein_expression"] = np.ones((3, 2))
    adata.uns["protein_expression"] = {"var": pd.DataFrame({"gene_stable_id": ["ENSG1", None]}, index=["CD4", "CD3"])}
    mdata = cite_to_mudata(adata)
    assert list(mdata["prot"].var_names) == ["CD4_ADT", "CD3"]
    assert list(mdata["rna"].var_names) == genes and mdata.var_names.is_unique
    assert not [w for w in recwarn if "not unique" in str(w.message)]


def test_unique_protein_names_refuses_a_clash_it_cannot_resolve():
    assert unique_protein_names(["A", "B"], ["B"]) == ["A", "B_ADT"]
    with pytest.raises(ValueError, match="B_ADT"):
        unique_protein_names(["B", "B_ADT"], ["B"])


def _check_multiome(mdata, n_cells: int, n_peaks: int) -> None:
    assert set(mdata.mod) == {"rna", "atac"}
    assert mdata["rna"].shape == (n_cells, 4000)
    assert mdata["atac"].shape == (n_cells, n_peaks)
    rna = mdata["rna"].X
    np.testing.assert_array_equal(rna.data, np.round(rna.data))
    assert rna.data.min() >= 1
    per_cell_min = np.minimum.reduceat(rna.data, rna.indptr[:-1][np.diff(rna.indptr) > 0])
    assert (per_cell_min == 1).all()
    assert set(np.unique(mdata["atac"].X.data)) <= {0.0, 1.0}
    assert mdata["rna"].var["gene_stable_id"].astype(str).str.startswith("ENSG").all()
    assert "gene_stable_id" in mdata["atac"].var
    assert {"cell_type", "Site"} <= set(mdata.obs.columns) and "Site" in mdata["atac"].obs


def test_tutorial_cite_conversion_on_a_sample_of_the_file():
    _check_cite(cite_to_mudata(anndata.read_h5ad(TEST_DATA / "tutorial_cite_sample.h5ad")), 50)


def test_tutorial_multiome_conversion_on_a_sample_of_the_file():
    raw = anndata.read_h5ad(TEST_DATA / "tutorial_multiome_sample.h5ad")  # all genes, the peaks of chromosome 1
    _check_multiome(multiome_to_mudata(raw), 50, n_peaks=2040)


@pytest.mark.slow
def test_tutorial_cite_from_the_registry(monkeypatch):
    monkeypatch.delenv(OFFLINE_ENV, raising=False)  # fetched once into the resource cache, then read from there
    mdata = tutorial_cite()
    _check_cite(mdata, 5000)
    assert mdata.obs["cell_type"].nunique() == 44 and mdata.obs["Site"].nunique() == 4


@pytest.mark.slow
def test_tutorial_multiome_from_the_registry(monkeypatch):
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    _check_multiome(tutorial_multiome(), 5000, n_peaks=20001)


def test_tutorial_offline_without_cache_says_what_to_do(offline_cache):
    from scvi_networkvi.resources import ResourceError

    with pytest.raises(ResourceError, match="tutorial-cite"):
        tutorial_cite()
