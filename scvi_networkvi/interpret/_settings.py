"""The options of an importance run, held once: :class:`ImportanceSettings`."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ._logistic import probe_device
from ._nodes import GeneGroups

NodeType = Literal["go_term", "gene", "gene_group"]
NODE_TYPES = ("go_term", "gene", "gene_group")
#: The default seed of the held-out split and the random gene sets: fixed, not the training seed (see ``seed``).
DEFAULT_SEED = 0
#: Fields that shape only the importance table's reference and rank: a caller without that table ignores them.
TABLE_ONLY = ("null_sets", "rank_by", "rank_min_genes")


@dataclass(frozen=True)
class ImportanceSettings:
    """How the probes of an importance (or perturbation) run are set up: phenotypes, cells, nodes, probe options.

    :meth:`~scvi_networkvi.NETWORKVI.get_importances` and :func:`~scvi_networkvi.tl.importances` take one as
    ``settings=`` and accept each field as a keyword too; a keyword replaces that field of ``settings``;
    :func:`probe_importances` reads it as it is. The perturbation entry points (and :func:`compute_perturbation`) take
    the same object (without ``cells_with``, ``gene_groups`` and ``null_sets``). Every field is checked when the
    object is made, so a bad value fails before any inference pass. ``dataclasses.replace(settings, C=0.5)`` gives a
    changed copy, checked again.

    Parameters
    ----------
    targets
        Labels probed as cases, one phenotype each. ``None``: every label present except the reference labels.
    reference
        The controls: ``"rest"`` (every other labelled cell, one-vs-rest) or a label / list of labels.
    groups
        ``{name: [labels]}``: each group of labels is probed as one phenotype; replaces ``targets`` (give one of the
        two).
    restrict
        ``{obs column: value or list of values}``: only cells with these values take part (all conditions hold).
    cells_with
        Modalities (roles or MuData names) a cell must be measured in to take part (mosaic data). Independently of
        this, each modality's probes only ever use the cells that have the modality.
    node_types
        Nodes to probe, any of ``"go_term"`` (every kept term: GO terms, the root and the UNKNOWN nodes, told apart
        by the table's ``kind``), ``"gene"`` (the ``gene_size`` neurons of each gene node) and ``"gene_group"``
        (needs ``gene_groups``).
    gene_groups
        Gene sets (gene ids or symbols) for ``"gene_group"`` nodes: ``{name: ids}``, a list of sets, or the path of
        an ``.npy`` array of sets. A group's node is the union of its genes' neurons; a group with fewer than two
        genes in a modality is left out there.
    heldout_size
        Share of each label's cells held out to score the probes (strictly between 0 and 1).
    C
        Inverse L2 strength of the logistic probes, as in scikit-learn (positive).
    class_weight
        ``"balanced"`` (cases and controls weigh equally) or ``None``.
    min_cells
        A phenotype needs at least this many cases and controls in the fitting and in the held-out split, or it is
        skipped with a warning (at least 2: a DeLong interval needs two cells of each class).
    level
        Confidence level of the intervals (strictly between 0 and 1).
    seed
        Seed of the held-out split, of the random gene sets and of the fitting cells their PCA summaries are fitted
        on. Default ``0`` (:data:`DEFAULT_SEED`): fixed, so that the tables of models trained with different seeds
        (``scvi.settings.seed``) share these and differ only by their models; ``None``: ``scvi.settings.seed`` at
        call time (the default until 2026-12-05). One seed, one table: another seed moves the lower half of a top 10
        about as much as another model does (results page, "Interpretability").
    batch_size
        Cells per minibatch of the inference pass, which runs wherever the model is.
    device
        Torch device of the probes (fitted in float64 by batched Newton steps): ``None`` or ``"cpu"`` (default),
        ``"cuda"`` or ``"cuda:N"``. It does not depend on the model's device; an unusable one is refused here.
    null_sets
        Random gene sets per GO-term size for a size- and width-matched reference of GO terms (``kind == "go"``);
        ``0`` (default) adds none. Terms are binned by size (log-spaced bins of ratio 1.5; a bin's random sets have
        its geometric middle size, within a factor 1.22 of each of its terms). Each random set takes as many
        annotated genes of the modality; their gene-node activations (the gene layer a term reads) are reduced to
        ``width`` dimensions by PCA (fitted on up to 500 seeded fitting cells) and probed like a term: ``auroc_null``
        and ``pval_null`` of the table. The random sets' summaries are untrained where the term's neurons are
        trained, so beating them removes the term's size from its importance without showing that its genes are
        special; for that, the term's own genes are reduced and probed exactly like the random sets
        (``auroc_set``, ``pval_set``), a like-for-like comparison of its gene set with random sets of its size. 100
        sets resolve p-values down to 0.01, for about ``null_sets`` probes per size bin and phenotype plus one per GO
        term and phenotype. Default 100: the table's ``rank`` needs it (``rank_by``); ``0`` skips the random sets
        (faster, less memory: no gene-node activations are kept) and ranks by AUROC.
    rank_by
        The order of the table's ``rank`` among the GO terms of a phenotype and modality: ``"specificity"``
        (``auroc_set - auroc_null``: how much better the term's own genes separate the phenotype than random genes of
        the same number; needs ``null_sets``), ``"auroc"`` (the held-out AUROC of the term's neurons: any broad term
        that carries the latent's cell-type signal scores high, so the top terms tend to be the broadest), or
        ``None`` (default): ``"specificity"`` with ``null_sets``, else ``"auroc"``. Measured on the results page
        ("Interpretability").
    rank_min_genes
        With ``rank_by="specificity"``, terms reached by fewer genes are ranked after all the others (a term of one or
        two genes tells what a gene does, not a process, and its gene-set test is the noisiest). Default 5.
    """

    targets: Sequence[str] | None = None
    reference: str | Sequence[str] = "rest"
    groups: Mapping[str, Sequence[str]] | None = None
    restrict: Mapping[str, Any] | None = None
    cells_with: Sequence[str] | None = None
    node_types: Sequence[NodeType] = ("go_term",)
    gene_groups: GeneGroups | None = None
    heldout_size: float = 0.3
    C: float = 1.0
    class_weight: str | None = "balanced"
    min_cells: int = 5
    level: float = 0.95
    seed: int | None = DEFAULT_SEED
    batch_size: int = 256
    device: str | torch.device | None = None
    null_sets: int = 100
    rank_by: Literal["specificity", "auroc"] | None = None
    rank_min_genes: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.node_types, str) or not self.node_types or set(self.node_types) - set(NODE_TYPES):
            raise ValueError(
                f"node_types must be a non-empty subset of go_term, gene, gene_group; got {self.node_types!r}."
            )
        if ("gene_group" in self.node_types) != (self.gene_groups is not None):
            raise ValueError("Gene-group nodes need gene_groups=..., and gene_groups needs 'gene_group' in node_types.")
        if not 0.0 < self.heldout_size < 1.0:
            raise ValueError(f"heldout_size must be strictly between 0 and 1, got {self.heldout_size}.")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {self.class_weight!r}.")
        if self.C <= 0:
            raise ValueError(f"C must be positive, got {self.C}.")
        if self.min_cells < 2:
            raise ValueError(
                f"min_cells must be at least 2 (a DeLong interval needs two cells per class), got {self.min_cells}."
            )
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be strictly between 0 and 1 (e.g. 0.95), got {self.level}.")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer (cells per minibatch), got {self.batch_size!r}.")
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None (scvi.settings.seed), got {self.seed!r}.")
        if not _is_int(self.null_sets) or self.null_sets < 0:
            raise ValueError(
                f"null_sets must be a non-negative integer (random gene sets per term size), got {self.null_sets!r}."
            )
        if self.rank_by not in (None, "specificity", "auroc"):
            raise ValueError(f"rank_by must be 'specificity', 'auroc' or None, got {self.rank_by!r}.")
        if self.rank_by == "specificity" and not self.null_sets:
            raise ValueError(
                "rank_by='specificity' compares each term's genes with random gene sets: pass null_sets > 0 (e.g. "
                "100), or rank_by='auroc'."
            )
        if not _is_int(self.rank_min_genes) or self.rank_min_genes < 1:
            raise ValueError(f"rank_min_genes must be a positive integer, got {self.rank_min_genes!r}.")
        probe_device(self.device)  # raises for an unusable device, naming the usable ones

    def run_seed(self) -> int:
        """The seed a run uses now: ``seed``; with ``seed=None``, ``scvi.settings.seed``, else 0."""
        import scvi

        seed = scvi.settings.seed if self.seed is None else self.seed
        return 0 if seed is None else int(seed)

    @property
    def ranking(self) -> Literal["specificity", "auroc"]:
        """The order of the table's ``rank``: ``rank_by``, resolved."""
        if self.rank_by is not None:
            return self.rank_by
        return "specificity" if self.term_null_sets else "auroc"

    @property
    def needs_gene_activations(self) -> bool:
        """Whether the inference pass must keep the gene-node activations (gene or gene-group nodes, random sets)."""
        return bool({"gene", "gene_group"} & set(self.node_types)) or self.term_null_sets > 0

    @property
    def term_null_sets(self) -> int:
        """The random gene sets a run draws: ``null_sets``, or none without GO-term nodes (it is their reference)."""
        return self.null_sets if "go_term" in self.node_types else 0

    @classmethod
    def merge(
        cls,
        settings: ImportanceSettings | None,
        options: Mapping[str, Any],
        *,
        function: str,
        accepted: Collection[str] | None = None,
    ) -> ImportanceSettings:
        """``settings`` (default: the defaults) with the fields named in ``options`` replaced, checked again.

        Parameters
        ----------
        settings
            The caller's settings object, or ``None``.
        options
            Keyword arguments of the caller meant as fields.
        function
            The caller's name, for the error messages.
        accepted
            The fields the caller uses (default all); a field outside them may not be given, nor set away from its
            default in ``settings``.

        Raises
        ------
        TypeError
            For ``settings`` that is not an :class:`ImportanceSettings`, or a keyword that is no accepted field.
        ValueError
            For a field value the run cannot use.
        """
        if settings is None:
            settings = cls()
        elif not isinstance(settings, cls):
            raise TypeError(f"{function}(): settings must be an ImportanceSettings, got {type(settings).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]
        valid = [n for n in names if accepted is None or n in accepted]
        unknown = [key for key in options if key not in valid]
        if unknown:
            raise TypeError(
                f"{function}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                f"its importance settings are: {', '.join(valid)} (see ImportanceSettings)."
            )
        unused = [
            n
            for n in names
            if n not in valid and n not in TABLE_ONLY and _differs(getattr(settings, n), getattr(cls, n))
        ]
        if unused:
            raise ValueError(f"{function}() does not use the settings {unused}: leave them at their defaults.")
        return dataclasses.replace(settings, **options) if options else settings


def _differs(value: Any, default: Any) -> bool:
    try:
        return bool(value != default)
    except (TypeError, ValueError):  # e.g. an array of gene sets: not the default either way
        return True


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | np.integer)
