"""Named, versioned, sha256-pinned resources (GO, annotations, interaction tables, tutorial data).

Files are downloaded with pooch on first use into ``$SCVI_NETWORKVI_DATA_DIR`` (or the OS cache), verified
against the registry's sha256 and size, and reused from there. ``SCVI_NETWORKVI_OFFLINE=1`` never touches the
network and says which file to place where.
"""

from ._api import fetch, fetch_many, list_resources, resolve
from ._registry import ANNOTATION_KINDS, ONTOLOGY_KINDS, REGISTRY_ENV, Mirror, Registry, Resource, default_registry
from ._store import (
    DATA_DIR_ENV,
    OFFLINE_ENV,
    ResourceError,
    ResourceIntegrityError,
    ResourceStore,
    cache_dir,
    offline,
    sha256_of,
)

list = list_resources

__all__ = [
    "ANNOTATION_KINDS",
    "ONTOLOGY_KINDS",
    "DATA_DIR_ENV",
    "OFFLINE_ENV",
    "REGISTRY_ENV",
    "Mirror",
    "Registry",
    "Resource",
    "ResourceError",
    "ResourceIntegrityError",
    "ResourceStore",
    "cache_dir",
    "default_registry",
    "fetch",
    "fetch_many",
    "list",
    "list_resources",
    "offline",
    "resolve",
    "sha256_of",
]
