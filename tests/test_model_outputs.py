"""NETWORKVI outputs (protein foreground, accessibility, library/region factors, DE, DA) on the real test subsets."""

from __future__ import annotations

from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch

import scvi_networkvi as nvi

DATA = Path(__file__).parent / "data"  # written by scripts/make_test_data.py (tests/data/README.md)
CITE, MULTIOME = DATA / "bmmc_cite.h5mu", DATA / "bmmc_multiome.h5mu"
EXAMPLE = nvi.datasets.example_resources()
CITE_MODS = {"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
MULTIOME_MODS = {"rna_layer": "rna", "atac_layer": "atac", "batch_key": "rna"}
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}
MONO, TNAIVE = "CD14+ Mono", "CD4+ T naive"  # both present in the two files of tests/data
N_SAMPLES = 200  # posterior samples per group in DE/DA (scvi-tools' default 5000 is slow on CPU)
MARKER_EPOCHS = 80  # the marker test's training with the default learning rate: about 45 s on one CPU thread
SUB = np.arange(0, 500, 5)  # 100 cells of both batches: most checks decode only these, to keep the file fast


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path_factory.mktemp("nvi-cache")))
        monkeypatch.setenv("SCVI_NETWORKVI_OFFLINE", "1")
        yield


def build(path: Path, mods: dict, *, epochs: int = 0, **model_kwargs) -> nvi.NETWORKVI:
    scvi.settings.seed = 0
    mdata = md.read_h5mu(path)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=mods)
    model = nvi.NETWORKVI(mdata, **{**GO_KW, "gene_size": 5, "go_size": 2, **model_kwargs})
    if epochs:
        model.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False)  # default lr
    return model


@pytest.fixture(scope="module")
def cite(isolated_cache):
    return build(CITE, CITE_MODS, epochs=3)


@pytest.fixture(scope="module")
def multiome(isolated_cache):
    return build(MULTIOME, MULTIOME_MODS, epochs=3)


@pytest.fixture(scope="module")
def protein_only(isolated_cache):
    return build(CITE, {"protein_layer": "adt", "batch_key": "adt"})


@pytest.fixture(scope="module")
def no_region_factors(isolated_cache):
    return build(MULTIOME, MULTIOME_MODS, region_factors=False)


def counts(model, mod: str) -> np.ndarray:
    return model.adata[mod].X.toarray()


def cell_types(model) -> np.ndarray:
    return model.adata["rna"].obs["cell_type"].to_numpy()


@pytest.fixture
def no_work(monkeypatch):
    """Make any decoding pass fail: a test using this checks that bad input is rejected before the work starts."""

    def boom(*args, **kwargs):
        raise AssertionError("bad input must be rejected before decoding")

    monkeypatch.setattr(nvi.NETWORKVI, "_decode_minibatches", boom)


# ---- proteins -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def foreground(cite):
    return cite.get_protein_foreground_probability()


def test_protein_foreground_probability(cite, foreground):
    fg = foreground
    assert isinstance(fg, pd.DataFrame) and fg.shape == (600, 134)
    assert fg.index.equals(cite.adata.obs_names)
    assert list(fg.columns) == list(cite.adata["adt"].var_names)
    values = fg.to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    with torch.inference_mode():
        tensors = next(iter(cite._make_data_loader(adata=cite.adata, indices=np.arange(5))))
        inference = cite.module.inference(**cite.module._get_inference_input(tensors))
        gen = cite.module.generative(**cite.module._get_generative_input(tensors, inference), use_z_mean=True)
        expected = 1 - torch.sigmoid(gen["py_"]["mixing"]).numpy()
    np.testing.assert_allclose(values[:5], expected, rtol=1e-5, atol=1e-6)


