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
    role = model._role_of(modality)
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


def subgraph(wiring, focus: int) -> tuple[np.ndarray, np.ndarray]:
    """Terms around ``focus`` (its ancestors, itself and its children) and the child -> parent edges among them."""
    child, parent = np.asarray(wiring.term_term[0]), np.asarray(wiring.term_term[1])
    nodes = {focus}
    frontier = {focus}
    while frontier:
        frontier = set(parent[np.isin(child, list(frontier))].tolist()) - nodes
        nodes |= frontier
    nodes |= set(child[parent == focus].tolist())
    keep = np.array(sorted(nodes))
    inside = np.isin(child, keep) & np.isin(parent, keep)
    return keep, np.stack([child[inside], parent[inside]])


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
    title: str | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | None:
    """Draw the GO sub-DAG the model kept around a term: its ancestors up to the root and its children.

    Terms are laid out level by level (GO depth in the wiring: the root on top, the deepest terms at the bottom),
    edges point from child to parent, the term itself is outlined, and with an importance table each node is
    coloured by its importance for one phenotype.

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
    title, ax, figsize, show, save
        As in :func:`scvi_networkvi.pl.importances`.

    Returns
    -------
    The Axes (a scatter collection with gid ``go_terms``, a point per term; name texts with gid ``go_term_label``),
    or ``None`` when shown.
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

    nodes, edges = subgraph(wiring, focus)
    depth = np.asarray(wiring.term_depth)
    positions = layered_layout(depth, edges, nodes)
    widest = max(np.unique(depth[nodes], return_counts=True)[1])
    n_levels = len(np.unique(depth[nodes]))
    if figsize is None:
        figsize = (max(4.0, 1.9 * widest + 1.5), max(3.0, 1.6 * n_levels + 0.8))
    ax = new_axes(ax, figsize)
    for child, parent in edges.T:
        ax.annotate(
            "",
            xy=positions[int(parent)],
            xytext=positions[int(child)],
            arrowprops={"arrowstyle": "-|>", "color": "0.55", "lw": 1.0, "shrinkA": 11, "shrinkB": 11},
        )
    xy = np.array([positions[int(n)] for n in nodes])
    values = None if colours is None else np.array([colours.get(term_ids[n], np.nan) for n in nodes], dtype=float)
    edgecolors = ["black" if n == focus else "0.4" for n in nodes]
    widths = [2.5 if n == focus else 0.8 for n in nodes]
    if values is None:
        points = ax.scatter(xy[:, 0], xy[:, 1], s=420, c="#cfe0f3", edgecolors=edgecolors, linewidths=widths, zorder=3)
    else:
        points = ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=420,
            c=np.ma.masked_invalid(values),
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            plotnonfinite=True,
            edgecolors=edgecolors,
            linewidths=widths,
            zorder=3,
        )
        colorbar = ax.figure.colorbar(points, ax=ax, fraction=0.04, pad=0.02)
        colorbar.set_label(f"{value} ({phenotype})")
    points.set_gid("go_terms")
    for (x, y), node in zip(xy, nodes, strict=True):
        label = textwrap.fill(term_names[node], label_width)
        ax.text(x, y - 0.22, label, ha="center", va="top", fontsize=7, zorder=4, gid="go_term_label")
    ax.set_xlim(xy[:, 0].min() - 0.8, xy[:, 0].max() + 0.8)
    ax.set_ylim(xy[:, 1].min() - 0.8, xy[:, 1].max() + 0.4)
    ax.set_yticks(sorted(set(xy[:, 1])), labels=[f"depth {int(-y)}" for y in sorted(set(xy[:, 1]))])
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title if title is not None else f"{term_ids[focus]} {term_names[focus]} ({table_modality})")
    return finish(ax, show, save)
