"""Checks of user data, done before anything is registered or changed on the user's object."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: ``modalities`` keys of ``setup_mudata`` that name a data layer, and the role each gives the modality.
LAYER_ROLES = {"rna_layer": "rna", "protein_layer": "protein", "atac_layer": "atac"}


def _values(matrix) -> np.ndarray:
    if sp.issparse(matrix):
        return np.asarray(matrix.data)
    if hasattr(matrix, "compute"):  # dask
        matrix = matrix.compute()
    return np.asarray(matrix)


def check_counts(matrix, where: str) -> None:
    """Raise a ValueError naming ``where`` if the matrix is empty or not non-negative integer counts."""
    shape = matrix.shape
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{where} is empty ({shape[0]} cells x {shape[1]} features).")
    values = _values(matrix)
    if values.dtype.kind not in "iuf":
        raise ValueError(f"{where} must hold numeric counts, found dtype {values.dtype}.")
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():
            bad = "NaN" if np.isnan(values).any() else "infinite"
            raise ValueError(
                f"{where} contains {bad} values ({int((~finite).sum())} entries). Give raw counts; for proteins "
                "measured in only some cells, drop those cells from the modality instead of filling with NaN."
            )
    if (values < 0).any():
        raise ValueError(f"{where} contains negative values: give raw counts, not scaled or log data.")
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        example = values[values != np.round(values)][0]
        raise ValueError(
            f"{where} contains non-integer values (e.g. {example:g}): NetworkVI models raw counts. Use the layer "
            "with raw counts (e.g. rna_layer='counts'), not normalised or log-transformed data."
        )


def layer_matrix(adata, layer: str | None, where: str):
    """``adata.X`` or ``adata.layers[layer]`` with a clear error for a missing layer."""
    if layer is None:
        if adata.X is None:
            raise ValueError(f"{where} has no .X; pass the layer holding raw counts.")
        return adata.X
    if layer not in adata.layers:
        raise ValueError(f"{where} has no layer {layer!r}; available layers: {list(adata.layers)}.")
    return adata.layers[layer]


def check_continuous_covariates(obs, keys, where: str) -> None:
    """Raise a ValueError if a continuous covariate column of ``obs`` is missing, not numeric, NaN or infinite."""
    for key in [keys] if isinstance(keys, str) else list(keys or []):
        if key not in obs.columns:
            raise ValueError(
                f"continuous_covariate_keys: {key!r} is not a column of {where} (columns: {list(obs.columns)[:8]})."
            )
        column = obs[key]
        if column.dtype.kind not in "biuf":
            raise ValueError(
                f"Continuous covariate {key!r} in {where} has dtype {column.dtype}, not numbers. Convert it "
                "(e.g. pd.to_numeric), or register it with categorical_covariate_keys if it is a category."
            )
        values = column.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"Continuous covariate {key!r} in {where} has {int(bad.sum())} NaN or infinite values. Fill them "
                "(e.g. with the column's median) or drop those cells before setup_mudata."
            )
