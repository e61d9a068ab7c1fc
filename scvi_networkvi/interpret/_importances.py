"""Node importances: held-out AUROC of a logistic probe on each node's neurons, per phenotype, with intervals."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from ._activations import Activations, ModalityActivations
from ._auroc import benjamini_hochberg
from ._logistic import probe_device
from ._nodes import NODE_COLUMNS, NodeTable, node_table, read_gene_groups
from ._null import null_probes
from ._phenotypes import Phenotype, define_phenotypes, stratified_split
from ._probe import ProbeStats, Targets, fit_probes
from ._settings import ImportanceSettings

logger = logging.getLogger(__name__)

#: Columns of the importance table, in order.
IMPORTANCE_COLUMNS = [
    "modality",
    *NODE_COLUMNS,
    "phenotype",
    "reference",
    "auroc",
    "auroc_low",
    "auroc_high",
    "pval",
    "qval",
    "rank",
    "specificity",
    "auroc_null",
    "pval_null",
    "auroc_set",
    "pval_set",
    "qval_set",
    "auroc_null_sd",
    "auroc_fit",
    "n_cells_fit",
    "n_cells_heldout",
    "n_cases_heldout",
]


@dataclass(frozen=True)
class ProbeDesign:
    """Everything that fixes the probes of an importance run: cells, split, phenotypes, nodes, settings.

    Built once by :func:`design_probes`; a perturbation run reuses it so that perturbed and unperturbed probes are
    fitted and scored on exactly the same cells.
    """

    cells: pd.Index
    heldout: np.ndarray
    selected: np.ndarray
    phenotypes: list[Phenotype]
    roles: list[str]
    nodes: dict[str, NodeTable]
    node_types: tuple[str, ...]
    C: float
    class_weight: str | None
    min_cells: int
    level: float
    seed: int
    device: torch.device = torch.device("cpu")  # where the probes are fitted
    null_sets: int = 0  # random gene sets per GO-term size for the size- and width-matched reference
    ranking: str = "auroc"  # the order of the table's rank (ImportanceSettings.ranking)
    rank_min_genes: int = 5  # with ranking "specificity", smaller terms are ranked after the others


def design_probes(
    activations: Activations,
    labels: pd.Series,
    settings: ImportanceSettings,
    *,
    feature_names: Mapping[str, np.ndarray],
    selected: np.ndarray | None = None,
) -> ProbeDesign:
    """Fix the cells, split, phenotypes and nodes of the probes.

    Parameters
    ----------
    activations
        The captured activations; their ``obs_names`` are the cells.
    labels
        Categorical label per cell of ``activations`` (NaN: unlabelled, takes no part).
    settings
        The run's settings; ``restrict`` and ``cells_with`` are the caller's to apply, through ``selected``.
    feature_names
        Role -> the modality's feature names, in the order the wiring was compiled for.
    selected
        Boolean mask over the cells that may take part (default all).
    """
    cells = activations.obs_names
    labels = labels.reindex(cells)
    chosen_cells = np.ones(len(cells), dtype=bool) if selected is None else np.asarray(selected, dtype=bool)
    selected = chosen_cells & labels.notna().to_numpy()
    if not selected.any():
        raise ValueError("No cell is left after restrict / cells_with and dropping cells without a label.")
    chosen = labels.where(selected)
    phenotypes = define_phenotypes(
        chosen, targets=settings.targets, reference=settings.reference, groups=settings.groups
    )
    seed = settings.run_seed()
    heldout = stratified_split(chosen, settings.heldout_size, seed)
    node_types = settings.node_types
    named_groups = read_gene_groups(settings.gene_groups) if settings.gene_groups is not None else None
    nodes = {}
    for role, acts in activations.modalities.items():
        if settings.needs_gene_activations and acts.genes is None:
            raise ValueError(
                f"Gene nodes and the random gene sets of null_sets (default 100) need the gene-node activations of "
                f"{role!r}: capture them with get_activations(..., genes=True), or pass null_sets=0 (GO terms "
                "ranked by AUROC)."
            )
        nodes[role] = node_table(
            acts.wiring,
            np.asarray(feature_names[role]),
            go_terms="go_term" in node_types,
            genes="gene" in node_types,
            gene_groups=named_groups,
        )
    if named_groups is not None and not any((t.frame["node_type"] == "gene_group").any() for t in nodes.values()):
        raise ValueError(
            "No gene group has at least two genes in any modality: check that the ids match var's gene ids."
        )
    return ProbeDesign(
        cells=cells,
        heldout=heldout,
        selected=selected,
        phenotypes=phenotypes,
        roles=list(activations.modalities),
        nodes=nodes,
        node_types=tuple(node_types),
        C=settings.C,
        class_weight=settings.class_weight,
        min_cells=settings.min_cells,
        level=settings.level,
        seed=seed,
        device=probe_device(settings.device),
        null_sets=settings.term_null_sets,
        ranking=settings.ranking,
        rank_min_genes=settings.rank_min_genes,
    )


@dataclass(frozen=True)
class ModalityCells:
    """One modality's share of a design: rows of its activation matrices and the usable phenotypes."""

    fit_rows: np.ndarray
    eval_rows: np.ndarray
    targets: Targets
    usable: list[int]


