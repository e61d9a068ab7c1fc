"""Gene–gene interaction tables (CSV ``gene1,gene2,combined_score``)."""

from __future__ import annotations

import os

import pandas as pd

from scvi_networkvi.resources import resolve

from ._annotations import normalize_gene_id

REQUIRED_COLUMNS = ("gene1", "gene2")


def read_interactions(interactions: str | os.PathLike, *, score_cutoff: float | None = None) -> pd.DataFrame:
    """Read a gene–gene interaction table.

    Parameters
    ----------
    interactions
        Registry name (e.g. ``"k562-contact-domains"``) or path of a comma-separated file with columns ``gene1``,
        ``gene2`` and optionally ``combined_score`` (missing scores count as 1). Other columns are ignored.
    score_cutoff
        Keep rows with ``combined_score >= score_cutoff``.

    Returns
    -------
    Directed edges ``gene1 -> gene2`` with their ``score``; duplicate pairs keep their highest score.
    """
    path = resolve(interactions, kind="interactions")
    try:
        table = pd.read_csv(path, dtype={"gene1": str, "gene2": str})
    except pd.errors.EmptyDataError:
        raise ValueError(f"Interaction table {path} is empty.") from None
    except pd.errors.ParserError as err:
        raise ValueError(f"Interaction table {path} is not a readable CSV file: {err}") from err
    missing = [col for col in REQUIRED_COLUMNS if col not in table.columns]
    if missing:
        raise ValueError(
            f"Interaction table {path} lacks column(s) {missing}; it needs a header with gene1,gene2 and optionally "
            f"combined_score (found {list(table.columns)[:6]})."
        )
    if "combined_score" in table.columns:
        score = pd.to_numeric(table["combined_score"], errors="coerce")
        if score.isna().any():
            bad = table.loc[score.isna(), "combined_score"].iloc[0]
            raise ValueError(f"Interaction table {path}: combined_score must be numeric, found {bad!r}.")
    else:
        score = pd.Series(1.0, index=table.index)
    edges = pd.DataFrame({"gene1": table["gene1"], "gene2": table["gene2"], "score": score.astype(float)})
    edges = edges.dropna(subset=["gene1", "gene2"])
    edges["gene1"] = edges["gene1"].map(normalize_gene_id)
    edges["gene2"] = edges["gene2"].map(normalize_gene_id)
    if score_cutoff is not None:
        edges = edges.loc[edges["score"] >= score_cutoff]
    return edges.groupby(["gene1", "gene2"], as_index=False, sort=False)["score"].max()
