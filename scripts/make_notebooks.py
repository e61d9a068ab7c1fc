"""Write and execute the documentation notebooks (``docs/notebooks/*.ipynb``), stored with their outputs.

The docs build does not execute notebooks (it must work offline and fast); run this script after a change that affects
them. It needs the tutorial data, fetched through the resource registry (from the package index, once).

    python scripts/make_notebooks.py [name ...]
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from pathlib import Path

import nbformat
from _notebook_go_analysis import GO_ANALYSIS
from _notebook_integration import MOSAIC, QUERY_MAPPING

NOTEBOOKS = Path(__file__).resolve().parents[1] / "docs" / "notebooks"
#: Notebook name -> its cells, ("md" or "code", source); the cells are in the sibling modules ``_notebook_*.py``.
BOOKS = {"go_analysis": GO_ANALYSIS, "query_mapping": QUERY_MAPPING, "mosaic": MOSAIC}


def build(name: str, cells: list[tuple[str, str]], timeout: int = 3600) -> Path:
    """Write notebook ``name`` from ``cells`` and execute it in place."""
    from nbclient import NotebookClient  # only executing needs a kernel client (doc extra); cleaning does not

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src) for kind, src in cells
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    clean_outputs(nb)
    path = NOTEBOOKS / f"{name}.ipynb"
    nbformat.write(nb, path)
    logging.getLogger(__name__).info("%s executed in %.0f s", path, time.perf_counter() - start)
    return path


#: Stream-output lines that are no output of the notebook: a library's advertising (Lightning's "Tip" line) and
#: tqdm's warning that the build machine lacks ipywidgets (with the source line it quotes).
ADVERTISING = (
    "\N{ELECTRIC LIGHT BULB} Tip:",
    "TqdmWarning: IProgress not found",
    "from .autonotebook import tqdm as notebook_tqdm",
)

#: Where the build machine installed a package, as warnings print it: stored as ``.../site-packages/``.
SITE_PACKAGES = re.compile(r"[^\s\"']*/(?:site|dist)-packages/")
#: A progress-bar redraw (tqdm's "name:  35%|███▌      | 6/17 [00:06<00:13,  1.20s/it]"): a live display, nothing
#: to keep once the notebook is stored.
PROGRESS_BAR = re.compile(r"\d+%\|.*\| *\d+/\d+ \[")


def rewrite_markdown(name: str, cells: list[tuple[str, str]]) -> Path:
    """Replace the markdown cells of the stored notebook ``name`` by ``cells``' (prose edits need no re-execution).

    Raises when the stored notebook's cells do not have ``cells``' kinds and code: then it must be executed again.
    """
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    kinds = [("md" if c.cell_type == "markdown" else "code") for c in nb.cells]
    if kinds != [kind for kind, _ in cells] or any(
        c.source != src for c, (kind, src) in zip(nb.cells, cells, strict=True) if kind == "code"
    ):
        raise SystemExit(f"{path.name}: its code differs from this script's: run it again without --markdown-only")
    for cell, (kind, src) in zip(nb.cells, cells, strict=True):
        if kind == "md":
            cell.source = src
    nbformat.write(nb, path)
    return path


def clean_outputs(nb) -> None:
    """Drop advertising lines and this machine's install paths from the stream outputs of a notebook (in place)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                lines = output["text"].splitlines(keepends=True)
                kept = "".join(
                    line
                    for line in lines
                    if not any(ad in line for ad in ADVERTISING) and not PROGRESS_BAR.search(line)
                )
                output["text"] = SITE_PACKAGES.sub(".../site-packages/", kept)
    for cell in nb.cells:  # a stream left with whitespace only (a progress bar's "\r" or final newline) is dropped
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if o.get("output_type") != "stream" or o["text"].strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names", nargs="*", default=list(BOOKS), help=f"notebooks to build (default all: {list(BOOKS)})"
    )
    parser.add_argument("--clean-only", action="store_true", help="only clean the stored notebooks' outputs")
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="only rewrite the stored notebooks' markdown cells from this script (their code cells must be unchanged)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    NOTEBOOKS.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        if args.markdown_only:
            rewrite_markdown(name, BOOKS[name])
        elif args.clean_only:
            path = NOTEBOOKS / f"{name}.ipynb"
            nb = nbformat.read(path, as_version=4)
            clean_outputs(nb)
            nbformat.write(nb, path)
        else:
            build(name, BOOKS[name])


if __name__ == "__main__":
    main()
