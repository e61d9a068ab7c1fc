"""Heatmaps of importance and perturbation tables (GO terms x phenotypes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._utils import finish, new_axes, shorten, stored_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_NODE_COLUMNS = ("modality", "node_id", "node_type", "kind", "name", "phenotype")


def _select(table: pd.DataFrame, *, modality: str | None, phenotypes: Sequence[str] | None) -> pd.DataFrame:
    rows = table[(table["node_type"].astype(str) == "go_term") & (table["kind"].astype(str) == "go")]
    if modality is not None:
        available = sorted(rows["modality"].astype(str).unique())
        if modality not in available:
            raise ValueError(f"modality {modality!r} is not in the table; it has {available}.")
        rows = rows[rows["modality"].astype(str) == modality]
    if phenotypes is not None:
        phenotypes = [phenotypes] if isinstance(phenotypes, str) else list(phenotypes)
        available = list(dict.fromkeys(rows["phenotype"].astype(str)))
        unknown = [p for p in phenotypes if p not in available]
        if unknown:
            raise ValueError(f"phenotypes {unknown} are not in the table; it has {available}.")
        rows = rows[rows["phenotype"].astype(str).isin(phenotypes)]
    if rows.empty:
        raise ValueError("No GO-term rows match the selection.")
    return rows


def _check_mark(table: pd.DataFrame, mark: str) -> None:
    """Raise a ValueError when the starred column is not numeric or holds nothing for GO terms."""
    if not pd.api.types.is_numeric_dtype(table[mark]):
        raise ValueError(f"mark must name a numeric column such as 'qval' or 'pval_set', got {mark!r}.")
    if not table.loc[table["kind"].astype(str) == "go", mark].notna().any():
        if mark in ("pval_set", "pval_null"):
            raise ValueError(f"Column {mark!r} is empty: compute the importances with null_sets=100 (or more).")
        raise ValueError(f"Column {mark!r} holds no values for GO terms: mark another column.")


def _matrices(
    rows: pd.DataFrame, value: str, column: pd.Series, column_order: Sequence[str], mark: str = "qval"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """``value`` and ``mark`` (the starred column) as (modality, node) x column matrices, and each row's label."""
    frame = rows.assign(_column=column.to_numpy(), modality=rows["modality"].astype(str))
    index = ["modality", "node_id"]
    values = frame.pivot_table(index=index, columns="_column", values=value, aggfunc="first", observed=True)
    qvals = frame.pivot_table(index=index, columns="_column", values=mark, aggfunc="first", observed=True)
    values = values.reindex(columns=list(column_order))
    qvals = qvals.reindex(index=values.index, columns=values.columns)
    names = frame.drop_duplicates(index).set_index(index)["name"].astype(str).reindex(values.index)
    if values.index.get_level_values("modality").nunique() > 1 or names.duplicated().any():
        names = pd.Series(
            [f"{n} [{m}]" for (m, _), n in zip(names.index, names, strict=True)], index=names.index, dtype=object
        )
    return values, qvals, names.map(shorten)


