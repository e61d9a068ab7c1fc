"""The registry of named resources (package data ``registry.toml``)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources as importlib_resources

KINDS = ("obo", "gaf", "interactions", "dataset", "archive")


@dataclass(frozen=True)
class Mirror:
    """A fallback copy of a resource: a member of an archive resource."""

    archive: str
    member: str


@dataclass(frozen=True)
class Resource:
    """One named, versioned resource.

    Attributes
    ----------
    name
        Registry name, e.g. ``"go-basic"``.
    kind
        One of ``obo``, ``gaf``, ``interactions``, ``dataset``, ``archive``.
    release
        The dated release (or commit / record) the file belongs to.
    url
        Download address (``""`` for resources that only live inside an archive).
    sha256
        Pinned sha256 of the downloaded file, or ``None`` when it cannot be known in advance (then the hash is
        recorded on first download and verified on every later use).
    size
        Size in bytes of the downloaded file, ``None`` if unknown.
    licence, description
        What the data may be used for and what it is.
    filename
        File name in the cache.
    decompress
        ``"gzip"`` if the download must be decompressed before use.
    archive, member
        For resources that are a file inside an archive resource.
    mirrors
        Fallback copies tried when ``url`` cannot be reached.
    package
        A source distribution on the Python package index, as a pinned requirement (``"networkvi==0.1.0"``): fetched
        with pip by name and version (``pip download --no-deps --no-binary :all:``), never by a URL of the index.
    """

    name: str
    kind: str
    release: str
    url: str
    sha256: str | None
    size: int | None
    licence: str
    description: str
    filename: str
    decompress: str | None = None
    archive: str | None = None
    member: str | None = None
    mirrors: tuple[Mirror, ...] = field(default_factory=tuple)
    package: str | None = None

    @property
    def local_filename(self) -> str:
        """Name of the file handed to users (the decompressed name for gzipped downloads)."""
        if self.decompress == "gzip" and self.filename.endswith(".gz"):
            return self.filename[: -len(".gz")]
        return self.filename


class Registry(Mapping[str, Resource]):
    """A read-only mapping name -> :class:`Resource`, parsed from TOML text."""

    def __init__(self, resources: Mapping[str, Resource]):
        self._resources = dict(resources)
        for res in self._resources.values():
            for archive in [res.archive, *(m.archive for m in res.mirrors)]:
                if archive is not None and archive not in self._resources:
                    raise ValueError(f"Resource {res.name!r} refers to unknown archive resource {archive!r}.")

    @classmethod
    def from_toml(cls, text: str) -> Registry:
        """Parse a registry from TOML text (the format of the packaged ``registry.toml``)."""
        data = tomllib.loads(text)
        resources = {}
        for name, entry in data.items():
            kind = entry.get("kind")
            if kind not in KINDS:
                raise ValueError(f"Resource {name!r}: kind must be one of {KINDS}, got {kind!r}.")
            if not entry.get("url") and not entry.get("archive") and not entry.get("package"):
                raise ValueError(f"Resource {name!r} needs a url, an archive + member or a package.")
            if entry.get("package") and "==" not in entry["package"]:
                raise ValueError(
                    f"Resource {name!r}: package must pin a version (name==version), got {entry['package']!r}."
                )
            resources[name] = Resource(
                name=name,
                kind=kind,
                release=str(entry.get("release", "")),
                url=entry.get("url", ""),
                sha256=entry.get("sha256") or None,
                size=entry.get("size") or None,
                licence=entry.get("licence", ""),
                description=entry.get("description", ""),
                filename=entry["filename"],
                decompress=entry.get("decompress"),
                archive=entry.get("archive"),
                member=entry.get("member"),
                mirrors=tuple(Mirror(m["archive"], m["member"]) for m in entry.get("mirrors", [])),
                package=entry.get("package"),
            )
        return cls(resources)

    def __getitem__(self, name: str) -> Resource:
        try:
            return self._resources[name]
        except KeyError:
            raise KeyError(
                f"No resource named {name!r}. Known resources: {', '.join(sorted(self._resources))}."
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

    def __len__(self) -> int:
        return len(self._resources)


@cache
def default_registry() -> Registry:
    """The registry shipped with the package."""
    text = importlib_resources.files("scvi_networkvi.resources").joinpath("registry.toml").read_text("utf-8")
    return Registry.from_toml(text)
