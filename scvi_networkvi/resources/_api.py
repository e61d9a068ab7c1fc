"""Public functions of :mod:`scvi_networkvi.resources`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ._registry import default_registry
from ._store import ResourceError, ResourceStore

PathLike = str | os.PathLike


def fetch(name: str, *, progressbar: bool = False) -> Path:
    """Local path of a registered resource, downloaded, verified and cached on first use.

    Parameters
    ----------
    name
        Registry name, see :func:`list_resources`.
    progressbar
        Show a download progress bar (needs ``tqdm``).

    Returns
    -------
    Path of the usable file (gzipped downloads are decompressed into the cache).

    Raises
    ------
    KeyError
        ``name`` is not registered.
    ResourceError
        The file cannot be obtained (no network, server down, offline mode without a cached copy) or does not
        match its registered sha256 / size. The message says where to place the file by hand.
    """
    return ResourceStore().fetch(name, progressbar=progressbar)


def resolve(resource: PathLike, *, kind: str | tuple[str, ...] | None = None) -> Path:
    """Accept either a registry name or a local file path, return a local path.

    Parameters
    ----------
    resource
        A registered name (fetched with :func:`fetch`) or the path of an existing file.
    kind
        If given, a registered resource must be of this kind, or of one of these kinds (``obo``, ``gaf``,
        ``interactions``, ...).
    """
    registry = default_registry()
    text = os.fspath(resource)
    kinds = (kind,) if isinstance(kind, str) else kind
    wanted = " or ".join(repr(k) for k in kinds) if kinds else ""
    if isinstance(resource, str) and text in registry:
        res = registry[text]
        if kinds is not None and res.kind not in kinds:
            raise ValueError(f"Resource {text!r} is a {res.kind!r} resource, but a {wanted} resource is needed here.")
        return fetch(text)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    known = ", ".join(name for name, res in registry.items() if kinds is None or res.kind in kinds)
    raise FileNotFoundError(
        f"{text!r} is neither a registered resource nor an existing file. Registered{f' {wanted}' if kinds else ''} "
        f"resources: {known}."
    )


def list_resources() -> pd.DataFrame:
    """All registered resources as a DataFrame (one row per resource, with whether it is cached here)."""
    store = ResourceStore()
    rows = [
        {
            "name": res.name,
            "kind": res.kind,
            "release": res.release,
            "description": res.description,
            "licence": res.licence,
            "size": res.size,
            "sha256": res.sha256,
            "url": res.url or (f"pip:{res.package}" if res.package else f"{res.archive}:{res.member}"),
            "cached": store.is_cached(res.name),
            "path": str(store.local_path(res.name)),
        }
        for res in store.registry.values()
    ]
    return pd.DataFrame(rows).set_index("name")


def fetch_many(names: Sequence[str], *, progressbar: bool = True) -> dict[str, Path]:
    """Fetch several resources (used by ``python -m scvi_networkvi fetch``); stops at the first failure."""
    unknown = [name for name in names if name not in default_registry()]
    if unknown:
        raise KeyError(f"Unknown resource(s) {unknown}. Known: {', '.join(sorted(default_registry()))}.")
    return {name: fetch(name, progressbar=progressbar) for name in names}


__all__ = ["ResourceError", "fetch", "fetch_many", "list_resources", "resolve"]
