"""Heatmaps of importance and perturbation tables (GO terms x phenotypes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._utils import finish, shorten, stored_table

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
    if not _filled(table, mark):
        if mark in ("pval_set", "qval_set", "pval_null"):
            raise ValueError(f"Column {mark!r} is empty: compute the importances with null_sets=100 (or more).")
        raise ValueError(f"Column {mark!r} holds no values for GO terms: mark another column.")


def _matrices(
    rows: pd.DataFrame, value: str, column: pd.Series, column_order: Sequence[str], mark: str = "qval"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """``value`` and ``mark`` (the starred column) as (modality, node) x column matrices, and each row's label.

    Each modality is drawn as its own facet, so labels carry no modality; a name two terms share within a
    modality gets the GO id.
    """
    frame = rows.assign(
        _column=column.to_numpy(), modality=rows["modality"].astype(str), node_id=rows["node_id"].astype(str)
    )
    index = ["modality", "node_id"]
    values = frame.pivot_table(index=index, columns="_column", values=value, aggfunc="first", observed=True)
    qvals = frame.pivot_table(index=index, columns="_column", values=mark, aggfunc="first", observed=True)
    # modalities (facets) in the table's order (rna before prot), not sorted by name
    order = pd.MultiIndex.from_tuples(list(dict.fromkeys(zip(frame["modality"], frame["node_id"], strict=True))))
    values = values.reindex(index=order.set_names(index), columns=list(column_order))
    qvals = qvals.reindex(index=values.index, columns=values.columns)
    names = frame.drop_duplicates(index).set_index(index)["name"].astype(str).reindex(values.index)
    shared = pd.Series(list(zip(names.index.get_level_values("modality"), names, strict=True))).duplicated(keep=False)
    labels = [
        f"{shorten(n, 50)} ({node})" if twice else shorten(n)
        for (_, node), n, twice in zip(names.index, names, shared, strict=True)
    ]
    return values, qvals, pd.Series(labels, index=names.index, dtype=object)


def column_label(data: Any, key: str, table: pd.DataFrame, prefix: str = "") -> str:
    """The x-axis label: the ``groupby`` column the table was computed for, and what each label was tested against."""
    groupby = None
    if not isinstance(data, pd.DataFrame):
        params = dict(getattr(data, "uns", {}).get("networkvi", {}).get(key, {}).get("params", {}))
        groupby = params.get("groupby")
    if groupby is None:
        groupby = table.attrs.get("networkvi", {}).get("groupby")
    groupby = str(groupby) if groupby is not None else "phenotype"
    references = list(dict.fromkeys(table["reference"].astype(str))) if "reference" in table.columns else []
    against = ""
    if references == ["rest"]:
        against = " (each vs rest)"
    elif len(references) == 1:
        against = f" (vs {shorten(references[0], 30)})"
    return f"{prefix}{groupby}{against}"


#: The significance mark: a white star with a black edge, visible on every colour of the maps used here.
STAR = {"marker": "*", "c": "white", "edgecolors": "black", "linewidths": 0.7}


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
    xlabel: str,
    title: str | None,
    ax: Axes | None,
    figsize: tuple[float, float] | None,
    mark_label: str = "q",
) -> Axes | list[Axes]:
    """One heatmap facet per modality, stacked, sharing the columns and one colour bar."""
    modalities = list(dict.fromkeys(values.index.get_level_values("modality")))
    facets = []
    for mod in modalities:
        block = values[values.index.get_level_values("modality") == mod]
        facets.append((mod, block, qvals.loc[block.index], labels.loc[block.index]))
    if ax is not None and len(facets) > 1:
        raise ValueError(
            f"The table has several modalities {modalities}, drawn as one facet each: pick one with modality= to "
            "draw into a given ax, or leave ax=None."
        )
    n_cols = values.shape[1]
    rows = [len(block) for _, block, _, _ in facets]
    if figsize is None:
        longest = max((len(s) for _, _, _, lab in facets for s in lab), default=10)
        widest_column = max((len(str(c)) for c in values.columns), default=5)
        width = 1.6 + 0.075 * longest + 0.42 * n_cols
        height = 1.0 + 0.3 * sum(rows) + 0.4 * len(facets) + 0.055 * widest_column + (0.3 if title else 0.0)
        figsize = (width, height)
    if ax is None:
        import matplotlib.pyplot as plt

        fig, grid = plt.subplots(
            len(facets), 1, figsize=figsize, sharex=True, squeeze=False, height_ratios=rows, layout="constrained"
        )
        axes = list(grid[:, 0])
    else:
        fig, axes = ax.figure, [ax]
    star_size = float(np.clip(2600 / max(n_cols, max(rows)) ** 1.2, 40, 110))
    marked = False
    for axis, (mod, block, marks, row_labels) in zip(axes, facets, strict=True):
        image = axis.imshow(
            np.ma.masked_invalid(block.to_numpy(dtype=float)),
            aspect="auto",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            interpolation="nearest",
        )
        axis.set_yticks(np.arange(len(block)), labels=list(row_labels))
        axis.tick_params(length=0)
        if len(facets) > 1:
            axis.set_title(f"{mod}: GO terms", loc="left", fontsize="medium", fontweight="bold", gid="facet_title")
        significant = np.nan_to_num(marks.to_numpy(dtype=float), nan=1.0) < alpha
        ys, xs = np.nonzero(significant)
        if len(ys):
            marked = True
            axis.scatter(xs, ys, s=star_size, label=f"{mark_label} < {alpha:g}", gid="significance", **STAR)
    bottom = axes[-1]
    bottom.set_xticks(np.arange(n_cols), labels=[str(c) for c in values.columns])
    bottom.tick_params(axis="x", labelrotation=45)
    for text in bottom.get_xticklabels():
        text.set_horizontalalignment("right")
        text.set_rotation_mode("anchor")
    bottom.set_xlabel(xlabel)
    colorbar = fig.colorbar(image, ax=axes, fraction=0.046 if n_cols > 3 else 0.15, pad=0.02, shrink=1.0)
    colorbar.set_label(colorbar_label)
    if marked:
        handle = _star_handle(star_size, mark_label, alpha)
        if ax is None:  # our figure: the legend above, right-aligned, with room made for it
            fig.legend(handles=[handle], loc="outside upper right", frameon=False, handletextpad=0.2)
        else:
            axes[0].legend(
                handles=[handle], loc="lower left", bbox_to_anchor=(1.0, 1.0), frameon=False, handletextpad=0.2
            )
    if title and len(axes) > 1:
        fig.suptitle(title)
    elif title:
        axes[0].set_title(title)
    return axes[0] if len(axes) == 1 else axes


def _star_handle(size: float, mark_label: str, alpha: float):
    """The legend entry of the significance mark, as drawn."""
    from matplotlib.lines import Line2D

    return Line2D(
        [],
        [],
        linestyle="none",
        marker="*",
        markersize=float(np.sqrt(size)),
        markerfacecolor="white",
        markeredgecolor="black",
        markeredgewidth=0.7,
        label=f"{mark_label} < {alpha:g}",
    )


def _filled(table: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` holds a value for some GO term."""
    return column in table.columns and bool(table.loc[table["kind"].astype(str) == "go", column].notna().any())


