"""The NetworkVI tutorial datasets (NeurIPS 2021 bone marrow, 5000 cells each) as MuData."""

from __future__ import annotations

from collections.abc import Mapping

import anndata
import mudata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scvi_networkvi.resources import fetch

from ._example import _no_pull

_RNA_LABELS = {"gene expression", "gex", "rna"}
_ATAC_LABELS = {"peaks", "atac"}
#: Appended to a protein (ADT) name that is also a gene name of the RNA modality (``CD4`` the gene, ``CD4_ADT`` the
#: antibody), so that the MuData's ``var_names`` are unique across modalities.
PROTEIN_SUFFIX = "_ADT"


def unique_protein_names(proteins, genes) -> list[str]:
    """The protein names with :data:`PROTEIN_SUFFIX` appended to those that are also gene names.

    The tutorial's CITE-seq data names 29 antibodies like their genes (``CD4``, ``CD14``, ``TIGIT``...); MuData warns
    about the repeated ``var_names`` on every update. Raises a ValueError if the names are still not unique.
    """
    genes = pd.Index(np.asarray(genes, dtype=str))
    names = [f"{p}{PROTEIN_SUFFIX}" if p in genes else p for p in np.asarray(proteins, dtype=str).tolist()]
    index = pd.Index(names)
    if not index.is_unique or index.isin(genes).any():
        clash = sorted(set(index[index.duplicated() | index.isin(genes)]))
        raise ValueError(f"Protein names {clash[:5]} are repeated or are gene names even after renaming.")
    return names


def _to_mudata(modalities: Mapping[str, anndata.AnnData], obs: pd.DataFrame) -> mudata.MuData:
    """Join modalities that share the cells of ``obs``; ``obs`` goes to the global obs and to each modality."""
    mods = {}
    for name, adata in modalities.items():
        if not adata.obs_names.equals(obs.index):
            raise ValueError(f"Modality {name!r} does not have the cells of the source AnnData in order.")
        adata.obs = obs.copy()
        mods[name] = adata
    with _no_pull():
        mdata = mudata.MuData(mods)
    mdata.obs = obs.copy()
    return mdata


def _read(name: str, progressbar: bool) -> anndata.AnnData:
    return anndata.read_h5ad(fetch(name, progressbar=progressbar))


def _split_by_modality(adata: anndata.AnnData) -> tuple[anndata.AnnData, anndata.AnnData]:
    """The gene-expression and the peak columns of a Multiome AnnData (by ``var['modality']``)."""
    if "modality" not in adata.var:
        raise ValueError("The Multiome AnnData needs var['modality'] to tell genes from peaks.")
    label = adata.var["modality"].astype(str).str.strip().str.lower()
    is_rna = label.isin(_RNA_LABELS).to_numpy()
    is_atac = label.isin(_ATAC_LABELS).to_numpy()
    unknown = sorted(set(adata.var["modality"].astype(str)[~(is_rna | is_atac)]))
    if unknown or not is_rna.any() or not is_atac.any():
        raise ValueError(
            f"var['modality'] must label every feature as gene expression or peaks; found {sorted(set(label))}."
        )
    return adata[:, is_rna].copy(), adata[:, is_atac].copy()


def _unscale_counts(matrix) -> sp.csr_matrix:
    """Integer counts from size-factor scaled counts: each cell divided by its smallest non-zero value, rounded.

    The tutorial's Multiome RNA holds ``counts * s`` per cell; a cell's smallest non-zero entry is ``s`` (a count of
    one), so dividing by it and rounding recovers the counts.
    """
    csr = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    csr.eliminate_zeros()
    if csr.nnz and csr.data.min() < 0:
        raise ValueError("Scaled counts must be non-negative.")
    scale = np.ones(csr.shape[0])
    nonempty = np.flatnonzero(np.diff(csr.indptr) > 0)
    if len(nonempty):
        scale[nonempty] = np.minimum.reduceat(csr.data, csr.indptr[nonempty])
    csr.data = np.rint(csr.data / np.repeat(scale, np.diff(csr.indptr)))
    out = csr.astype(np.float32)
    out.sort_indices()
    return out


def _ids_var(var: pd.DataFrame) -> pd.DataFrame:
    """The var table without the tutorial's ``modality`` column.

    Gene ids stay as given: the wiring compiler reads set literals such as CD3's
    ``"{'ENSG00000167286','ENSG00000198851'}"`` as several genes.
    """
    return var.drop(columns=[c for c in ("modality",) if c in var.columns])


