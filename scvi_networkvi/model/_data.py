"""Mosaic MuData for scvi-tools: modalities that hold only some of the cells.

scvi-tools' MuData fields read a modality's matrix as it is (``n_mod`` rows) while its data loaders index cells of the
whole MuData, so they require fully paired data. Here the data manager hands the loaders each registered modality
padded to all cells (a CSR matrix sharing the modality's data arrays: no copy of the counts) and a per-cell presence
mask taken from MuData's own ``obsmap``. Absent cells are thus "missing", while a measured cell whose counts are all
zero stays "present".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from mudata import MuData
from scvi.data import AnnDataManager
from scvi.data.fields import BaseAnnDataField

from scvi_networkvi.module import MASK_KEY


def padded_rows(matrix, rows: np.ndarray):
    """``matrix`` re-indexed to ``len(rows)`` cells; ``rows[i]`` is the modality row of cell i, -1 if absent."""
    n = len(rows)
    present = rows >= 0
    if present.all() and np.array_equal(rows, np.arange(n)):
        return matrix
    if sp.issparse(matrix):
        csr = sp.csr_matrix(matrix)
        lengths = np.zeros(n, dtype=np.int64)
        lengths[present] = np.diff(csr.indptr)[rows[present]]
        if np.array_equal(rows[present], np.arange(present.sum())):  # absent cells only: share the data arrays
            indptr = np.concatenate([[0], np.cumsum(lengths)])
            return sp.csr_matrix((csr.data, csr.indices, indptr), shape=(n, csr.shape[1]))
        out = sp.vstack([csr, sp.csr_matrix((1, csr.shape[1]), dtype=csr.dtype)]).tocsr()
        return out[np.where(present, rows, csr.shape[0])]
    dense = np.asarray(matrix)
    out = np.zeros((n, dense.shape[1]), dtype=dense.dtype)
    out[present] = dense[rows[present]]
    return out


def modality_rows(mdata: MuData, mod: str) -> np.ndarray:
    """For each cell of ``mdata``, its row in modality ``mod`` (-1 if the modality lacks the cell).

    Read from MuData's ``obsmap`` (by name when the MuData has none), so that mosaic data, whose modalities hold
    only some of the cells, are addressed without a copy.

    Parameters
    ----------
    mdata
        The MuData.
    mod
        A modality name of ``mdata``.

    Returns
    -------
    ``int64`` array with one entry per cell of ``mdata``.
    """
    obsmap = getattr(mdata, "obsmap", None)
    if obsmap is not None and mod in obsmap:
        return np.asarray(obsmap[mod]).astype(np.int64).ravel() - 1
    index = mdata[mod].obs_names.get_indexer(mdata.obs_names)
    return index.astype(np.int64)


class ModalityMaskField(BaseAnnDataField):
    """Registers the per-cell presence of each modality (computed from the MuData; nothing is written to it)."""

    def __init__(self, modalities: list[str]):
        super().__init__()
        self._modalities = list(modalities)

    @property
    def registry_key(self) -> str:
        return MASK_KEY

    @property
    def attr_name(self) -> str:
        return "obsm"

    @property
    def attr_key(self) -> str:
        return MASK_KEY

    @property
    def is_empty(self) -> bool:
        return False

    def validate_field(self, adata) -> None:
        if not isinstance(adata, MuData):
            raise ValueError("NETWORKVI needs a MuData.")
        missing = [m for m in self._modalities if m not in adata.mod]
        if missing:
            raise ValueError(f"The MuData lacks modalities {missing} (it has {list(adata.mod)}).")

    def register_field(self, adata) -> dict:
        self.validate_field(adata)
        return {"modalities": list(self._modalities)}

    def transfer_field(self, state_registry: dict, adata_target, **kwargs) -> dict:
        self.validate_field(adata_target)
        return {"modalities": list(self._modalities)}

    def get_summary_stats(self, state_registry: dict) -> dict:
        return {}

    def view_state_registry(self, state_registry: dict):
        return None


def presence_mask(mdata: MuData, modalities: list[str]) -> np.ndarray:
    """Cells x modalities float mask: 1 where the modality holds the cell."""
    return np.stack([modality_rows(mdata, mod) >= 0 for mod in modalities], axis=1).astype(np.float32)


class MosaicAnnDataManager(AnnDataManager):
    """An :class:`~scvi.data.AnnDataManager` that serves every modality's data at the MuData's cells."""

    def get_from_registry(self, registry_key: str):
        """Registered data, padded to all cells of the MuData for modality-level fields; the presence mask."""
        if registry_key == MASK_KEY:
            modalities = self.get_state_registry(MASK_KEY)["modalities"]
            return presence_mask(self.adata, modalities)
        data = super().get_from_registry(registry_key)
        mod = getattr(self.data_registry[registry_key], "mod_key", None)
        if mod is None or not isinstance(self.adata, MuData):
            return data
        return padded_rows(data, modality_rows(self.adata, mod))
