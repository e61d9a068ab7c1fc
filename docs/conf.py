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
]
autosummary_generate = True
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
myst_enable_extensions = ["colon_fence"]
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
