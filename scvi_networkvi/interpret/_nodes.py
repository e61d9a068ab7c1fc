"""The nodes a probe can read: GO terms, gene nodes and gene groups, each a set of neuron columns."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scvi_networkvi.wiring import Wiring

logger = logging.getLogger(__name__)

GeneGroups = Mapping[str, Iterable[str]] | Sequence[Iterable[str]] | str | os.PathLike

NODE_COLUMNS = ["node_id", "node_type", "kind", "name", "level", "n_genes", "width"]


@dataclass(frozen=True)
class NodeTable:
    """Nodes of one modality: a tidy frame (one row per node) and each node's columns in its activation matrix.

    ``frame`` columns: ``node_id``, ``node_type`` (``go_term``, ``gene``, ``gene_group``), ``kind`` (``go``,
    ``root``, ``unknown`` for terms; ``gene`` / ``gene_group`` otherwise), ``name``, ``level`` (GO depth; -1 for
    gene nodes and groups), ``n_genes``, ``width`` (neurons), ``source`` (``terms`` or ``genes``: which matrix of
    :class:`~scvi_networkvi.interpret.ModalityActivations` the columns index).
    """

    frame: pd.DataFrame
    columns: list[np.ndarray]


def gene_names(wiring: Wiring, feature_names: Sequence[str]) -> np.ndarray:
    """A readable name per gene node: the names of the features that feed it, joined by ``/``."""
    names: list[list[str]] = [[] for _ in range(wiring.n_genes)]
    for feature, gene in zip(*wiring.feature_gene, strict=True):
        name = str(feature_names[feature])
        if name not in names[gene]:
            names[gene].append(name)
    return np.array(["/".join(n) if n else str(wiring.gene_ids[g]) for g, n in enumerate(names)], dtype=object)


def read_gene_groups(groups: GeneGroups) -> dict[str, list[str]]:
    """Named gene-id groups from a mapping, a list of sets, or a ``.npy`` file holding an array of sets.

    The tutorial's ``loops_gm12878_gene_groups.npy`` stores Python sets in an object array, which numpy can only
    read with ``allow_pickle=True``: it is read that way only because the user named the file.
    """
    if isinstance(groups, str | os.PathLike):
        path = Path(groups)
        if not path.is_file():
            raise FileNotFoundError(f"Gene-group file {path} does not exist.")
        if path.suffix != ".npy":
            raise ValueError(f"Gene-group files must be .npy arrays of gene-id sets, got {path.name}.")
        try:
            array = np.load(path, allow_pickle=True)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"Cannot read gene groups from {path}: {err}. Is it a complete .npy file?") from err
        groups = [set(map(str, g)) for g in array.tolist()]
    if isinstance(groups, Mapping):
        named = {str(k): [str(g) for g in v] for k, v in groups.items()}
    else:
        named = {f"group_{i}": sorted(map(str, g)) for i, g in enumerate(groups)}
    for name, members in named.items():
        if isinstance(members, str):
            raise ValueError(f"Gene group {name!r} must be a collection of gene ids, not the string {members!r}.")
    if not named:
        raise ValueError("gene_groups is empty.")
    return named


def node_table(
    wiring: Wiring,
    feature_names: Sequence[str],
    *,
    go_terms: bool = True,
    genes: bool = False,
    gene_groups: Mapping[str, Sequence[str]] | None = None,
    min_group_genes: int = 2,
) -> NodeTable:
    """The requested nodes of one modality's wiring."""
    rows: list[dict] = []
    columns: list[np.ndarray] = []
    if go_terms:
        offsets = np.concatenate([[0], np.cumsum(wiring.term_size)]).astype(np.int64)
        for t in range(wiring.n_terms):
            rows.append(
                {
                    "node_id": str(wiring.term_ids[t]),
                    "node_type": "go_term",
                    "kind": str(wiring.term_kind[t]),
                    "name": str(wiring.term_names[t]),
                    "level": int(wiring.term_depth[t]),
                    "n_genes": int(wiring.term_n_genes[t]),
                    "width": int(wiring.term_size[t]),
                    "source": "terms",
                }
            )
            columns.append(np.arange(offsets[t], offsets[t + 1]))
    size = wiring.gene_size
    names = gene_names(wiring, feature_names) if (genes or gene_groups) else None
    if genes:
        for g in range(wiring.n_genes):
            rows.append(
                {
                    "node_id": str(wiring.gene_ids[g]),
                    "node_type": "gene",
                    "kind": "gene",
                    "name": names[g],
                    "level": -1,
                    "n_genes": 1,
                    "width": size,
                    "source": "genes",
                }
            )
            columns.append(np.arange(g * size, (g + 1) * size))
    if gene_groups:
        index = {gene_id: g for g, gene_id in enumerate(map(str, wiring.gene_ids))}
        index.update({str(n): g for g, n in enumerate(names)})  # symbols work too
        skipped = 0
        for group, members in gene_groups.items():
            found = sorted({index[m] for m in members if m in index})
            if len(found) < min_group_genes:
                skipped += 1
                continue
            rows.append(
                {
                    "node_id": group,
                    "node_type": "gene_group",
                    "kind": "gene_group",
                    "name": ",".join(names[g] for g in found),
                    "level": -1,
                    "n_genes": len(found),
                    "width": len(found) * size,
                    "source": "genes",
                }
            )
            # each member gene's whole gene_size-wide slice (the original took one column per gene index)
            columns.append(np.concatenate([np.arange(g * size, (g + 1) * size) for g in found]))
        if skipped:
            logger.info(
                "%s: %d of %d gene groups have fewer than %d genes in the modality; left out.",
                wiring.modality,
                skipped,
                len(gene_groups),
                min_group_genes,
            )
    frame = pd.DataFrame(rows, columns=[*NODE_COLUMNS, "source"])
    return NodeTable(frame, columns)
