"""The small real CITE-seq example shipped inside the package (``scvi_networkvi/datasets/example/``)."""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources as importlib_resources
from pathlib import Path

import mudata

_FOLDER = "example"
_H5MU = "cite_example.h5mu"
_RESOURCES = {"go": "go_slice.obo", "annotations": "annotations.gaf", "interactions": "interactions.csv"}
_exit_stack = contextlib.ExitStack()
atexit.register(_exit_stack.close)


def _package_file(name: str) -> Path:
    """A real file path of packaged example data (extracted once if the package is imported from a zip)."""
    ref = importlib_resources.files(__package__) / _FOLDER / name
    if isinstance(ref, Path):
        if not ref.is_file():
            raise FileNotFoundError(
                f"The packaged example file {ref} is missing: the installation of scvi-networkvi is incomplete "
                "(reinstall it, or regenerate the files with scripts/make_example.py)."
            )
        return ref
    return _exit_stack.enter_context(importlib_resources.as_file(ref))


def _no_pull():
    """Read / build MuData without copying modality obs columns into the global obs.

    mudata < 0.4 copies them, prefixed (``rna:cell_type``), unless ``pull_on_update=False``; that is the default
    from mudata 0.4 on, which has no ``set_options`` any more.
    """
    set_options = getattr(mudata, "set_options", None)
    return set_options(pull_on_update=False) if set_options is not None else contextlib.nullcontext()


def _read_h5mu(path: Path) -> mudata.MuData:
    with _no_pull():
        return mudata.read_h5mu(path)


def example() -> mudata.MuData:
    """A small real CITE-seq dataset for documentation, tests and quick starts (offline, ships with the package).

    Bone-marrow mononuclear cells of the NeurIPS 2021 multimodal integration challenge (Luecken et al. 2021, GEO
    GSE194122, CC-BY-4.0), taken from the 5000-cell NetworkVI tutorial subset:

    - 2000 cells from 3 sites (``site2``, ``site3``, ``site4``) and the 10 most frequent cell types present in all of
      them (CD14+ Mono, CD4+ T activated, CD4+ T naive, NK, Naive CD20+ B IGKC+, CD16+ Mono, Erythroblast, CD8+ T
      naive, NK CD158e1+, cDC2), sampled with a fixed seed, stratified by cell type and site;
    - modality ``rna``: 1000 genes, integer raw counts (CSR, int32): the 652 tutorial genes with an annotation in the
      tutorial GAF plus the 348 most variable others; ``var_names`` are gene symbols, ``var['gene_stable_id']`` the
      ENSEMBL gene ids;
    - modality ``prot``: 134 ADT proteins, integer counts (dense, int32); ``var_names`` are the antibody names,
      with ``_ADT`` appended to the 29 named like a gene (``CD4_ADT``), so that the MuData's ``var_names`` are
      unique; ``var['gene_stable_id']`` the ENSEMBL id of the encoding gene (missing for 5 antibodies, e.g.
      ``HLA-DR``);
    - ``obs`` (global and per modality): ``cell_type``, ``Site``, ``DonorID``, ``DonorSmoker`` (categorical),
      ``DonorBMI``, ``DonorAge``.

    Use it with :func:`example_resources`, whose GO slice, annotations and interactions reproduce exactly the
    wiring that the full tutorial resources give for these features. How the files were derived:
    ``scripts/make_example.py`` and ``scvi_networkvi/datasets/example/README.md``.

    Returns
    -------
    A new, independent in-memory :class:`~mudata.MuData` on every call (the packaged file is only read).

    Examples
    --------
    >>> from scvi_networkvi.datasets import example
    >>> mdata = example()
    >>> mdata.n_obs, mdata["rna"].n_vars, mdata["prot"].n_vars
    (2000, 1000, 134)
    """
    return _read_h5mu(_package_file(_H5MU))


def example_resources() -> dict[str, Path]:
    """Paths of the GO resources that go with :func:`example`, for :func:`~scvi_networkvi.wiring.compile_wirings`.

    Demo only: the GO slice is derived from GO go-basic release 2025-03-16 and the NetworkVI tutorial's GAF, which
    its authors subsampled to ~82 GO ids, so most of the genes' functions are missing.

    Returns
    -------
    ``go``
        ``go_slice.obo``: the verbatim go-basic 2025-03-16 stanzas of the GO terms annotated to the example's genes
        and proteins and all their ancestors through ``is_a`` and ``relationship`` lines (228 terms).
    ``annotations``
        ``annotations.gaf``: the lines of the tutorial GAF (ENSEMBL gene id in column 2) for the example's genes and
        proteins.
    ``interactions``
        ``interactions.csv``: ``gene1,gene2,combined_score`` rows of the tutorial's gene interactions (ENCODE K562
        Hi-C contact domains) between the example's genes and proteins.

    Examples
    --------
    >>> from scvi_networkvi.datasets import example, example_resources
    >>> from scvi_networkvi.wiring import compile_wirings
    >>> mdata = example()
    >>> wirings = compile_wirings(
    ...     {mod: list(mdata[mod].var["gene_stable_id"]) for mod in ("rna", "prot")}, **example_resources()
    ... )
    """
    return {key: _package_file(name) for key, name in _RESOURCES.items()}
