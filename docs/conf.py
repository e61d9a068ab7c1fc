"""Sphinx configuration of the scvi-networkvi documentation.

The build needs no network: notebooks are stored executed (``nb_execution_mode = "off"``) and intersphinx, which
downloads other projects' inventories, is only switched on with ``NVI_DOCS_INTERSPHINX=1`` (e.g. on Read the Docs).
"""

import os
from importlib.metadata import metadata

project_name = "scvi-networkvi"
info = metadata(project_name)
project = info["Name"]
author = "scvi-networkvi developers"
copyright = f"2026, {author}"
version = info["Version"]
release = version

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinxcontrib.bibtex",
]
autosummary_generate = True
autodoc_member_order = "bysource"
# Class pages document the package's own methods and attributes, those of its mixins included (the autosummary tables
# on them link there); without it NETWORKVI's page listed get_importances and the rest in a table of names that led
# nowhere. Members defined by scvi-tools, Lightning, torch or the standard library stay out (``_skip_foreign_member``).
autodoc_default_options = {"members": True, "inherited-members": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
myst_enable_extensions = ["colon_fence"]
bibtex_bibfiles = ["references.bib"]  # :cite:p:`Lopez18` in docstrings; the list on references.md
bibtex_reference_style = "author_year"
nb_execution_mode = "off"  # notebooks are committed with their outputs; building them again would need hours and data
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}  # autosummary writes .rst
intersphinx_mapping = (
    {}
    if os.environ.get("NVI_DOCS_INTERSPHINX") != "1"
    else {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "pandas": ("https://pandas.pydata.org/docs/", None),
        "mudata": ("https://mudata.readthedocs.io/stable/", None),
        "scvi-tools": ("https://docs.scvi-tools.org/en/stable/", None),
    }
)
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "sphinx_book_theme" if __import__("importlib").util.find_spec("sphinx_book_theme") else "alabaster"
html_title = project_name
html_static_path = ["_static"]
html_css_files = ["custom.css"]  # wide tables, long API titles and commands in headings (see the file)


def _resolve_top_level_alias(app, env, node, contnode):
    """Resolve ``scvi_networkvi.NETWORKVI[.member]``, the package's top-level alias, to ``scvi_networkvi.model``.

    Docstrings name the model by the import users write (``scvi_networkvi.NETWORKVI``); the API pages document it
    under its module, so without this those references render as plain text instead of links.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("scvi_networkvi.NETWORKVI"):
        return None
    node = node.deepcopy()
    node["reftarget"] = "scvi_networkvi.model." + target.removeprefix("scvi_networkvi.")
    return env.domains["py"].resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], node["reftarget"], node, contnode
    )


def _skip_foreign_member(app, what, name, obj, skip, options):
    """Skip a class member defined outside this package (scvi-tools, Lightning, torch document their own)."""
    if what != "class":
        return None
    function = getattr(obj, "fget", None) or getattr(obj, "__func__", None) or obj  # property, classmethod
    module = getattr(function, "__module__", None) if callable(function) else None
    if module is None or module.startswith("scvi_networkvi"):
        return None  # the package's own member, or a plain attribute value (dataclass field): autodoc decides
    return True


def setup(app):
    """Connect the two handlers above."""
    app.connect("missing-reference", _resolve_top_level_alias)
    app.connect("autodoc-skip-member", _skip_foreign_member)
