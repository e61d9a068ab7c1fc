"""NETWORKVI: the scvi-tools external model on MuData; the constructor, the module's data-derived start and load.

The rest of the class is in mixins, one concept each: registering data (``_setup``), the modalities and their data
(``_modalities``), training (``_training``), outputs (``_outputs``, with ``_differential`` and ``_decoding``), query
mapping (``_query``) and interpretation (``_interpret``).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scvi
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.model.base import ArchesMixin, BaseModelClass, VAEMixin

from scvi_networkvi.module import NetworkVAE
from scvi_networkvi.nn import check_choices
from scvi_networkvi.wiring import Wiring, WiringConfig

from ._data import presence_mask
from ._defaults import DataTypeDefaults, data_type_defaults, flat_init_params, rebuilding_saved_model, resolve_option
from ._gene_ids import default_annotations, paired_ontology, report, report_coverage
from ._input_stats import NetworkVIInputStatsMixin
from ._interpret import NetworkVIInterpretMixin
from ._modalities import NetworkVIModalitiesMixin
from ._outputs import NetworkVIOutputsMixin
from ._protein_prior import empirical_protein_background
from ._query import NetworkVIQueryMixin
from ._setup import NetworkVISetupMixin
from ._training import NetworkVITrainingMixin
from ._training_plan import NetworkVITrainingPlan
from ._validation import SETUP_MUDATA
from ._wiring_settings import (
    KEYWORD_FIELDS,
    check_overrides,
    compile_per_config,
    modality_configs,
    resolve_dense_modalities,
)
from ._wiring_settings import wiring_config as wiring_config_of

logger = logging.getLogger(__name__)

PathOrName = str | os.PathLike
#: Allowed values of the constructor's own choice arguments (the module options': NetworkVAE.check_options).
_CHOICES = {
    "encoder": ("go", "dense"),
    "modality_mixing": ("moe", "poe", "mean", "auto", None),
    "head_input": ("root", "levels", None),
}


class NETWORKVI(
    NetworkVIInterpretMixin,
    NetworkVIInputStatsMixin,
    NetworkVIOutputsMixin,
    NetworkVIModalitiesMixin,
    NetworkVISetupMixin,
    NetworkVIQueryMixin,
    VAEMixin,
    NetworkVITrainingMixin,
    ArchesMixin,
    BaseModelClass,
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
        Latent dimensions. ``None``: 16 for the GO encoder on mosaic data of RNA and ATAC without proteins (results
        page, multiome mosaics: the RNA-only cells placed better at 60 % paired, slightly worse at 20 %), else 10, as
        scVI. ``"sqrt"``: the original's ``floor(sqrt(n_hidden))``, at least 2. The model saves the resolved width.

        The original's square-root sizes are narrow for typical panels (1000 genes give ``n_hidden=31`` and
        ``n_latent=5``): such a model learns the cell-type structure of the RNA more slowly (results page, smaller
        measurements).
    n_layers_encoder
        Depth of dense encoders and the deepest GO level kept.
    wiring_config
        How the GO wiring is compiled (:class:`~scvi_networkvi.wiring.WiringConfig`, or a mapping of its fields):
        namespaces, relations, term filters, interaction cutoff and the neurons per gene node (``gene_size``), GO
        term (``term_size``) and node of the UNKNOWN chain (``unknown_size``, the path of the genes without
        annotation). Its ``max_depth`` and ``root_size`` are the model's ``n_layers_encoder`` and ``n_hidden``.
        Each field may also be given as a keyword (``gene_size=5``, ``go_size=2`` for ``term_size``), which
        replaces the config's. The resolved config is what the model saves.
    wiring_by_modality
        Fields of ``wiring_config`` for one modality only, over the shared ones: ``{"atac": {"gene_size": 1}}`` gives
        each ATAC gene node one neuron (the depth and the root width stay the model's). ``None``: the data type's
        default, which for the GO encoder on paired RNA + ATAC is ``{"atac": {"gene_size": 1}}`` (most ATAC gene
        nodes read one or two peaks; 1.5x faster training at the same scib total, results page "Multiome"), on
        mosaics of RNA and ATAC without proteins ``{"atac": {"go_size": 2}}`` (ATAC GO terms of two neurons: the
        ATAC-only cells placed better than with the shared six, results page "Mosaic") and elsewhere none; ``{}``
        keeps every modality at the shared fields (the behaviour until 2026-12-06; on RNA + ATAC mosaics until
        2026-12-07; since 2026-12-07b the ATAC encoder of GO mosaics is dense, see ``dense_modalities``, and this
        width applies where ``dense_modalities=()`` wires it). The resolved mapping is what the model saves.
    dense_modalities
        Modality roles whose encoder is scvi-tools' dense encoder while the others stay GO-wired (``encoder="go"``):
        ``("atac",)`` keeps the RNA encoder's GO terms and gene nodes (importances, perturbations) and reads the
        peaks with a dense network. ``None``: the data type's default, which for the GO encoder on mosaics with RNA
        and ATAC (proteins or not) is ``("atac",)`` (the ATAC-only cells of the multiome mosaics were placed below
        MULTIVI by every GO-wired ATAC encoder measured and above it by the dense one, and the CITE-seq + multiome
        mosaic transferred labels and mixed its datasets better: results page "Mosaic"), elsewhere ``()``. ``()``
        wires every modality (the behaviour until 2026-12-07). A dense modality has no GO or gene nodes: importances
        and perturbations name the wired ones. The resolved tuple is what the model saves; a model built from given
        ``wirings`` (a saved one) gets a dense encoder for each modality without a wiring.
    modality_mixing
        ``"poe"`` (product of the modality experts and a standard-normal prior expert: each modality weighs by its
        precision), ``"mean"`` (equal weights over the modalities a cell has, as MULTIVI's default) or ``"moe"`` (the
        original's default: a gating network learns the weights; it can settle on one modality, whose encoder then
        trains alone while the others learn only through the penalty: results page, smaller measurements).
        ``None``: ``"poe"`` with a protein modality, else ``"mean"``, the better of the two on the tutorial data
        (results page, integration ablation).
        ``"auto"``: ``"mean"`` on mosaic data, whose cells differ in the modalities they have, else as ``None``. A
        product of experts lets the more certain modality decide a cell's place; in a mosaic that modality is often
        one that only some cells have (protein for the CITE-seq cells, ATAC for the multiome ones of a CITE-seq +
        multiome mosaic). Not the default: it helps the dense encoder only (results page, mosaic ablation). The
        resolved choice is what the model saves, so a
        saved or query model keeps the mixing it was trained with, whatever data it is loaded with.
    standardize_continuous_covariates
        The model reads each registered continuous covariate as ``(value - mean) / sd`` over the cells it is built on
        (a constant one: minus its mean), so that raw units (an age in years) feed the encoders, the covariate
        attention and the decoders on the scale of the other inputs; raw values can make training diverge (results
        page, smaller measurements). The statistics are saved with the model; a query model keeps the reference's.
        ``False``: the raw values, as scvi-tools' models and the original use them.
    dropout_rate
        Dropout in the encoders. ``None``: 0 with two or more modalities (paired or mosaic), 0.1 with one (results
        page, integration and mosaic ablations). The resolved value is what the model saves.
    head_input
        What the GO encoder's posterior heads read: ``"root"``, the top node's ``n_hidden`` neurons (the original),
        or ``"levels"``, the neurons of every GO level, root included, so that each term also reaches the latent
        directly rather than only through the narrower levels above it. The latent stays a function of GO-term
        activations either way. ``None``: ``"levels"`` for the GO encoder on paired RNA + ATAC (results page,
        multiome), else ``"root"``. The resolved value is what the model saves; a model saved before
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
        adversary remove them; the dense encoder on RNA + ATAC stays uncentred (results page, multiome). ``()``:
        uncentred inputs, as in the original. A model saved before this option existed loads
        with uncentred inputs, as it was trained.
    batch_scaled_input
        Also rescale each batch-centred feature within each batch to the spread of all batches (its pooled
        within-batch standard deviation over the batch's own, both with 0.1 added and the factor kept within
        [0.2, 5]), as ComBat adjusts scale after location: batches also differ in how widely a feature varies. The
        spreads are saved with the model; a query model scales a new batch to the reference's pooled spread.
        ``None``: ``True`` for the GO encoder on data with a protein modality (paired or mosaic) whose inputs are
        centred, else ``False`` (results page, integration and mosaic ablations). A model saved before this option
        existed loads unscaled, as it was trained.
    **model_kwargs
        Options of the module, documented once in :class:`~scvi_networkvi.module.NetworkVAE` (likelihoods, mixing
        penalty, covariates, decoders, ``gene_layer``) and :class:`~scvi_networkvi.nn.WiredEncoder` (the GO
        encoder's ``activation``, ``linear_path``, ``covariate_attention``, ``go_norm``...). Their
        full list with defaults is ``NetworkVAE.options()``; the model saves every one, defaults included
        (:attr:`init_settings`). Three of them depend on the data when not given: ``modality_penalty_anchor`` is
        ``"rna"`` for the GO encoder on mosaic data of RNA and ATAC without proteins (the penalty then aligns the
        ATAC posterior to the RNA one: results page, mosaic ablation), else ``None``; ``depth_normalized_input`` is
        ``("rna", "atac")`` for the GO encoder on mosaic data of RNA and ATAC without proteins (those encoders read
        each cell's counts scaled to one total: results page, mosaic paired fractions), else ``()``; and for the GO
        encoder on mosaic data with RNA and ATAC (proteins or not) ``modality_penalty_warmup`` is ``False`` (the
        penalty at full weight from the first step), else ``True``. A model saved before an option loads without
        it, as it was trained. Also the fields of ``wiring_config`` as keywords. A name that is none of these is a
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
        wiring_by_modality: Mapping[str, Mapping[str, Any]] | None = None,
        dense_modalities: str | Sequence[str] | None = None,
        modality_mixing: Literal["moe", "poe", "mean", "auto"] | None = None,
        standardize_continuous_covariates: bool = True,
        dropout_rate: float | None = None,
        head_input: Literal["root", "levels"] | None = None,
        empirical_protein_background_prior: bool | None = False,
        batch_centered_input: Sequence[str] | Literal["all"] | None = None,
        batch_scaled_input: bool | None = None,
        **model_kwargs: Any,
    ):
        if isinstance(mdata, AnnData):
            raise TypeError(
                "NETWORKVI works on MuData: for an AnnData in scvi-tools' CITE-seq layout, pass the MuData that "
                "NETWORKVI.setup_anndata returns (mdata = NETWORKVI.setup_anndata(adata, ...); NETWORKVI(mdata)); "
                "otherwise register a MuData with NETWORKVI.setup_mudata."
            )
        # module options that, when not given, take the data type's default (rules in _defaults.py)
        by_data_type = {
            "modality_penalty_anchor": "penalty_anchor",
            "depth_normalized_input": "depth_normalized",
            "modality_penalty_warmup": "penalty_warmup",
        }
        not_given = [name for name in by_data_type if name not in model_kwargs]
        anchor_given = "modality_penalty_anchor" not in not_given
        wiring_fields, model_kwargs = self._split_options(model_kwargs, wired=encoder == "go" or bool(wirings))
        check_choices({"encoder": encoder, "modality_mixing": modality_mixing, "head_input": head_input}, _CHOICES)
        config = wiring_config_of(wiring_config, wiring_fields, n_layers_encoder)
        check_overrides(wiring_by_modality)
        super().__init__(mdata)
        roles = self.modality_roles
        defaults = data_type_defaults(roles, self.is_mosaic, encoder)
        dense_source = "as given" if dense_modalities is not None else "the default for this data"
        dense_modalities = resolve_dense_modalities(
            dense_modalities, roles, encoder=encoder, wirings=wirings, default=defaults.dense_modalities
        )
        wired_roles = [role for role in roles if role not in dense_modalities]
        if encoder == "go" and wirings is None:
            rule = {role: f for role, f in defaults.wiring_by_modality.items() if role in wired_roles}
            wiring_by_modality = resolve_option("wiring_by_modality", wiring_by_modality, rule)
        wiring_by_modality = check_overrides(wiring_by_modality, roles)
        both = sorted(set(wiring_by_modality) & set(dense_modalities))
        if both:
            raise ValueError(
                f"wiring_by_modality sets GO wiring fields for {both}, whose encoder is dense (dense_modalities="
                f"{dense_modalities}, {dense_source}): to wire them, pass dense_modalities without them (e.g. "
                "dense_modalities=()); else leave them out of wiring_by_modality."
            )
        if wiring_by_modality and encoder != "go" and wirings is None:
            raise ValueError(
                f"wiring_by_modality sets GO wiring fields, but encoder={encoder!r} has no wiring: use encoder='go' "
                "or leave wiring_by_modality out."
            )
        anchor = model_kwargs["modality_penalty_anchor"]
        if anchor_given and anchor is not None and anchor not in roles:
            raise ValueError(
                f"modality_penalty_anchor={anchor!r} is not a modality of this model ({roles}): pass one of them or None."
            )
        n_inputs = {role: self.summary_stats[_n_key(role)] for role in roles}
        default_latent = resolve_option("n_latent", None, defaults.n_latent)  # 10 for a model saved without a width
        n_hidden, n_latent = _layer_sizes(n_inputs, n_hidden, n_latent, default_latent=default_latent)
        if config.root_size not in (None, n_hidden):
            raise ValueError(
                f"wiring_config.root_size={config.root_size} differs from n_hidden={n_hidden}: the GO root is "
                "n_hidden wide; set n_hidden instead."
            )
        config = dataclasses.replace(config, root_size=n_hidden)
        configs = modality_configs(config, wiring_by_modality, roles)
        if modality_mixing == "auto":  # mosaic: equal weights (results page, mosaic ablation)
            modality_mixing = "mean" if self.is_mosaic else None
        if modality_mixing is None:  # measured per data type (results page, integration ablation)
            modality_mixing = "poe" if "protein" in roles else "mean"
        # Resolved here (rules in _defaults.py) so that the model saves, and a query model reuses, what it trained with.
        if dropout_rate is None:
            dropout_rate = defaults.dropout_rate
        if batch_centered_input is None:
            batch_centered_input = defaults.batch_centered_input
        head_input = resolve_option("head_input", head_input, defaults.head_input)
        scaled_given = batch_scaled_input is not None
        batch_scaled_input = bool(resolve_option("batch_scaled_input", batch_scaled_input, defaults.batch_scaled_input))
        centered = _centered_roles(batch_centered_input, roles)
        if batch_scaled_input and not centered and not scaled_given:  # the default scales centred inputs only
            batch_scaled_input = False
        if batch_scaled_input and not centered:
            raise ValueError(
                f"batch_scaled_input=True rescales the batch-centred inputs, but batch_centered_input="
                f"{batch_centered_input!r} centres none: centre them (batch_centered_input='all') or leave "
                "batch_scaled_input off."
            )
        for name in not_given:
            model_kwargs[name] = resolve_option(name, None, getattr(defaults, by_data_type[name]))
        normalized = tuple(model_kwargs["depth_normalized_input"])
        if [r for r in normalized if r not in roles]:
            raise ValueError(
                f"depth_normalized_input={normalized!r} names a role this model does not have ({roles}): pass some "
                "of them or ()."
            )
        _check_raw_input(model_kwargs["log_variational"], centered, normalized)
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
                    {role: self.modality_name(role) for role in wired_roles},
                    gene_id_key=setup.get("gene_id_key"),
                    species=setup.get("species"),
                    caller=SETUP_MUDATA,
                )
            if go is None:
                go = paired_ontology(annotations)
            detection = self._detect_gene_ids(annotations, roles=wired_roles)
            report(detection)
            role_of = {self.modality_name(role): role for role in roles}
            self.gene_ids_ = {role_of[mod]: source.to_dict() for mod, source in detection.chosen.items()}
            compiled = compile_per_config(
                {role_of[mod]: source.ids for mod, source in detection.chosen.items()},
                {role_of[mod]: configs[role_of[mod]] for mod in detection.chosen},
                go=go,
                annotations=annotations,
                interactions=interactions,
                feature_names={role: self._modality(role).var_names.tolist() for role in roles},
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
            **self._input_transforms(centered, batch_scaled_input, normalized),
            use_size_factor_key=REGISTRY_KEYS.SIZE_FACTOR_KEY in self.adata_manager.data_registry,
            **model_kwargs,
        )
        self.wirings_ = compiled
        dense_note = "".join(f", {role} dense" for role in dense_modalities)
        self._model_summary_string = (
            f"NETWORKVI ({encoder} encoder{dense_note}) on {', '.join(f'{r}: {n}' for r, n in n_inputs.items())} "
            "features; "
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

    def _data_type_defaults(self) -> DataTypeDefaults:
        """What ``None`` resolves to for this model's data and encoder (see ``_defaults.py``)."""
        return data_type_defaults(self.modality_roles, self.is_mosaic, self.init_settings.get("encoder", "go"))

    @classmethod
    def _split_options(cls, given: Mapping[str, Any], *, wired: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """``**model_kwargs`` checked in the constructor's words: the wiring fields given, and the module options.

        The wiring fields are those of :class:`~scvi_networkvi.wiring.WiringConfig` but ``max_depth`` and
        ``root_size`` (``go_size``: ``term_size``). The module options are the module's (``NetworkVAE.options()``)
        less the constructor's own arguments, each given value over its default.
        """
        own = [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "model_kwargs")]
        wiring = KEYWORD_FIELDS
        options = {name: default for name, default in cls._module_cls.options().items() if name not in own}
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

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | MuData | None = None, **kwargs) -> NETWORKVI:
        """Load a saved model (:meth:`scvi.model.base.BaseModelClass.load`, same arguments).

        A model saved before an option existed is rebuilt as it was trained, not with that option's current default.
        """
        with rebuilding_saved_model(), warnings.catch_warnings():
            # scvi-tools' load reads MuData.mod_names, which newer mudata (0.4) deprecates: the user cannot act on it
            warnings.filterwarnings("ignore", message="The method mod_names is deprecated", category=FutureWarning)
            return super().load(dir_path, adata=adata, **kwargs)