def test_protein_foreground_subsets_batches_and_numpy(cite, foreground):
    names = list(cite.adata["adt"].var_names)
    full = foreground
    chosen = [names[7], names[0]]
    sub = cite.get_protein_foreground_probability(indices=[3, 1, 10], protein_list=chosen)
    assert list(sub.columns) == chosen and list(sub.index) == list(cite.adata.obs_names[[3, 1, 10]])
    np.testing.assert_allclose(sub.to_numpy(), full.loc[sub.index, chosen].to_numpy(), rtol=1e-5)
    s1 = cite.get_protein_foreground_probability(indices=SUB, transform_batch="s1d1", return_numpy=True)
    s2 = cite.get_protein_foreground_probability(indices=SUB, transform_batch="s1d3", return_numpy=True)
    both = cite.get_protein_foreground_probability(indices=SUB, transform_batch=["s1d1", "s1d3"], return_numpy=True)
    assert isinstance(both, np.ndarray) and both.shape == (len(SUB), 134)
    np.testing.assert_allclose(both, (s1 + s2) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(s1, s2)
    sampled = cite.get_protein_foreground_probability(indices=SUB, use_z_mean=False, return_numpy=True)
    assert ((sampled >= 0) & (sampled <= 1)).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protein_list": ["NOT_A_PROTEIN"]}, "does not know"),
        ({"protein_list": "CD86"}, "list of names"),
        ({"transform_batch": "site9"}, "not a registered batch"),
        ({"transform_batch": ["s1d1", "site9"]}, "not a registered batch"),
        ({"transform_batch": []}, "empty"),
    ],
)
def test_protein_foreground_rejects_bad_input(cite, no_work, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cite.get_protein_foreground_probability(**kwargs)


def test_protein_outputs_need_proteins(multiome, no_work):
    with pytest.raises(ValueError, match="no 'protein' modality"):
        multiome.get_protein_foreground_probability()


# ---- accessibility -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def accessibility(multiome):
    return multiome.get_accessibility_estimates()


def test_accessibility_estimates(multiome, accessibility):
    acc = accessibility
    assert isinstance(acc, pd.DataFrame) and acc.shape == (500, 600)
    assert acc.index.equals(multiome.adata.obs_names)
    assert list(acc.columns) == list(multiome.adata["atac"].var_names)
    values = acc.to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()


def test_accessibility_normalizations_multiply_the_factors(multiome, accessibility):
    base = accessibility.to_numpy()[SUB]
    depth = multiome.get_library_size_factors(indices=SUB)["atac"]
    factors = multiome.get_region_factors()
    cells = multiome.get_accessibility_estimates(indices=SUB, normalize_cells=True, return_numpy=True)
    regions = multiome.get_accessibility_estimates(indices=SUB, normalize_regions=True, return_numpy=True)
    both = multiome.get_accessibility_estimates(
        indices=SUB, normalize_cells=True, normalize_regions=True, return_numpy=True
    )
    np.testing.assert_allclose(cells / base, np.broadcast_to(depth[:, None], base.shape), rtol=1e-4)
    np.testing.assert_allclose(regions / base, np.broadcast_to(factors[None, :], base.shape), rtol=1e-4)
    np.testing.assert_allclose(both, base * depth[:, None] * factors[None, :], rtol=1e-4)
    assert (cells <= base + 1e-7).all() and (both <= 1).all()


def test_accessibility_threshold_gives_sparse_results(multiome, accessibility):
    base = accessibility.to_numpy()[SUB]
    threshold = float(np.median(base))
    csr = multiome.get_accessibility_estimates(indices=SUB, threshold=threshold, return_numpy=True)
    assert sp.issparse(csr) and csr.format == "csr" and csr.shape == base.shape
    assert 0 < csr.nnz < base.size and (csr.data >= threshold).all()
    np.testing.assert_allclose(csr.toarray(), np.where(base < threshold, 0, base), rtol=1e-6)
    frame = multiome.get_accessibility_estimates(indices=SUB, threshold=threshold)
    assert isinstance(frame, pd.DataFrame) and all(isinstance(d, pd.SparseDtype) for d in frame.dtypes)
    assert list(frame.columns) == list(multiome.adata["atac"].var_names)
    assert frame.index.equals(multiome.adata.obs_names[SUB])
    np.testing.assert_allclose(frame.sparse.to_dense().to_numpy(), csr.toarray())
    everything = multiome.get_accessibility_estimates(indices=SUB, threshold=0, return_numpy=True)
    assert sp.issparse(everything) and everything.nnz == np.count_nonzero(base)


def test_accessibility_subsets_and_batches(multiome, accessibility):
    regions = list(multiome.adata["atac"].var_names)
    full = accessibility
    chosen = [regions[42], regions[3]]
    sub = multiome.get_accessibility_estimates(indices=[0, 5], region_list=chosen)
    assert list(sub.columns) == chosen and list(sub.index) == list(multiome.adata.obs_names[[0, 5]])
    np.testing.assert_allclose(sub.to_numpy(), full.loc[sub.index, chosen].to_numpy(), rtol=1e-5)
    s1 = multiome.get_accessibility_estimates(indices=SUB, transform_batch="s1d1", return_numpy=True)
    s2 = multiome.get_accessibility_estimates(indices=SUB, transform_batch="s1d3", return_numpy=True)
    both = multiome.get_accessibility_estimates(indices=SUB, transform_batch=["s1d1", "s1d3"], return_numpy=True)
    np.testing.assert_allclose(both, (s1 + s2) / 2, rtol=1e-5, atol=1e-7)
    assert not np.allclose(s1, s2)
    sampled = multiome.get_accessibility_estimates(indices=SUB, use_z_mean=False, return_numpy=True)
    assert ((sampled >= 0) & (sampled <= 1)).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": "0.5"}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"region_list": ["chr0-1-2"]}, "does not know"),
        ({"transform_batch": "site9"}, "not a registered batch"),
    ],
)
def test_accessibility_rejects_bad_input(multiome, no_work, kwargs, message):
    with pytest.raises(ValueError, match=message):
        multiome.get_accessibility_estimates(**kwargs)


