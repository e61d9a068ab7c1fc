"""scvi-networkvi: interpretable multimodal single-cell integration wired by the Gene Ontology.

The submodules (``nvi.tl``, ``nvi.pl``, ``nvi.NETWORKVI``...) are imported on first use: ``import scvi_networkvi``
and the command line's ``--help`` stay fast, and torch / scvi-tools load only when a model or tool is touched.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy attributes resolve to, for type checkers and IDEs
    from . import datasets, interpret, model, module, nn, pl, resources, tl, wiring
    from .model import NETWORKVI

try:
    __version__ = version("scvi-networkvi")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Submodules imported on first attribute access.
_SUBMODULES = ("datasets", "interpret", "model", "module", "nn", "pl", "resources", "tl", "wiring")

__all__ = ["NETWORKVI", "datasets", "interpret", "model", "module", "nn", "pl", "resources", "tl", "wiring"]


def __getattr__(name: str) -> Any:
    """Import a submodule (or ``NETWORKVI``) the first time it is used (PEP 562)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "NETWORKVI":
        return importlib.import_module(f"{__name__}.model").NETWORKVI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
