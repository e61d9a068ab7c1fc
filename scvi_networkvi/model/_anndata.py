"""scvi-tools' CITE-seq AnnData layout (RNA in ``X`` or a layer, proteins in ``obsm``) as the MuData NETWORKVI uses.

``NETWORKVI.setup_anndata`` checks the AnnData, builds a MuData with modalities ``rna`` and ``protein`` from it (the
arrays are shared, not copied; the AnnData itself is left as it was) and registers that MuData with
``setup_mudata``, so the model, its methods and the ``nvi.tl`` functions see what they see for any MuData.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from mudata import MuData

from ._validation import Caller, check_counts, layer_matrix

#: Errors of the checks run on the built MuData (categories, covariates) name the function the user called.
SETUP_ANNDATA = Caller("NETWORKVI.setup_anndata", "pass the layer of adata that holds raw counts (e.g. layer='counts')")
#: Modality names of the MuData built from the AnnData.
RNA_MOD, PROTEIN_MOD = "rna", "protein"

_NAME = SETUP_ANNDATA.name


def _shown(values: Sequence[Any], n: int = 8) -> list[Any]:
    values = list(values)
    return values[:n] + (["..."] if len(values) > n else [])


def _duplicates(names: pd.Index) -> str:
    counts = names[names.duplicated(keep=False)].value_counts()
    more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
    return (
        f"{len(counts)} duplicated names (" + ", ".join(f"{k!r} x{v}" for k, v in counts.head(5).items()) + f"{more})"
    )


def _protein_names(adata: ad.AnnData, data: Any, obsm_key: str, names_key: str | None) -> tuple[pd.Index, pd.DataFrame]:
    """The proteins' names and var table: the DataFrame's columns, else ``adata.uns[names_key]``."""
    if isinstance(data, pd.DataFrame):
        names = pd.Index(data.columns.astype(str))
        return names, pd.DataFrame(index=names)
    if names_key is None:
        hint = next((f" (e.g. protein_names_uns_key={k!r})" for k in adata.uns if "name" in str(k).lower()), "")
        raise ValueError(
            f"{_NAME}: adata.obsm[{obsm_key!r}] is an array without protein names. NETWORKVI addresses the proteins by "
            "name (their genes for the GO wiring, query mapping, per-protein outputs): pass protein_names_uns_key="
            f"the adata.uns key that holds them in the columns' order{hint}, or store the proteins as a DataFrame "
            "whose columns are their names."
        )
    if names_key not in adata.uns:
        raise ValueError(
            f"{_NAME}: protein_names_uns_key {names_key!r} is not a key of adata.uns (keys: {_shown(adata.uns)})."
        )
    stored = adata.uns[names_key]
    if isinstance(stored, pd.DataFrame):  # a var table of the proteins, indexed by their names
        var = stored.copy()
        var.index = var.index.astype(str)
        names = pd.Index(var.index)
    else:
        names = pd.Index(np.asarray(stored).astype(str).ravel())
        var = pd.DataFrame(index=names)
    if len(names) != data.shape[1]:
        raise ValueError(
            f"{_NAME}: adata.uns[{names_key!r}] holds {len(names)} protein names but adata.obsm[{obsm_key!r}] has "
            f"{data.shape[1]} columns: give one name per column, in the columns' order."
        )
    return names, var


def _check_obs_keys(obs: pd.DataFrame, keys: Mapping[str, str | Sequence[str] | None]) -> None:
    for name, value in keys.items():
        if value is None:
            continue
        if name.endswith("_keys") and isinstance(value, str):
            raise TypeError(f"{_NAME}: {name} must be a list of adata.obs columns, got the string {value!r}.")
        missing = [k for k in ([value] if isinstance(value, str) else list(value)) if k not in obs.columns]
        if missing:
            raise ValueError(
                f"{_NAME}: {name} names {missing}, not a column of adata.obs (columns: {_shown(obs.columns)})."
            )


def cite_mudata(
    adata: ad.AnnData,
    *,
    protein_expression_obsm_key: str | None,
    protein_names_uns_key: str | None,
    layer: str | None,
    obs_keys: Mapping[str, str | Sequence[str] | None],
) -> MuData:
    """Check an AnnData in scvi-tools' CITE-seq layout and build the MuData ``{"rna", "protein"}`` from it.

    Every error is raised before the MuData is built; ``adata`` is never changed. The ``rna`` modality shares
    ``adata``'s ``X``, layers and var; the ``protein`` modality holds ``adata.obsm[protein_expression_obsm_key]``
    (features named by the DataFrame's columns or ``adata.uns[protein_names_uns_key]``); the global ``obs`` is a copy
    of ``adata.obs`` (the modalities' obs hold only the cell names). ``obs_keys``: the obs columns the caller will
    register (``{"batch_key": "batch", ...}``), checked here.
    """
    if isinstance(adata, MuData):
        raise TypeError(
            f"{_NAME} takes an AnnData; register a MuData with NETWORKVI.setup_mudata(mdata, modalities=...)."
        )
    if not isinstance(adata, ad.AnnData):
        raise TypeError(f"{_NAME} takes an AnnData, got {type(adata).__name__}.")
    if not adata.obs_names.is_unique:
        raise ValueError(
            f"{_NAME}: adata's obs_names are not unique; make them unique (adata.obs_names_make_unique())."
        )
    if not adata.var_names.is_unique:
        raise ValueError(
            f"{_NAME}: adata has {_duplicates(adata.var_names)} among its genes. NETWORKVI addresses features by name: "
            "make them unique with adata.var_names_make_unique() or sum the duplicates into one gene, then call "
            f"{_NAME} again."
        )
    where = f"{_NAME}: adata." + (f"layers[{layer!r}]" if layer is not None else "X")
    fix = SETUP_ANNDATA.layer_fix
    check_counts(layer_matrix(adata, layer, f"{_NAME}: adata", fix), where, fix)
    protein = names = protein_var = None
    if protein_expression_obsm_key is not None:
        if protein_expression_obsm_key not in adata.obsm:
            raise ValueError(
                f"{_NAME}: adata.obsm has no {protein_expression_obsm_key!r} (keys: {_shown(adata.obsm)}). Pass "
                "protein_expression_obsm_key= the key that holds the protein counts, or protein_expression_obsm_key="
                "None to model the RNA alone."
            )
        data = adata.obsm[protein_expression_obsm_key]
        names, protein_var = _protein_names(adata, data, protein_expression_obsm_key, protein_names_uns_key)
        if not names.is_unique:
            raise ValueError(
                f"{_NAME}: the proteins have {_duplicates(names)}. NETWORKVI addresses features by name: give each "
                "protein a unique name, then call it again."
            )
        protein = data.to_numpy() if isinstance(data, pd.DataFrame) else data
        check_counts(
            protein,
            f"{_NAME}: adata.obsm[{protein_expression_obsm_key!r}]",
            "give the raw antibody counts; or, without them, leave the protein modality out (NETWORKVI runs on the "
            "RNA alone): protein_expression_obsm_key=None",
        )
    _check_obs_keys(adata.obs, obs_keys)

    cells = pd.DataFrame(index=adata.obs_names.copy())
    layers = {key: value for key, value in adata.layers.items() if key is not None}  # anndata >= 0.13 lists X as None
    mods = {RNA_MOD: ad.AnnData(X=adata.X, layers=layers, obs=cells, var=adata.var.copy())}
    if protein is not None:
        mods[PROTEIN_MOD] = ad.AnnData(X=protein, obs=cells.copy(), var=protein_var)
    with warnings.catch_warnings():
        # Protein and gene names overlap (CD4...): the MuData's global var_names repeat, which mudata warns about with
        # a fix (var_names_make_unique) that does not apply; NETWORKVI addresses features within their modality.
        warnings.filterwarnings("ignore", message="var_names are not unique", category=UserWarning)
        mdata = MuData(mods)
    for column in adata.obs.columns:
        mdata.obs[column] = adata.obs[column].copy()
    return mdata
