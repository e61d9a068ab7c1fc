"""Settings of the wiring compiler."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ._ontology import NAMESPACES, RELATIONS


@dataclass(frozen=True)
class WiringConfig:
    """How GO terms and genes are turned into an encoder wiring.

    The defaults reproduce the original NetworkVI (biological_process, is_a only, depth cut 2, 4 neurons per gene,
    6 per GO term, 12 per UNKNOWN node), with its wiring defects fixed.

    Parameters
    ----------
    max_depth
        Deepest GO level kept (``n_layers_encoder`` of the model). Genes annotated below it attach to their nearest
        kept ancestors.
    namespaces
        GO namespaces to keep. With more than one, a synthetic top node joins their roots.
    relations
        Edges followed for ancestry and depth: ``is_a`` (always) plus optionally ``part_of``, ``regulates``,
        ``positively_regulates``, ``negatively_regulates``.
    min_genes, max_genes
        Keep only terms with this many genes of the modality (counted with descendants); others are removed and
        their genes and children attach to their nearest kept ancestors. The top node is always kept.
    terms
        Allow-list of GO ids: only these terms and their ancestors are kept.
    gene_size
        Neurons per gene node (``standard_gene_size``).
    term_size
        Neurons per GO term (``standard_go_size``).
    root_size
        Neurons of the top node (``n_hidden``); ``None`` means ``min(128, floor(sqrt(n_features)))``.
    unknown_size
        Neurons per UNKNOWN node (the path of genes without annotation).
    max_unknown_depth
        Length of the UNKNOWN chain is ``min(max_unknown_depth, max_depth)``.
    interaction_cutoff
        Keep interaction rows with ``combined_score >= interaction_cutoff``.
    evidence_exclude
        GAF evidence codes to ignore.
    keep_not
        Keep ``NOT``-qualified annotations.
    annotation_id
        GAF column matched against the features' gene ids: ``"db_object_id"`` (column 2) or ``"db_object_symbol"``
        (column 3, gene symbols).
    """

    max_depth: int = 2
    namespaces: tuple[str, ...] = ("biological_process",)
    relations: tuple[str, ...] = ("is_a",)
    min_genes: int | None = None
    max_genes: int | None = None
    terms: tuple[str, ...] | None = None
    gene_size: int = 4
    term_size: int = 6
    root_size: int | None = None
    unknown_size: int = 12
    max_unknown_depth: int = 4
    interaction_cutoff: float | None = None
    evidence_exclude: tuple[str, ...] = ("ND",)
    keep_not: bool = False
    annotation_id: str = "db_object_id"

    def __post_init__(self):
        for name in ("namespaces", "relations", "evidence_exclude"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if self.terms is not None:
            object.__setattr__(self, "terms", (self.terms,) if isinstance(self.terms, str) else tuple(self.terms))
        bad = [ns for ns in self.namespaces if ns not in NAMESPACES]
        if bad or not self.namespaces:
            raise ValueError(f"namespaces must be a non-empty subset of {NAMESPACES}, got {bad or self.namespaces}.")
        bad = [rel for rel in self.relations if rel not in RELATIONS]
        if bad:
            raise ValueError(f"Unknown relation(s) {bad}; choose from {RELATIONS}.")
        if "is_a" not in self.relations:
            object.__setattr__(self, "relations", ("is_a", *self.relations))
        if not isinstance(self.max_depth, int) or self.max_depth < 0:
            raise ValueError(f"max_depth must be an integer >= 0, got {self.max_depth!r}.")
        for name in ("gene_size", "term_size", "unknown_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.root_size is not None and (not isinstance(self.root_size, int) or self.root_size < 1):
            raise ValueError(f"root_size must be a positive integer or None, got {self.root_size!r}.")
        if self.annotation_id not in ("db_object_id", "db_object_symbol"):
            raise ValueError(f"annotation_id must be 'db_object_id' or 'db_object_symbol', got {self.annotation_id!r}.")
        if self.max_unknown_depth < 0:
            raise ValueError("max_unknown_depth must be >= 0.")
        if self.min_genes is not None and self.max_genes is not None and self.min_genes > self.max_genes:
            raise ValueError(f"min_genes ({self.min_genes}) is larger than max_genes ({self.max_genes}).")

    @property
    def needs_relationships(self) -> bool:
        """Whether the OBO must be parsed with its ``relationship:`` lines."""
        return any(rel != "is_a" for rel in self.relations)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}
