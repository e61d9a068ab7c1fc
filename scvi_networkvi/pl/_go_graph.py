"""The kept GO sub-DAG around a term, drawn level by level."""

from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._utils import finish, new_axes, stored_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _wiring(model, modality: str):
    from scvi_networkvi.model import NETWORKVI

    if not isinstance(model, NETWORKVI):
        raise TypeError(f"model must be a NETWORKVI, got {type(model).__name__}.")
    role = model.role_of(modality)
    wiring = model.wirings_.get(role)
    if wiring is None:
        raise ValueError(f"The model's {role!r} encoder is not GO-wired (encoder='dense'): there is no GO graph.")
    return role, wiring


def _importance_rows(importances: Any, table_modality: str) -> pd.DataFrame | None:
    if importances is None:
        return None
    table = stored_table(
        importances,
        "networkvi_importances",
        ["modality", "node_id", "node_type", "phenotype", "rank"],
        "nvi.tl.importances",
    )
    rows = table[(table["modality"].astype(str) == table_modality) & (table["node_type"].astype(str) == "go_term")]
    if rows.empty:
        raise ValueError(f"The importance table has no GO-term rows of modality {table_modality!r}.")
    return rows


#: Below this many terms, the drawn sub-DAG gets context automatically (``context=None``): siblings, grandchildren.
MIN_TERMS = 6
#: At most this many siblings (other children of the term's parents) are added as context.
MAX_SIBLINGS = 4
#: Node label size in points (readable in print at the figure's own size).
LABEL_SIZE = 9