def _top_rows(
    values: pd.DataFrame, top: int | None, by_magnitude: bool, ranks: pd.DataFrame | None = None
) -> pd.DataFrame:
    if top is not None and (not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be a positive integer or None, got {top!r}.")
    scores = values.abs() if by_magnitude else values
    # the best rank each term reaches in any phenotype (the table's, else by value), ties broken by its largest
    # value: every phenotype gets its leading terms into the plot, not only the one with the highest numbers
    if ranks is None:
        best_rank = scores.rank(ascending=False, method="min").min(axis=1)
    else:
        best_rank = ranks.reindex(index=values.index, columns=values.columns).min(axis=1)
    order = pd.DataFrame({"rank": best_rank, "score": -scores.max(axis=1)}).sort_values(["rank", "score"]).index
    chosen = order if top is None else order[:top]
    return values.loc[chosen]


def _top_per_modality(
    values: pd.DataFrame, top: int | None, by_magnitude: bool, ranks: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The ``top`` rows of each modality (its facet), modalities in their order of appearance."""
    modality = values.index.get_level_values("modality")
    return pd.concat(
        [_top_rows(values[modality == mod], top, by_magnitude, ranks) for mod in dict.fromkeys(modality)], axis=0
    )


def importances(
    mdata: Any,
    *,
    key: str = "networkvi_importances",
    top: int | None = 20,
    phenotypes: Sequence[str] | None = None,
    modality: str | None = None,
    value: str | None = None,
    alpha: float = 0.05,
    mark: str | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | list[Axes] | None:
    """Heatmap of GO-term importances: specificity (or held-out AUROC) per GO term (rows) and phenotype (columns).

    Parameters
    ----------
    mdata
        MuData (or AnnData) holding the table of :func:`scvi_networkvi.tl.importances` in ``uns[key]``, or the table.
    key
        ``uns`` key of the table.
    top
        Number of GO terms shown: those reaching the best ``rank`` of the table in any phenotype (``None``: all).
    phenotypes
        Phenotypes (columns) to show, in this order (default all).
    modality
        Modality (MuData name as in the table) to show; default all, each in its own facet (RNA and protein GO
        terms are not mixed), stacked with shared columns and one colour bar; ``top`` applies per facet.
    value
        Column shown: default ``"specificity"`` (how much better the term's genes separate the phenotype than random
        genes of the same number; the table's order) when the table has it (importances with ``null_sets``, the
        default), else ``"auroc"``; ``"auroc_fit"`` for in-sample numbers.
    alpha
        A star marks cells whose ``mark`` column is below ``alpha``.
    mark
        Column the stars read: default ``"qval_set"`` (the term's own genes beat random gene sets of its size,
        Benjamini–Hochberg across the phenotype's terms) when the table has it, else ``"qval"`` (q-value of the
        probe's AUROC > 0.5, which almost every term passes once the latent separates the phenotypes);
        ``"pval_set"``: the same gene-set test uncorrected; ``"pval_null"``: the term's neurons beat the random sets.
    cmap, vmin, vmax
        Colour map and its limits (default: 0.5 (chance) to 1 for AUROCs, 0 (random genes) to the largest value for
        specificity).
    title
        Title (of the figure, with several facets).
    ax
        Axes to draw into (default: a new figure); only for one modality.
    figsize
        Size of the new figure (default: from the number of rows and columns).
    show
        Show the figure (default: when matplotlib is interactive).
    save
        Write the figure to this path (format from the suffix, ``.png`` when none).

    Returns
    -------
    The Axes (a list of them, top to bottom, with several modalities), or ``None`` when shown. The x axis is
    labelled with the ``groupby`` column the table was computed for (from ``uns["networkvi"][key]["params"]`` or
    the table's ``attrs``); the significance stars (gid ``significance``) are white with a black edge.
    """
    table = stored_table(mdata, key, _NODE_COLUMNS, "nvi.tl.importances")
    value = value or ("specificity" if _filled(table, "specificity") else "auroc")
    mark = mark or ("qval_set" if _filled(table, "qval_set") else "qval")
    table = stored_table(table, key, [value, mark], "nvi.tl.importances")
    _check_mark(table, mark)
    if value == "specificity":
        vmin = 0.0 if vmin is None else vmin
    elif value.startswith("auroc"):
        vmin, vmax = (0.5 if vmin is None else vmin), (1.0 if vmax is None else vmax)
    rows = _select(table, modality=modality, phenotypes=phenotypes)
    if phenotypes is None:
        order = list(dict.fromkeys(rows["phenotype"].astype(str)))
    else:
        order = [phenotypes] if isinstance(phenotypes, str) else list(phenotypes)
    values, qvals, labels = _matrices(rows, value, rows["phenotype"].astype(str), order, mark)
    ranks = None
    if "rank" in rows.columns and rows["rank"].notna().any():  # the table's own order picks the rows
        ranks, _, _ = _matrices(
            rows.assign(rank=rows["rank"].astype(float)), "rank", rows["phenotype"].astype(str), order
        )
    values = _top_per_modality(values, top, by_magnitude=False, ranks=ranks)
    label = {
        "auroc": "held-out AUROC (0.5 = chance)",
        "specificity": "specificity (its genes' AUROC − random genes')",
    }.get(value, value)
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
            xlabel=column_label(mdata, key, table),
            title=title,
            ax=ax,
            figsize=figsize,
            mark_label={"qval": "q", "qval_set": "gene-set q", "pval_set": "gene-set p"}.get(mark, mark),
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
) -> Axes | list[Axes] | None:
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
        Modality (MuData name as in the table) to show; default all, one facet each.
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
    The Axes (a list, one per modality, with several), or ``None`` when shown.
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
    values = _top_per_modality(values, top, by_magnitude=True)
    if limit is None:
        limit = float(np.nanmax(np.abs(values.to_numpy(dtype=float)), initial=0.0)) or 1e-3
    if title is None and rows["perturbation"].nunique() == 1:
        title = f"perturbation: {rows['perturbation'].astype(str).iloc[0]}"
    label = "Δ held-out AUROC (after − before)" if value == "delta" else value
    prefix = "perturbation | " if rows["perturbation"].nunique() > 1 else ""
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
            xlabel=column_label(mdata, key, table, prefix),
            title=title,
            ax=ax,
            figsize=figsize,
        ),
        show,
        save,
    )