def _draw(
    values: pd.DataFrame,
    qvals: pd.DataFrame,
    labels: pd.Series,
    *,
    alpha: float,
    cmap: str,
    vmin: float | None,
    vmax: float | None,
    colorbar_label: str,
    title: str | None,
    ax: Axes | None,
    figsize: tuple[float, float] | None,
    mark_label: str = "q",
) -> Axes:
    n_rows, n_cols = values.shape
    longest = max((len(s) for s in labels), default=10)
    if figsize is None:
        figsize = (2.0 + 0.07 * longest + 0.38 * n_cols, 1.6 + 0.26 * n_rows)
    ax = new_axes(ax, figsize)
    image = ax.imshow(
        np.ma.masked_invalid(values.to_numpy(dtype=float)),
        aspect="auto",
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.set_yticks(np.arange(n_rows), labels=list(labels))
    ax.set_xticks(np.arange(n_cols), labels=[str(c) for c in values.columns], rotation=90)
    ax.tick_params(length=0)
    significant = np.nan_to_num(qvals.to_numpy(dtype=float), nan=1.0) < alpha
    rows, cols = np.nonzero(significant)
    if len(rows):
        ax.scatter(
            cols,
            rows,
            marker="*",
            s=30,
            c="black",
            edgecolors="white",
            linewidths=0.4,
            label=f"{mark_label} < {alpha:g}",
            gid="significance",
        )
        ax.legend(loc="lower left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize="small", handletextpad=0.2)
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.046 if n_cols > 3 else 0.15, pad=0.02)
    colorbar.set_label(colorbar_label)
    if title:
        ax.set_title(title)
    return ax


def _top_rows(values: pd.DataFrame, top: int | None, by_magnitude: bool) -> pd.DataFrame:
    if top is not None and (not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be a positive integer or None, got {top!r}.")
    scores = values.abs() if by_magnitude else values
    # the best rank each term reaches in any phenotype, ties broken by its largest value: every phenotype gets its
    # leading terms into the plot, not only the phenotype with the highest numbers
    best_rank = scores.rank(ascending=False, method="min").min(axis=1)
    order = pd.DataFrame({"rank": best_rank, "score": -scores.max(axis=1)}).sort_values(["rank", "score"]).index
    chosen = order if top is None else order[:top]
    return values.loc[chosen]


def importances(
    mdata: Any,
    *,
    key: str = "networkvi_importances",
    top: int | None = 20,
    phenotypes: Sequence[str] | None = None,
    modality: str | None = None,
    value: str = "auroc",
    alpha: float = 0.05,
    mark: str = "qval",
    cmap: str = "viridis",
    vmin: float | None = 0.5,
    vmax: float | None = 1.0,
    title: str | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | None:
    """Heatmap of GO-term importances: held-out AUROC per GO term (rows, by name) and phenotype (columns).

    Parameters
    ----------
    mdata
        MuData (or AnnData) holding the table of :func:`scvi_networkvi.tl.importances` in ``uns[key]``, or the table.
    key
        ``uns`` key of the table.
    top
        Number of GO terms shown: those reaching the best rank in any phenotype (``None``: all).
    phenotypes
        Phenotypes (columns) to show, in this order (default all).
    modality
        Modality (MuData name as in the table) to show; default all, rows then read ``"name [modality]"``.
    value
        Column shown (``"auroc"``; ``"auroc_fit"`` for in-sample numbers).
    alpha
        A star marks cells whose ``mark`` column is below ``alpha``.
    mark
        Column the stars read: ``"qval"`` (Benjamini–Hochberg q-value of the probe, default), ``"pval_set"`` (the
        term's own genes beat random gene sets of its size) or ``"pval_null"`` (the term beats that reference); the
        last two need importances computed with ``null_sets``.
    cmap, vmin, vmax
        Colour map and its limits (AUROC 0.5 is chance).
    title
        Axes title.
    ax
        Axes to draw into (default: a new figure).
    figsize
        Size of the new figure (default: from the number of rows and columns).
    show
        Show the figure (default: when matplotlib is interactive).
    save
        Write the figure to this path (format from the suffix, ``.png`` when none).

    Returns
    -------
    The Axes, or ``None`` when shown.
    """
    table = stored_table(mdata, key, [*_NODE_COLUMNS, value, mark], "nvi.tl.importances")
    _check_mark(table, mark)
    rows = _select(table, modality=modality, phenotypes=phenotypes)
    if phenotypes is None:
        order = list(dict.fromkeys(rows["phenotype"].astype(str)))
    else:
        order = [phenotypes] if isinstance(phenotypes, str) else list(phenotypes)
    values, qvals, labels = _matrices(rows, value, rows["phenotype"].astype(str), order, mark)
    values = _top_rows(values, top, by_magnitude=False)
    label = "held-out AUROC" if value == "auroc" else value
    return finish(
        _draw(
            values,
            qvals.loc[values.index],
            labels.loc[values.index],
            alpha=alpha,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            colorbar_label=label,
            title=title,
            ax=ax,
            figsize=figsize,
            mark_label="q" if mark == "qval" else mark,
        ),
        show,
        save,
    )


def perturbation(
    mdata: Any,
    *,
    key: str = "networkvi_perturbation",
    perturbations: str | Sequence[str] | None = None,
    top: int | None = 20,
    phenotypes: Sequence[str] | None = None,
    modality: str | None = None,
    value: str = "delta",
    alpha: float = 0.05,
    cmap: str = "RdBu_r",
    limit: float | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | None:
    """Heatmap of perturbation effects: change of held-out AUROC per GO term and phenotype, centred at 0.

    Parameters
    ----------
    mdata
        MuData (or AnnData) holding the table of :func:`scvi_networkvi.tl.perturb` in ``uns[key]``, or the table.
    key
        ``uns`` key of the table.
    perturbations
        Perturbation(s) to show (default all); with several, columns read ``"perturbation | phenotype"``.
    top
        Number of GO terms shown: those reaching the largest absolute change in any column (``None``: all).
    phenotypes
        Phenotypes to show (default all).
    modality
        Modality (MuData name as in the table) to show; default all.
    value
        Column shown (``"delta"``: AUROC after - before).
    alpha
        A star marks cells with ``qval < alpha`` (paired DeLong test, Benjamini–Hochberg).
    cmap, limit
        Diverging colour map, centred at 0 and spanning ``[-limit, limit]`` (default: the largest absolute value).
    title, ax, figsize, show, save
        As in :func:`importances`.

    Returns
    -------
    The Axes, or ``None`` when shown.
    """
    table = stored_table(mdata, key, [*_NODE_COLUMNS, "perturbation", value, "qval"], "nvi.tl.perturb")
    if perturbations is not None:
        wanted = [perturbations] if isinstance(perturbations, str) else list(perturbations)
        available = list(dict.fromkeys(table["perturbation"].astype(str)))
        unknown = [p for p in wanted if p not in available]
        if unknown:
            raise ValueError(f"perturbations {unknown} are not in the table; it has {available}.")
        table = table[table["perturbation"].astype(str).isin(wanted)]
    rows = _select(table, modality=modality, phenotypes=phenotypes)
    phenotype = rows["phenotype"].astype(str)
    if rows["perturbation"].nunique() > 1:
        column = rows["perturbation"].astype(str) + " | " + phenotype
    else:
        column = phenotype
    values, qvals, labels = _matrices(rows, value, column, list(dict.fromkeys(column)))
    values = _top_rows(values, top, by_magnitude=True)
    if limit is None:
        limit = float(np.nanmax(np.abs(values.to_numpy(dtype=float)), initial=0.0)) or 1e-3
    if title is None and rows["perturbation"].nunique() == 1:
        title = f"perturbation: {rows['perturbation'].astype(str).iloc[0]}"
    label = "Δ held-out AUROC" if value == "delta" else value
    return finish(
        _draw(
            values,
            qvals.loc[values.index],
            labels.loc[values.index],
            alpha=alpha,
            cmap=cmap,
            vmin=-limit,
            vmax=limit,
            colorbar_label=label,
            title=title,
            ax=ax,
            figsize=figsize,
        ),
        show,
        save,
    )
