"""Shared helpers of the ``nvi.pl`` functions: reading stored tables, finishing figures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def stored_table(data: Any, key: str, columns: Sequence[str], producer: str) -> pd.DataFrame:
    """The table in ``data.uns[key]`` (``data`` a MuData / AnnData) or ``data`` itself (a DataFrame), checked."""
    if isinstance(data, pd.DataFrame):
        table = data
    else:
        uns = getattr(data, "uns", None)
        if uns is None:
            raise TypeError(f"Expected a MuData, AnnData or DataFrame, got {type(data).__name__}.")
        if key not in uns:
            raise ValueError(f"No table in uns[{key!r}]: run {producer} first (or pass key= where it stored it).")
        table = uns[key]
        if not isinstance(table, pd.DataFrame):
            raise ValueError(f"uns[{key!r}] is a {type(table).__name__}, not the table of {producer}.")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"The table lacks columns {missing}: it is not the output of {producer}.")
    return table


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """``ax``, or the axes of a new figure of ``figsize``."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def finish(ax: Axes, show: bool | None, save: str | os.PathLike | None) -> Axes | None:
    """Save the figure to ``save`` (format from the suffix), show it, and return ``ax`` unless shown (scanpy's way)."""
    import matplotlib
    import matplotlib.pyplot as plt

    fig = ax.figure
    if save is not None:
        path = Path(save)
        if not path.suffix:
            path = path.with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight", dpi=150)
    if show is None:
        show = matplotlib.is_interactive()
    if show:
        plt.show()
        return None
    return ax


def shorten(text: str, width: int = 60) -> str:
    """``text`` cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"
