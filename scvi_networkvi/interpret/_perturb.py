"""In-silico perturbation: zero chosen genes' features, re-probe, and report each node's AUROC change."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from scvi_networkvi.module import DATA_KEYS

from ._activations import capture_activations, resolve_roles
from ._auroc import benjamini_hochberg
from ._importances import design_probes, modality_cells, node_rows
from ._nodes import NODE_COLUMNS
from ._phenotypes import categorical_labels, restrict_mask
from ._probe import change_probes
from ._progress import show_progress, track
from ._settings import ImportanceSettings

if TYPE_CHECKING:
    from scvi_networkvi.model import NETWORKVI

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


def feature_positions(model: NETWORKVI, role: str, genes: Sequence[str]) -> np.ndarray:
    """Features of a modality that measure any of ``genes`` (gene ids of the wiring, or feature names)."""
    modality = model.adata[model.modality_name(role)]
    wanted = set(map(str, genes))
    hits = np.isin(np.asarray(modality.var_names).astype(str), list(wanted))
    wiring = model.wirings_.get(role)
    if wiring is not None:
        gene_hit = np.isin(wiring.gene_ids.astype(str), list(wanted))
        features, gene = wiring.feature_gene
        hits[features[gene_hit[gene]]] = True
    else:  # dense encoder: the registered gene-id column, when the modality has one
        try:
            ids = model.feature_gene_ids().get(role)
        except ValueError:
            ids = None
        if ids is not None:
            hits |= np.array([any(gene in wanted for gene in feature) for feature in ids], dtype=bool)
    return np.flatnonzero(hits)


def resolve_perturbations(
    model: NETWORKVI, genes: Sequence[str] | Mapping[str, Sequence[str]], perturb_modalities: Sequence[str] | None
) -> dict[str, dict[str, np.ndarray]]:
    """``{perturbation name: {role: feature positions}}``; every gene must be found in a chosen modality."""
    if isinstance(genes, str):
        genes = [genes]
    named = {str(k): list(v) for k, v in genes.items()} if isinstance(genes, Mapping) else {str(g): [g] for g in genes}
    if not named:
        raise ValueError("genes is empty: name at least one gene (symbol or gene id) to perturb.")
    for name, members in named.items():
        if isinstance(members, str) or not members:
            raise ValueError(f"Perturbation {name!r} must list gene ids or symbols, got {members!r}.")
    roles = model.modality_roles if perturb_modalities is None else [model.role_of(m) for m in perturb_modalities]
    plans: dict[str, dict[str, np.ndarray]] = {}
    for name, members in named.items():
        plan = {}
        for role in roles:
            positions = feature_positions(model, role, members)
            if len(positions):
                plan[role] = positions
        missing = [g for g in members if not any(len(feature_positions(model, r, [g])) for r in roles)]
        if missing:
            where = ", ".join(model.modality_name(r) for r in roles)
            raise ValueError(
                f"Genes {missing} of perturbation {name!r} match no feature of {where} (neither a gene id of the "
                "wiring nor a feature name)."
            )
        plans[name] = plan
    return plans


def zeroing(plan: Mapping[str, np.ndarray]):
    """A minibatch transform setting the planned features to zero (on a copy: the loader's tensors stay intact)."""
    positions = {DATA_KEYS[role]: torch.as_tensor(pos, dtype=torch.long) for role, pos in plan.items()}

    def transform(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for key, pos in positions.items():
            data = tensors[key].clone()
            data[:, pos.to(data.device)] = 0
            tensors[key] = data
        return tensors

    return transform


def compute_perturbation(
    model: NETWORKVI,
    adata=None,
    *,
    genes: Sequence[str] | Mapping[str, Sequence[str]],
    groupby: str,
    settings: ImportanceSettings | None = None,
    perturb_modalities: Sequence[str] | None = None,
    modalities: str | Sequence[str] | None = None,
    indices: Sequence[int] | None = None,
    refit: bool = True,
    progress_bar: bool | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Per perturbation, node and phenotype: held-out AUROC before and after zeroing genes, and the change.

    See :meth:`scvi_networkvi.NETWORKVI.get_perturbation_importances`; ``settings`` and the keywords in ``options``
    are :class:`ImportanceSettings` fields except ``cells_with``, ``gene_groups``, ``null_sets``, ``rank_by`` and
    ``rank_min_genes``.
    """
    settings = ImportanceSettings.merge(
        settings, options, function="compute_perturbation", accepted=PERTURBATION_SETTINGS
    )
    settings = dataclasses.replace(settings, null_sets=0, rank_by=None)  # no random gene sets before / after
    adata = model.validate_mudata(adata)
    labels = categorical_labels(adata, groupby)
    plans = resolve_perturbations(model, genes, perturb_modalities)
    if modalities is None:  # probe the wired modalities whose features some perturbation changes
        touched = {role for plan in plans.values() for role in plan}
        wired = resolve_roles(model, None)
        roles = [r for r in wired if r in touched]
        if not roles:
            raise ValueError(
                "No perturbed modality has a GO-wired encoder: its nodes cannot change. Perturb a wired modality."
            )
    else:
        roles = resolve_roles(model, modalities)
    want_genes = "gene" in settings.node_types
    batch_size = settings.batch_size
    progress = show_progress(progress_bar)
    base = capture_activations(
        model, adata, indices, modalities=roles, genes=want_genes, batch_size=batch_size, progress=progress
    )
    design = design_probes(
        base,
        labels,
        settings,
        feature_names={role: np.asarray(model.adata[model.modality_name(role)].var_names) for role in roles},
        selected=restrict_mask(adata, settings.restrict, base.obs_names),
    )
    frames = []
    # one bar over the perturbations (each an inference pass and its probes); the inner passes draw none
    for name, plan in track(list(plans.items()), "Perturbations", enabled=progress):
        # every perturbation starts from the original data: nothing accumulates across perturbations
        after = capture_activations(
            model, adata, indices, modalities=roles, genes=want_genes, batch_size=batch_size, transform=zeroing(plan)
        )
        gene_list = ",".join(genes[name] if isinstance(genes, Mapping) else [name])
        perturbed = ",".join(model.modality_name(r) for r in plan)
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
        "groupby": groupby,
        "refit": refit,
        "heldout_size": settings.heldout_size,
        "seed": design.seed,
    }
    logger.info("Perturbation: %d perturbations x %d phenotypes.", len(plans), len(design.phenotypes))
    return result[PERTURBATION_COLUMNS].reset_index(drop=True)