def modality_cells(design: ProbeDesign, acts: ModalityActivations) -> ModalityCells | None:
    """Fitting and held-out rows of the modality's cells; phenotypes with too few cases or controls are dropped."""
    rows = np.zeros(len(design.cells), dtype=bool)
    rows[acts.cells] = True
    local = np.full(len(design.cells), -1)
    local[acts.cells] = np.arange(len(acts.cells))
    fit_cells = np.flatnonzero(rows & design.selected & ~design.heldout)
    eval_cells = np.flatnonzero(rows & design.selected & design.heldout)
    usable = []
    for j, pheno in enumerate(design.phenotypes):
        counts = [int(m[s].sum()) for m in (pheno.case, pheno.control) for s in (fit_cells, eval_cells)]
        if min(counts) < design.min_cells:
            logger.warning(
                "%s: phenotype %r skipped: fewer than %d cases or controls in a split (fit/held-out cases %d/%d, "
                "controls %d/%d).",
                acts.modality,
                pheno.name,
                design.min_cells,
                *counts,
            )
            continue
        usable.append(j)
    if not usable:
        return None
    phenos = [design.phenotypes[j] for j in usable]
    targets = Targets(
        case_fit=np.stack([ph.case[fit_cells] for ph in phenos]),
        control_fit=np.stack([ph.control[fit_cells] for ph in phenos]),
        case_eval=np.stack([ph.case[eval_cells] for ph in phenos]),
        control_eval=np.stack([ph.control[eval_cells] for ph in phenos]),
    )
    return ModalityCells(local[fit_cells], local[eval_cells], targets, usable)


def node_rows(design: ProbeDesign, acts: ModalityActivations, usable: list[int]) -> list[pd.DataFrame]:
    """The node frame of the modality repeated per usable phenotype, with the identifying columns filled in."""
    frames = []
    for j in usable:
        pheno = design.phenotypes[j]
        frame = design.nodes[acts.role].frame.drop(columns="source").copy()
        frame.insert(0, "modality", acts.modality)
        frame["phenotype"] = pheno.name
        frame["reference"] = pheno.reference
        frames.append(frame)
    return frames


def importance_table(design: ProbeDesign, activations: Activations, *, progress: bool = False) -> pd.DataFrame:
    """Probe every node for every phenotype and return the tidy importance table (``progress``: draw bars)."""
    frames = []
    for role in design.roles:
        acts = activations.modalities[role]
        cells = modality_cells(design, acts)
        if cells is None:
            continue
        stats: ProbeStats = fit_probes(
            {"terms": acts.terms, "genes": acts.genes},
            design.nodes[role],
            cells.fit_rows,
            cells.eval_rows,
            cells.targets,
            C=design.C,
            class_weight=design.class_weight,
            level=design.level,
            device=design.device,
            progress=progress,
            description=f"Probes ({acts.modality})",
        )
        null = term_reference(design, acts, cells, stats, progress=progress)
        for position, frame in enumerate(node_rows(design, acts, cells.usable)):
            frame["auroc"] = stats.auroc[:, position]
            frame["auroc_low"] = stats.low[:, position]
            frame["auroc_high"] = stats.high[:, position]
            frame["pval"] = stats.pval[:, position]
            frame["auroc_fit"] = stats.auroc_fit[:, position]
            for column, values in null.items():
                frame[column] = values[:, position]
            frame["n_cells_fit"] = int(stats.n_fit[position])
            frame["n_cells_heldout"] = int(stats.n_eval[position])
            frame["n_cases_heldout"] = int(stats.n_cases_eval[position])
            frames.append(frame)
    if not frames:
        raise ValueError(
            f"No phenotype has at least {design.min_cells} cases and controls in both splits of any modality: "
            "lower min_cells, use more cells or coarser labels."
        )
    return finish_table(pd.concat(frames, ignore_index=True), design.ranking, design.rank_min_genes)


