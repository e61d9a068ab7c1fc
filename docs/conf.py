"""Sphinx configuration of the scvi-networkvi documentation."""

from importlib.metadata import metadata

project_name = "scvi-networkvi"
info = metadata(project_name)
project = info["Name"]
author = "scvi-networkvi developers"
copyright = f"2026, {author}"
version = info["Version"]
release = version

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
]
autosummary_generate = True
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
myst_enable_extensions = ["colon_fence"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "pandas": ("https://pandas.pydata.org/docs/", None),
    "mudata": ("https://mudata.readthedocs.io/stable/", None),
    "scvi-tools": ("https://docs.scvi-tools.org/en/stable/", None),
}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "sphinx_book_theme" if __import__("importlib").util.find_spec("sphinx_book_theme") else "alabaster"
html_title = project_name