def test_accessibility_needs_atac_and_region_factors(cite, no_region_factors, no_work):
    with pytest.raises(ValueError, match="no 'atac' modality"):
        cite.get_accessibility_estimates()
    with pytest.raises(RuntimeError, match="region_factors=False"):
        no_region_factors.get_accessibility_estimates(normalize_regions=True)


# ---- factors -------------------------------------------------------------------------------------------------------
def test_region_factors(multiome, cite, no_region_factors):
    factors = multiome.get_region_factors()
    assert isinstance(factors, np.ndarray) and factors.shape == (600,)
    assert ((factors > 0) & (factors < 1)).all()
    np.testing.assert_allclose(factors, torch.sigmoid(multiome.module.region_factors).detach().numpy())
    with pytest.raises(ValueError, match="no 'atac' modality"):
        cite.get_region_factors()
    with pytest.raises(RuntimeError, match="region_factors=False"):
        no_region_factors.get_region_factors()


def test_library_size_factors(cite, multiome, protein_only):
    cite_factors = cite.get_library_size_factors(indices=SUB)
    assert set(cite_factors) == {"rna"} and cite_factors["rna"].shape == (len(SUB),)
    np.testing.assert_allclose(cite_factors["rna"], np.log(counts(cite, "rna")[SUB].sum(1)), rtol=1e-5)
    factors = multiome.get_library_size_factors(indices=np.arange(100))
    assert set(factors) == {"rna", "atac"} and factors["atac"].shape == (100,)
    np.testing.assert_allclose(factors["rna"], np.log(counts(multiome, "rna")[:100].sum(1)), rtol=1e-5)
    assert ((factors["atac"] > 0) & (factors["atac"] < 1)).all()
    with pytest.raises(ValueError, match="only \\['protein'\\]"):
        protein_only.get_library_size_factors()


# ---- differential expression ---------------------------------------------------------------------------------------
DE_STATS = ["raw_mean1", "raw_mean2", "non_zeros_proportion1", "non_zeros_proportion2"]
DE_STATS += ["raw_normalized_mean1", "raw_normalized_mean2"]
DE_COLUMNS = ["proba_de", "proba_not_de", "bayes_factor", "scale1", "scale2", "lfc_mean", "lfc_median", "lfc_std"]


@pytest.fixture(scope="module")
def de(cite):
    return cite.differential_expression(
        groupby="cell_type", group1=MONO, group2=TNAIVE, n_samples_overall=N_SAMPLES, silent=True
    )


def test_differential_expression_between_cell_types(cite, de):
    assert set(DE_COLUMNS + DE_STATS + ["is_de_fdr_0.05", "comparison", "group1", "group2"]) <= set(de.columns)
    genes = cite.adata["rna"].var_names
    assert de.index.is_unique and set(de.index) == set(genes) and len(de) == len(genes)
    assert np.isfinite(de[DE_COLUMNS + DE_STATS].to_numpy(dtype=float)).all()
    assert de["proba_de"].between(0, 1).all() and de["is_de_fdr_0.05"].dtype == bool
    assert (de["comparison"] == f"{MONO} vs {TNAIVE}").all()
    assert de["proba_de"].is_monotonic_decreasing
    # Count statistics come from the RNA counts of the right cells, aligned with the gene names.
    x, types = counts(cite, "rna"), cell_types(cite)
    raw = pd.DataFrame({"raw_mean1": x[types == MONO].mean(0), "raw_mean2": x[types == TNAIVE].mean(0)}, genes)
    np.testing.assert_allclose(de[["raw_mean1", "raw_mean2"]], raw.loc[de.index], rtol=1e-5)
    # FCN1 (a monocyte marker) is expressed in the monocytes only.
    assert de.loc["FCN1", "raw_normalized_mean1"] > 20 * de.loc["FCN1", "raw_normalized_mean2"]


