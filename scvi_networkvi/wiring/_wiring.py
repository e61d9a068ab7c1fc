"""The immutable description of one modality's biologically wired encoder."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._reach import term_reach

#: Bumped whenever the meaning or layout of the arrays changes; part of every cache key.
WIRING_FORMAT_VERSION = 1

_ARRAY_FIELDS = (
    "feature_gene",
    "gene_ids",
    "gene_annotated",
    "gene_placeholder",
    "gene_edges",
    "gene_edge_scores",
    "term_ids",
    "term_names",
    "term_depth",
    "term_kind",
    "term_size",
    "term_n_genes",
    "gene_term",
    "term_term",
)


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Wiring:
    """Gene nodes, gene–gene edges and GO levels of one modality, as plain arrays.

    Gene nodes are the distinct gene ids of the modality's features (order of first appearance); each has
    ``gene_size`` neurons. GO terms are sorted deepest level first, so each level is a contiguous slice;
    the last level holds the single top node (the namespace root, or a synthetic top over several roots).

    Attributes
    ----------
    modality
        Name of the modality (e.g. ``"rna"``).
    n_features
        Number of input features of the modality.
    feature_gene
        ``(2, n)`` int array of (feature index, gene index) block connections; a feature may map to several genes.
    gene_ids
        Gene node ids. Features without an id each get their own placeholder node ``"unmapped:<feature>"``.
    gene_annotated
        Whether the gene reaches a GO term (else it feeds the UNKNOWN path).
    gene_placeholder
        Whether the gene node stands for a feature without id.
    gene_edges, gene_edge_scores
        ``(2, e)`` (source gene, target gene) interaction edges including one self loop per gene, and their scores.
    term_ids, term_names, term_depth, term_kind, term_size, term_n_genes
        Per kept term: GO id, GO name, level (depth from the root), ``"go"`` / ``"root"`` / ``"unknown"``, number of
        neurons, number of genes that reach it.
    gene_term
        ``(2, k)`` (gene index, term index) block connections.
    term_term
        ``(2, m)`` (child term index, parent term index) block connections; children are always deeper.
    gene_size
        Neurons per gene node.
    info
        JSON-compatible provenance: configuration, input hashes, counts of dropped annotations.
    """

    modality: str
    n_features: int
    feature_gene: np.ndarray
    gene_ids: np.ndarray
    gene_annotated: np.ndarray
    gene_placeholder: np.ndarray
    gene_edges: np.ndarray
    gene_edge_scores: np.ndarray
    term_ids: np.ndarray
    term_names: np.ndarray
    term_depth: np.ndarray
    term_kind: np.ndarray
    term_size: np.ndarray
    term_n_genes: np.ndarray
    gene_term: np.ndarray
    term_term: np.ndarray
    gene_size: int
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in _ARRAY_FIELDS:
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "info", json.loads(json.dumps(self.info)))
        self._validate()

    def _validate(self) -> None:
        n_genes, n_terms = len(self.gene_ids), len(self.term_ids)
        for name in ("gene_annotated", "gene_placeholder"):
            if len(getattr(self, name)) != n_genes:
                raise ValueError(f"Wiring.{name} must have one entry per gene node.")
        for name in ("term_names", "term_depth", "term_kind", "term_size", "term_n_genes"):
            if len(getattr(self, name)) != n_terms:
                raise ValueError(f"Wiring.{name} must have one entry per term.")
        checks = {
            "feature_gene": (self.n_features, n_genes),
            "gene_edges": (n_genes, n_genes),
            "gene_term": (n_genes, n_terms),
            "term_term": (n_terms, n_terms),
        }
        for name, (n_src, n_dst) in checks.items():
            pairs = getattr(self, name)
            if pairs.ndim != 2 or pairs.shape[0] != 2:
                raise ValueError(f"Wiring.{name} must be a (2, n) index array.")
            if pairs.size and (pairs.min() < 0 or pairs[0].max() >= n_src or pairs[1].max() >= n_dst):
                raise ValueError(f"Wiring.{name} holds an index out of range.")
        if self.term_term.size and np.any(self.term_depth[self.term_term[0]] <= self.term_depth[self.term_term[1]]):
            raise ValueError("Wiring.term_term must connect deeper terms to shallower ones.")
        if np.any(np.diff(self.term_depth) > 0):
            raise ValueError("Wiring terms must be sorted deepest level first.")

    # ---- derived views -------------------------------------------------------------------------------------------
    @property
    def n_genes(self) -> int:
        """Number of gene nodes."""
        return len(self.gene_ids)

    @property
    def n_terms(self) -> int:
        """Number of kept terms (GO terms, UNKNOWN nodes and the top node)."""
        return len(self.term_ids)

    @property
    def levels(self) -> list[tuple[int, slice]]:
        """``(depth, slice of term indices)`` per level, deepest first; the last entry is the top node."""
        depths, starts = np.unique(-self.term_depth, return_index=True)
        bounds = [*starts.tolist(), self.n_terms]
        return [(int(-d), slice(bounds[i], bounds[i + 1])) for i, d in enumerate(depths)]

    @property
    def root_index(self) -> int:
        """Index of the top node."""
        return self.n_terms - 1

    def term_genes(self) -> sp.csc_matrix:
        """``(n_genes, n_terms)`` 0/1 matrix: the gene nodes that reach each term, directly or through descendants.

        Column sums are :attr:`term_n_genes`; ``term_genes()[:, t].indices`` are the gene-node indices of term ``t``.
        """
        return term_reach(self.gene_term, self.term_term, self.term_depth, self.n_genes)

    def term_frame(self) -> pd.DataFrame:
        """One row per kept term: id, name, depth, kind, neurons, genes."""
        return pd.DataFrame(
            {
                "name": self.term_names,
                "depth": self.term_depth,
                "kind": self.term_kind,
                "neurons": self.term_size,
                "n_genes": self.term_n_genes,
            },
            index=pd.Index(self.term_ids, name="term_id"),
        )

    def summary_frame(self) -> pd.DataFrame:
        """Per level (deepest first): terms, neurons, incoming block connections and their block density."""
        rows = []
        parent_level = self.term_depth[self.term_term[1]]
        gene_level = self.term_depth[self.gene_term[1]]
        for depth, sl in self.levels:
            n = sl.stop - sl.start
            from_genes = int(np.sum(gene_level == depth))
            from_terms = int(np.sum(parent_level == depth))
            n_deeper = int(np.sum(self.term_depth > depth))
            rows.append(
                {
                    "depth": depth,
                    "terms": n,
                    "go_terms": int(np.sum(self.term_kind[sl] == "go")),
                    "neurons": int(self.term_size[sl].sum()),
                    "gene_connections": from_genes,
                    "gene_density": from_genes / max(1, self.n_genes * n),
                    "child_connections": from_terms,
                    "child_density": from_terms / max(1, n_deeper * n),
                }
            )
        return pd.DataFrame(rows).set_index("depth")

    def summary(self) -> dict[str, Any]:
        """Headline numbers: terms per level, neurons, edges, densities, unannotated genes, dropped annotations."""
        n_edges = self.gene_edges.shape[1]
        return {
            "modality": self.modality,
            "features": self.n_features,
            "genes": self.n_genes,
            "unannotated_genes": int((~self.gene_annotated).sum()),
            "placeholder_genes": int(self.gene_placeholder.sum()),
            "go_terms": int(np.sum(self.term_kind == "go")),
            "terms_per_level": {depth: sl.stop - sl.start for depth, sl in self.levels},
            "gene_neurons": self.n_genes * self.gene_size,
            "term_neurons": int(self.term_size.sum()),
            "feature_gene_connections": int(self.feature_gene.shape[1]),
            "gene_gene_edges": n_edges,
            "gene_gene_density": n_edges / max(1, self.n_genes**2),
            "gene_term_connections": int(self.gene_term.shape[1]),
            "term_term_connections": int(self.term_term.shape[1]),
            "dropped_annotations": self.info.get("dropped_annotations", 0),
            "dropped_go_ids": self.info.get("dropped_go_ids", 0),
        }

    def __repr__(self) -> str:
        s = self.summary()
        levels = ", ".join(f"depth {d}: {n}" for d, n in s["terms_per_level"].items())
        return (
            f"Wiring({self.modality!r}: {s['features']} features -> {s['genes']} genes ({s['unannotated_genes']} "
            f"unannotated) -> {s['go_terms']} GO terms ({levels}), {s['gene_gene_edges']} gene-gene edges)"
        )

    # ---- serialisation -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain numpy arrays and JSON-compatible values; :meth:`from_dict` rebuilds an equal wiring."""
        out: dict[str, Any] = {name: np.array(getattr(self, name)) for name in _ARRAY_FIELDS}
        out.update(
            modality=self.modality,
            n_features=int(self.n_features),
            gene_size=int(self.gene_size),
            info=json.loads(json.dumps(self.info)),
            format_version=WIRING_FORMAT_VERSION,
        )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Wiring:
        """Inverse of :meth:`to_dict`."""
        version = int(data.get("format_version", WIRING_FORMAT_VERSION))
        if version != WIRING_FORMAT_VERSION:
            raise ValueError(
                f"Wiring format version {version} is not supported by this scvi-networkvi (expects "
                f"{WIRING_FORMAT_VERSION}); re-compile the wiring from its resources."
            )
        kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        kwargs["n_features"] = int(kwargs["n_features"])
        kwargs["gene_size"] = int(kwargs["gene_size"])
        kwargs["modality"] = str(kwargs["modality"])
        for name in ("gene_ids", "term_ids", "term_names", "term_kind"):
            kwargs[name] = np.asarray(kwargs[name]).astype(str)
        return cls(**kwargs)

    def save(self, path: str | os.PathLike) -> None:
        """Write to an ``.npz`` file (no pickles)."""
        data = self.to_dict()
        data["info"] = np.array(json.dumps(data["info"]))
        data["modality"] = np.array(data["modality"])
        with open(path, "wb") as fh:
            np.savez(fh, **data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Wiring:
        """Read a wiring written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
        data["info"] = json.loads(str(data["info"]))
        data["modality"] = str(data["modality"])
        for key in ("n_features", "gene_size", "format_version"):
            data[key] = int(data[key])
        return cls.from_dict(data)

    def coverage(self) -> dict[str, Any]:
        """How many features have a usable gene id, and how many reach at least one GO term through their genes."""
        feature, gene = self.feature_gene
        with_id = np.zeros(self.n_features, dtype=bool)
        annotated = np.zeros(self.n_features, dtype=bool)
        with_id[feature[~self.gene_placeholder[gene]]] = True
        annotated[feature[self.gene_annotated[gene]]] = True
        return {
            "features": self.n_features,
            "with_id": int(with_id.sum()),
            "annotated": int(annotated.sum()),
            "go_release": str(self.info.get("obo_release", "")).removeprefix("releases/"),
        }

    def equals(self, other: Wiring) -> bool:
        """Whether two wirings have the same arrays and scalars."""
        if not isinstance(other, Wiring):
            return False
        if (self.modality, self.n_features, self.gene_size) != (other.modality, other.n_features, other.gene_size):
            return False
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in _ARRAY_FIELDS)
