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

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def finish(ax: Axes | list[Axes], show: bool | None, save: str | os.PathLike | None) -> Axes | list[Axes] | None:
    """Save the figure to ``save`` (format from the suffix), show it, and return ``ax`` unless shown (scanpy's way).

    ``ax``: the Axes drawn, or a list of them (facets of one figure).
    """
    import matplotlib
    import matplotlib.pyplot as plt

    fig = (ax[0] if isinstance(ax, list) else ax).figure
    if save is not None:
        path = Path(save)
        if not path.suffix:
            path = path.with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight", pad_inches=0.15, dpi=150)
    if show is None:
        show = matplotlib.is_interactive()
    if show:
        plt.show()
        return None
    return ax


def shorten(text: str, width: int = 60) -> str:
    """``text`` in at most ``width`` characters: cut at the last word boundary that fits, with an ellipsis.

    A single word longer than half the width is cut inside the word rather than leaving too little.

    Parameters
    ----------
    text
        A GO term's (or any) name.
    width
        The most characters the result may have, the ellipsis included.

    Returns
    -------
    ``text`` itself when it fits, else its start up to a space or hyphen, without trailing punctuation, and ``…``.
    """
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    boundary = max(cut.rfind(" "), cut.rfind("-") + 1 if cut.rfind("-") >= 0 else -1)
    if text[width - 1] not in " -" and boundary >= width // 2:
        cut = cut[:boundary]
    return cut.rstrip(" ,;:-/(") + "…"


#: The smallest p- / q-value of an asymptotic test (DeLong's normal approximation) that is printed as a number:
#: further in the tail, the approximation does not resolve the value (it underflows to 0 for strong probes).
ASYMPTOTIC_FLOOR = 1e-4


def format_pvalue(value: float, *, floor: float = ASYMPTOTIC_FLOOR, symbol: str = "q") -> str:
    """``"q=0.012"`` / ``"q=3.1e-03"``, or ``"q<0.0001"`` below ``floor`` (the resolution of the test behind it).

    ``floor``: :data:`ASYMPTOTIC_FLOOR` for DeLong p- and q-values; ``1 / (1 + n_sets)`` for a p-value counted
    against ``n_sets`` random draws (``pval_null``, ``pval_set``), whose smallest possible value that is: a value at
    the floor prints as ``"p≤0.0099"``.
    """
    if value != value:  # NaN
        return f"{symbol}=n/a"
    if value < floor:
        return f"{symbol}<{floor:.2g}"
    if value == floor:
        return f"{symbol}≤{floor:.2g}"
    return f"{symbol}={value:.3f}" if value >= 0.01 else f"{symbol}={value:.1e}"