def subgraph(
    wiring, focus: int, *, context: bool = False, priority: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Terms around ``focus`` and the child -> parent edges among them; and which terms are context.

    Always its ancestors up to the root, itself and its children. With ``context``: also up to
    :data:`MAX_SIBLINGS` GO-term siblings (no structural nodes) (other children of its parents; those of highest ``priority`` first, e.g. the
    importance shown) and, if that is still fewer than :data:`MIN_TERMS` terms, its grandchildren.
    """
    child, parent = np.asarray(wiring.term_term[0]), np.asarray(wiring.term_term[1])
    nodes = {focus}
    frontier = {focus}
    while frontier:
        frontier = set(parent[np.isin(child, list(frontier))].tolist()) - nodes
        nodes |= frontier
    children = set(child[parent == focus].tolist())
    nodes |= children
    core = set(nodes)
    if context:
        parents = parent[child == focus]
        kind = np.asarray(wiring.term_kind).astype(str)
        siblings = sorted(t for t in set(child[np.isin(parent, parents)].tolist()) - nodes if kind[t] == "go")
        if priority is not None:
            siblings.sort(key=lambda t: -np.nan_to_num(priority[t], nan=-np.inf))
        nodes |= set(siblings[:MAX_SIBLINGS])
        if len(nodes) < MIN_TERMS:
            nodes |= set(child[np.isin(parent, list(children))].tolist())
    keep = np.array(sorted(nodes))
    inside = np.isin(child, keep) & np.isin(parent, keep)
    return keep, np.stack([child[inside], parent[inside]]), np.array([n not in core for n in keep])


def layered_layout(depth: np.ndarray, edges: np.ndarray, nodes: np.ndarray) -> dict[int, tuple[float, float]]:
    """Positions: one row per GO depth (the shallowest on top), each node under the mean position of its parents."""
    positions: dict[int, tuple[float, float]] = {}
    by_depth: dict[int, list[int]] = {}
    for node in nodes:
        by_depth.setdefault(int(depth[node]), []).append(int(node))
    for level in sorted(by_depth):
        members = by_depth[level]

        def anchor(node: int) -> float:
            parents = [positions[p][0] for p in edges[1][edges[0] == node].tolist() if p in positions]
            return float(np.mean(parents)) if parents else 0.0

        members.sort(key=lambda n: (anchor(n), n))
        offset = (len(members) - 1) / 2
        for i, node in enumerate(members):
            positions[node] = (i - offset, -float(level))
    return positions


def go_graph(
    model,
    term_or_phenotype: str,
    *,
    modality: str = "rna",
    importances: Any = None,
    phenotype: str | None = None,
    value: str = "auroc",
    cmap: str = "viridis",
    vmin: float | None = 0.5,
    vmax: float | None = 1.0,
    label_width: int = 18,
    context: bool | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | None:
    """Draw the GO sub-DAG the model kept around a term: its ancestors up to the root and its children.

    Terms are laid out level by level (GO depth in the wiring: the root on top, the deepest terms at the bottom),
    edges point from child to parent, the term itself is outlined, and with an importance table each node is
    coloured by its importance for one phenotype. The figure is sized to the terms drawn, names in 9 pt; a sub-DAG
    of fewer than six terms gets context (siblings, then grandchildren; drawn with dashed outlines).

    Parameters
    ----------
    model
        A GO-wired :class:`~scvi_networkvi.NETWORKVI`.
    term_or_phenotype
        A GO id (``"GO:0006955"``) or name kept in the wiring; or, with ``importances``, a phenotype: its
        top-ranked GO term is drawn and coloured for that phenotype.
    modality
        The encoder whose wiring is drawn (role or MuData name).
    importances
        Importance table of :func:`scvi_networkvi.tl.importances` (or a MuData holding it in
        ``uns["networkvi_importances"]``) to colour the nodes.
    phenotype
        Phenotype whose importances colour the nodes (needed when the table has several and ``term_or_phenotype``
        is a term).
    value
        Column colouring the nodes.
    cmap, vmin, vmax
        Colour map and limits.
    label_width
        Wrap node names at this many characters.
    context
        Add the term's siblings (up to four, the most important first when coloured) and, if still small, its
        grandchildren. ``None`` (default): only when the term, its ancestors and children are fewer than six terms.
    title, ax, figsize, show, save
        As in :func:`scvi_networkvi.pl.importances`.

    Returns
    -------
    The Axes (a scatter collection with gid ``go_terms``, a point per term; name texts with gid ``go_term_label``;
    the colour bar, labelled with the score and the phenotype it was computed for), or ``None`` when shown.
    """
    role, wiring = _wiring(model, modality)
    table_modality = model.modality_name(role)
    rows = _importance_rows(importances, table_modality)
    term_ids = np.asarray(wiring.term_ids).astype(str)
    term_names = np.asarray(wiring.term_names).astype(str)
    phenotypes = [] if rows is None else list(dict.fromkeys(rows["phenotype"].astype(str)))
    if term_or_phenotype in term_ids:
        focus = int(np.flatnonzero(term_ids == term_or_phenotype)[0])
    elif np.sum(term_names == term_or_phenotype) == 1:
        focus = int(np.flatnonzero(term_names == term_or_phenotype)[0])
    elif term_or_phenotype in phenotypes:
        if phenotype is not None and phenotype != term_or_phenotype:
            raise ValueError(f"term_or_phenotype is the phenotype {term_or_phenotype!r} but phenotype={phenotype!r}.")
        phenotype = term_or_phenotype
        ranked = rows[(rows["phenotype"].astype(str) == phenotype) & rows["rank"].notna()]
        if ranked.empty:
            raise ValueError(f"No ranked GO term for phenotype {phenotype!r} in modality {table_modality!r}.")
        best = str(ranked.sort_values("rank")["node_id"].iloc[0])
        focus = int(np.flatnonzero(term_ids == best)[0])
    else:
        hint = f" nor a phenotype of the importance table ({phenotypes})" if rows is not None else ""
        raise ValueError(
            f"{term_or_phenotype!r} is neither a GO id or name kept in the {role!r} wiring ({len(term_ids)} terms, "
            f"e.g. {list(term_ids[:3])}){hint}."
        )
    colours = None
    reference = None
    if rows is not None:
        if value not in rows.columns:
            raise ValueError(f"value {value!r} is not a column of the importance table.")
        if phenotype is None:
            if len(phenotypes) != 1:
                raise ValueError(
                    f"The importance table has several phenotypes: pick one with phenotype= ({phenotypes})."
                )
            phenotype = phenotypes[0]
        if phenotype not in phenotypes:
            raise ValueError(f"phenotype {phenotype!r} is not in the importance table ({phenotypes}).")
        chosen = rows[rows["phenotype"].astype(str) == phenotype]
        colours = chosen.drop_duplicates("node_id").set_index("node_id")[value]
        colours.index = colours.index.astype(str)
        if "reference" in chosen.columns and chosen["reference"].nunique() == 1:
            reference = str(chosen["reference"].iloc[0])

    all_values = None if colours is None else colours.reindex(term_ids).to_numpy(dtype=float)
    core, _, _ = subgraph(wiring, focus)
    if context is None:
        context = len(core) < MIN_TERMS
    nodes, edges, extra = subgraph(wiring, focus, context=bool(context), priority=all_values)
    depth = np.asarray(wiring.term_depth)
    positions = layered_layout(depth, edges, nodes)
    widest = max(np.unique(depth[nodes], return_counts=True)[1])
    n_levels = len(np.unique(depth[nodes]))
    labels = [textwrap.fill(term_names[n], label_width) for n in nodes]
    lines = max(label.count("\n") + 1 for label in labels)
    if figsize is None:
        slot = 0.072 * label_width + 0.1  # inches per node: its label's width at 9 pt
        level = 0.75 + 0.16 * lines  # inches per level: the node and its label
        figsize = (1.3 + slot * widest + (1.3 if colours is not None else 0.0), 0.9 + level * n_levels)
    ax = new_axes(ax, figsize)
    for child, parent in edges.T:
        ax.annotate(
            "",
            xy=positions[int(parent)],
            xytext=positions[int(child)],
            arrowprops={"arrowstyle": "-|>", "color": "0.55", "lw": 1.0, "shrinkA": 11, "shrinkB": 11},
        )
    xy = np.array([positions[int(n)] for n in nodes])
    values = None if all_values is None else all_values[nodes]
    edgecolors = ["black" if n == focus else "0.4" for n in nodes]
    widths = [2.5 if n == focus else 0.8 for n in nodes]
    styles = ["--" if e else "-" for e in extra]
    if values is None:
        points = ax.scatter(xy[:, 0], xy[:, 1], s=420, c="#cfe0f3", edgecolors=edgecolors, linewidths=widths, zorder=3)
    else:
        import matplotlib

        colormap = matplotlib.colormaps[cmap].with_extremes(bad="0.85")  # terms without a value: light grey
        points = ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=420,
            c=np.ma.masked_invalid(values),
            cmap=colormap,
            vmin=vmin,
            vmax=vmax,
            plotnonfinite=True,
            edgecolors=edgecolors,
            linewidths=widths,
            zorder=3,
        )
        colorbar = ax.figure.colorbar(points, ax=ax, fraction=0.05, pad=0.02, aspect=15)
        score = "held-out AUROC" if value == "auroc" else value
        against = f" vs {reference}" if reference else ""
        colorbar.set_label(f"{score}\n{phenotype}{against}")
    points.set_linestyles(styles)
    points.set_gid("go_terms")
    for (x, y), label in zip(xy, labels, strict=True):
        ax.text(
            x,
            y - 0.22,
            label,
            ha="center",
            va="top",
            fontsize=LABEL_SIZE,
            zorder=4,
            gid="go_term_label",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.6},
        )
    ax.set_xlim(xy[:, 0].min() - 0.6, xy[:, 0].max() + 0.6)
    ax.set_ylim(xy[:, 1].min() - 0.3 - 0.1 * lines, xy[:, 1].max() + 0.3)
    ax.set_yticks(sorted(set(xy[:, 1])), labels=[f"depth {int(-y)}" for y in sorted(set(xy[:, 1]))])
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    if title is None:
        chars = max(30, int(figsize[0] * 9))
        title = textwrap.fill(f"{term_ids[focus]} {term_names[focus]} ({table_modality})", chars)
    ax.set_title(title)
    return finish(ax, show, save)
