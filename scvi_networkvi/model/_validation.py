"""Checks of user data, done before anything is registered or changed on the user's object."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import pandas as pd
    from mudata import MuData

#: ``modalities`` keys of ``setup_mudata`` that name a data layer, and the role each gives the modality.
LAYER_ROLES = {"rna_layer": "rna", "protein_layer": "protein", "atac_layer": "atac"}


@dataclass(frozen=True)
class Caller:
    """The function the user called, so that a check run on its behalf names that function and its arguments.

    Passed to :meth:`~scvi_networkvi.NETWORKVI.setup_mudata` (as ``_caller``) and to the checks by the functions
    that call them for the user (``nvi.tl.train``, ``nvi.tl.map_query``), so that an error tells the fix in the
    arguments the user wrote.

    Attributes
    ----------
    name
        The function as the user calls it (``"nvi.tl.train"``).
    layer_fix
        How to point that function at raw counts; formatted with ``layer_key`` (``"rna_layer"``), ``role``
        (``"rna"``) and ``where`` (the data checked).
    modality_keys
        How the function's ``modalities`` argument names a modality: by ``"layer_key"`` (``{"rna_layer": "rna"}``,
        as ``setup_mudata``), by ``"role"`` (``{"rna": "rna"}``, as ``nvi.tl.train``), or ``None`` where the
        modalities are fixed (a query must have the reference's): then no hint offers to leave a modality out.
    """

    name: str
    layer_fix: str
    modality_keys: Literal["layer_key", "role"] | None = None

    def raw_counts_fix(self, layer_key: str, where: str, others: Mapping[str, str] | None = None) -> str:
        """The caller's own words for pointing ``layer_key`` at raw counts found missing in ``where``.

        Where the modality is not the RNA and another data modality remains, the fix also offers to leave it out, as
        the model runs without it, with the ``modalities`` argument to pass in the caller's own keys.

        Parameters
        ----------
        layer_key
            A key of :data:`LAYER_ROLES` (``"rna_layer"``).
        where
            The data checked (``"mdata['rna'].X"``).
        others
            The call's ``modalities`` map without ``layer_key`` (``{"rna_layer": "rna", "batch_key": "rna"}``).

        Returns
        -------
        The fix, to end an error message.
        """
        fix = self.layer_fix.format(layer_key=layer_key, role=LAYER_ROLES[layer_key], where=where)
        others = {k: mod for k, mod in (others or {}).items() if mod is not None}
        if self.modality_keys is None or LAYER_ROLES[layer_key] == "rna" or not any(k in LAYER_ROLES for k in others):
            return fix
        if self.modality_keys == "layer_key":
            kept = others
        else:
            kept = {LAYER_ROLES[k]: mod for k, mod in others.items() if k in LAYER_ROLES}
        return (
            f"{fix}; or, without raw counts for it, leave the {LAYER_ROLES[layer_key]} modality out (NETWORKVI runs "
            f"on the others alone): modalities={kept}"
        )


SETUP_MUDATA = Caller(
    "NETWORKVI.setup_mudata", "pass the layer that holds raw counts (e.g. {layer_key}='counts')", "layer_key"
)


def query_caller(name: str) -> Caller:
    """The :class:`Caller` of a query mapping entry point.

    The layer is the reference's, so the fix for data that are not counts is to give the query raw counts there.

    Parameters
    ----------
    name
        The function as the user calls it (``"nvi.tl.map_query"``).

    Returns
    -------
    The caller, for the checks made while the query is registered.
    """
    return Caller(name, "give the query raw counts in {where}, the data the reference model was registered with")


def _values(matrix) -> np.ndarray:
    if sp.issparse(matrix):
        return np.asarray(matrix.data)
    if hasattr(matrix, "compute"):  # dask
        matrix = matrix.compute()
    return np.asarray(matrix)


def check_counts(matrix, where: str, fix: str = "pass the layer that holds raw counts") -> None:
    """Raise a ValueError naming ``where`` if the matrix is empty or not non-negative integer counts.

    ``fix``: how the user points the function they called at raw counts (:meth:`Caller.raw_counts_fix`).
    """
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
        raise ValueError(f"{where} contains negative values: NetworkVI models raw counts; {fix}.")
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        example = values[values != np.round(values)][0]
        raise ValueError(
            f"{where} contains non-integer values (e.g. {example:g}), as normalised or log-transformed data do: "
            f"NetworkVI models raw counts; {fix}."
        )


def layer_matrix(adata, layer: str | None, where: str, fix: str = "pass the layer that holds raw counts"):
    """``adata.X`` or ``adata.layers[layer]`` with a clear error for a missing layer."""
    if layer is None:
        if adata.X is None:
            raise ValueError(f"{where} has no .X; {fix}.")
        return adata.X
    if layer not in adata.layers:
        raise ValueError(f"{where} has no layer {layer!r}; available layers: {list(adata.layers)}.")
    return adata.layers[layer]


def check_setup_arguments(
    mdata: MuData,
    modalities: Mapping[str, str | None],
    layers: Mapping[str, str | None],
    species: str | None,
    caller: Caller,
) -> None:
    """The checks of :meth:`~scvi_networkvi.NETWORKVI.setup_mudata`'s arguments that read no data.

    Made by ``setup_mudata`` first, and by the functions that call it for the user (``nvi.tl.train``) before their
    own work (reading the annotations for the gene ids), so that these errors come before any work in one wording.

    Parameters
    ----------
    mdata
        The MuData to register.
    modalities
        ``setup_mudata``'s ``modalities`` mapping (``{"rna_layer": "rna", "batch_key": "rna"}``).
    layers
        The layer of each registered modality, by ``setup_mudata`` argument (``{"rna_layer": "counts"}``; missing
        or ``None``: ``.X``).
    species
        ``"human"``, ``"mouse"`` or ``None``.
    caller
        The function the user called, named in the errors.

    Raises
    ------
    ValueError
        For another species, a ``modalities`` mapping without a data modality or naming a modality the MuData does
        not have, or a layer the modality does not have.
    """
    if species not in (None, "human", "mouse"):
        raise ValueError(f"{caller.name}: species must be 'human', 'mouse' or None (detect), got {species!r}.")
    if not any(modalities.get(key) for key in LAYER_ROLES):
        raise ValueError(f"modalities must name at least one of {list(LAYER_ROLES)}, got {dict(modalities)}.")
    unknown = sorted({mod for mod in modalities.values() if mod is not None and mod not in mdata.mod})
    if unknown:
        raise ValueError(f"modalities names {unknown}, which the MuData does not have (it has {list(mdata.mod)}).")
    for layer_key, role in LAYER_ROLES.items():
        mod, layer = modalities.get(layer_key), layers.get(layer_key)
        if mod is not None and layer is not None and layer not in mdata[mod].layers:
            raise ValueError(
                f"Modality {mod!r} ({role}) has no layer {layer!r}; available layers: {list(mdata[mod].layers)}."
            )


def check_categories(
    obs: pd.DataFrame, keys: str | Sequence[str] | None, name: str, where: str, caller: Caller
) -> None:
    """Raise a ValueError if a categorical obs column (batch, categorical covariate) lacks a value for some cells.

    scvi-tools would fail later, when making the column categorical, with a message that names neither the column's
    missing values nor the fix. Columns that are not there are left to the other checks.

    Parameters
    ----------
    obs
        The obs table holding the columns.
    keys
        The column, or columns, to check (``None``: none).
    name
        The argument as the user knows it (``"batch_key"``).
    where
        The obs table as the user knows it (``"mdata.obs"``).
    caller
        The function the user called, named in the error.

    Raises
    ------
    ValueError
        If a column has missing values (NaN).
    """
    for key in [keys] if isinstance(keys, str) else list(keys or []):
        if key not in obs.columns:
            continue
        missing = int(obs[key].isna().sum())
        if missing:
            raise ValueError(
                f"{caller.name}: {name} {key!r} has no value (NaN) for {missing} of {len(obs)} cells in "
                f"{where}[{key!r}]. Fill them (e.g. with a category such as 'unknown') or drop those cells, then call "
                f"{caller.name} again."
            )


def check_continuous_covariates(obs, keys, where: str, caller: Caller = SETUP_MUDATA) -> None:
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
                f"(e.g. with the column's median) or drop those cells before {caller.name}."
            )


def check_unique_features(adata, mod: str, caller: Caller) -> None:
    """Raise a ValueError naming the duplicated feature names of modality ``mod`` and how to make them unique."""
    names = adata.var_names
    if names.is_unique:
        return
    duplicated = names[names.duplicated(keep=False)]
    counts = duplicated.value_counts()
    shown = ", ".join(f"{name!r} x{count}" for name, count in counts.head(5).items())
    more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
    raise ValueError(
        f"{caller.name}: modality {mod!r} has {len(counts)} duplicated feature names ({shown}{more}). NETWORKVI "
        "addresses features by name (query mapping, perturbations, per-feature outputs), so each must be unique: "
        f"make them unique with mdata[{mod!r}].var_names_make_unique() (appends '-1', '-2'...) or sum the duplicates "
        f"into one feature, then call {caller.name} again."
    )


def _row_sums(matrix) -> np.ndarray:
    if hasattr(matrix, "compute") and not sp.issparse(matrix):  # dask
        matrix = matrix.compute()
    return np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()


def warn_empty_cells(matrix, mod: str, data: str, caller: Caller, *, n_modalities: int) -> int:
    """Warn, with their number, about cells of modality ``mod`` without a single count; return that number.

    Such cells are kept and modelled as measured zeros (not as missing data): the modality's encoder sees an
    all-zero input, and the RNA library size is clamped to one count. ``n_modalities``: how many modalities the
    model registers (with one, the cells' latent carries nothing about them).
    """
    empty = int((_row_sums(matrix) == 0).sum())
    if not empty:
        return 0
    source = (
        "the other modalities and the batch"
        if n_modalities > 1
        else "the batch alone: with no other modality it carries nothing about the cell"
    )
    warnings.warn(
        f"{caller.name}: {empty} of {matrix.shape[0]} cells have zero counts in modality {mod!r} ({data}). NETWORKVI "
        f"keeps them as measured zeros, not as missing: the {mod!r} encoder sees an all-zero input, so their latent "
        f"comes from {source}. Drop them (e.g. keep cells with counts > 0 before building the MuData) or, for cells "
        f"measured in other modalities, remove them from modality {mod!r} only, so that the model treats it as "
        "missing for them.",
        UserWarning,
        stacklevel=3,
    )
    return empty


def check_modality(adata, layer: str | None, mod: str, where: str, fix: str, caller: Caller) -> None:
    """The errors of one registered modality, before anything is registered: raw counts, unique feature names."""
    check_counts(layer_matrix(adata, layer, where, fix), where, fix)
    check_unique_features(adata, mod, caller)


def warn_empty_modality_cells(mdata, mods, layers: dict, caller: Caller) -> None:
    """:func:`warn_empty_cells` for every registered modality (``mods``: the ``modalities`` map, ``layers`` per role).

    Called after every error check passed, so that a warning never comes before an error of the same call.
    """
    registered = [(key, mods[key]) for key in LAYER_ROLES if mods[key] is not None]
    for layer_key, mod in registered:
        layer = layers[LAYER_ROLES[layer_key]]
        data = f"mdata[{mod!r}]." + (f"layers[{layer!r}]" if layer else "X")
        matrix = mdata[mod].X if layer is None else mdata[mod].layers[layer]
        warn_empty_cells(matrix, mod, data, caller, n_modalities=len(registered))
