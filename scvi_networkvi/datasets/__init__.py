"""Example and tutorial datasets.

:func:`example` is a small real CITE-seq dataset shipped with the package (offline), :func:`example_resources` the
GO slice, annotations and interactions that go with it; :func:`tutorial_cite` and :func:`tutorial_multiome` fetch
the 5000-cell NetworkVI tutorial datasets through :mod:`scvi_networkvi.resources`.
"""

from ._example import example, example_resources
from ._tutorial import tutorial_cite, tutorial_multiome

__all__ = ["example", "example_resources", "tutorial_cite", "tutorial_multiome"]
