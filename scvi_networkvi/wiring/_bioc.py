"""Bioconductor AnnotationDbi SQLite files: gene -> GO annotations (``org.*.eg.db``) and the GO DAG (``GO.db``).

No Python library reads these files (they are R packages' data), so the few tables used are read here with sqlite3.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing

import numpy as np
import pandas as pd

_SQLITE_MAGIC = b"SQLite format 3\x00"
_ASPECTS = {"BP": "biological_process", "MF": "molecular_function", "CC": "cellular_component"}
# GO.db names its relations in words; the OBO names (and goatools') use underscores.
_RELATIONS = {
    "isa": "is_a",
    "part of": "part_of",
    "regulates": "regulates",
    "negatively regulates": "negatively_regulates",
    "positively regulates": "positively_regulates",
}


def is_sqlite(path: str | os.PathLike) -> bool:
    """Whether a file is an SQLite database (by its header)."""
    with open(path, "rb") as fh:
        return fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC


def _connect(path: str | os.PathLike) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{os.fspath(path)}?mode=ro&immutable=1", uri=True)


def bioc_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata`` table of an AnnotationDbi SQLite file (``GOSOURCEDATE``, ``ORGANISM``, ``DBSCHEMA``, ...)."""
    try:
        with closing(_connect(path)) as db:
            return {str(k): str(v) for k, v in db.execute("SELECT name, value FROM metadata")}
    except sqlite3.DatabaseError as err:
        raise ValueError(f"{path} is not a Bioconductor annotation SQLite file (no metadata table): {err}") from err


def _require(db: sqlite3.Connection, path: str | os.PathLike, tables: Sequence[str], what: str) -> None:
    present = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    missing = [t for t in tables if t not in present]
    if missing:
        raise ValueError(f"{path} is not {what}: it has no table(s) {missing}.")


def read_orgdb(path: str | os.PathLike, *, evidence_exclude: Sequence[str] = ("ND",)) -> pd.DataFrame:
    """Gene -> GO annotations of an ``org.*.eg.db`` SQLite file, keyed by every gene id it knows.

    Each annotation appears once per key of its gene: the Entrez id, the ENSEMBL ids, the official symbol and the
    alias (previous) symbols. An alias is kept only when it names one gene and is nobody's official symbol, so that
    a symbol always means the gene it officially names.

    Parameters
    ----------
    path
        The SQLite file (e.g. ``org.Hs.eg.sqlite``).
    evidence_exclude
        Evidence codes to drop (``ND``, "no biological data", by default, as for GAF files).

    Returns
    -------
    Distinct rows ``(gene, go_id, namespace)``; ``namespace`` is ``biological_process`` etc. The table is read
    once per version of the file (its size and modification time) and copied for each caller.
    """
    stat = os.stat(path)
    return _read_orgdb(os.fspath(path), stat.st_mtime_ns, stat.st_size, tuple(evidence_exclude)).copy()


@functools.lru_cache(maxsize=2)
def _read_orgdb(path: str, mtime_ns: int, size: int, evidence_exclude: tuple[str, ...]) -> pd.DataFrame:
    del mtime_ns, size  # part of the cache key only: a changed file is read again
    try:
        with closing(_connect(path)) as db:
            _require(db, path, ("genes", "gene_info", "alias", "ensembl", "go"), "an org.*.eg.db annotation file")
            genes = pd.read_sql_query("SELECT _id, gene_id FROM genes", db)
            symbols = pd.read_sql_query("SELECT _id, symbol FROM gene_info", db)
            aliases = pd.read_sql_query("SELECT _id, alias_symbol FROM alias", db)
            ensembl = pd.read_sql_query("SELECT _id, ensembl_id FROM ensembl", db)
            go = pd.read_sql_query("SELECT _id, go_id, evidence, ontology FROM go", db)
    except sqlite3.DatabaseError as err:
        raise ValueError(f"{path} is not a readable org.*.eg.db SQLite file: {err}") from err
    go = go.loc[~go["evidence"].isin(list(evidence_exclude)) & go["ontology"].isin(list(_ASPECTS))]
    official = set(symbols["symbol"])
    aliases = aliases.loc[~aliases["alias_symbol"].isin(official)].drop_duplicates()
    aliases = aliases.loc[~aliases["alias_symbol"].duplicated(keep=False)]
    keys = pd.concat(
        [
            genes.rename(columns={"gene_id": "gene"}),
            ensembl.rename(columns={"ensembl_id": "gene"}),
            symbols.rename(columns={"symbol": "gene"}),
            aliases.rename(columns={"alias_symbol": "gene"}),
        ],
        ignore_index=True,
    ).dropna()
    keys["gene"] = keys["gene"].astype(str).str.strip()
    keys = keys.drop_duplicates()
    go = go.drop_duplicates(["_id", "go_id"])  # one row per annotation, whatever its evidence codes
    table = keys.merge(go[["_id", "go_id", "ontology"]], on="_id")
    table = pd.DataFrame(
        {
            "gene": table["gene"].to_numpy(),
            "go_id": table["go_id"].astype(str).to_numpy(),
            "namespace": table["ontology"].map(_ASPECTS).to_numpy(),
        }
    )
    # Rows are distinct already, except for keys of several genes (an ENSEMBL id of two Entrez genes): only those.
    shared = table["gene"].isin(keys.loc[keys["gene"].duplicated(), "gene"])
    if shared.any():
        table = pd.concat([table.loc[~shared], table.loc[shared].drop_duplicates()], ignore_index=True)
    return table


