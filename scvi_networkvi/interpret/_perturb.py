"""In-silico perturbation: zero chosen genes' features, re-probe, and report each node's AUROC change."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._activations import Activations
from ._auroc import benjamini_hochberg
from ._importances import design_probes, modality_cells, node_rows
from ._nodes import NODE_COLUMNS
from ._probe import change_probes
from ._progress import track
from ._settings import ImportanceSettings

logger = logging.getLogger(__name__)

#: The :class:`ImportanceSettings` fields a perturbation uses (it probes GO terms and genes of the captured cells).
PERTURBATION_SETTINGS = frozenset(
    f.name
    for f in dataclasses.fields(ImportanceSettings)
    if f.name not in ("cells_with", "gene_groups", "null_sets", "rank_by", "rank_min_genes")
)

PERTURBATION_COLUMNS = [
    "perturbation",
    "genes",
    "perturbed_modalities",
    "modality",
    *NODE_COLUMNS,
    "phenotype",
    "reference",
    "auroc_before",
    "auroc_after",
    "delta",
    "delta_low",
    "delta_high",
    "pval",
    "qval",
    "n_cells_heldout",
    "auroc_fit_before",
    "auroc_fit_after",
]


@dataclass(frozen=True)
class Perturbation:
    """One in-silico perturbation: the genes it names and the features it zeroes.

    Attributes
    ----------
    genes
        The gene ids or feature names the user gave (the table's ``genes`` column).
    features
        Role -> positions of the modality's features that are set to zero.
    modalities
        The names of the perturbed modalities (the table's ``perturbed_modalities`` column).
    """

    genes: tuple[str, ...]
    features: Mapping[str, np.ndarray]
    modalities: tuple[str, ...]


def compute_perturbation(
    base: Activations,
    perturb: Callable[[Perturbation], Activations],
    perturbations: Mapping[str, Perturbation],
    labels: pd.Series,
    settings: ImportanceSettings | None = None,
    *,
    feature_names: Mapping[str, np.ndarray],
    selected: np.ndarray | None = None,
    refit: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Per perturbation, node and phenotype: held-out AUROC before and after zeroing genes, and the change.

    The computing half of :meth:`~scvi_networkvi.NETWORKVI.get_perturbation_importances`, which checks the data,
    finds each perturbation's features and runs the inference passes.

    Parameters
    ----------
    base
        Activations of the unperturbed cells (with ``genes=True`` when ``settings.node_types`` has ``"gene"``).
    perturb
        Activations of the same cells and modalities with a perturbation's features zeroed; called once per
        perturbation, in order, always from the original data (nothing accumulates).
    perturbations
        Name -> :class:`Perturbation`.
    labels
        Categorical label per cell (indexed by cell name; NaN: unlabelled).
    settings
        :class:`ImportanceSettings` (default: the defaults); only :data:`PERTURBATION_SETTINGS` are read and the
        random gene sets are never drawn. ``restrict`` is the caller's to apply, through ``selected``.
    feature_names
        Role -> the modality's feature names, in the wiring's order.
    selected
        Boolean mask over ``base.obs_names``: the cells that may take part (default all).
    refit
        Refit the probes on the perturbed fitting cells (default) or score with the unperturbed ones.
    progress
        Draw one progress bar over the perturbations.

    Returns
    -------
    The table described in :meth:`~scvi_networkvi.NETWORKVI.get_perturbation_importances` (columns
    :data:`PERTURBATION_COLUMNS`).
    """
    settings = ImportanceSettings() if settings is None else settings
    settings = dataclasses.replace(settings, null_sets=0, rank_by=None)  # no random gene sets before / after
    roles = list(base.modalities)
    design = design_probes(base, labels, settings, feature_names=feature_names, selected=selected)
    frames = []
    # one bar over the perturbations (each an inference pass and its probes); the inner passes draw none
    for name, perturbation in track(list(perturbations.items()), "Perturbations", enabled=progress):
        # every perturbation starts from the original data: nothing accumulates across perturbations
        after = perturb(perturbation)
        gene_list = ",".join(perturbation.genes)
        perturbed = ",".join(perturbation.modalities)
        for role in roles:
            acts, acts_after = base.modalities[role], after.modalities[role]
            cells = modality_cells(design, acts)
            if cells is None:
                continue
            stats = change_probes(
                {"terms": acts.terms, "genes": acts.genes},
                {"terms": acts_after.terms, "genes": acts_after.genes},
                design.nodes[role],
                cells.fit_rows,
                cells.eval_rows,
                cells.targets,
                C=design.C,
                class_weight=design.class_weight,
                level=design.level,
                refit=refit,
                device=design.device,
            )
            for position, frame in enumerate(node_rows(design, acts, cells.usable)):
                frame.insert(0, "perturbation", name)
                frame.insert(1, "genes", gene_list)
                frame.insert(2, "perturbed_modalities", perturbed)
                frame["auroc_before"] = stats.before[:, position]
                frame["auroc_after"] = stats.after[:, position]
                frame["delta"] = stats.delta[:, position]
                frame["delta_low"] = stats.low[:, position]
                frame["delta_high"] = stats.high[:, position]
                frame["pval"] = stats.pval[:, position]
                frame["n_cells_heldout"] = int(
                    cells.targets.case_eval[position].sum() + cells.targets.control_eval[position].sum()
                )
                frame["auroc_fit_before"] = stats.fit_before[:, position]
                frame["auroc_fit_after"] = stats.fit_after[:, position]
                frames.append(frame)
    if not frames:
        raise ValueError(f"No phenotype has at least {design.min_cells} cases and controls in both splits.")
    result = pd.concat(frames, ignore_index=True)
    result["qval"] = np.nan
    for _, index in result.groupby(["perturbation", "phenotype", "reference"], sort=False).groups.items():
        result.loc[index, "qval"] = benjamini_hochberg(result.loc[index, "pval"].to_numpy(dtype=float))
    for column in ("perturbation", "modality", "node_type", "kind", "phenotype", "reference"):
        result[column] = result[column].astype("category")
    result.attrs["networkvi"] = {
        "refit": refit,
        "heldout_size": settings.heldout_size,
        "seed": design.seed,
    }
    logger.info("Perturbation: %d perturbations x %d phenotypes.", len(perturbations), len(design.phenotypes))
    return result[PERTURBATION_COLUMNS].reset_index(drop=True)
