"""Progress bars of the interpretation passes: scvi-tools' own (:func:`scvi.utils.track`), in its settings' style."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def show_progress(progress_bar: bool | None) -> bool:
    """Whether to draw progress bars: ``progress_bar``, or by default while ``scvi.settings.verbosity`` is INFO or lower.

    scvi-tools' default verbosity is INFO, so the bars show unless the user asked scvi-tools for quiet
    (``scvi.settings.verbosity = logging.WARNING``) or passed ``progress_bar=False``.
    """
    if progress_bar is not None:
        return bool(progress_bar)
    import scvi

    return scvi.settings.verbosity <= logging.INFO


def track(iterable: Iterable[T], description: str, *, enabled: bool, total: int | None = None) -> Iterator[T]:
    """``iterable`` with scvi-tools' progress bar (``scvi.settings.progress_bar_style``: tqdm or rich) when enabled.

    Only one bar is drawn at a time (rich cannot nest live displays): callers disable inner passes' bars.
    """
    if not enabled:
        yield from iterable
        return
    from scvi.utils import track as scvi_track

    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    yield from scvi_track(iterable, description=description, total=total)
