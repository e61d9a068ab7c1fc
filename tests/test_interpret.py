"""Interpretability engine on a model trained on the embedded real CITE-seq example: activations and importances.

Activation capture (no side effects), probe importances (held-out AUROC, intervals, BH, determinism, agreement with
scikit-learn), the size-matched reference and the rank, gene and gene-group nodes. The requests refused before any
work: ``test_interpret_requests.py``; perturbation and covariate-attention statistics:
``test_interpret_perturbation.py`` and ``test_interpret_attention.py``. The trained model and its table are the
session's (``conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import scvi
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import scvi_networkvi as nvi
from scvi_networkvi.interpret import ImportanceSettings, importance_matrix
from scvi_networkvi.interpret._nodes import node_table, read_gene_groups
from scvi_networkvi.interpret._phenotypes import categorical_labels, define_phenotypes, stratified_split

MODS = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}


pytestmark = pytest.mark.usefixtures("offline_session_cache")


@pytest.fixture(scope="module")
def model(example_probe_model):
    return example_probe_model


@pytest.fixture(scope="module")
def importances(example_importances):
    return example_importances


# ---- activations ---------------------------------------------------------------------------------------------------
def test_capture_leaves_the_model_as_it_was(model):
    latent = model.get_latent_representation()
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    model.module.train()  # the flag must come back as it was, whatever it was
    rng = torch.get_rng_state()
    for _ in range(2):
        acts = model.get_activations(genes=True)
    assert model.module.training
    model.module.eval()
    assert torch.equal(torch.get_rng_state(), rng)  # analysis shifts no later random draw
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.module.modules())
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, state[key])
    np.testing.assert_array_equal(model.get_latent_representation(), latent)
    assert acts.modalities["rna"].genes.shape == (model.adata.n_obs, 1000 * 5)


def test_captured_terms_are_the_go_network_of_the_captured_genes(model):
    acts = model.get_activations(indices=np.arange(300), genes=True)
    for role, mod in acts.modalities.items():
        wiring = mod.wiring
        assert mod.terms.shape == (300, int(wiring.term_size.sum())) and np.isfinite(mod.terms).all()
        encoder = model.module.encoders[role]
        with torch.inference_mode():
            root = encoder.go_network.forward_t(torch.as_tensor(mod.genes).t().contiguous()).t().numpy()
        np.testing.assert_allclose(mod.terms[:, mod.term_offsets[-2] :], root, rtol=1e-5, atol=1e-5)


def test_dense_model_has_no_nodes():
    mdata = nvi.datasets.example()
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MODS)
    dense = nvi.NETWORKVI(mdata, encoder="dense")
    with pytest.raises(ValueError, match="encoder='dense'"):
        dense.get_importances(groupby="rna:cell_type")


# ---- importances ---------------------------------------------------------------------------------------------------
def test_importance_table(model, importances):
    table = importances
    n_terms = sum(w.n_terms for w in model.wirings_.values())
    n_types = model.adata.obs["cell_type"].nunique()
    assert len(table) == n_terms * n_types
    assert list(table.columns[:3]) == ["modality", "node_id", "node_type"]
    assert table["auroc"].between(0, 1).all() and table["auroc_fit"].between(0, 1).all()
    assert (table["auroc_low"] <= table["auroc"] + 1e-12).all() and (
        table["auroc"] <= table["auroc_high"] + 1e-12
    ).all()
    assert (table["qval"] >= table["pval"] - 1e-12).all()
    assert table.loc[table["kind"] != "go", "rank"].isna().all()
    go = table[table["kind"] == "go"]
    assert go.groupby(["modality", "phenotype"], observed=True)["rank"].min().eq(1).all()
    # a trained model separates cell types: the best GO term of each type is far above chance on held-out cells
    best = go.groupby("phenotype", observed=True)["auroc"].max()
    assert (best > 0.8).mean() > 0.8
    # in-sample is optimistic on average: that is why it is not the headline
    assert table["auroc_fit"].mean() >= table["auroc"].mean() - 0.01
    assert (table["n_cells_fit"] > table["n_cells_heldout"]).all()


def test_same_seed_same_table_other_seed_other_split(model, importances):
    again = model.get_importances(groupby="cell_type", key_added=None, seed=0)
    pd.testing.assert_frame_equal(importances, again)
    other = model.get_importances(groupby="cell_type", key_added=None, seed=1)
    assert not np.allclose(other["auroc"], importances["auroc"])


def test_default_seed_does_not_follow_the_training_seed(model, importances, monkeypatch):
    monkeypatch.setattr(scvi.settings, "seed", 5)  # e.g. a model trained with seed 5: the split stays seed 0's
    default = model.get_importances(groupby="cell_type", key_added=None)
    pd.testing.assert_frame_equal(importances, default, check_like=False)
    assert default.attrs["networkvi"]["seed"] == 0


def test_probes_agree_with_scikit_learn(model, importances):
    acts = model.get_activations()
    labels = categorical_labels(model.adata, "cell_type").reindex(acts.obs_names)
    heldout = stratified_split(labels, 0.3, seed=0)
    mod = acts.modalities["rna"]
    offsets = mod.term_offsets
    table = importances[importances["modality"] == "rna"].set_index(["node_id", "phenotype"])
    for phenotype in list(labels.cat.categories)[:4]:
        y = (labels == phenotype).to_numpy()
        for t, term in enumerate(mod.wiring.term_ids):
            x = mod.terms[:, offsets[t] : offsets[t + 1]].astype(np.float64)
            mean, std = x[~heldout].mean(0), x[~heldout].std(0)
            x = np.where(std > 1e-12, (x - mean) / np.where(std > 1e-12, std, 1), 0.0)
            clf = LogisticRegression(C=1.0, class_weight="balanced", tol=1e-10, max_iter=10_000)
            clf.fit(x[~heldout], y[~heldout])
            # rounded as the engine does: equal activations must tie whatever the BLAS rounding of each row
            expected = roc_auc_score(y[heldout], np.round(clf.decision_function(x[heldout]), 9))
            assert abs(table.loc[(term, phenotype), "auroc"] - expected) < 0.005


def test_phenotype_choices(model):
    types = list(model.adata.obs["cell_type"].cat.categories)
    vs = model.get_importances(groupby="cell_type", reference=types[0], targets=types[1:3], key_added=None)
    assert set(vs["phenotype"]) == set(types[1:3]) and set(vs["reference"]) == {types[0]}
    groups = {"first_two": types[:2]}
    grouped = model.get_importances(groupby="cell_type", groups=groups, key_added=None, modalities="prot")
    assert set(grouped["phenotype"]) == {"first_two"} and set(grouped["modality"]) == {"prot"}
    site = model.get_importances(groupby="cell_type", restrict={"Site": "site2"}, targets=types[:1], key_added=None)
    assert site["n_cells_fit"].iloc[0] + site["n_cells_heldout"].iloc[0] == (model.adata.obs["Site"] == "site2").sum()


def test_define_phenotypes_masks():
    labels = pd.Series(["a", "b", "c", "a", None], dtype="category")
    rest = define_phenotypes(labels)
    assert [p.name for p in rest] == ["a", "b", "c"]
    np.testing.assert_array_equal(rest[0].case, [True, False, False, True, False])
    np.testing.assert_array_equal(rest[0].control, [False, True, True, False, False])
    vs_b = define_phenotypes(labels, reference="b")
    assert [p.name for p in vs_b] == ["a", "c"]
    np.testing.assert_array_equal(vs_b[0].control, [False, True, False, False, False])
    with pytest.raises(ValueError, match="shares labels"):
        define_phenotypes(labels, groups={"ab": ["a", "b"]}, reference="b")


def test_settings_object_gives_the_keyword_table(model, importances):
    table = model.get_importances(groupby="cell_type", settings=ImportanceSettings(seed=0), key_added=None)
    pd.testing.assert_frame_equal(table, importances)


def test_probe_importances_works_from_activations_alone(model, importances):
    without_genes = model.get_activations(model.adata)
    labels = categorical_labels(model.adata, "cell_type")
    names = {role: np.asarray(model.adata[acts.modality].var_names) for role, acts in without_genes.modalities.items()}
    with pytest.raises(ValueError, match=r"genes=True\), or pass null_sets=0"):  # the default random gene sets
        nvi.interpret.probe_importances(without_genes, labels, ImportanceSettings(seed=0), feature_names=names)
    activations = model.get_activations(model.adata, genes=True)
    table = nvi.interpret.probe_importances(activations, labels, ImportanceSettings(seed=0), feature_names=names)
    pd.testing.assert_frame_equal(table, importances)  # the model-free half gives the method's table
    with pytest.raises(ValueError, match="No cell is left"):
        nvi.interpret.probe_importances(
            activations, labels, feature_names=names, selected=np.zeros(len(activations.obs_names), dtype=bool)
        )


def test_keyword_overrides_a_field_of_settings(model):
    types = list(model.adata.obs["cell_type"].cat.categories)
    settings = ImportanceSettings(targets=types[:1], seed=0, C=0.5)
    kwargs = {"groupby": "cell_type", "modalities": "prot", "key_added": None}
    table = model.get_importances(settings=settings, targets=types[1:3], **kwargs)
    assert set(table["phenotype"]) == set(types[1:3])  # the keyword replaced the field
    assert table.attrs["networkvi"]["C"] == 0.5 and settings.targets == types[:1]  # others kept, object unchanged
    same = model.get_importances(targets=types[1:3], seed=0, C=0.5, **kwargs)
    pd.testing.assert_frame_equal(table, same)


def test_size_matched_reference_of_go_terms(model, importances):
    """``null_sets`` adds a reference per GO term and changes nothing else; ``null_sets=0`` leaves it empty.

    (Seeding and what the reference detects: ``test_interpret_null.py``; the rank it gives: below.)
    """
    reference = ["auroc_null", "pval_null", "auroc_set", "pval_set", "auroc_null_sd", "specificity", "qval_set"]
    go = importances["kind"] == "go"
    assert importances.loc[go, reference].notna().all().all()  # the default draws 100 random sets per size
    assert importances.attrs["networkvi"]["null_sets"] == 100
    cell_types = list(model.adata.obs["cell_type"].cat.categories)[:2]
    kwargs = {"groupby": "cell_type", "targets": cell_types, "modalities": "rna", "key_added": None, "seed": 0}
    without = model.get_importances(null_sets=0, **kwargs)
    assert without[reference].isna().all().all() and without.attrs["networkvi"]["null_sets"] == 0
    table = model.get_importances(null_sets=9, **kwargs)
    rna = importances["modality"] == "rna"
    same = importances[rna & importances["phenotype"].isin(cell_types)].reset_index(drop=True)
    np.testing.assert_array_equal(table["auroc"], same["auroc"])  # the reference does not touch the term probes
    np.testing.assert_array_equal(without["auroc"], same["auroc"])
    go = table["kind"] == "go"
    assert table.loc[~go, reference].isna().all().all()  # root, UNKNOWN: structural, no reference
    assert table.loc[go, ["auroc_null", "auroc_set"]].stack().between(0, 1).all()
    assert (table.loc[go, "auroc_null_sd"] > 0).all()
    np.testing.assert_allclose(table["specificity"], table["auroc_set"] - table["auroc_null"])
    # qval_set: BH over each phenotype's GO terms of the normal-approximation p-value of the gene-set test
    for _, sub in table[go].groupby("phenotype", observed=True):
        p_norm = scipy.stats.norm.sf(sub["specificity"] / sub["auroc_null_sd"])
        np.testing.assert_allclose(sub["qval_set"], scipy.stats.false_discovery_control(p_norm))
    for column in ("pval_null", "pval_set"):
        counts = table.loc[go, column].to_numpy() * 10 - 1  # (1 + random sets at least as good) / (1 + 9)
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
        assert ((counts >= 0) & (counts <= 9)).all()
    # the own gene set is summarised like the random sets, not by the term's trained neurons
    assert not np.allclose(table.loc[go, "auroc_set"], table.loc[go, "auroc"])
    assert table.attrs["networkvi"]["null_sets"] == 9


def test_rank_follows_specificity_by_default_and_auroc_on_request(model, importances):
    """The default rank orders each phenotype's GO terms by specificity, terms under ``rank_min_genes`` genes last;
    ``rank_by="auroc"`` (or ``null_sets=0``) orders them by held-out AUROC; structural nodes stay unranked."""
    assert importances.attrs["networkvi"]["rank_by"] == "specificity"
    assert importances.attrs["networkvi"]["rank_min_genes"] == 5
    go = importances[importances["kind"] == "go"]
    assert importances.loc[importances["kind"] != "go", "rank"].isna().all()
    for (_, _), sub in go.groupby(["modality", "phenotype"], observed=True):
        order = sub.sort_values("rank", kind="stable")
        large = (order["n_genes"] >= 5).to_numpy()
        assert not np.any(np.diff(large.astype(int)) > 0)  # every term of >= 5 genes before the smaller ones
        for part in (order[large], order[~large]):
            assert (np.diff(part["specificity"].to_numpy()) <= 1e-12).all()
    assert (go["rank"] >= 1).all() and go.groupby(["modality", "phenotype"], observed=True)["rank"].min().eq(1).all()
    cell_types = list(model.adata.obs["cell_type"].cat.categories)[:2]
    kwargs = {"groupby": "cell_type", "targets": cell_types, "key_added": None, "seed": 0}
    by_auroc = model.get_importances(rank_by="auroc", null_sets=3, **kwargs)
    assert by_auroc.attrs["networkvi"]["rank_by"] == "auroc"
    for (_, _), sub in by_auroc[by_auroc["kind"] == "go"].groupby(["modality", "phenotype"], observed=True):
        expected = sub["auroc"].rank(ascending=False, method="min").astype("Int64")
        pd.testing.assert_series_equal(sub["rank"], expected, check_names=False)
    small_first = model.get_importances(rank_min_genes=1, null_sets=3, **kwargs)
    for (_, _), sub in small_first[small_first["kind"] == "go"].groupby(["modality", "phenotype"], observed=True):
        expected = sub["specificity"].rank(ascending=False, method="min").astype("Int64")
        pd.testing.assert_series_equal(sub["rank"], expected, check_names=False)


def test_too_few_cells_skips_a_phenotype_with_a_warning(model, caplog):
    types = model.adata.obs["cell_type"].value_counts()
    rare = types.index[-1]
    with caplog.at_level("WARNING"):
        table = model.get_importances(groupby="cell_type", min_cells=int(types.iloc[-1]), key_added=None)
    assert rare not in set(table["phenotype"]) and "skipped" in caplog.text


def test_result_stored_and_written(model, tmp_path):
    types = list(model.adata.obs["cell_type"].cat.categories)
    table = model.get_importances(groupby="cell_type", targets=types[:2], save_path=tmp_path / "imp.csv")
    assert model.adata.uns["networkvi_importances"] is table
    read = pd.read_csv(tmp_path / "imp.csv")
    np.testing.assert_allclose(read["auroc"], table["auroc"])
    matrix = importance_matrix(table, modality="rna")
    assert matrix.shape == ((table[(table["modality"] == "rna") & (table["kind"] == "go")]["node_id"].nunique()), 2)
    with pytest.raises(ValueError, match="several modalities"):
        importance_matrix(table)
    del model.adata.uns["networkvi_importances"]


# ---- gene nodes and gene groups ------------------------------------------------------------------------------------
def test_gene_nodes_and_groups(model, tmp_path):
    wiring = model.wirings_["rna"]
    genes = [str(g) for g in wiring.gene_ids[:6]]
    groups = {"pair": genes[:2], "triple": genes[2:5], "lonely": [genes[5], "ENSG_NOT_THERE"]}
    nodes = node_table(wiring, model.adata["rna"].var_names, go_terms=False, genes=True, gene_groups=groups)
    frame = nodes.frame.set_index("node_id")
    assert frame.loc["triple", "width"] == 15 and "lonely" not in frame.index  # < 2 genes in the modality
    position = frame.index.get_loc("triple")
    np.testing.assert_array_equal(
        nodes.columns[position], np.concatenate([np.arange(g * 5, g * 5 + 5) for g in (2, 3, 4)])
    )
    types = list(model.adata.obs["cell_type"].cat.categories)[:2]
    table = model.get_importances(
        groupby="cell_type",
        targets=types,
        modalities="rna",
        node_types=["gene", "gene_group"],
        gene_groups=groups,
        key_added=None,
    )
    assert set(table["node_type"]) == {"gene", "gene_group"}
    assert (table["node_type"] == "gene").sum() == wiring.n_genes * 2
    assert table["auroc"].notna().all()


def test_gene_groups_from_npy(tmp_path):
    groups = np.empty(2, dtype=object)
    groups[0], groups[1] = {"ENSG1", "ENSG2"}, {"ENSG3"}
    np.save(tmp_path / "groups.npy", groups, allow_pickle=True)
    assert read_gene_groups(tmp_path / "groups.npy") == {"group_0": ["ENSG1", "ENSG2"], "group_1": ["ENSG3"]}
    (tmp_path / "broken.npy").write_bytes((tmp_path / "groups.npy").read_bytes()[:60])
    with pytest.raises(ValueError, match="Cannot read gene groups"):
        read_gene_groups(tmp_path / "broken.npy")
    with pytest.raises(FileNotFoundError):
        read_gene_groups(tmp_path / "missing.npy")


TUTORIAL_GROUPS = Path(__file__).parent / "data" / "loops_gm12878_gene_groups.npy"  # 48 of the tutorial's 1478


def test_tutorial_loop_groups_are_read_and_become_nodes(model):
    groups = read_gene_groups(TUTORIAL_GROUPS)
    assert len(groups) == 48 and all(g.startswith("ENSG") for members in groups.values() for g in members)
    nodes = node_table(model.wirings_["rna"], model.adata["rna"].var_names, go_terms=False, gene_groups=groups)
    frame = nodes.frame
    assert len(frame) > 0 and (frame["n_genes"] >= 2).all()
    assert (frame["width"] == frame["n_genes"] * 5).all()
    assert all(len(np.unique(c)) == w for c, w in zip(nodes.columns, frame["width"], strict=True))