def read_godb(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], str]:
    """The live GO terms and edges of a ``GO.db`` SQLite file, as the arrays an OBO file gives.

    Returns the arrays (``ids``, ``names``, ``namespaces``, ``alt_ids``, ``alt_targets``, ``edges:<relation>``
    with (child, parent) index pairs) and the release (``releases/<GOSOURCEDATE>``, like go-basic's data-version).
    """
    try:
        with closing(_connect(path)) as db:
            _require(db, path, ("go_term", "go_synonym", "go_bp_parents"), "a GO.db file")
            terms = pd.read_sql_query(
                "SELECT _id, go_id, term, ontology FROM go_term WHERE ontology IN ('BP', 'MF', 'CC')", db
            )
            alt = pd.read_sql_query("SELECT _id, secondary FROM go_synonym WHERE like_go_id = 1", db)
            parents = pd.concat(
                [
                    pd.read_sql_query(f"SELECT _id, _parent_id, relationship_type FROM go_{ns}_parents", db)
                    for ns in ("bp", "mf", "cc")
                ],
                ignore_index=True,
            )
            release = dict(db.execute("SELECT name, value FROM metadata")).get("GOSOURCEDATE", "")
    except sqlite3.DatabaseError as err:
        raise ValueError(f"{path} is not a readable GO.db SQLite file: {err}") from err
    if terms.empty:
        raise ValueError(f"{path} holds no GO terms.")
    terms = terms.sort_values("go_id", ignore_index=True)
    position = pd.Series(np.arange(len(terms)), index=terms["_id"].to_numpy())
    data: dict[str, np.ndarray] = {
        "ids": terms["go_id"].to_numpy(dtype=str),
        "names": terms["term"].to_numpy(dtype=str),
        "namespaces": terms["ontology"].map(_ASPECTS).to_numpy(dtype=str),
    }
    alt = alt.loc[alt["_id"].isin(position.index)].sort_values(["_id", "secondary"])
    data["alt_ids"] = alt["secondary"].to_numpy(dtype=str)
    data["alt_targets"] = terms["go_id"].to_numpy(dtype=str)[position.loc[alt["_id"]].to_numpy()]
    parents = parents.loc[parents["_id"].isin(position.index) & parents["_parent_id"].isin(position.index)]
    unknown = sorted(set(parents["relationship_type"]) - set(_RELATIONS))
    if unknown:
        raise ValueError(f"{path} has GO relations this reader does not know: {unknown}.")
    for kind, relation in _RELATIONS.items():
        rows = parents.loc[parents["relationship_type"] == kind]
        pairs = np.stack([position.loc[rows["_id"]].to_numpy(), position.loc[rows["_parent_id"]].to_numpy()])
        order = np.lexsort((pairs[1], pairs[0]))
        if relation == "is_a" or pairs.shape[1]:
            data[f"edges:{relation}"] = pairs[:, order].astype(np.int64)
    return data, f"releases/{release}" if release else ""
