"""The Gene Ontology as plain arrays, parsed once (OBO with goatools, GO.db SQLite directly), cached by content hash."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from scvi_networkvi.resources import ONTOLOGY_KINDS, cache_dir, resolve, sha256_of

from ._bioc import is_sqlite, read_godb

logger = logging.getLogger(__name__)

NAMESPACES = ("biological_process", "molecular_function", "cellular_component")
#: Relations goatools exposes besides is_a (``optional_attrs={"relationship"}``).
RELATIONS = ("is_a", "part_of", "regulates", "negatively_regulates", "positively_regulates")
_PARSE_FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class Ontology:
    """Live (non-obsolete) GO terms and their edges.

    Attributes
    ----------
    ids, names, namespaces
        One entry per term.
    edges
        relation name -> ``(2, e)`` int array of (child index, parent index).
    alt_ids, alt_targets
        Secondary ids and the primary id each stands for.
    release
        The OBO's ``data-version`` header (e.g. ``releases/2025-03-16``).
    sha256
        Content hash of the OBO file.
    """

    ids: np.ndarray
    names: np.ndarray
    namespaces: np.ndarray
    edges: dict[str, np.ndarray]
    alt_ids: np.ndarray
    alt_targets: np.ndarray
    release: str
    sha256: str

    @cached_property
    def index(self) -> dict[str, int]:
        """GO id (primary or alternative) -> term index."""
        index = {goid: i for i, goid in enumerate(self.ids.tolist())}
        for alt, target in zip(self.alt_ids.tolist(), self.alt_targets.tolist(), strict=True):
            if target in index:
                index.setdefault(alt, index[target])
        return index

    def __len__(self) -> int:
        return len(self.ids)


def _parse_with_goatools(path: Path, with_relationships: bool) -> tuple[dict, str]:
    from goatools.obo_parser import GODag

    logging.getLogger("goatools").setLevel(logging.WARNING)
    optional = {"relationship"} if with_relationships else None
    # goatools reports progress on stdout in some code paths even with prt=None; keep the user's stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        dag = GODag(str(path), optional_attrs=optional, load_obsolete=False, prt=None)
    terms = sorted({term.item_id: term for term in dag.values()}.values(), key=lambda t: t.item_id)
    if not terms:
        raise ValueError(f"{path} holds no GO terms: it is not an OBO file, or it is truncated or empty.")
    index = {term.item_id: i for i, term in enumerate(terms)}
    edges: dict[str, list[tuple[int, int]]] = {"is_a": []}
    for term in terms:
        child = index[term.item_id]
        edges["is_a"].extend((child, index[p.item_id]) for p in term.parents)
        for relation, targets in (getattr(term, "relationship", None) or {}).items():
            edges.setdefault(relation, []).extend((child, index[p.item_id]) for p in targets if p.item_id in index)
    alt = [(a, term.item_id) for term in terms for a in sorted(term.alt_ids)]
    data = {
        "ids": np.array([t.item_id for t in terms]),
        "names": np.array([t.name for t in terms]),
        "namespaces": np.array([t.namespace for t in terms]),
        "alt_ids": np.array([a for a, _ in alt], dtype=str),
        "alt_targets": np.array([t for _, t in alt], dtype=str),
    }
    for relation, pairs in edges.items():
        data[f"edges:{relation}"] = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
    return data, str(getattr(dag, "data_version", "") or "")


def read_obo(
    obo: str | os.PathLike, *, with_relationships: bool = False, cache: bool = True, sha256: str | None = None
) -> Ontology:
    """Parse a GO OBO file into an :class:`Ontology`.

    Parameters
    ----------
    obo
        A registered resource name (e.g. ``"go-basic"``, or ``"GO.db"``) or a path: an OBO file, or a Bioconductor
        ``GO.sqlite`` (GO.db) file.
    with_relationships
        Also read ``relationship:`` lines (``part_of``, ``regulates``...). Costs about 1 s more on go-basic.
    cache
        Reuse / store the parsed arrays in the cache folder, keyed by the file's sha256.
    sha256
        The file's hash if already known.
    """
    path = resolve(obo, kind=ONTOLOGY_KINDS)
    sha = sha256 or sha256_of(path)
    cache_file = cache_dir() / "parsed" / f"obo-{sha[:24]}-{'rel' if with_relationships else 'isa'}.npz"
    data = None
    if cache and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as npz:
                data = {key: npz[key] for key in npz.files}
            if int(data.pop("format_version")) != _PARSE_FORMAT_VERSION:
                data = None
        except (OSError, ValueError, KeyError):
            data = None
    if data is None:
        if is_sqlite(path):
            data, release = read_godb(path)
        else:
            data, release = _parse_with_goatools(path, with_relationships)
        data["release"] = np.array(release)
        if cache:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.part")
            with open(tmp, "wb") as fh:
                np.savez(fh, format_version=np.array(_PARSE_FORMAT_VERSION), **data)
            tmp.replace(cache_file)
    edges = {key.split(":", 1)[1]: data[key] for key in data if key.startswith("edges:")}
    return Ontology(
        ids=data["ids"].astype(str),
        names=data["names"].astype(str),
        namespaces=data["namespaces"].astype(str),
        edges=edges,
        alt_ids=data["alt_ids"].astype(str),
        alt_targets=data["alt_targets"].astype(str),
        release=str(data["release"]),
        sha256=sha,
    )