def _layer_sizes(
    n_inputs: Mapping[str, int], n_hidden: int | str | None, n_latent: int | str | None, default_latent: int = 10
) -> tuple[int, int]:
    """Resolve ``n_hidden`` / ``n_latent``: ``None`` -> scvi-tools sizes, ``"sqrt"`` -> the original's heuristic.

    ``default_latent`` is what ``n_latent=None`` gives (the data type's width, ``_defaults.py``).
    """
    for name, value in (("n_hidden", n_hidden), ("n_latent", n_latent)):
        if isinstance(value, str) and value != "sqrt":
            raise ValueError(f"{name} must be an int, None or 'sqrt', got {value!r}.")
    if n_hidden is None:
        n_hidden = max(128, math.isqrt(n_inputs["atac"])) if "atac" in n_inputs else 128
    elif n_hidden == "sqrt":
        base = n_inputs.get("atac") or n_inputs.get("rna") or max(n_inputs.values())
        n_hidden = max(8, math.isqrt(base) if "atac" in n_inputs else min(128, math.isqrt(base)))
    if n_latent is None:
        n_latent = default_latent
    elif n_latent == "sqrt":
        n_latent = max(2, math.isqrt(n_hidden))
    return int(n_hidden), int(n_latent)


def _check_raw_input(log_variational: bool, centered: Sequence[str], normalized: Sequence[str]) -> None:
    """Raw counts into the encoders (``log_variational=False``) exclude the input transforms defined on ``log1p``."""
    if log_variational:
        return
    if centered:
        raise ValueError(
            f"log_variational=False feeds the encoders raw counts, but the inputs of {list(centered)} are centred "
            "within each batch, which is defined on log1p counts: also pass batch_centered_input=() (and "
            "batch_scaled_input=False), or keep log_variational=True."
        )
    if normalized:
        raise ValueError(
            f"log_variational=False feeds the encoders raw counts, but depth_normalized_input={tuple(normalized)!r} "
            "scales them to one total before log1p: also pass depth_normalized_input=(), or keep "
            "log_variational=True."
        )


def _centered_roles(value: Sequence[str] | str, roles: Sequence[str]) -> list[str]:
    """The modality roles whose encoder input is batch-centred (``value`` resolved: ``"all"``, a role or roles)."""
    wanted = list(roles) if value == "all" else [value] if isinstance(value, str) else list(value)
    unknown = [r for r in wanted if r not in roles]
    if unknown:
        raise ValueError(f"batch_centered_input names {unknown}; the model's modality roles are {list(roles)}.")
    return [r for r in roles if r in wanted]


def _n_key(role: str) -> str:
    return {"rna": "n_vars", "protein": "n_proteins", "atac": "n_atac"}[role]
