"""Gene -> GO annotations from GAF files or Bioconductor org.*.eg.db SQLite files."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence

import pandas as pd

from scvi_networkvi.resources import ANNOTATION_KINDS, resolve, sha256_of

from ._bioc import is_sqlite, read_orgdb

_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*G\d+)\.\d+$")
_GAF_MIN_COLUMNS = 15
_ASPECTS = {"P": "biological_process", "F": "molecular_function", "C": "cellular_component"}
#: GAF columns that can key the annotations: column 2 (DB object id) or column 3 (DB object symbol).
ID_COLUMNS = {"db_object_id": 1, "db_object_symbol": 2}


def normalize_gene_id(gene_id: str) -> str:
    """Strip whitespace and an ENSEMBL version suffix (``ENSG00000141510.17`` -> ``ENSG00000141510``)."""
    gene_id = gene_id.strip()
    match = _ENSEMBL_VERSION.match(gene_id)
    return match.group(1) if match else gene_id


def _read_one_gaf(
    path: os.PathLike, evidence_exclude: Sequence[str], keep_not: bool, id_column: str = "db_object_id"
) -> pd.DataFrame:
    # goatools' GafReader needs ~13 s for the 390k-line human GAF; a columnar pandas read takes ~0.4 s and the
    # <= 3 s wiring budget needs it. Same filters as goatools' defaults (drop ND evidence, NOT qualifiers).
    try:
        table = pd.read_csv(path, sep="\t", comment="!", header=None, dtype=str, quoting=3, usecols=range(9))
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} holds no annotations: it is empty or has only '!' header lines.") from None
    except (pd.errors.ParserError, ValueError) as err:
        raise ValueError(
            f"{path} is not a GAF file (tab-separated, >= {_GAF_MIN_COLUMNS} columns, gene id in column 2, GO id in "
            f"column 5): {err}"
        ) from err
    key = ID_COLUMNS[id_column]
    table = table.dropna(subset=[key, 4])
    if len(table) and not table[4].str.startswith("GO:").any():
        raise ValueError(f"{path} is not a GAF file: column 5 holds no GO ids (e.g. {table[4].iloc[0]!r}).")
    keep = ~table[6].isin(list(evidence_exclude))
    if not keep_not:
        keep &= ~table[3].fillna("").str.contains("NOT", regex=False)
    table = table.loc[keep]
    return pd.DataFrame(
        {
            "gene": table[key].map(normalize_gene_id),
            "go_id": table[4].str.strip(),
            "namespace": table[8].map(_ASPECTS),
        }
    )


def read_gaf(
    annotations: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    evidence_exclude: Sequence[str] = ("ND",),
    keep_not: bool = False,
    id_column: str = "db_object_id",
) -> tuple[pd.DataFrame, list[str]]:
    """Read one or several annotation files into a table of distinct (gene, go_id, namespace) rows.

    Parameters
    ----------
    annotations
        Registry name(s) or path(s) of GAF files whose column 2 (or 3, see ``id_column``) holds the gene ids used by
        the features, or of Bioconductor ``org.*.eg.db`` SQLite files (e.g. the registered ``"org.Hs.eg.db"``),
        which key every annotation by ENSEMBL id, Entrez id, symbol and alias symbol. Several files are united.
    evidence_exclude
        Evidence codes to drop (``ND``, "no biological data", by default, like goatools).
    keep_not
        Keep ``NOT``-qualified annotations (dropped by default, like goatools).
    id_column
        Which GAF column holds the gene ids matched against the features: ``"db_object_id"`` (column 2; ENSEMBL
        ids in the registered ``ensembl2go-tutorial``, UniProtKB accessions in ``goa-human``) or
        ``"db_object_symbol"`` (column 3; gene symbols, e.g. to use ``goa-human`` with symbol-keyed features). Not
        used for ``org.*.eg.db`` files.

    Returns
    -------
    The table and the sha256 of each file (for cache keys).
    """
    if id_column not in ID_COLUMNS:
        raise ValueError(f"id_column must be one of {list(ID_COLUMNS)}, got {id_column!r}.")
    sources = [annotations] if isinstance(annotations, str | os.PathLike) else list(annotations)
    if not sources:
        raise ValueError("At least one GAF file is needed for the gene -> GO annotations.")
    paths = [resolve(source, kind=ANNOTATION_KINDS) for source in sources]
    orgdb = [is_sqlite(path) for path in paths]
    tables = [
        read_orgdb(path, evidence_exclude=evidence_exclude)
        if sqlite
        else _read_one_gaf(path, evidence_exclude, keep_not, id_column)
        for path, sqlite in zip(paths, orgdb, strict=True)
    ]
    if len(tables) == 1 and orgdb[0]:
        table = tables[0]  # already distinct rows; deduplicating 1.9M rows again costs ~2 s
    else:
        table = pd.concat(tables, ignore_index=True).drop_duplicates(ignore_index=True)
    return table, [sha256_of(path) for path in paths]


@functools.lru_cache(maxsize=8)
def _keys_of(path: str, mtime_ns: int, size: int, id_column: str) -> frozenset[str]:
    del mtime_ns, size  # part of the cache key only: a changed file is read again
    table, _ = read_gaf(path, id_column=id_column)
    return frozenset(table["gene"])


def annotation_keys(
    annotations: str | os.PathLike | Sequence[str | os.PathLike], *, id_column: str = "db_object_id"
) -> frozenset[str]:
    """The gene ids (``id_column``, version suffixes stripped) that GAF file(s) annotate; cached per file."""
    sources = [annotations] if isinstance(annotations, str | os.PathLike) else list(annotations)
    keys: set[str] = set()
    for source in sources:
        path = resolve(source, kind=ANNOTATION_KINDS)
        stat = os.stat(path)
        keys |= _keys_of(os.fspath(path), stat.st_mtime_ns, stat.st_size, id_column)
    return frozenset(keys)
