"""Phenotypes to probe for (a label, a label group, vs the rest or vs chosen labels) and the seeded cell split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_float_dtype, is_integer_dtype

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData


@dataclass(frozen=True)
class Phenotype:
    """Cases against controls over a set of cells.

    Attributes
    ----------
    name
        The label (or label group) whose cells are the cases.
    reference
        ``"rest"`` or the control labels joined by ``", "``.
    case, control
        Boolean masks over the cells; cells in neither take no part.
    """

    name: str
    reference: str
    case: np.ndarray
    control: np.ndarray


def obs_column(mdata, key: str) -> pd.Series:
    """``mdata.obs[key]``, or ``mdata[mod].obs[col]`` for ``key="mod:col"``, aligned to ``mdata.obs_names``."""
    obs = mdata.obs
    if key in obs.columns:
        return obs[key]
    if ":" in key and hasattr(mdata, "mod"):
        mod, column = key.split(":", 1)
        if mod in mdata.mod and column in mdata.mod[mod].obs.columns:
            return mdata.mod[mod].obs[column].reindex(mdata.obs_names)
    raise ValueError(
        f"{key!r} is not a column of the MuData's obs (columns: {list(obs.columns)}); 'mod:col' also works."
    )


def categorical_labels(mdata: MuData | AnnData, groupby: str) -> pd.Series:
    """The ``groupby`` labels of the cells as a categorical (strings and booleans accepted; numbers are refused).

    Parameters
    ----------
    mdata
        MuData (or AnnData) whose cells are labelled.
    groupby
        A column of ``mdata.obs``, or ``"mod:col"`` for the column ``col`` of modality ``mod``'s obs (aligned to
        ``mdata.obs_names``; cells the modality lacks get no label).

    Returns
    -------
    The column, one entry per cell of ``mdata``, as a :class:`pandas.Categorical` series (unchanged when it already
    is one).

    Raises
    ------
    ValueError
        If ``groupby`` names no such column, or a numeric one (cluster ids must be made categorical first).
    """
    column = obs_column(mdata, groupby)
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column
    if is_float_dtype(column.dtype) or (is_integer_dtype(column.dtype) and not is_bool_dtype(column.dtype)):
        raise ValueError(
            f"groupby {groupby!r} is numeric ({column.dtype}); probes need labels. If the numbers are cluster ids, "
            f"make them categorical first: mdata.obs[{groupby!r}] = mdata.obs[{groupby!r}].astype(str).astype('category')."
        )
    return column.astype("category")


def restrict_mask(mdata, restrict: Mapping[str, Any] | None, cells: pd.Index) -> np.ndarray:
    """Cells whose obs values are allowed by ``restrict`` (``{column: value or list of values}``; all must hold)."""
    mask = np.ones(len(cells), dtype=bool)
    for key, allowed in (restrict or {}).items():
        values = obs_column(mdata, key).reindex(cells)
        wanted = list(allowed) if isinstance(allowed, list | tuple | set | np.ndarray | pd.Index) else [allowed]
        known = set(values.dropna().unique().tolist())
        unknown = [v for v in wanted if v not in known]
        if unknown:
            raise ValueError(
                f"restrict[{key!r}] has values no selected cell has: {unknown} (present: {sorted(known, key=str)})."
            )
        mask &= values.isin(wanted).to_numpy()
    return mask


def define_phenotypes(
    labels: pd.Series,
    *,
    targets: Sequence[str] | None = None,
    reference: str | Sequence[str] = "rest",
    groups: Mapping[str, Sequence[str]] | None = None,
) -> list[Phenotype]:
    """Phenotypes over the cells of ``labels`` (categorical; NaN cells take no part).

    Parameters
    ----------
    labels
        One label per cell.
    targets
        Labels tested as cases, each in turn (default: every label present except the reference labels).
    reference
        ``"rest"`` (every other labelled cell is a control) or the control label(s); then the probes compare
        each target with those labels only.
    groups
        ``{name: [labels]}``: each group's cells are the cases of one phenotype (instead of ``targets``).
    """
    values = labels.astype(object).to_numpy()
    present = [c for c in labels.cat.categories if (values == c).any()]
    labelled = labels.notna().to_numpy()

    def check(names: Sequence[str], what: str) -> None:
        unknown = [n for n in names if n not in present]
        if unknown:
            raise ValueError(f"{what} has labels no selected cell carries: {unknown}. Present: {present}.")

    if isinstance(reference, str) and reference == "rest":
        control_labels: list[str] | None = None
    else:
        control_labels = [reference] if isinstance(reference, str) else list(reference)
        check(control_labels, "reference")
    if groups is not None and targets is not None:
        raise ValueError("Give either targets or groups, not both.")
    if groups is not None:
        cases = {str(name): list(members) for name, members in groups.items()}
        for name, members in cases.items():
            check(members, f"groups[{name!r}]")
    else:
        chosen = list(targets) if targets is not None else [c for c in present if c not in (control_labels or [])]
        check(chosen, "targets")
        cases = {str(label): [label] for label in chosen}
    phenotypes = []
    for name, members in cases.items():
        case = np.isin(values, members) & labelled
        if control_labels is None:
            control = labelled & ~case
            ref = "rest"
        else:
            overlap = set(members) & set(control_labels)
            if overlap:
                raise ValueError(f"Phenotype {name!r} shares labels {sorted(overlap)} with the reference.")
            control = np.isin(values, control_labels) & labelled
            ref = ", ".join(map(str, control_labels))
        phenotypes.append(Phenotype(name, ref, case, control))
    return phenotypes


def stratified_split(labels: pd.Series, heldout_size: float, seed: int) -> np.ndarray:
    """Seeded held-out mask: ``heldout_size`` of each label's cells (at least one of each label with two cells)."""
    if not 0.0 < heldout_size < 1.0:
        raise ValueError(f"heldout_size must be strictly between 0 and 1, got {heldout_size}.")
    rng = np.random.default_rng(seed)
    codes = labels.cat.codes.to_numpy() if isinstance(labels.dtype, pd.CategoricalDtype) else pd.factorize(labels)[0]
    heldout = np.zeros(len(codes), dtype=bool)
    for code in np.unique(codes):
        members = rng.permutation(np.flatnonzero(codes == code))
        n = len(members)
        k = min(n - 1, max(1, round(heldout_size * n))) if n > 1 else 0
        heldout[members[:k]] = True
    return heldout