def test_differential_expression_follows_the_decoder(cite, de):
    """The estimated scales are the model's decoded expression of each group (gene names aligned)."""
    types = cell_types(cite)
    for column, group in (("scale1", MONO), ("scale2", TNAIVE)):
        decoded = cite.get_normalized_expression(indices=np.flatnonzero(types == group)).mean(axis=0)
        assert pd.Series(de[column]).corr(decoded.loc[de.index], method="spearman") > 0.98


@pytest.mark.slow
def test_differential_expression_finds_monocyte_markers():
    """Trained with the default sizes and learning rate, the decoder separates cell types and DE finds the markers.

    Regression test: with the original's sizes (``n_hidden=31, n_latent=5`` for 1000 genes) and ``lr=1e-4``, the
    decoded expression of monocytes and naive CD4+ T cells differed by about 1% after 60 epochs. 80 epochs (320
    steps): with equal-weight mixing the joint latent needs both encoders trained; at 40 epochs the decoded FCN1 log
    fold change was still 0.1 (MoE, whose gate picked the faster protein encoder, 5.2), at 80 epochs 6.4 / 7.2 (seeds
    0 / 1), at 120 6.6 (MoE 6.7).
    """
    model = build(CITE, CITE_MODS, epochs=MARKER_EPOCHS)
    de = model.differential_expression(
        groupby="cell_type", group1=MONO, group2=TNAIVE, n_samples_overall=1000, silent=True
    )
    markers = [g for g in ("LYZ", "S100A8", "CD14", "FCN1", "MNDA", "AIF1", "CEBPD") if g in de.index]
    assert len(markers) >= 4
    assert (de.loc[markers, "lfc_mean"] > 1).all(), de.loc[markers, "lfc_mean"]
    assert de.loc[markers, "is_de_fdr_0.05"].all()
    rank = de["lfc_mean"].rank(ascending=False)[markers]  # up in monocytes: among the top 20% of the 1000 genes
    assert (rank <= 0.2 * len(de)).all(), rank


def test_differential_expression_other_selections(cite):
    before = list(cite.adata.obs.columns)
    by_mod = cite.differential_expression(
        groupby="rna:cell_type", group1=[MONO], group2=TNAIVE, n_samples_overall=50, silent=True
    )
    assert set(by_mod.index) == set(cite.adata["rna"].var_names) and (by_mod["group1"] == MONO).all()
    types = cell_types(cite)
    vanilla = cite.differential_expression(
        idx1=types == MONO,
        idx2=np.flatnonzero(types == TNAIVE),
        mode="vanilla",
        batch_correction=True,
        all_stats=False,
        n_samples_overall=50,
        silent=True,
    )
    assert {"proba_m1", "bayes_factor", "scale1", "scale2"} <= set(vanilla.columns)
    assert "raw_mean1" not in vanilla.columns and vanilla["proba_m1"].between(0, 1).all()
    assert vanilla["bayes_factor"].is_monotonic_decreasing
    assert list(cite.adata.obs.columns) == before  # no temporary column left behind


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"groupby": "celltype"}, "groupby 'celltype' is not a column"),
        ({"groupby": "cell_type", "group1": "Alien"}, "group1 \\['Alien'\\] not in"),
        ({"groupby": "cell_type", "group1": MONO, "group2": "Alien"}, "group2 'Alien' is not in"),
        ({"groupby": "cell_type", "group1": [MONO], "group2": MONO}, "also in group1"),
        ({"groupby": "batch", "group1": "s1d1", "mode": "bayes"}, "mode must be"),
        ({"groupby": "batch", "group1": "s1d1", "delta": -1}, "delta must be"),
        ({"groupby": "batch", "group1": "s1d1", "fdr_target": 1.5}, "fdr_target"),
        ({"groupby": "batch", "group1": "s1d1", "batchid1": ["s1d1"]}, "batch_correction=True"),
        ({"groupby": "batch", "batch_correction": True, "batchid2": ["site9"]}, "batches the model does not know"),
        ({}, "Give groupby"),
        ({"idx2": [0, 1]}, "idx2 needs idx1"),
        ({"idx1": [True, False]}, "boolean mask of length 2"),
        ({"idx1": np.zeros(600, bool)}, "selects no cells"),
        ({"idx1": [0, 600]}, "integer positions"),
    ],
)
def test_differential_expression_rejects_bad_input(cite, no_work, kwargs, message):
    before = list(cite.adata.obs.columns)
    with pytest.raises(ValueError, match=message):
        cite.differential_expression(**kwargs)
    assert list(cite.adata.obs.columns) == before


