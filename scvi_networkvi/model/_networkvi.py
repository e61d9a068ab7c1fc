"""NETWORKVI: the scvi-tools external model on MuData."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scvi
import torch
from anndata import AnnData
from lightning.pytorch.callbacks import Callback
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManagerValidationCheck, fields
from scvi.model.base import ArchesMixin, BaseModelClass, UnsupervisedTrainingMixin, VAEMixin
from scvi.model.base._save_load import _load_saved_files
from scvi.utils import setup_anndata_dsp

from scvi_networkvi.module import DATA_KEYS, MASK_KEY, MODALITIES, NetworkVAE
from scvi_networkvi.nn import check_choices
from scvi_networkvi.wiring import VAR_NAMES, Wiring, WiringConfig, compile_wirings, read_source, symbols_of

from ._anndata import PROTEIN_MOD, RNA_MOD, SETUP_ANNDATA, cite_mudata
from ._data import ModalityMaskField, MosaicAnnDataManager, presence_mask
from ._defaults import DataTypeDefaults, data_type_defaults, rebuilding_saved_model, resolve_option
from ._finite_loss import FiniteLossCheck
from ._gene_ids import default_annotations, detect_modality_gene_ids, paired_ontology, report, report_coverage
from ._interpret import NetworkVIInterpretMixin
from ._outputs import NetworkVIOutputsMixin
from ._protein_prior import empirical_protein_background
from ._query import align_query_features, freeze_for_query, transfer_state
from ._quiet import QUERY_WARNINGS, TRAINING_WARNINGS, quiet_lightning
from ._training_plan import NetworkVITrainingPlan
from ._validation import (
    LAYER_ROLES,
    SETUP_MUDATA,
    Caller,
    check_categories,
    check_continuous_covariates,
    check_modality,
    check_setup_arguments,
    query_caller,
    warn_empty_modality_cells,
)

logger = logging.getLogger(__name__)

PathOrName = str | os.PathLike
#: Allowed values of the constructor's own choice arguments (the module options': NetworkVAE.check_options).
_CHOICES = {
    "encoder": ("go", "dense"),
    "modality_mixing": ("moe", "poe", "mean", "auto", None),
    "head_input": ("root", "levels", None),
}
#: Validation metrics the training plan logs each epoch, which ``train(early_stopping_monitor=...)`` may watch.
EARLY_STOPPING_MONITORS = ("elbo_validation", "reconstruction_loss_validation", "kl_local_validation")


class NETWORKVI(
    NetworkVIInterpretMixin, NetworkVIOutputsMixin, VAEMixin, UnsupervisedTrainingMixin, ArchesMixin, BaseModelClass
):
    """NetworkVI: multimodal integration with encoders wired by the Gene Ontology (Arnoldt et al. 2025).

    Each modality (RNA, protein, ATAC) gets its own encoder. With ``encoder="go"`` its features feed per-gene nodes,
    optionally gene–gene interaction layers, then a network whose hidden units are GO terms wired child -> parent
    (deepest level first), cut at depth ``n_layers_encoder``. Per-modality Gaussian posteriors are mixed into one
    joint latent; decoders are scvi-tools' (scVI for RNA, PeakVI for ATAC, totalVI for proteins).

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`, or the one :meth:`setup_anndata` returns for an AnnData.
    go
        The GO DAG: registry name (``"go-basic"``, release 2025-03-16; ``"GO.db"``, release 2022-07-01) or path of
        an OBO or GO.db SQLite file. ``None`` (default): the DAG registered with the annotations (``"GO.db"`` for
        the default annotations, so both come from one GO release), else ``"go-basic"``.
    annotations
        Gene -> GO annotations keyed by the features' gene ids: registry name(s) (``"org.Hs.eg.db"``,
        ``"org.Mm.eg.db"``, ``"ensembl2go-tutorial"``...) or path(s) of GAF or org.*.eg.db SQLite files. ``None``
        (default): the full annotations of the species of the features' ids (``species=`` of :meth:`setup_mudata`,
        else detected): Bioconductor 3.16's ``org.Hs.eg.db`` for human, ``org.Mm.eg.db`` for mouse, which key every
        gene by ENSEMBL id, Entrez id, symbol and alias symbol (downloaded and cached on first use; see
        ``python -m scvi_networkvi fetch``).
    interactions
        Optional gene–gene table: registry name (``"k562-contact-domains"``, ``"gm12878-loops"``) or CSV path.
    encoder
        ``"go"`` (GO-wired encoders) or ``"dense"`` (scvi-tools encoders, the ablation baseline).
    wirings
        Precompiled :class:`~scvi_networkvi.wiring.Wiring` per modality role (``rna``, ``protein``, ``atac``); used
        instead of compiling from ``go`` / ``annotations`` (this is how a saved model is rebuilt without files).
    n_hidden
        Width of dense layers (encoders, decoders) and of the GO root. ``None``: 128, as scVI, or
        ``floor(sqrt(n_regions))`` with ATAC when that is larger (PeakVI / MultiVI). ``"sqrt"``: the original's
        heuristic, ``floor(sqrt(n_regions))`` with ATAC, else ``min(128, floor(sqrt(n_genes)))``, at least 8.
    n_latent
        Latent dimensions. ``None``: 10, as scVI. ``"sqrt"``: the original's ``floor(sqrt(n_hidden))``, at least 2.

        The original's square-root sizes are too narrow for typical panels (1000 genes give ``n_hidden=31`` and
        ``n_latent=5``): such a model learns the cell-type structure of the RNA several times more slowly, and
        after a usual training its decoded expression barely differs between cell types (CD14+ monocytes vs naive
        CD4+ T cells on the CITE-seq starter, 60 epochs: marker log fold changes below 0.3 instead of 2-7).
    n_layers_encoder
        Depth of dense encoders and the deepest GO level kept.
    wiring_config
        How the GO wiring is compiled (:class:`~scvi_networkvi.wiring.WiringConfig`, or a mapping of its fields):
        namespaces, relations, term filters, interaction cutoff and the neurons per gene node (``gene_size``), GO
        term (``term_size``) and node of the UNKNOWN chain (``unknown_size``, the path of the genes without
        annotation). Its ``max_depth`` and ``root_size`` are the model's ``n_layers_encoder`` and ``n_hidden``.
        Each field may also be given as a keyword (``gene_size=5``, ``go_size=2`` for ``term_size``), which
        replaces the config's. The resolved config is what the model saves.
    modality_mixing
        ``"poe"`` (product of the modality experts and a standard-normal prior expert: each modality weighs by its
        precision), ``"mean"`` (equal weights over the modalities a cell has, as MULTIVI's default) or ``"moe"`` (the
        original's default: a gating network learns the weights; it collapsed onto one modality in every run we made,
        the protein modality on CITE-seq, so the other encoders trained only through the penalty).
        ``None``: ``"poe"`` with a protein modality, else ``"mean"``, the better of the two on the tutorial data
        (results page, integration ablation).
        ``"auto"``: ``"mean"`` on mosaic data, whose cells differ in the modalities they have, else as ``None``. A
        product of experts lets the more certain modality decide a cell's place; in a mosaic that modality is often
        one that only some cells have (protein for the CITE-seq cells, ATAC for the multiome ones of a CITE-seq +
        multiome mosaic). It mixed that mosaic's datasets better with the dense encoder and worse with the GO encoder,
        so it is not the default (results page, mosaic ablation). The resolved choice is what the model saves, so a
        saved or query model keeps the mixing it was trained with, whatever data it is loaded with.
    standardize_continuous_covariates
        The model reads each registered continuous covariate as ``(value - mean) / sd`` over the cells it is built on
        (a constant one: minus its mean). Raw values such as a donor age of 20-60 fed into the encoders, the
        covariate attention and the decoders made training diverge to NaN within 5 epochs on the example data at
        the default learning rate. The statistics are saved with the model; a query model keeps the reference's.
        ``False``: the raw values, as scvi-tools' models and the original use them.
    dropout_rate
        Dropout in the encoders. ``None``: 0 with two or more modalities (paired or mosaic), 0.1 with one; measured
        per data type (results page, integration and mosaic ablations). The resolved value is what the model saves.
    head_input
        What the GO encoder's posterior heads read: ``"root"``, the top node's ``n_hidden`` neurons (the original),
        or ``"levels"``, the neurons of every GO level, root included, so that each term also reaches the latent
        directly rather than only through the narrower levels above it. The latent stays a function of GO-term
        activations either way. ``None``: ``"levels"`` for the GO encoder on paired RNA + ATAC (it integrated better
        there: results page), else ``"root"``. The resolved value is what the model saves; a model saved before
        this option existed loads with ``"root"``, as it was trained.
    empirical_protein_background_prior
        Start the per-batch prior of the protein background from the counts, as totalVI does (a two-component
        mixture fitted to the log counts of 100 cells per batch; the lower component is the background). ``None``:
        with more than 10 proteins (totalVI's rule). ``False``: a random start (the original's).
    batch_centered_input
        Modality roles (``"protein"``, ``"rna"``, ``"atac"``, or ``"all"``) whose encoder reads its ``log1p`` counts
        minus their mean within the cell's batch (means over the cells the model is built on, saved with it; a query
        model keeps the reference's for known batches and centres a new batch by its own). The decoders still model
        the raw counts. ``None``: ``"all"`` on data with a protein modality (paired or mosaic) and for the GO encoder
        on paired RNA + ATAC, else none. Protein panels carry strong per-batch offsets (ambient antibody, staining),
        which an encoder that reads raw counts passes into the latent, where neither the batch-aware decoders nor the
        adversary remove them; the dense encoder on RNA + ATAC lost bio conservation with centred inputs instead
        (results page). ``()``: uncentred inputs, as in the original. A model saved before this option existed loads
        with uncentred inputs, as it was trained.
    **model_kwargs
        Options of the module, documented once in :class:`~scvi_networkvi.module.NetworkVAE` (likelihoods, mixing
        penalty, covariates, decoders, ``gene_layer``) and :class:`~scvi_networkvi.nn.WiredEncoder` (the GO
        encoder's ``activation``, ``linear_path``, ``covariate_attention``, ``go_norm``...). Their
        full list with defaults is ``NetworkVAE.options()``; the model saves every one, defaults included
        (:attr:`init_settings`). One of them depends on the data when not given: ``modality_penalty_anchor`` is
        ``"rna"`` for the GO encoder on mosaic data with RNA and ATAC (the penalty then aligns the other modalities'
        posteriors to the RNA one; the datasets of the CITE-seq + multiome mosaic mixed better: results page), else
        ``None``; a model
        saved before this option loads without an anchor, as it was trained. Also the fields of ``wiring_config``
        as keywords. A name that is none of these is a
        TypeError naming the valid ones, and a bad value a ValueError, both before anything is registered or built.
    """

    _module_cls = NetworkVAE
    _training_plan_cls = NetworkVITrainingPlan

    def __init__(
        self,
        mdata: MuData,
        *,
        go: PathOrName | None = None,
        annotations: PathOrName | Sequence[PathOrName] | None = None,
        interactions: PathOrName | None = None,
        encoder: Literal["go", "dense"] = "go",
        wirings: Mapping[str, Wiring | Mapping[str, Any]] | None = None,
        n_hidden: int | Literal["sqrt"] | None = None,
        n_latent: int | Literal["sqrt"] | None = None,
        n_layers_encoder: int = 2,
        wiring_config: WiringConfig | Mapping[str, Any] | None = None,
        modality_mixing: Literal["moe", "poe", "mean", "auto"] | None = None,
        standardize_continuous_covariates: bool = True,
        dropout_rate: float | None = None,
        head_input: Literal["root", "levels"] | None = None,
        empirical_protein_background_prior: bool | None = False,
        batch_centered_input: Sequence[str] | Literal["all"] | None = None,
        **model_kwargs: Any,
    ):
        if isinstance(mdata, AnnData):
            raise TypeError(
                "NETWORKVI works on MuData: for an AnnData in scvi-tools' CITE-seq layout, pass the MuData that "
                "NETWORKVI.setup_anndata returns (mdata = NETWORKVI.setup_anndata(adata, ...); NETWORKVI(mdata)); "
                "otherwise register a MuData with NETWORKVI.setup_mudata."
            )
        anchor_given = "modality_penalty_anchor" in model_kwargs  # else the data type's (rules in _defaults.py)
        wiring_fields, model_kwargs = self._split_options(model_kwargs, wired=encoder == "go" or bool(wirings))
        check_choices({"encoder": encoder, "modality_mixing": modality_mixing, "head_input": head_input}, _CHOICES)
        config = _wiring_config(wiring_config, wiring_fields, n_layers_encoder)
        super().__init__(mdata)
        roles = self.modality_roles
        anchor = model_kwargs["modality_penalty_anchor"]
        if anchor_given and anchor is not None and anchor not in roles:
            raise ValueError(
                f"modality_penalty_anchor={anchor!r} is not a modality of this model ({roles}): pass one of them or None."
            )
        n_inputs = {role: self.summary_stats[_n_key(role)] for role in roles}
        n_hidden, n_latent = _layer_sizes(n_inputs, n_hidden, n_latent)
        if config.root_size not in (None, n_hidden):
            raise ValueError(
                f"wiring_config.root_size={config.root_size} differs from n_hidden={n_hidden}: the GO root is "
                "n_hidden wide; set n_hidden instead."
            )
        config = dataclasses.replace(config, root_size=n_hidden)
        if modality_mixing == "auto":  # mosaic: equal weights (results page, mosaic ablation)
            modality_mixing = "mean" if self.is_mosaic else None
        if modality_mixing is None:  # measured per data type (results page, integration ablation)
            modality_mixing = "poe" if "protein" in roles else "mean"
        # Resolved here (rules in _defaults.py) so that the model saves, and a query model reuses, what it trained with.
        defaults = data_type_defaults(roles, self.is_mosaic, encoder)
        if dropout_rate is None:
            dropout_rate = defaults.dropout_rate
        if batch_centered_input is None:
            batch_centered_input = defaults.batch_centered_input
        head_input = resolve_option("head_input", head_input, defaults.head_input)
        if not anchor_given:
            model_kwargs["modality_penalty_anchor"] = resolve_option(
                "modality_penalty_anchor", None, defaults.penalty_anchor
            )
        compiled: dict[str, Wiring] = {}
        #: Where each modality's gene ids were read from ({role: source, id type, species, shares}), kept with the
        #: model (saved and loaded with it): ``None`` when no ids were read (given wirings, dense encoders).
        self.gene_ids_: dict[str, dict[str, Any]] | None = None
        if wirings is not None:
            compiled = {r: w if isinstance(w, Wiring) else Wiring.from_dict(dict(w)) for r, w in wirings.items()}
            unknown = [r for r in compiled if r not in roles]
            if unknown:
                raise ValueError(f"wirings given for roles {unknown} that the data does not have (has {roles}).")
        elif encoder == "go":
            if annotations is None:
                setup = self.adata_manager.registry["setup_args"]
                annotations = default_annotations(
                    self.adata,
                    {role: self.modality_name(role) for role in roles},
                    gene_id_key=setup.get("gene_id_key"),
                    species=setup.get("species"),
                    caller=SETUP_MUDATA,
                )
            if go is None:
                go = paired_ontology(annotations)
            detection = self._detect_gene_ids(annotations)
            report(detection)
            role_of = {self.modality_name(role): role for role in roles}
            self.gene_ids_ = {role_of[mod]: source.to_dict() for mod, source in detection.chosen.items()}
            compiled = compile_wirings(
                {role_of[mod]: source.ids for mod, source in detection.chosen.items()},
                go=go,
                annotations=annotations,
                interactions=interactions,
                feature_names={role: self._modality(role).var_names.tolist() for role in roles},
                config=config,
            )
            for role, wiring in compiled.items():
                report_coverage(self.modality_name(role), wiring, annotations)
        n_cats = self.adata_manager.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY).get("n_cats_per_key", [])
        self.module = self._module_cls(
            n_inputs,
            wirings=compiled,
            n_batch=self.summary_stats.n_batch,
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers_encoder=n_layers_encoder,
            n_continuous_cov=self.summary_stats.get("n_extra_continuous_covs", 0),
            continuous_covariate_stats=self._continuous_covariate_stats()
            if standardize_continuous_covariates
            else None,
            n_cats_per_cov=n_cats if REGISTRY_KEYS.CAT_COVS_KEY in self.adata_manager.data_registry else None,
            dropout_rate=dropout_rate,
            modality_mixing=modality_mixing,
            head_input=head_input,
            **self._protein_background_init(empirical_protein_background_prior),
            input_shifts={role: self._batch_means(role) for role in _centered_roles(batch_centered_input, roles)},
            use_size_factor_key=REGISTRY_KEYS.SIZE_FACTOR_KEY in self.adata_manager.data_registry,
            **model_kwargs,
        )
        self.wirings_ = compiled
        self._model_summary_string = (
            f"NETWORKVI ({encoder} encoder) on {', '.join(f'{r}: {n}' for r, n in n_inputs.items())} features; "
            f"n_hidden {n_hidden}, n_latent {n_latent}, GO depth {n_layers_encoder}, {modality_mixing} mixing, "
            f"{model_kwargs['modality_penalty']} penalty" + "".join(f"\n  {w!r}" for w in compiled.values())
        )
        wiring_config = dataclasses.asdict(config)  # saved resolved, as a mapping of its fields
        self.init_params_ = self._get_init_params(locals())
        # The saved model must rebuild without the OBO/GAF/CSV files: it carries the compiled wirings as arrays.
        params = self.init_params_["non_kwargs"]
        params["wirings"] = {r: w.to_dict() for r, w in compiled.items()}
        for name in ("go", "annotations", "interactions"):
            if isinstance(params.get(name), os.PathLike):
                params[name] = os.fspath(params[name])

    # ---- data ------------------------------------------------------------------------------------------------------
    def _batch_means(self, role: str) -> np.ndarray:
        """Mean ``log1p`` count of every feature of a modality within each batch, ``(n_batch, n_features)``."""
        counts = self.adata_manager.get_from_registry(DATA_KEYS[role])
        counts = counts.to_numpy() if isinstance(counts, pd.DataFrame) else counts
        batch = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        present = presence_mask(self.adata, [self.modality_name(role)])[:, 0] > 0
        out = np.zeros((max(self.summary_stats.n_batch, 1), counts.shape[1]), dtype=np.float32)
        for b in range(out.shape[0]):
            rows = np.flatnonzero(present & (batch == b))
            if rows.size:
                block = counts[rows]
                if hasattr(block, "toarray"):  # sparse: log1p keeps zeros, so the mean is over the stored values
                    out[b] = np.asarray(block.astype(np.float64).log1p().sum(axis=0)).ravel() / rows.size
                else:
                    out[b] = np.log1p(np.asarray(block, dtype=np.float64)).mean(axis=0)
        return out

    def _protein_background_init(self, empirical: bool | None) -> dict[str, np.ndarray]:
        """The module's initial protein background prior: empirical per batch (totalVI's) or, empty, random."""
        if "protein" not in self.modality_roles:
            return {}
        n_proteins = self.summary_stats.n_proteins
        if not (empirical if empirical is not None else n_proteins > 10):
            return {}
        counts = self.adata_manager.get_from_registry(REGISTRY_KEYS.PROTEIN_EXP_KEY)
        counts = counts.to_numpy() if isinstance(counts, pd.DataFrame) else counts
        batch = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        rows = np.flatnonzero(presence_mask(self.adata, [self.modality_name("protein")])[:, 0] > 0)
        mean, scale = empirical_protein_background(
            counts[rows], batch[rows], max(self.summary_stats.n_batch, 1), seed=scvi.settings.seed or 0
        )
        return {"protein_background_prior_mean": mean, "protein_background_prior_scale": scale}

    def _continuous_covariate_stats(self) -> tuple[list[float], list[float]] | None:
        """Mean and standard deviation (1 where it is 0) of each registered continuous covariate over all cells."""
        if REGISTRY_KEYS.CONT_COVS_KEY not in self.adata_manager.data_registry:
            return None
        values = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.CONT_COVS_KEY), dtype=np.float64)
        sd = values.std(axis=0)
        return values.mean(axis=0).tolist(), np.where(sd > 0, sd, 1.0).tolist()

    @property
    def is_mosaic(self) -> bool:
        """Whether the registered cells differ in the modalities they have (some cell lacks a registered one)."""
        return not bool(np.asarray(self.adata_manager.get_from_registry(MASK_KEY)).all())

    def _data_type_defaults(self) -> DataTypeDefaults:
        """What ``None`` resolves to for this model's data and encoder (see ``_defaults.py``)."""
        return data_type_defaults(self.modality_roles, self.is_mosaic, self.init_settings.get("encoder", "go"))

    @classmethod
    def _split_options(cls, given: Mapping[str, Any], *, wired: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """``**model_kwargs`` checked in the constructor's words: the wiring fields given, and the module options.

        The wiring fields are those of :class:`~scvi_networkvi.wiring.WiringConfig` but ``max_depth`` and
        ``root_size`` (``go_size``: ``term_size``). The module options are the module's (``NetworkVAE.options()``)
        less the constructor's own arguments and ``log_variational`` (the batch-centred inputs are means of
        ``log1p`` counts), each given value over its default.
        """
        own = [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "model_kwargs")]
        wiring = {f.name: f.name for f in dataclasses.fields(WiringConfig) if f.name not in ("max_depth", "root_size")}
        wiring["go_size"] = "term_size"
        options = {
            name: default
            for name, default in cls._module_cls.options().items()
            if name not in own and name != "log_variational"
        }
        unknown = [name for name in given if name not in options and name not in wiring]
        if unknown:
            raise TypeError(
                f"{cls.__name__}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; its arguments "
                f"are: {', '.join(own[1:])}; its wiring options (fields of WiringConfig) are: {', '.join(wiring)}; "
                f"its module options (see NetworkVAE and WiredEncoder) are: {', '.join(options)}."
            )
        module = {name: value for name, value in given.items() if name in options}
        cls._module_cls.check_options(module, wired=wired, caller=cls.__name__)
        return {wiring[n]: v for n, v in given.items() if n in wiring}, {**options, **module}

    @property
    def init_settings(self) -> dict[str, Any]:
        """The settings the model was built with, as it saves them, in one flat mapping.

        The constructor's arguments as resolved (``n_hidden``, ``modality_mixing``, ``dropout_rate``,
        ``batch_centered_input``...) and every module option (``**model_kwargs``, defaults included); the compiled
        ``wirings`` are left out. A model saved before the module options moved to ``**model_kwargs`` kept them
        among the arguments: they are read from either place.
        """
        return {name: value for name, value in flat_init_params(self.init_params_).items() if name != "wirings"}

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

    def _detect_gene_ids(self, annotations=None, strict: bool = True):
        """Detect each registered modality's gene-id source (see :meth:`setup_mudata`'s ``gene_id_key``)."""
        setup = self.adata_manager.registry["setup_args"]
        return detect_modality_gene_ids(
            self.adata,
            {role: self.modality_name(role) for role in self.modality_roles},
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

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | MuData | None = None, **kwargs) -> NETWORKVI:
        """Load a saved model (:meth:`scvi.model.base.BaseModelClass.load`, same arguments).

        A model saved before an option existed is rebuilt as it was trained, not with that option's current default.
        """
        with rebuilding_saved_model(), warnings.catch_warnings():
            # scvi-tools' load reads MuData.mod_names, which newer mudata (0.4) deprecates: the user cannot act on it
            warnings.filterwarnings("ignore", message="The method mod_names is deprecated", category=FutureWarning)
            return super().load(dir_path, adata=adata, **kwargs)

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

    # ---- training --------------------------------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        *,
        lr: float = 4e-3,
        weight_decay: float | None = None,
        adversarial_mixing: bool = True,
        adversarial_scale: float | Literal["auto"] | None = None,
        n_epochs_kl_warmup: int | None = 50,
        n_steps_kl_warmup: int | None = None,
        batch_size: int = 128,
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        early_stopping: bool = True,
        early_stopping_patience: int = 50,
        early_stopping_monitor: str = "elbo_validation",
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train with scvi-tools' adversarial training plan and Lightning trainer.

        Lightning's start-up lines (GPU / TPU available, tips) are not shown while this runs; give
        ``logging.getLogger("lightning.pytorch.utilities.rank_zero")`` a level (INFO) to see them. The progress bar
        and ``scvi.settings.verbosity`` work as in scvi-tools.

        Parameters
        ----------
        max_epochs
            ``None``: scvi-tools' heuristic from the number of cells.
        lr, weight_decay
            AdamW settings. The learning rate is TOTALVI's 4e-3; the original's 1e-4 (``lr=1e-4``) leaves the model
            far from trained after the usual tens to hundreds of epochs (600 cells, batch size 128: 5 steps per
            epoch), its decoded expression nearly the same for every cell. Weight decay: the original's 1e-3 (0 for
            a query model, whose frozen weights must not decay).
        adversarial_mixing
            Train a batch classifier on the latent and fool it (needs at least two batches; ignored with one).
        adversarial_scale
            Weight of the fooling term in the loss. ``"auto"``: scvi-tools' ``1 - KL weight``, which fades out with the
            KL warm-up (to 0 after ``n_epochs_kl_warmup`` epochs). A number: that weight throughout (MULTIVI trains
            with 1). ``None``: 1 on mosaic data (cells differ in the modalities they have), on data with a protein
            modality and for the GO encoder on paired RNA + ATAC, else ``"auto"`` (the default until 2026-12 for all
            data). In a mosaic the batch is typically the dataset, which also decides which modalities a cell has,
            and a fading adversary left the datasets apart; on CITE-seq the full weight corrected the batch better,
            while the dense encoder on paired RNA + ATAC lost bio conservation with it (results page: mosaic and
            integration ablations).
        n_epochs_kl_warmup, n_steps_kl_warmup
            Linear KL warm-up.
        batch_size, train_size, validation_size, shuffle_set_split, datasplitter_kwargs
            Data splitting, as in scvi-tools.
        early_stopping, early_stopping_patience, early_stopping_monitor
            Stop when the validation metric ``early_stopping_monitor`` has not improved for this many epochs. The
            default, the validation ELBO (reconstruction + unweighted KL and modality penalty), is TOTALVI's; earlier
            versions monitored ``"reconstruction_loss_validation"`` (MULTIVI's choice), which stops sooner. One of
            ``"elbo_validation"``, ``"reconstruction_loss_validation"``, ``"kl_local_validation"``.
        accelerator, devices
            Lightning hardware settings (``strategy`` and other Trainer arguments pass through ``trainer_kwargs``).
        plan_kwargs
            Extra arguments of the training plan, :class:`~scvi_networkvi.model.NetworkVITrainingPlan` (scvi-tools'
            :class:`~scvi.train.AdversarialTrainingPlan` with its epoch metrics handed to Lightning once per epoch),
            overriding the ones above.
        **trainer_kwargs
            Passed to the Lightning Trainer; an unknown name is an error there.
        """
        if early_stopping and early_stopping_monitor not in EARLY_STOPPING_MONITORS:
            raise ValueError(
                f"train(early_stopping_monitor={early_stopping_monitor!r}) is not a validation metric the model logs; "
                f"use one of {list(EARLY_STOPPING_MONITORS)}."
            )
        if weight_decay is None:
            weight_decay = 0.0 if getattr(self, "query_", False) else 1e-3
        n_batch = self.summary_stats.n_batch
        use_adversarial = adversarial_mixing and n_batch > 1
        if adversarial_mixing and n_batch < 2:
            logger.info("adversarial_mixing needs at least two batches; training without it.")
        plan = {
            "optimizer": "AdamW",
            "lr": lr,
            "weight_decay": weight_decay,
            "n_epochs_kl_warmup": n_epochs_kl_warmup,
            "n_steps_kl_warmup": n_steps_kl_warmup,
            "adversarial_classifier": use_adversarial,
            "scale_adversarial_loss": _adversarial_scale(
                adversarial_scale, self._data_type_defaults().full_weight_adversary
            ),
        }
        plan.update(plan_kwargs or {})
        callbacks = trainer_kwargs.get("callbacks") or []
        callbacks = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
        trainer_kwargs["callbacks"] = [*callbacks, FiniteLossCheck()]
        if early_stopping:
            trainer_kwargs.setdefault("early_stopping_monitor", early_stopping_monitor)
            trainer_kwargs.setdefault("early_stopping_patience", early_stopping_patience)
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        quiet = TRAINING_WARNINGS + (QUERY_WARNINGS if getattr(self, "query_", False) else ())
        with quiet_lightning(quiet):
            return super().train(
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                train_size=train_size,
                validation_size=validation_size,
                shuffle_set_split=shuffle_set_split,
                batch_size=batch_size,
                early_stopping=early_stopping,
                datasplitter_kwargs=datasplitter_kwargs,
                plan_kwargs=plan,
                **trainer_kwargs,
            )

    # ---- query mapping ---------------------------------------------------------------------------------------------
    @staticmethod
    def prepare_query_mudata(
        mdata: MuData, reference_model: NETWORKVI | str | os.PathLike, return_reference_var_names: bool = False
    ):
        """Reorder and zero-pad the query's features to the reference's, per modality (in place).

        Raises a ValueError, before changing anything, when a modality shares no feature with the reference; logs
        one line per modality with the features found and zero-filled, and warns below 80 % found.
        """
        if isinstance(reference_model, str | os.PathLike):
            attr_dict, var_names, _, _ = _load_saved_files(os.fspath(reference_model), load_adata=False)
            registry = attr_dict["registry_"]
        else:
            var_names = {r: reference_model._modality(r).var_names for r in reference_model.modality_roles}
            var_names = {reference_model.modality_name(r): v for r, v in var_names.items()}
            registry = reference_model.registry_
        mods = registry["setup_args"]["modalities"]
        for layer_key in LAYER_ROLES:
            mod = mods.get(layer_key)
            if mod is None:
                continue
            if mod not in mdata.mod:
                raise ValueError(f"The query MuData lacks modality {mod!r} of the reference (has {list(mdata.mod)}).")
            shared = pd.Index(var_names[mod]).intersection(mdata[mod].var_names)
            if len(shared) == 0:
                raise ValueError(
                    f"The query's modality {mod!r} shares no feature with the reference model; check that both use "
                    "the same feature names (e.g. gene symbols vs ENSEMBL ids)."
                )
        if return_reference_var_names:
            return {mod: pd.Index(names) for mod, names in var_names.items()}
        align_query_features(mdata, var_names, [mods[k] for k in LAYER_ROLES if mods.get(k) is not None])

    @classmethod
    def load_query_data(
        cls,
        mdata: MuData,
        reference_model: NETWORKVI | str | os.PathLike,
        *,
        freeze: bool = True,
        accelerator: str = "auto",
        device: int | str = "auto",
        _caller: Caller | None = None,
    ) -> NETWORKVI:
        """A query model: the reference's weights, with new batches added as new categories.

        Parameters
        ----------
        mdata
            Query MuData with the reference's features (see :meth:`prepare_query_mudata`); its batches may be new or
            ones the reference has seen.
        reference_model
            Trained reference model or the folder it was saved to.
        freeze
            Train only covariate columns of covariate-conditioned layers (decoders, covariate projections) and
            per-batch parameters; the GO encoders and everything else keep the reference's weights. A reference
            built with ``encode_covariates=False`` (the default) has encoders that never see the batch: its query
            latent is then the reference encoder applied as it is (query training adapts the decoders only), and a
            warning says so; build the reference with ``encode_covariates=True`` for encoders that adapt.
            Batch-centred inputs (``batch_centered_input``) keep the reference's means for the batches it had cells
            of and centre every other batch (new, or a category the reference registered without cells) by its own.
        accelerator, device
            Where the query model lives.
        _caller
            Internal: the function the user called (``nvi.tl.map_query``), which errors about the query name.
        """
        if isinstance(reference_model, str | os.PathLike):
            attr_dict, var_names, ref_state, _ = _load_saved_files(
                os.fspath(reference_model), load_adata=False, map_location="cpu"
            )
            ref_state = ref_state.get("model_state_dict", ref_state)
        else:
            attr_dict = {k: getattr(reference_model, k, None) for k in ("registry_", "init_params_", "gene_ids_")}
            var_names = {
                reference_model.modality_name(r): reference_model._modality(r).var_names
                for r in reference_model.modality_roles
            }
            ref_state = {k: v.detach().cpu() for k, v in reference_model.module.state_dict().items()}
        registry = attr_dict["registry_"]
        if registry.get("model_name") not in (cls.__name__, None):
            raise ValueError(f"The reference is a {registry.get('model_name')} model, not {cls.__name__}.")
        setup_args = dict(registry["setup_args"])
        for mod, names in var_names.items():
            if mod not in mdata.mod:
                raise ValueError(f"The query MuData lacks modality {mod!r} of the reference (has {list(mdata.mod)}).")
            if not np.array_equal(np.asarray(mdata[mod].var_names), np.asarray(names)):
                raise ValueError(
                    f"The query's {mod!r} features differ from the reference's (order or names): run "
                    "NETWORKVI.prepare_query_mudata(query, reference_model) first."
                )
        cls.setup_mudata(
            mdata,
            source_registry=registry,
            extend_categories=True,
            allow_missing_labels=True,
            _caller=_caller or query_caller("NETWORKVI.load_query_data"),
            **setup_args,
        )
        kwargs = flat_init_params(attr_dict["init_params_"])
        with rebuilding_saved_model():
            model = cls(mdata, **kwargs)
        ref_cats = [
            registry["field_registries"][REGISTRY_KEYS.BATCH_KEY]["summary_stats"]["n_batch"],
            *registry["field_registries"]
            .get(REGISTRY_KEYS.CAT_COVS_KEY, {})
            .get("state_registry", {})
            .get("n_cats_per_key", []),
        ]
        query_cats = [model.summary_stats.n_batch, *model.module.n_cats_per_cov]
        n_cont = model.summary_stats.get("n_extra_continuous_covs", 0)
        model.module.load_state_dict(transfer_state(ref_state, model.module, ref_cats, query_cats, n_cont))
        if freeze:
            trainable = freeze_for_query(model.module)
            logger.info("Query model: %d parameter tensors keep training (covariate columns only).", len(trainable))
            if not kwargs.get("encode_covariates", False):
                warnings.warn(
                    "The reference's encoders do not take the batch (encode_covariates=False): the query's latent is "
                    "the frozen reference encoder applied to the query and query training changes only the decoders. "
                    "Build the reference with encode_covariates=True (nvi.tl.train(..., query_ready=True)) for encoders "
                    "that adapt to new batches.",
                    UserWarning,
                    stacklevel=2,
                )
        model.gene_ids_ = attr_dict.get("gene_ids_")  # the reference's gene-id sources (None: saved without them)
        model.query_ = True
        model.is_trained_ = False
        model.to_device(device if device != "auto" else ("cuda" if accelerator == "gpu" else "cpu"))
        model.module.eval()
        return model

    # ---- outputs ---------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        give_mean: bool = True,
        mc_samples: int = 5000,
        batch_size: int | None = None,
        return_dist: bool = False,
        dataloader=None,
        modality: str = "joint",
    ) -> np.ndarray:
        """Joint latent (``modality="joint"``) or one modality's posterior mean (by role or modality name)."""
        if modality == "joint":
            return super().get_latent_representation(
                adata=adata,
                indices=indices,
                give_mean=give_mean,
                mc_samples=mc_samples,
                batch_size=batch_size,
                return_dist=return_dist,
            )
        role = self.role_of(modality)
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        means = []
        for tensors in loader:
            outputs = self.module.inference(**self.module._get_inference_input(tensors))
            means.append(outputs[f"qz_m_{role}"].cpu())
        return torch.cat(means).numpy()

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

    @torch.inference_mode()
    def get_normalized_expression(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        gene_list: Sequence[str] | None = None,
        transform_batch: str | int | None = None,
        library_size: float | Literal["latent"] = 1.0,
        batch_size: int | None = None,
        return_numpy: bool = False,
    ) -> pd.DataFrame | np.ndarray:
        """Decoded RNA expression (``px_scale`` x ``library_size``), cells x genes, from the posterior mean.

        ``transform_batch`` changes only the decoder's batch (the encoder sees each cell's own batch).
        """
        rna = self._modality("rna")
        adata = self._validate_anndata(adata)
        batch_code = self._batch_code(transform_batch)
        genes = np.asarray(rna.var_names)
        columns = np.arange(len(genes)) if gene_list is None else _positions(genes, gene_list, "gene_list")
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        out = []
        for tensors in loader:
            inference = self.module.inference(**self.module._get_inference_input(tensors))
            gen_input = self.module._get_generative_input(tensors, inference, transform_batch=batch_code)
            gen = self.module.generative(**gen_input, use_z_mean=True)
            values = gen["px_rate"] if library_size == "latent" else gen["px_scale"] * library_size
            out.append(values[:, columns].cpu())
        result = torch.cat(out).numpy()
        if return_numpy:
            return result
        obs_names = adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]
        return pd.DataFrame(result, index=obs_names, columns=genes[columns])

    def _batch_code(self, transform_batch: str | int | None) -> int | None:
        if transform_batch is None:
            return None
        categories = list(self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping)
        if transform_batch not in categories:
            raise ValueError(f"transform_batch {transform_batch!r} is not a registered batch; batches: {categories}.")
        return categories.index(transform_batch)


def _layer_sizes(
    n_inputs: Mapping[str, int], n_hidden: int | str | None, n_latent: int | str | None
) -> tuple[int, int]:
    """Resolve ``n_hidden`` / ``n_latent``: ``None`` -> scvi-tools sizes, ``"sqrt"`` -> the original's heuristic."""
    for name, value in (("n_hidden", n_hidden), ("n_latent", n_latent)):
        if isinstance(value, str) and value != "sqrt":
            raise ValueError(f"{name} must be an int, None or 'sqrt', got {value!r}.")
    if n_hidden is None:
        n_hidden = max(128, math.isqrt(n_inputs["atac"])) if "atac" in n_inputs else 128
    elif n_hidden == "sqrt":
        base = n_inputs.get("atac") or n_inputs.get("rna") or max(n_inputs.values())
        n_hidden = max(8, math.isqrt(base) if "atac" in n_inputs else min(128, math.isqrt(base)))
    if n_latent is None:
        n_latent = 10
    elif n_latent == "sqrt":
        n_latent = max(2, math.isqrt(n_hidden))
    return int(n_hidden), int(n_latent)


def _adversarial_scale(value: float | str | None, full_weight: bool) -> float | str:
    """The adversary's weight: ``None`` -> 1 where ``full_weight``, else scvi-tools' ``"auto"`` (``1 - KL weight``)."""
    if value is None:
        return 1.0 if full_weight else "auto"
    if value != "auto" and not (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"adversarial_scale must be a number >= 0, 'auto' or None, got {value!r}.")
    return value if value == "auto" else float(value)


def _centered_roles(value: Sequence[str] | str, roles: Sequence[str]) -> list[str]:
    """The modality roles whose encoder input is batch-centred (``value`` resolved: ``"all"``, a role or roles)."""
    wanted = list(roles) if value == "all" else [value] if isinstance(value, str) else list(value)
    unknown = [r for r in wanted if r not in roles]
    if unknown:
        raise ValueError(f"batch_centered_input names {unknown}; the model's modality roles are {list(roles)}.")
    return [r for r in roles if r in wanted]


def _wiring_config(
    config: WiringConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any], max_depth: int
) -> WiringConfig:
    """The wiring settings: ``config``'s fields, ``overrides`` over them, ``max_depth`` the model's depth."""
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, WiringConfig):
        base = dataclasses.asdict(config)
        if base["max_depth"] == WiringConfig.max_depth:  # the dataclass default is no choice of the user's
            del base["max_depth"]
    elif isinstance(config, Mapping):
        base = dict(config)
        names = [f.name for f in dataclasses.fields(WiringConfig)]
        unknown = [name for name in base if name not in names]
        if unknown:
            raise TypeError(f"wiring_config has no field(s) {unknown}; the fields of WiringConfig are: {names}.")
    else:
        raise TypeError(f"wiring_config must be a WiringConfig, a mapping of its fields or None, got {config!r}.")
    if base.get("max_depth", max_depth) != max_depth:
        raise ValueError(
            f"wiring_config's max_depth={base['max_depth']} differs from n_layers_encoder={max_depth}: the GO depth "
            "is n_layers_encoder; set that instead."
        )
    return WiringConfig(**{**base, **overrides, "max_depth": max_depth})


def flat_init_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A model's ``init_params_`` as the keywords that rebuild it, as scvi-tools' loader reads them.

    ``non_kwargs`` (the named arguments; before the module options moved to ``**model_kwargs``, all of them) and the
    contents of each ``kwargs`` entry (``{"model_kwargs": {...}}``).
    """
    flat = dict(params.get("non_kwargs", {}))
    for group in params.get("kwargs", {}).values():
        flat.update(group)
    return flat


def _n_key(role: str) -> str:
    return {"rna": "n_vars", "protein": "n_proteins", "atac": "n_atac"}[role]


def _positions(names: np.ndarray, wanted: Sequence[str], what: str) -> np.ndarray:
    index = pd.Index(names)
    pos = index.get_indexer(list(wanted))
    if (pos < 0).any():
        missing = [w for w, p in zip(wanted, pos, strict=True) if p < 0][:5]
        raise ValueError(f"{what} has names the model does not know: {missing}.")
    return pos
