"""``benchmarks/importance_ranking.py``: the overlap and split-design scores of the results page's stability rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def ranking(load_script):
    load_script("benchmarks/_portable.py", "_portable")
    load_script("benchmarks/interpretability.py", "interpretability")  # the sibling it imports EXPECTED from
    return load_script("benchmarks/importance_ranking.py")


def order(scores: dict[str, float], phenotype: str = "NK", names: dict[str, str] | None = None) -> pd.DataFrame:
    """A ranked frame as ``ranked`` returns it: one (phenotype, modality), best score first."""
    frame = pd.DataFrame(
        {
            "phenotype": phenotype,
            "modality": "rna",
            "node_id": list(scores),
            "name": [(names or {}).get(n, f"process {n}") for n in scores],
            "score": list(scores.values()),
        }
    )
    return frame.sort_values(["score", "node_id"], ascending=[False, True]).reset_index(drop=True)


def test_tie_aware_top_counts_every_term_tied_with_the_last(ranking):
    scores = {f"t{i:02d}": 20.0 - i for i in range(9)} | {"t09": 1.0, "t10": 1.0, "t11": 0.5}
    plain = ranking.top_sets(order(scores))[("NK", "rna")]
    tied = ranking.top_sets(order(scores), ties=True)[("NK", "rna")]
    assert len(plain) == 10 and "t10" not in plain
    assert tied == plain | {"t10"}
    assert ranking.overlap(tied, tied, 10) == 1.0  # an extended list counts at most the top size


def test_averaged_orders_by_the_mean_score_over_splits(ranking):
    first = order({"a": 3.0, "b": 2.0, "c": 0.0})
    second = order({"a": 0.0, "b": 2.0, "c": 1.0})
    merged = ranking.averaged([first, second])
    assert merged["node_id"].tolist() == ["b", "a", "c"]  # means 2.0, 1.5, 0.5
    np.testing.assert_allclose(merged["score"], [2.0, 1.5, 0.5])


def test_split_designs_tell_the_split_from_the_model(ranking):
    # Two models that agree on each split, while the split moves 5 of the top 10: shared splits overlap fully,
    # different splits by half, and the split-noise row says so.
    terms = [f"t{i:02d}" for i in range(20)]

    def on_split(split: int) -> pd.DataFrame:
        top = terms[:5] + (terms[5:10] if split == 0 else terms[10:15])
        return order({t: (2.0 if t in top else 0.0) + 0.01 * (20 - i) for i, t in enumerate(terms)})

    orders = {(r, s): on_split(s) for r in range(2) for s in range(2)}
    rows = {row["design"]: row for row in ranking.split_designs(orders, 2, [0, 1], k=5)}
    assert rows["every model on split 0"]["overlap_rna"].startswith("1.00 ± 0.00")
    assert rows["model i on split i (different splits)"]["overlap_rna"].startswith("0.50 ± 0.00")
    assert rows["one model on two splits (split noise alone)"]["overlap_rna"].startswith("0.50")
    assert rows["every model on split 0"]["hits_rna"] == "0 / 0"  # no NK keyword among "process tNN"
    single = ranking.split_designs({(0, 0): on_split(0)}, 1, [0], k=5)  # one run: nothing to compare
    assert single[0]["overlap_rna"] == "-" and single[0]["hits_rna"] == "0"


def test_keyword_hits_count_a_keyword_term_in_the_top_k_only(ranking):
    scores = {f"t{i}": 10.0 - i for i in range(8)}
    names = {"t4": "cell killing"}  # rank 5
    assert ranking.keyword_hits(order(scores, names=names), 5)["hits_rna"] == 1
    assert ranking.keyword_hits(order(scores, names=names), 4)["hits_rna"] == 0


def test_supported_counts_keyword_terms_whose_genes_beat_random_sets_by_one_sd(ranking):
    frame = order({"a": 3.0, "b": 2.0, "c": 1.0}, names={"a": "cell killing", "b": "cytolysis"})
    frame["n_genes"] = [8, 3, 40]
    frame["auroc_null_sd"] = 0.1
    frame["specificity"] = [0.05, 0.3, 0.3]  # the keyword term of 8 genes: half an sd; "b" is too small to count
    assert ranking.supported(frame)["supported_rna"] == 0
    frame.loc[0, "specificity"] = 0.1
    assert ranking.supported(frame)["supported_rna"] == 1