REFERENCE_COLUMNS = ("auroc_null", "pval_null", "auroc_set", "pval_set", "auroc_null_sd")


def term_reference(
    design: ProbeDesign, acts: ModalityActivations, cells: ModalityCells, stats: ProbeStats, *, progress: bool = False
) -> dict[str, np.ndarray]:
    """The reference columns (:data:`REFERENCE_COLUMNS`) per node and usable phenotype.

    Filled for GO terms (kind ``go``) with ``null_sets``; NaN elsewhere.
    """
    frame = design.nodes[acts.role].frame
    shape = (len(frame), len(cells.usable))
    columns = {name: np.full(shape, np.nan) for name in REFERENCE_COLUMNS}
    terms = np.flatnonzero((frame["kind"] == "go").to_numpy())
    if not design.null_sets or not len(terms):
        return columns
    wiring = acts.wiring
    pool = np.flatnonzero(wiring.gene_annotated & ~wiring.gene_placeholder)
    reach = wiring.term_genes()
    term_index = {str(t): i for i, t in enumerate(wiring.term_ids)}
    own_sets = [reach[:, term_index[node]].indices for node in frame["node_id"].to_numpy()[terms]]
    reference = null_probes(
        acts.genes,
        wiring.gene_size,
        pool,
        frame["n_genes"].to_numpy()[terms],
        frame["width"].to_numpy()[terms],
        stats.auroc[terms],
        cells.fit_rows,
        cells.eval_rows,
        cells.targets,
        n_sets=design.null_sets,
        C=design.C,
        class_weight=design.class_weight,
        seed=design.seed,
        device=design.device,
        own_sets=own_sets,
        progress=progress,
        description=f"Random gene sets ({acts.modality})",
    )
    for name in REFERENCE_COLUMNS:
        columns[name][terms] = getattr(reference, name)
    return columns


def finish_table(result: pd.DataFrame, ranking: str = "auroc", rank_min_genes: int = 5) -> pd.DataFrame:
    """Add q-values (BH across nodes per phenotype), the specificity and the rank among GO terms; order the table.

    ``ranking="specificity"`` orders by ``specificity`` (terms of fewer than ``rank_min_genes`` genes after the
    others), ``"auroc"`` by the held-out AUROC; ties share the best rank.
    """
    result["qval"] = np.nan
    result["rank"] = np.nan
    for _, index in result.groupby(["phenotype", "reference"], sort=False).groups.items():
        result.loc[index, "qval"] = benjamini_hochberg(result.loc[index, "pval"].to_numpy(dtype=float))
    result["specificity"] = result["auroc_set"] - result["auroc_null"]
    go = result["kind"] == "go"
    result["qval_set"] = np.nan
    tested = go & result["specificity"].notna() & (result["auroc_null_sd"] > 0)
    # The gene-set test's p-value under a normal approximation of the random sets' AUROCs: it agrees with the
    # empirical pval_set (Spearman 0.99 on the results page's tables) and resolves p below 1 / (null_sets + 1),
    # which Benjamini-Hochberg across a phenotype's terms needs.
    z_set = result.loc[tested, "specificity"] / result.loc[tested, "auroc_null_sd"]
    p_set = pd.Series(norm.sf(z_set.to_numpy(dtype=float)), index=z_set.index)
    for _, index in result[tested].groupby(["modality", "phenotype", "reference"], sort=False).groups.items():
        result.loc[index, "qval_set"] = benjamini_hochberg(p_set.loc[index].to_numpy())
    if ranking == "specificity":
        # sorted on (large enough, specificity): the offset exceeds any difference of two specificities (< 1)
        score = result["specificity"] + 2.0 * (result["n_genes"] >= rank_min_genes)
    else:
        score = result["auroc"]
    # Structural nodes (root, UNKNOWN) and genes are not ranked: "important" compares GO terms with GO terms.
    result.loc[go, "rank"] = (
        score[go]
        .groupby([result.loc[go, c] for c in ("modality", "phenotype", "reference")], sort=False)
        .rank(ascending=False, method="min")
    )
    result["rank"] = result["rank"].astype("Int64")
    for column in ("modality", "node_type", "kind", "phenotype", "reference"):
        result[column] = result[column].astype("category")
    return result[IMPORTANCE_COLUMNS].reset_index(drop=True)


