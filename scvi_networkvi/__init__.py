"""scvi-networkvi: interpretable multimodal single-cell integration wired by the Gene Ontology."""

import logging
from importlib.metadata import PackageNotFoundError, version

from . import datasets, interpret, model, module, nn, pl, resources, tl, wiring
from .model import NETWORKVI

try:
    __version__ = version("scvi-networkvi")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["NETWORKVI", "datasets", "interpret", "model", "module", "nn", "pl", "resources", "tl", "wiring"]
