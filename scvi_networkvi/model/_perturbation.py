"""The features an in-silico perturbation zeroes: the user's genes found in the model's modalities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scvi_networkvi.interpret import Perturbation

    from ._networkvi import NETWORKVI


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
) -> dict[str, Perturbation]:
    """``{perturbation name: Perturbation}``; every gene must be found in a chosen modality."""
    from scvi_networkvi.interpret import Perturbation

    if isinstance(genes, str):
        genes = [genes]
    named = {str(k): list(v) for k, v in genes.items()} if isinstance(genes, Mapping) else {str(g): [g] for g in genes}
    if not named:
        raise ValueError("genes is empty: name at least one gene (symbol or gene id) to perturb.")
    for name, members in named.items():
        if isinstance(members, str) or not members:
            raise ValueError(f"Perturbation {name!r} must list gene ids or symbols, got {members!r}.")
    roles = model.modality_roles if perturb_modalities is None else [model.role_of(m) for m in perturb_modalities]
    plans: dict[str, Perturbation] = {}
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
        plans[name] = Perturbation(tuple(map(str, members)), plan, tuple(model.modality_name(r) for r in plan))
    return plans