def test_differential_expression_needs_rna(protein_only, no_work):
    with pytest.raises(ValueError, match="no 'rna' modality"):
        protein_only.differential_expression(groupby="cell_type", group1=MONO)


# ---- differential accessibility ------------------------------------------------------------------------------------
DA_COLUMNS = ["prob_da", "is_da_fdr", "bayes_factor", "effect_size", "emp_effect"]
DA_COLUMNS += ["est_prob1", "est_prob2", "emp_prob1", "emp_prob2"]


def test_differential_accessibility_between_cell_types(multiome):
    da = multiome.differential_accessibility(
        groupby="cell_type", group1=MONO, group2=TNAIVE, n_samples_overall=N_SAMPLES, silent=True
    )
    assert list(da.columns) == DA_COLUMNS + ["comparison", "group1", "group2"]
    regions = multiome.adata["atac"].var_names
    assert da.index.is_unique and set(da.index) == set(regions)
    numeric = da[DA_COLUMNS].drop(columns="is_da_fdr").to_numpy(dtype=float)
    assert np.isfinite(numeric).all() and da["is_da_fdr"].dtype == bool
    for column in ("prob_da", "est_prob1", "est_prob2", "emp_prob1", "emp_prob2"):
        assert da[column].between(0, 1).all(), column
    assert da["prob_da"].is_monotonic_decreasing
    np.testing.assert_allclose(da["effect_size"], da["est_prob1"] - da["est_prob2"])
    np.testing.assert_allclose(da["emp_effect"], da["emp_prob1"] - da["emp_prob2"])
    x, types = counts(multiome, "atac"), cell_types(multiome)
    detected = pd.DataFrame(
        {"emp_prob1": (x[types == MONO] > 0).mean(0), "emp_prob2": (x[types == TNAIVE] > 0).mean(0)}
    )
    np.testing.assert_allclose(da[["emp_prob1", "emp_prob2"]], detected.set_index(regions).loc[da.index], rtol=1e-6)


def test_differential_accessibility_is_two_sided(multiome):
    """prob_da is P(|a - b| >= delta) over the same posterior samples: 1 as delta -> 0, decreasing in delta."""

    def prob_da(delta):
        scvi.settings.seed = 0
        da = multiome.differential_accessibility(
            groupby="cell_type", group1=MONO, group2=TNAIVE, delta=delta, n_samples_overall=50, silent=True
        )
        return da["prob_da"].sort_index()

    tiny, small, large = prob_da(1e-9), prob_da(0.02), prob_da(0.2)
    # A one-sided test would give about one half here; equal float32 estimates (saturated probabilities) may tie.
    assert (tiny > 0.9).all() and tiny.mean() > 0.99
    assert (large <= small).all() and (small <= tiny).all() and (large < small).any()


def test_differential_accessibility_vanilla_without_stats(multiome):
    types = cell_types(multiome)
    da = multiome.differential_accessibility(
        idx1=types == MONO, idx2=types == TNAIVE, mode="vanilla", all_stats=False, n_samples_overall=50, silent=True
    )
    assert list(da.columns) == DA_COLUMNS
    assert da["is_da_fdr"].isna().all() and da["emp_prob1"].isna().all()
    assert da["prob_da"].between(0, 1).all() and np.isfinite(da["bayes_factor"]).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"groupby": "cell_type", "group1": "Alien"}, "not in 'cell_type'"),
        ({"groupby": "atac:nothing"}, "is not a column"),
        ({"groupby": "cell_type", "group1": MONO, "delta": 0}, "delta must be"),
    ],
)
def test_differential_accessibility_rejects_bad_input(multiome, no_work, kwargs, message):
    with pytest.raises(ValueError, match=message):
        multiome.differential_accessibility(**kwargs)


def test_differential_accessibility_needs_atac(cite, no_work):
    with pytest.raises(ValueError, match="no 'atac' modality"):
        cite.differential_accessibility(groupby="cell_type", group1=MONO, group2=TNAIVE)
