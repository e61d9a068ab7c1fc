"""Which modalities a NETWORKVI model has and how to reach their data: roles, MuData names, gene ids, loaders.

These are the model's public surface for the layers above it (``interpret``, ``tl``, ``pl``): :meth:`role_of`,
:meth:`modality_name`, :attr:`modality_roles`, :meth:`validate_mudata`, :meth:`make_data_loader`,
:meth:`feature_gene_ids` and :meth:`covariate_names`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from mudata import MuData
from scvi import REGISTRY_KEYS

from scvi_networkvi.module import MASK_KEY, MODALITIES
from scvi_networkvi.wiring import VAR_NAMES, read_source, symbols_of

from ._gene_ids import detect_modality_gene_ids
from ._validation import LAYER_ROLES, SETUP_MUDATA


class NetworkVIModalitiesMixin:
    """The registered modalities of NETWORKVI: roles and names, the gene ids of their features, minibatches."""

    @property
    def is_mosaic(self) -> bool:
        """Whether the registered cells differ in the modalities they have (some cell lacks a registered one)."""
        return not bool(np.asarray(self.adata_manager.get_from_registry(MASK_KEY)).all())

    @property
    def modality_roles(self) -> list[str]:
        """Roles (``rna``, ``protein``, ``atac``) present in the registered data, in the module's order."""
        mods = self.adata_manager.registry["setup_args"]["modalities"]
        return [role for layer_key, role in LAYER_ROLES.items() if mods.get(layer_key) is not None]

    def modality_name(self, role: str) -> str:
        """The MuData modality name registered for a role."""
        mods = self.adata_manager.registry["setup_args"]["modalities"]
        for layer_key, r in LAYER_ROLES.items():
            if r == role and mods.get(layer_key) is not None:
                return mods[layer_key]
        raise ValueError(f"The model has no {role!r} modality; it has {self.modality_roles}.")

    def _modality(self, role: str):
        return self.adata[self.modality_name(role)]

    def _detect_gene_ids(self, annotations=None, strict: bool = True, roles: Sequence[str] | None = None):
        """Detect each registered modality's gene-id source (see :meth:`setup_mudata`'s ``gene_id_key``).

        ``roles``: only these modalities (``None``: every registered one).
        """
        setup = self.adata_manager.registry["setup_args"]
        return detect_modality_gene_ids(
            self.adata,
            {role: self.modality_name(role) for role in (self.modality_roles if roles is None else roles)},
            gene_id_key=setup.get("gene_id_key"),
            species=setup.get("species"),
            annotations=annotations,
            caller=SETUP_MUDATA,
            strict=strict,
        )

    def feature_gene_ids(self) -> dict[str, list[list[str]]]:
        """Each modality's per-feature gene ids, read from the source chosen when the model was built.

        A model without a recorded choice (built from given wirings, with dense encoders, or saved before the choice
        was recorded) reads the registered ``gene_id_key`` column, else the source detected from the ids alone.

        Returns
        -------
        Role -> one list of gene ids per feature of that modality, in the registered order (empty for a feature
        without a usable id; several for e.g. an antibody against a complex).
        """
        stored = getattr(self, "gene_ids_", None) or {}
        species = self.adata_manager.registry["setup_args"].get("species")
        detection = None
        ids = {}
        for role in self.modality_roles:
            modality = self._modality(role)
            choice = stored.get(role)
            if choice is not None:
                known = None
                if role == "protein" and choice["source"] == VAR_NAMES and "rna" in self.modality_roles:
                    rna = self._modality("rna")
                    known = symbols_of(rna.var_names, rna.var)
                ids[role] = read_source(
                    modality.var_names,
                    modality.var,
                    choice["source"],
                    protein=role == "protein",
                    species=species,
                    antibody_species=choice.get("species"),
                    known_symbols=known,
                ).ids
                continue
            if detection is None:
                detection = self._detect_gene_ids(strict=False)
            ids[role] = detection.chosen[self.modality_name(role)].ids
        return ids

    def role_of(self, modality: str) -> str:
        """The role of a modality given by role or by MuData modality name.

        Parameters
        ----------
        modality
            A role of the model (``"rna"``, ``"protein"``, ``"atac"``) or the MuData name registered for one
            (``"prot"``).

        Returns
        -------
        The role (``"protein"`` for ``"prot"``).

        Raises
        ------
        ValueError
            Naming the valid roles and modality names, for any other name.
        """
        if modality in MODALITIES and modality in self.modality_roles:
            return modality
        for role in self.modality_roles:
            if self.modality_name(role) == modality:
                return role
        names = [self.modality_name(r) for r in self.modality_roles]
        raise ValueError(f"modality must be 'joint', one of {self.modality_roles} or one of {names}, got {modality!r}.")

    def validate_mudata(self, adata: MuData | None = None) -> MuData:
        """The MuData to compute on, checked against the model's registration.

        Parameters
        ----------
        adata
            The model's MuData (``None``) or one with the same modalities and features; one the model has not seen is
            registered with the model's setup (scvi-tools' field transfer), a view is made an actual MuData.

        Returns
        -------
        The MuData, ready for :meth:`make_data_loader`.
        """
        return self._validate_anndata(adata)

    def make_data_loader(
        self, adata: MuData | None = None, indices: Sequence[int] | None = None, batch_size: int | None = None
    ) -> Iterable[dict[str, torch.Tensor]]:
        """Minibatches of the registered data, in cell order, for a pass of the module (inference, analysis).

        Parameters
        ----------
        adata
            As in :meth:`validate_mudata` (``None``: the model's MuData).
        indices
            Cells to use (positions in ``adata``); ``None``: all.
        batch_size
            Cells per minibatch; ``None``: ``scvi.settings.batch_size``.

        Returns
        -------
        A scvi-tools data loader: each minibatch is a dict of tensors keyed by registry key
        (:data:`~scvi_networkvi.module.DATA_KEYS`, batch, covariates, the modality presence mask), every modality at
        all cells of the minibatch.
        """
        adata = self._validate_anndata(adata)
        return self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)

    def covariate_names(self) -> list[tuple[str, str]]:
        """The entries of the encoders' covariate vector, in its order.

        Returns
        -------
        ``(covariate group, column name)`` per entry: the one-hot batch and categorical covariates (each column of a
        covariate with more than one category) and the continuous covariates (their own group).
        """
        manager = self.adata_manager
        names: list[tuple[str, str]] = []
        batch = manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
        if len(batch.categorical_mapping) > 1:
            names += [(str(batch.original_key), str(c)) for c in batch.categorical_mapping]
        if REGISTRY_KEYS.CAT_COVS_KEY in manager.data_registry:
            state = manager.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY)
            for key in state.field_keys:
                mapping = state.mappings[key]
                if len(mapping) > 1:
                    names += [(str(key), str(c)) for c in mapping]
        if REGISTRY_KEYS.CONT_COVS_KEY in manager.data_registry:
            names += [(str(c), str(c)) for c in manager.get_state_registry(REGISTRY_KEYS.CONT_COVS_KEY).columns]
        return names
