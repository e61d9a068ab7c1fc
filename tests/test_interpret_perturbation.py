"""In-silico perturbation on the session's model trained on the embedded example (``conftest.py``)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("offline_session_cache")


@pytest.fixture(scope="module")
def model(example_probe_model):
    return example_probe_model


def reached_terms(wiring, gene: int) -> np.ndarray:
    """Ids of the GO terms that gene ``gene`` (wiring position) reaches, directly or through interaction partners."""
    partners = set(wiring.gene_edges[1][wiring.gene_edges[0] == gene]) | set(
        wiring.gene_edges[0][wiring.gene_edges[1] == gene]
    )
    reached = set(wiring.gene_term[1][np.isin(wiring.gene_term[0], list(partners | {gene}))])
    frontier = set(reached)
    while frontier:
        frontier = set(wiring.term_term[1][np.isin(wiring.term_term[0], list(frontier))]) - reached
        reached |= frontier
    return wiring.term_ids[sorted(reached)]


def test_perturbation_changes_only_what_the_gene_reaches(model):
    wiring = model.wirings_["rna"]
    types = list(model.adata.obs["cell_type"].cat.categories)[:2]
    annotated = np.flatnonzero(wiring.gene_annotated)
    gene = int(annotated[0])
    symbol = str(model.adata["rna"].var_names[wiring.feature_gene[0][wiring.feature_gene[1] == gene][0]])
    kwargs = {"groupby": "cell_type", "targets": types, "modalities": "rna", "key_added": None}
    table = model.get_perturbation_importances(genes=[symbol], **kwargs)
    by_id = model.get_perturbation_importances(genes=[str(wiring.gene_ids[gene])], **kwargs)
    np.testing.assert_array_equal(table["delta"], by_id["delta"])  # symbol or gene id: the same features
    assert set(table["perturbed_modalities"]) == {"rna"}
    np.testing.assert_allclose(table["delta"], table["auroc_after"] - table["auroc_before"], atol=1e-12)
    # terms the gene (or its interaction partners) cannot reach keep their activations, hence their AUROC exactly
    untouched = ~np.isin(table["node_id"], reached_terms(wiring, gene))
    assert untouched.any() and (table.loc[untouched, "delta"] == 0).all()
    assert (table.loc[~untouched, "delta"] != 0).any()
    assert (table["delta_low"] <= table["delta"] + 1e-12).all() and (
        table["delta"] <= table["delta_high"] + 1e-12
    ).all()


def test_perturbations_do_not_accumulate(model):
    rna = model.adata["rna"]
    genes = [str(g) for g in rna.var_names[:2]]
    kwargs = {
        "groupby": "cell_type",
        "targets": list(model.adata.obs["cell_type"].cat.categories)[:1],
        "key_added": None,
    }
    both = model.get_perturbation_importances(genes=genes, modalities="rna", **kwargs)
    second = model.get_perturbation_importances(genes=genes[1:], modalities="rna", **kwargs)
    np.testing.assert_array_equal(
        both[both["perturbation"] == genes[1]]["delta"].to_numpy(), second["delta"].to_numpy()
    )
    reuse = model.get_perturbation_importances(genes=genes[1:], modalities="rna", refit=False, **kwargs)
    np.testing.assert_array_equal(reuse["auroc_before"].to_numpy(), second["auroc_before"].to_numpy())


def test_perturbation_reports_in_sample_aurocs(model):
    types = list(model.adata.obs["cell_type"].cat.categories)[:2]
    kwargs = {"groupby": "cell_type", "targets": types, "modalities": "rna", "key_added": None, "seed": 0}
    wiring = model.wirings_["rna"]
    gene = int(np.flatnonzero(wiring.gene_annotated)[0])
    gene_id = str(wiring.gene_ids[gene])
    refit = model.get_perturbation_importances(genes=[gene_id], **kwargs)
    reuse = model.get_perturbation_importances(genes=[gene_id], refit=False, **kwargs)
    base = model.get_importances(**kwargs)
    keys = ["node_id", "phenotype"]
    merged = refit.merge(base[[*keys, "auroc_fit", "auroc"]], on=keys, validate="one_to_one")
    assert len(merged) == len(refit)
    # before the perturbation: the importances' probes, in sample and held out
    np.testing.assert_allclose(merged["auroc_fit_before"], merged["auroc_fit"], atol=1e-9)
    np.testing.assert_allclose(merged["auroc_before"], merged["auroc"], atol=1e-9)
    np.testing.assert_array_equal(reuse["auroc_fit_before"], refit["auroc_fit_before"])
    for table in (refit, reuse):
        assert table[["auroc_fit_before", "auroc_fit_after"]].apply(lambda c: c.between(0, 1)).all().all()
        untouched = ~np.isin(table["node_id"], reached_terms(wiring, gene))
        assert untouched.any() and (~untouched).any()
        np.testing.assert_array_equal(  # a node the gene cannot reach keeps its in-sample AUROC as well
            table.loc[untouched, "auroc_fit_after"], table.loc[untouched, "auroc_fit_before"]
        )
    # the unperturbed probes scoring perturbed fitting cells, or probes refitted on them: different numbers
    assert not np.allclose(refit["auroc_fit_after"], reuse["auroc_fit_after"])


def test_perturbation_of_an_unknown_gene_fails_first(model):
    with pytest.raises(ValueError, match="match no feature"):
        model.get_perturbation_importances(genes=["NOT_A_GENE"], groupby="cell_type")
    with pytest.raises(ValueError, match="genes is empty"):
        model.get_perturbation_importances(genes=[], groupby="cell_type")