def probe_importances(
    activations: Activations,
    labels: pd.Series,
    settings: ImportanceSettings | None = None,
    *,
    feature_names: Mapping[str, np.ndarray],
    selected: np.ndarray | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """The importance table of captured activations: design the probes, fit and score them.

    The model-free half of :meth:`~scvi_networkvi.NETWORKVI.get_importances`, which captures the activations,
    reads the labels and applies ``restrict`` / ``cells_with`` before calling it.

    Parameters
    ----------
    activations
        From :meth:`~scvi_networkvi.NETWORKVI.get_activations` (with ``genes=True`` for gene or gene-group nodes
        and ``null_sets``).
    labels
        Categorical label per cell (indexed by cell name; NaN: unlabelled), e.g. from :func:`categorical_labels`.
    settings
        The run's :class:`ImportanceSettings` (default: the defaults); ``restrict`` and ``cells_with`` are not read
        here, pass the cells they leave as ``selected``.
    feature_names
        Role -> the modality's feature names (``var_names``, in the model's order).
    selected
        Boolean mask over ``activations.obs_names``: the cells that may take part (default all).
    progress
        Draw scvi-tools' progress bars over the probes and the random gene sets.

    Returns
    -------
    The table described in :meth:`~scvi_networkvi.NETWORKVI.get_importances` (columns :data:`IMPORTANCE_COLUMNS`).
    """
    settings = ImportanceSettings() if settings is None else settings
    design = design_probes(activations, labels, settings, feature_names=feature_names, selected=selected)
    result = importance_table(design, activations, progress=progress)
    result.attrs["networkvi"] = {
        "heldout_size": settings.heldout_size,
        "seed": design.seed,
        "C": settings.C,
        "null_sets": design.null_sets,
        "rank_by": design.ranking,
        "rank_min_genes": design.rank_min_genes,
    }
    return result


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a result table as parquet (``.parquet``) or csv (``.csv``, ``.csv.gz``)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".parquet"):
        try:
            table.to_parquet(path, index=False)
        except ImportError as err:
            raise ImportError("Writing parquet needs pyarrow (pip install pyarrow); or save as .csv.") from err
    elif name.endswith((".csv", ".csv.gz")):
        table.to_csv(path, index=False)
    else:
        raise ValueError(f"save_path must end in .parquet, .csv or .csv.gz, got {path.name}.")
    return path


def importance_matrix(
    table: pd.DataFrame,
    *,
    value: str = "auroc",
    modality: str | None = None,
    node_type: str = "go_term",
    kinds: Sequence[str] = ("go",),
    label: Literal["name", "node_id"] = "name",
) -> pd.DataFrame:
    """Node x phenotype matrix of ``value`` from an importance (or perturbation) table, for heatmaps."""
    if value not in table.columns:
        raise ValueError(f"value {value!r} is not a column of the table ({list(table.columns)}).")
    rows = table[(table["node_type"] == node_type) & table["kind"].isin(list(kinds))]
    if modality is not None:
        rows = rows[rows["modality"] == modality]
    elif rows["modality"].nunique() > 1:
        raise ValueError(
            f"The table has several modalities {sorted(rows['modality'].unique())}: pick one with modality=."
        )
    if rows.empty:
        raise ValueError("No rows match the selection.")
    matrix = rows.pivot_table(index=label, columns="phenotype", values=value, aggfunc="first", observed=True)
    matrix.columns = matrix.columns.astype(str)
    return matrix