def cite_to_mudata(adata: anndata.AnnData) -> mudata.MuData:
    """Convert the tutorial CITE-seq AnnData into a MuData with modalities ``rna`` and ``prot``.

    Parameters
    ----------
    adata
        Raw gene counts in ``X`` (var ``gene_stable_id``), protein counts in ``obsm['protein_expression']`` (array
        or DataFrame) with their var table (protein names as index, ``gene_stable_id``) in
        ``uns['protein_expression']['var']``.

    Returns
    -------
    ``rna``: ``X`` and var as given (without the ``modality`` column); ``prot``: the protein counts, dense, var
    ``gene_stable_id`` (missing where the tutorial has no id), named as given except that a protein named like a
    gene gets the suffix ``_ADT`` (:func:`unique_protein_names`); obs copied to the global obs and both modalities.
    """
    if "protein_expression" not in adata.obsm:
        raise ValueError("The CITE-seq AnnData has no obsm['protein_expression'].")
    proteins = adata.obsm["protein_expression"]
    prot_var = adata.uns.get("protein_expression", {}).get("var")
    if isinstance(proteins, pd.DataFrame):
        names = proteins.columns.astype(str)
        values = proteins.to_numpy()
        prot_var = prot_var.reindex(names) if prot_var is not None else pd.DataFrame(index=names)
    else:
        values = proteins.toarray() if sp.issparse(proteins) else np.asarray(proteins)
        if prot_var is None or len(prot_var) != values.shape[1]:
            raise ValueError(
                "uns['protein_expression']['var'] must describe the columns of obsm['protein_expression'] "
                f"({values.shape[1]} proteins)."
            )
    prot_var = _ids_var(pd.DataFrame(prot_var).copy())
    prot_var.index = pd.Index(unique_protein_names(prot_var.index, adata.var_names))
    obs = adata.obs.copy()
    rna = anndata.AnnData(X=adata.X.copy(), obs=obs.copy(), var=_ids_var(adata.var.copy()))
    prot = anndata.AnnData(X=np.ascontiguousarray(values), obs=obs.copy(), var=prot_var)
    return _to_mudata({"rna": rna, "prot": prot}, obs)


def multiome_to_mudata(adata: anndata.AnnData, *, binarize_atac: bool = False) -> mudata.MuData:
    """Convert the tutorial Multiome AnnData into a MuData with modalities ``rna`` and ``atac``.

    Parameters
    ----------
    adata
        Genes and peaks side by side in ``X``, told apart by ``var['modality']`` (``"Gene Expression"`` /
        ``"Peaks"``); the RNA part is size-factor scaled; ``var['gene_stable_id']`` holds each feature's gene id.
    binarize_atac
        Set every non-zero peak value to 1 (the tutorial's peaks already are 0/1).

    Returns
    -------
    ``rna``: integer counts recovered from the scaled values (each cell divided by its smallest non-zero value and
    rounded; CSR float32); ``atac``: the peak columns as given (or binarized); obs copied to the global obs and both
    modalities.
    """
    rna, atac = _split_by_modality(adata)
    rna.X = _unscale_counts(rna.X)
    if binarize_atac:
        x = sp.csr_matrix(atac.X, copy=True)
        x.data = (x.data != 0).astype(x.dtype)
        x.eliminate_zeros()
        atac.X = x
    rna.var, atac.var = _ids_var(rna.var), _ids_var(atac.var)
    return _to_mudata({"rna": rna, "atac": atac}, adata.obs.copy())


def tutorial_cite(*, progressbar: bool = False) -> mudata.MuData:
    """The NetworkVI tutorial's CITE-seq data: 5000 bone-marrow cells x 4000 genes + 134 proteins.

    NeurIPS 2021 multimodal integration challenge (Luecken et al. 2021, GEO GSE194122, CC-BY-4.0), as shipped with
    the original NetworkVI; registry resource ``tutorial-cite`` (fetched once from the ``networkvi==0.1.0`` source
    distribution, ~86 MB, then cached; see :func:`scvi_networkvi.resources.fetch`).

    Parameters
    ----------
    progressbar
        Show a download progress bar.

    Returns
    -------
    MuData with ``rna`` (5000 x 4000 raw counts, var ``gene_stable_id`` ENSEMBL ids) and ``prot`` (5000 x 134 ADT
    counts, var ``gene_stable_id``, missing for 5 antibodies; the 29 antibodies named like a gene end in ``_ADT``,
    e.g. ``CD4_ADT``); obs ``cell_type`` (44 labels), ``Site`` (4 sites),
    ``DonorID``, ``DonorSmoker``, ``DonorBMI``, ``DonorAge`` in the global obs and in both modalities.
    """
    return cite_to_mudata(_read("tutorial-cite", progressbar))


def tutorial_multiome(*, progressbar: bool = False, binarize_atac: bool = False) -> mudata.MuData:
    """The NetworkVI tutorial's Multiome data: 5000 bone-marrow cells x 4000 genes + 20001 ATAC peaks.

    NeurIPS 2021 multimodal integration challenge (Luecken et al. 2021, GEO GSE194122, CC-BY-4.0), as shipped with
    the original NetworkVI; registry resource ``tutorial-multiome`` (fetched once from the ``networkvi==0.1.0``
    source distribution, ~86 MB, then cached; see :func:`scvi_networkvi.resources.fetch`).

    Parameters
    ----------
    progressbar
        Show a download progress bar.
    binarize_atac
        Set every non-zero peak value to 1 (the tutorial's peaks already are 0/1).

    Returns
    -------
    MuData with ``rna`` (5000 x 4000 integer counts recovered from the tutorial's size-factor scaled values, var
    ``gene_stable_id``) and ``atac`` (5000 x 20001 peaks, var ``gene_stable_id`` of the peak's gene); obs
    ``cell_type``, ``Site``, ``DonorID`` in the global obs and in both modalities.
    """
    return multiome_to_mudata(_read("tutorial-multiome", progressbar), binarize_atac=binarize_atac)
