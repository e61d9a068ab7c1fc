"""Registering data for NETWORKVI: ``setup_mudata`` (a MuData), ``setup_anndata`` (scvi-tools' CITE-seq AnnData).

Every check of the user's names and data is made here, before anything is registered (the checks themselves are in
``_validation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManagerValidationCheck, fields
from scvi.utils import setup_anndata_dsp

from scvi_networkvi.module import DATA_KEYS

from ._anndata import PROTEIN_MOD, RNA_MOD, SETUP_ANNDATA, cite_mudata
from ._data import ModalityMaskField, MosaicAnnDataManager, presence_mask
from ._validation import (
    LAYER_ROLES,
    SETUP_MUDATA,
    check_categories,
    check_continuous_covariates,
    check_modality,
    check_setup_arguments,
    warn_empty_modality_cells,
)


class NetworkVISetupMixin:
    """``setup_mudata`` and ``setup_anndata`` of NETWORKVI (scvi-tools' ``BaseModelClass`` does the registering)."""

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        protein_expression_obsm_key: str | None = "protein_expression",
        protein_names_uns_key: str | None = None,
        layer: str | None = None,
        batch_key: str | None = None,
        size_factor_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        continuous_covariate_keys: list[str] | None = None,
        gene_id_key: str | Mapping[str, str] | None = None,
        species: Literal["human", "mouse"] | None = None,
        **kwargs,
    ) -> MuData:
        """Register an AnnData in scvi-tools' CITE-seq layout; returns the MuData to use from then on.

        The layout of :meth:`scvi.model.TOTALVI.setup_anndata`: RNA counts in ``adata.X`` (or a layer), protein
        counts in ``adata.obsm[protein_expression_obsm_key]``, a DataFrame whose columns name the proteins or an array
        whose names are in ``adata.uns[protein_names_uns_key]``. NETWORKVI works on MuData: this builds one with
        modalities ``rna`` (``adata``'s ``X``, layers and var, shared, not copied) and ``protein`` (the obsm matrix;
        var names from the DataFrame's columns or the uns entry), the global ``obs`` a copy of ``adata.obs``, and
        registers it with :meth:`setup_mudata` (``modalities={"rna_layer": "rna", "protein_layer": "protein"}``,
        ``rna_layer=layer``, the obs keys read from the global obs), so the model is the same as on that MuData.

        Pass the returned MuData, not ``adata``, to :class:`NETWORKVI`, its methods and the ``nvi.tl`` functions
        (``nvi.tl.train(mdata, batch_key=..., layers={"rna": layer})`` registers it again with its own arguments)::

            mdata = NETWORKVI.setup_anndata(adata, batch_key="batch")
            model = NETWORKVI(mdata)
            model.train()
            latent = model.get_latent_representation()

        ``adata`` is not changed, and every error below is raised before anything is built or registered.

        Parameters
        ----------
        adata
            AnnData with raw RNA counts in ``X`` or ``layer`` and raw protein counts in ``obsm``.
        protein_expression_obsm_key
            ``adata.obsm`` key of the protein counts (cells x proteins). ``None``: no protein modality, the RNA alone
            (e.g. when the proteins are only available normalised: the model cannot read those).
        protein_names_uns_key
            ``adata.uns`` key of the protein names (a list or array in the columns' order, or a DataFrame indexed by
            them, whose columns become the protein modality's var), needed when the obsm entry is an array: NETWORKVI
            addresses proteins by name (their genes for the GO wiring, query mapping, per-protein outputs), where
            scvi-tools would number them. Not used for a DataFrame, whose columns name the proteins.
        layer
            ``adata.layers`` key of the RNA counts (``None``: ``adata.X``).
        batch_key, size_factor_key, categorical_covariate_keys, continuous_covariate_keys
            ``adata.obs`` columns, as in :meth:`setup_mudata`.
        gene_id_key
            Where the genes' ids are: an ``adata.var`` column or ``"var_names"`` (for the RNA; the proteins'
            antibody names are read as in :meth:`setup_mudata`), or a mapping role -> column. ``None``: detected.
        species
            ``"human"`` or ``"mouse"``; ``None``: detected from the ids (see :meth:`setup_mudata`).
        **kwargs
            Passed to :meth:`setup_mudata`.

        Returns
        -------
        The registered :class:`~mudata.MuData` (modalities ``rna`` and ``protein``, or ``rna`` alone).
        """
        if species not in (None, "human", "mouse"):
            raise ValueError(
                f"{SETUP_ANNDATA.name}: species must be 'human', 'mouse' or None (detect), got {species!r}."
            )
        obs_keys = {
            "batch_key": batch_key,
            "size_factor_key": size_factor_key,
            "categorical_covariate_keys": categorical_covariate_keys,
            "continuous_covariate_keys": continuous_covariate_keys,
        }
        mdata = cite_mudata(
            adata,
            protein_expression_obsm_key=protein_expression_obsm_key,
            protein_names_uns_key=protein_names_uns_key,
            layer=layer,
            obs_keys=obs_keys,
        )
        modalities = {"rna_layer": RNA_MOD}
        if PROTEIN_MOD in mdata.mod:
            modalities["protein_layer"] = PROTEIN_MOD
        cls.setup_mudata(
            mdata,
            rna_layer=layer,
            **obs_keys,
            gene_id_key={"rna": gene_id_key} if isinstance(gene_id_key, str) else gene_id_key,
            species=species,
            modalities=modalities,
            _caller=SETUP_ANNDATA,
            **kwargs,
        )
        return mdata

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_mudata(
        cls,
        mdata: MuData,
        rna_layer: str | None = None,
        protein_layer: str | None = None,
        atac_layer: str | None = None,
        batch_key: str | None = None,
        size_factor_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        continuous_covariate_keys: list[str] | None = None,
        gene_id_key: str | Mapping[str, str] | None = None,
        species: Literal["human", "mouse"] | None = None,
        modalities: dict[str, str] | None = None,
        **kwargs,
    ):
        """Register a MuData for NETWORKVI.

        Parameters
        ----------
        mdata
            MuData with raw counts in one to three modalities.
        rna_layer, protein_layer, atac_layer
            Layer of the respective modality holding raw counts (``None``: ``.X``).
        batch_key
            obs column with the batch (or the dataset / technology of origin, for mosaic data).
        size_factor_key
            obs column with RNA size factors (replaces the observed library size).
        categorical_covariate_keys, continuous_covariate_keys
            obs columns with further covariates. Continuous ones must be finite numbers; the model standardises them
            (``standardize_continuous_covariates``), so raw units such as years or BMI are fine.
        gene_id_key
            Where each feature's gene id(s) are: a var column, ``"var_names"``, or a mapping role -> column
            (``{"rna": "gene_ids", "atac": "nearest_gene"}``; a role left out is detected). ``None``: detected when
            the model is built with ``encoder="go"``, per modality. The candidates are ``var_names`` and the var
            columns ``gene_stable_id``, ``gene_ids``, ``gene_id``, ``ensembl_id``, ``ensembl_gene_id``, ``ensembl``,
            ``gene_symbols``, ``gene_symbol``, ``symbol``, ``gene_name``, ``feature_name``, ``entrez_id``,
            ``entrez`` (:data:`~scvi_networkvi.wiring.GENE_ID_COLUMNS`); the ids are recognised as ENSEMBL (human
            ``ENSG...``, mouse ``ENSMUSG...``; version suffixes such as ``.15`` stripped), gene symbols or Entrez
            ids; a protein modality's ``var_names`` are read as antibody names mapped to gene symbols
            (:func:`~scvi_networkvi.wiring.antibody_to_symbols`: ``CD3_TotalSeqB`` -> CD3E, CD3D; ``CD45RA`` ->
            PTPRC; ``HLA-DR`` -> HLA-DRA; the names that map to nothing are listed in one warning). The source whose
            ids match the most gene ids of the annotations wins (ties: the earlier candidate). The choice is logged
            in one INFO line and kept with the model (``model.gene_ids_``, saved and loaded with it). Building the
            model raises a ValueError, before any work, for human and mouse ids mixed in quantity (pass
            ``species``), for fewer than 20 % of a modality's features matched to the annotations (unless its ids
            are of the annotations' own type and species, e.g. the tutorial's subsampled annotations: then a
            warning) and for ids of no known type.
        species
            ``"human"`` or ``"mouse"``: keep that species' ENSEMBL ids (the other's are dropped) and map antibody
            names in its symbol style. ``None``: detected from the ids.
        modalities
            Which modality holds what, scvi-tools style: ``{"rna_layer": "rna", "protein_layer": "prot",
            "batch_key": "rna"}``. At least one of ``rna_layer``, ``protein_layer``, ``atac_layer``.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        caller = kwargs.pop("_caller", SETUP_MUDATA)  # nvi.tl.train, load_query_data: errors in their words
        if modalities is None:
            raise ValueError(
                'setup_mudata needs modalities, e.g. modalities={"rna_layer": "rna", "protein_layer": "prot", '
                '"batch_key": "rna"}.'
            )
        layer_args = {"rna_layer": rna_layer, "protein_layer": protein_layer, "atac_layer": atac_layer}
        check_setup_arguments(mdata, modalities, layer_args, species, caller)
        mods = cls._create_modalities_attr_dict(modalities, setup_method_args)
        layers = {"rna": rna_layer, "protein": protein_layer, "atac": atac_layer}
        for layer_key, role in LAYER_ROLES.items():
            mod = mods[layer_key]
            if mod is None:
                continue
            adata = mdata[mod]
            where = f"Modality {mod!r} ({role})" + (f" layer {layers[role]!r}" if layers[role] else "")
            data = f"mdata[{mod!r}]." + (f"layers[{layers[role]!r}]" if layers[role] else "X")
            fix = caller.raw_counts_fix(layer_key, data, {k: v for k, v in modalities.items() if k != layer_key})
            check_modality(adata, layers[role], mod, where, fix, caller)
        if not mdata.obs_names.is_unique:
            raise ValueError("The MuData's obs_names are not unique; make them unique (mdata.obs_names_make_unique()).")
        present = [mods[key] for key in LAYER_ROLES if mods[key] is not None]
        presence = presence_mask(mdata, present)
        if not presence.any(axis=1).all():
            n_none = int((~presence.any(axis=1)).sum())
            raise ValueError(
                f"{n_none} cells of the MuData are in none of the registered modalities {present}: register the "
                "modality that holds them, or drop them (e.g. mdata = mdata[mdata.obsm['rna'] | ...])."
            )
        if not presence.all():  # mosaic: per-cell keys must describe every cell, so they come from the global obs
            per_cell_keys = {
                "batch_key": batch_key,
                "categorical_covariate_keys": categorical_covariate_keys,
                "continuous_covariate_keys": continuous_covariate_keys,
                "size_factor_key": size_factor_key,
            }
            for name, keys in per_cell_keys.items():
                if keys is None:
                    continue
                if mods[name] is not None:
                    raise ValueError(
                        f"The modalities hold different cells (mosaic data): {name} {keys!r} must be read from the "
                        f"global mdata.obs, not from modality {mods[name]!r}. Bring the column there (e.g. "
                        f"mdata.pull_obs()) and do not name {name!r} in modalities."
                    )
                missing = [k for k in ([keys] if isinstance(keys, str) else keys) if k not in mdata.obs.columns]
                if missing:
                    raise ValueError(
                        f"{name}: {missing} not in the global mdata.obs (columns: {list(mdata.obs.columns)[:8]}). "
                        "Bring them there with mdata.pull_obs() or set them on mdata.obs."
                    )
        for name, keys in (("batch_key", batch_key), ("categorical_covariate_keys", categorical_covariate_keys)):
            mod = mods[name]
            obs, where = (mdata.obs, "mdata.obs") if mod is None else (mdata[mod].obs, f"mdata[{mod!r}].obs")
            check_categories(obs, keys, name, where, caller)
        cont_mod = mods.continuous_covariate_keys
        check_continuous_covariates(
            mdata[cont_mod].obs if cont_mod is not None else mdata.obs,
            continuous_covariate_keys,
            f"modality {cont_mod!r} obs" if cont_mod is not None else "the global mdata.obs",
            caller,
        )
        warn_empty_modality_cells(mdata, mods, layers, caller)
        batch_field = fields.MuDataCategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key, mod_key=mods.batch_key)
        anndata_fields = [
            batch_field,
            fields.MuDataCategoricalObsField(REGISTRY_KEYS.LABELS_KEY, None, mod_key=None),
            fields.MuDataCategoricalJointObsField(
                REGISTRY_KEYS.CAT_COVS_KEY, categorical_covariate_keys, mod_key=mods.categorical_covariate_keys
            ),
            fields.MuDataNumericalJointObsField(
                REGISTRY_KEYS.CONT_COVS_KEY, continuous_covariate_keys, mod_key=mods.continuous_covariate_keys
            ),
            fields.MuDataNumericalObsField(
                REGISTRY_KEYS.SIZE_FACTOR_KEY, size_factor_key, mod_key=mods.size_factor_key, required=False
            ),
            ModalityMaskField(present),
        ]
        for layer_key, role in LAYER_ROLES.items():
            if mods[layer_key] is not None:
                anndata_fields.append(
                    fields.MuDataLayerField(
                        DATA_KEYS[role], layers[role], mod_key=mods[layer_key], is_count_data=True, mod_required=True
                    )
                )
        adata_manager = MosaicAnnDataManager(
            fields=anndata_fields,
            setup_method_args=setup_method_args,
            validation_checks=AnnDataManagerValidationCheck(check_fully_paired_mudata=False),
        )
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)
