"""The registry of named resources (package data ``registry.toml``)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources as importlib_resources
from pathlib import Path

KINDS = ("obo", "gaf", "orgdb", "godb", "interactions", "dataset", "archive")
#: Kinds that hold gene -> GO annotations, and kinds that hold the GO DAG.
ANNOTATION_KINDS = ("gaf", "orgdb")
ONTOLOGY_KINDS = ("obo", "godb")


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
        One of :data:`KINDS`: ``obo`` / ``godb`` (the GO DAG as an OBO file / a Bioconductor GO.db SQLite file),
        ``gaf`` / ``orgdb`` (gene -> GO annotations as a GAF file / a Bioconductor org.*.eg.db SQLite file),
        ``interactions``, ``dataset``, ``archive``.
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
    species: str | None = None
    ontology: str | None = None

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
            if res.ontology is not None and res.ontology not in self._resources:
                raise ValueError(f"Resource {res.name!r} refers to unknown ontology resource {res.ontology!r}.")

    @classmethod
    def from_toml(cls, text: str) -> Registry:
        """Parse a registry from TOML text (the format of the packaged ``registry.toml``)."""
        return cls.from_data(tomllib.loads(text))

    @classmethod
    def from_data(cls, data: Mapping[str, Mapping]) -> Registry:
        """A registry from parsed TOML: name -> fields."""
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
                species=entry.get("species"),
                ontology=entry.get("ontology"),
            )
        return cls(resources)

    def __getitem__(self, name: str) -> Resource:
        try:
            return self._resources[name]
        except KeyError:
            raise KeyError(
                f"No resource named {name!r}. Known resources: {', '.join(sorted(self._resources))}."
            ) from None

    def default_annotations(self, species: str) -> Resource | None:
        """The registered annotations that are the default for ``species`` (``None`` if there are none)."""
        return next((r for r in self._resources.values() if r.kind in ANNOTATION_KINDS and r.species == species), None)

    def defaults(self) -> list[str]:
        """The resources a GO model uses when none are given: each species' annotations and their GO DAG."""
        names: list[str] = []
        for res in self._resources.values():
            if res.kind in ANNOTATION_KINDS and res.species is not None:
                names += [n for n in (res.name, res.ontology) if n is not None and n not in names]
        return names

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

    def __len__(self) -> int:
        return len(self._resources)


#: Path of a TOML file in the registry's format whose entries are added to the packaged registry, replacing
#: packaged entries of the same name (an institute's own mirror of the resources, for example).
REGISTRY_ENV = "SCVI_NETWORKVI_REGISTRY"


def default_registry() -> Registry:
    """The registry shipped with the package, with the entries of ``$SCVI_NETWORKVI_REGISTRY`` (if set) on top."""
    return _registry_with(os.environ.get(REGISTRY_ENV, ""))


@cache
def _registry_with(extra_path: str) -> Registry:
    text = importlib_resources.files("scvi_networkvi.resources").joinpath("registry.toml").read_text("utf-8")
    if not extra_path:
        return Registry.from_toml(text)
    try:
        extra = Path(extra_path).expanduser().read_text("utf-8")
    except OSError as err:
        raise ValueError(f"${REGISTRY_ENV} names {extra_path!r}, which cannot be read: {err}") from err
    packaged = tomllib.loads(text)
    try:
        packaged.update(tomllib.loads(extra))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"${REGISTRY_ENV} file {extra_path!r} is not valid TOML: {err}") from err
    return Registry.from_data(packaged)
