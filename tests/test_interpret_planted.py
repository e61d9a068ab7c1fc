"""Importances mean something: a signal planted into real counts is found in the planted GO terms, and only there.

Real CITE-seq counts (``tests/data/bmmc_cite.h5mu``: 600 cells, 1000 genes), the full human annotations (registry
``org.Hs.eg.db``, Bioconductor 3.16, GO 2022-07-01, read by ENSEMBL id) on GO release 2025-03-16 (registry
``go-basic``): 125 GO terms above the 1000 genes at depth <= 2. Cells are split at random
into ``planted`` (35 %), ``decoy`` (35 %) and ``other``; in the planted cells the counts of every gene annotated to two
GO terms are multiplied by 6. The terms are well-expressed depth-2 terms of 20-25 genes (no single gene dominating
their counts): a planted signal in genes that are barely expressed is not one the likelihood can see. After training,
each planted term must rank in the top 10 % of GO terms by held-out AUROC for ``planted`` vs ``other`` (significant),
the terms called significant must be terms that hold planted genes, and nothing may be significant for ``decoy`` vs
``other`` (cells that differ from ``other`` only by chance), where the planted terms must separate the cells clearly
less well than for ``planted``.

Calibration on this subset (seed 0; it replaced a 600-cell starter file from outside the repository, on which the
terms were immune effector process and organismal-level homeostasis, x4, q < 1e-4): the better-expressed immune
terms of 20-25 genes (cell recognition, cell killing, antigen processing) vary strongly between cell types and gave
q 0.006-0.48 even at x6; cell division (24 genes) and actin filament-based process (23) at x4 ranked 2 and 9 with q
0.0015 and 0.055, at x6 rank 1 and 4, q 2e-16 and 9e-4, AUROC lower bounds 0.75 and 0.60, 15 significant terms, all
holding planted genes, decoy q > 0.9. Why 10 % and not 5 %: the planted genes are shared with many other terms.
``benchmarks/interpretability.py --parts planted`` measures the recovery rate over seeds and term pairs.
"""

from __future__ import annotations

import math
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi

import scvi_networkvi as nvi
from scvi_networkvi.wiring import compile_wirings

CITE = Path(__file__).parent / "data" / "bmmc_cite.h5mu"  # scripts/make_test_data.py
PLANTED = ("GO:0051301", "GO:0030029")  # cell division (24 genes), actin filament-based process (23)
FACTOR = 6

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path_factory.getbasetemp() / "nvi-cache"))


@pytest.fixture(scope="module")
def planted_table(registry_file):
    go, annotations = registry_file("go-basic"), registry_file("org.Hs.eg.db")
    mdata = md.read_h5mu(CITE)
    rng = np.random.default_rng(0)
    mdata.obs["group"] = pd.Categorical(
        rng.choice(["planted", "decoy", "other"], size=mdata.n_obs, p=[0.35, 0.35, 0.3])
    )
    wiring = compile_wirings(
        {"rna": mdata["rna"].var["gene_stable_id"].tolist()}, go=go, annotations=annotations, gene_size=5, term_size=2
    )["rna"]
    terms = [list(wiring.term_ids).index(t) for t in PLANTED]
    genes = np.unique(wiring.gene_term[0][np.isin(wiring.gene_term[1], terms)])
    counts = mdata["rna"].X.toarray() if sp.issparse(mdata["rna"].X) else np.array(mdata["rna"].X)
    counts[np.ix_((mdata.obs["group"] == "planted").to_numpy(), genes)] *= FACTOR
    mdata["rna"].X = sp.csr_matrix(counts)
    scvi.settings.seed = 0
    nvi.NETWORKVI.setup_mudata(
        mdata, batch_key="batch", modalities={"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
    )
    # Uncentred protein input, the model this test was calibrated on. With the batch-centred protein input of the
    # 2026-12 defaults (measured on this subset, 2026-12-04) both planted terms still rank in the top 10 % with
    # q < 0.01, but 9 terms are significant instead of the >= 10 asserted below (on the
    # earlier starter data the second planted term ranked 16th of 126, outside the top 13): reported on the results
    # page as an open difference.
    model = nvi.NETWORKVI(
        mdata, go=go, annotations=annotations, gene_size=5, go_size=2, gene_layer="standard", batch_centered_input=()
    )
    model.train(max_epochs=40, accelerator="cpu", enable_progress_bar=False)
    table = model.get_importances(groupby="group", reference="other", modalities="rna", key_added=None)
    trained = model.wirings_["rna"]
    term_index = {term: i for i, term in enumerate(trained.term_ids)}
    planted_ids = set(np.asarray(wiring.gene_ids)[genes])
    holders = {
        term
        for term, i in term_index.items()
        if planted_ids & set(np.asarray(trained.gene_ids)[trained.gene_term[0][trained.gene_term[1] == i]])
    }
    return table[table["kind"] == "go"], holders


def test_planted_terms_rank_at_the_top_for_the_planted_cells(planted_table):
    table, holders = planted_table
    planted = table[table["phenotype"] == "planted"].set_index("node_id")
    top = math.ceil(0.1 * len(planted))
    assert len(planted) > 100
    for term in PLANTED:
        assert planted.loc[term, "rank"] <= top, planted.sort_values("rank").head(top + 3)
        assert planted.loc[term, "qval"] < 0.01 and planted.loc[term, "auroc_low"] > 0.55
    significant = planted.index[planted["qval"] < 0.05]
    assert len(significant) >= 10
    assert np.mean([term in holders for term in significant]) > 0.9  # what is found is where the signal was put


def test_planted_terms_are_unremarkable_for_decoy_cells(planted_table):
    """Decoy cells differ from the others by chance only: the planted terms are not significant for them and separate
    them less well than the planted cells. Their rank among the decoy's terms is not tested: all terms are
    unremarkable there, so the rank is noise (on the earlier starter data a planted term ranked 1-2 of 126 for the
    decoy in 3 of 6 training runs, 11-86 in the others, q >= 0.30 in all)."""
    table, _ = planted_table
    decoy = table[table["phenotype"] == "decoy"].set_index("node_id")
    planted = table[table["phenotype"] == "planted"].set_index("node_id")
    for term in PLANTED:
        assert decoy.loc[term, "qval"] > 0.05
        assert decoy.loc[term, "auroc"] < planted.loc[term, "auroc"] - 0.1
    assert (decoy["qval"] > 0.05).mean() > 0.95  # chance differences are not called significant
