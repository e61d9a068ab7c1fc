"""``nvi.tl.train``: register, build and train a NETWORKVI in one call."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from mudata import MuData

from scvi_networkvi.model import (
    LAYER_ROLES,
    Caller,
    check_setup_arguments,
    default_annotations,
    detect_modality_gene_ids,
    paired_ontology,
)

from ._utils import check_mudata, jsonable, record, rollback

logger = logging.getLogger(__name__)

PathOrName = str | os.PathLike

#: Modality names recognised for each role when ``modalities`` is not given, in order of preference.
DEFAULT_MODALITY_NAMES = {
    "rna_layer": ("rna", "gex", "RNA", "GEX"),
    "protein_layer": ("prot", "adt", "protein", "PROT", "ADT"),
    "atac_layer": ("atac", "peaks", "ATAC"),
}
_ROLE_KEYS = {role: layer_key for layer_key, role in LAYER_ROLES.items()}
#: Errors raised by setup_mudata on behalf of nvi.tl.train name train's arguments.
CALLER = Caller("nvi.tl.train", "pass the layer that holds raw counts (e.g. layers={{'{role}': 'counts'}})", "role")
#: The model settings ``query_ready=True`` sets: encoders that see the batch, so that ``nvi.tl.map_query`` can adapt
#: them to a query's new batches (``load_query_data`` warns without them), and covariates in every decoder layer, as
#: in the query-mapping tutorial.
QUERY_READY = {"encode_covariates": True, "deeply_inject_covariates": True}
#: Above this many RNA features, ``nvi.tl.train`` suggests selecting highly variable genes (one INFO line): GO-wired
#: training and inference cost grow with the genes, the latent did not improve with more (docs/own_data.md).
HVG_ADVICE_GENES = 8000
_MODALITY_KEYS = (
    *LAYER_ROLES,
    "batch_key",
    "size_factor_key",
    "categorical_covariate_keys",
    "continuous_covariate_keys",
)


def default_modalities(mdata: MuData) -> dict[str, str]:
    """The ``modalities`` mapping read from the MuData's modality names (``rna``, ``prot``/``adt``, ``atac``...)."""
    found = {}
    for layer_key, names in DEFAULT_MODALITY_NAMES.items():
        name = next((n for n in names if n in mdata.mod), None)
        if name is not None:
            found[layer_key] = name
    if not found:
        raise ValueError(
            f"Found no modality named like RNA, protein or ATAC data in the MuData (it has {list(mdata.mod)}): pass "
            'modalities={"rna_layer": ..., "protein_layer": ..., "atac_layer": ...}.'
        )
    return found


def _normalise_modalities(mdata: MuData, modalities: Mapping[str, str | None] | None) -> dict[str, str]:
    if modalities is None:
        return default_modalities(mdata)
    if not isinstance(modalities, Mapping):
        raise TypeError(f"modalities must be a mapping, got {type(modalities).__name__}.")
    out = {}
    for key, mod in modalities.items():
        key = _ROLE_KEYS.get(key, key)  # {"rna": "gex", "protein": "adt"} is accepted too
        if key not in _MODALITY_KEYS:
            raise ValueError(
                f"modalities has an unknown key {key!r}: use {list(_MODALITY_KEYS)} (or the roles {list(_ROLE_KEYS)})."
            )
        if mod is None:
            continue
        out[key] = mod
    return out


def gene_count_advice(n_genes: int, encoder: str = "go") -> str | None:
    """The INFO line ``nvi.tl.train`` logs for a GO-wired RNA modality above :data:`HVG_ADVICE_GENES` features.

    Parameters
    ----------
    n_genes
        RNA features of the MuData.
    encoder
        ``"go"`` or ``"dense"`` (no advice for the dense encoder, whose cost grows like TOTALVI's).

    Returns
    -------
    The message, or ``None`` when there is nothing to suggest.
    """
    if encoder != "go" or n_genes <= HVG_ADVICE_GENES:
        return None
    return (
        f"The RNA modality has {n_genes} genes: the GO-wired encoder's training and inference time grow with the "
        "genes (16,000 genes: training and the latent about 3x the time of 4,000 on the same cells, "
        "benchmarks/inference_speed.py), and more genes did not give a better latent. Consider the 2,000-4,000 "
        "most highly variable genes (scanpy.pp.highly_variable_genes(..., flavor='seurat_v3') on the counts); "
        "see 'Your own data' in the documentation."
    )


def _obs_location(mdata: MuData, key: str, name: str, mod_hint: str | None) -> str | None:
    """Where an obs key lives: ``None`` for the global ``mdata.obs``, else the modality holding it."""
    if mod_hint is not None:
        if key not in mdata[mod_hint].obs.columns:
            raise ValueError(f"{name} {key!r} is not a column of mdata[{mod_hint!r}].obs.")
        return mod_hint
    if key in mdata.obs.columns:
        return None
    holders = [mod for mod in mdata.mod if key in mdata[mod].obs.columns]
    if not holders:
        raise ValueError(
            f"{name} {key!r} is neither a column of mdata.obs nor of any modality's obs "
            f"(mdata.obs columns: {list(mdata.obs.columns)})."
        )
    return holders[0]


def train(
    mdata: MuData,
    *,
    batch_key: str | None = None,
    modalities: Mapping[str, str | None] | None = None,
    layers: Mapping[str, str | None] | None = None,
    gene_id_key: str | Mapping[str, str] | None = None,
    species: Literal["human", "mouse"] | None = None,
    categorical_covariate_keys: Sequence[str] | None = None,
    continuous_covariate_keys: Sequence[str] | None = None,
    go: PathOrName | None = None,
    annotations: PathOrName | Sequence[PathOrName] | None = None,
    interactions: PathOrName | None = None,
    encoder: Literal["go", "dense"] = "go",
    max_epochs: int | None = None,
    query_ready: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    train_kwargs: Mapping[str, Any] | None = None,
):
    """Register a MuData, build a NETWORKVI and train it: the first step of the workflow in one call.

    Parameters
    ----------
    mdata
        MuData with raw counts in one to three modalities (RNA, protein, ATAC). Select 2000-4000 highly variable
        genes first (``scanpy.pp.highly_variable_genes(rna, flavor="seurat_v3", n_top_genes=2000,
        batch_key=...)`` on the counts): training and the latent take longer the more genes there are, while the
        cell types separate as well from 1000-4000 of them (the measurements: the "Your own data" page and the
        results page, inference speed). Above 8000 RNA features with ``encoder="go"``, one INFO line suggests it.
    batch_key
        obs column with the batch (site, donor, technology); looked up in ``mdata.obs`` first, then in the
        modalities' obs (or where ``modalities["batch_key"]`` says).
    modalities
        Which modality holds what, as :meth:`~scvi_networkvi.NETWORKVI.setup_mudata` takes it
        (``{"rna_layer": "rna", "protein_layer": "prot"}``; the roles ``rna`` / ``protein`` / ``atac`` are accepted as
        keys too). Default: read from the modality names (``rna`` / ``gex``; ``prot`` / ``adt`` / ``protein``;
        ``atac`` / ``peaks``).
    layers
        Layer with raw counts per role or modality name (``{"rna": "counts"}``); default ``.X``.
    gene_id_key
        Where the features' gene ids are: a var column, ``"var_names"``, or a mapping role -> column. ``None``
        (default): detected per modality from ``var_names`` and the usual var columns (``gene_stable_id``,
        ``gene_ids``, ``gene_id``, ``ensembl_id``, ``gene_symbols``, ``symbol``...; ENSEMBL human / mouse ids with
        version suffixes stripped, gene symbols, Entrez ids, antibody names of a protein panel mapped to gene
        symbols), choosing the source whose ids match the most genes of ``annotations``: scanpy's layout (symbols as
        ``var_names``, ENSEMBL ids in ``var["gene_ids"]``) needs no argument. The choice is logged in one INFO line
        and kept with the model (``model.gene_ids_``). The rules are those of
        :meth:`~scvi_networkvi.NETWORKVI.setup_mudata`. Mixed human and mouse ids, fewer than 20 % of a modality's
        features matched to the annotations, or ids of no known type raise a ValueError before anything is done.
    species
        ``"human"`` or ``"mouse"``; ``None`` (default): detected from the ids. Needed to keep one species when the
        data mix human and mouse ids.
    categorical_covariate_keys, continuous_covariate_keys
        Further covariates (obs columns of ``mdata.obs``).
    go
        The GO DAG: registry name (``"go-basic"``, ``"GO.db"``) or path of an OBO or GO.db SQLite file. ``None``
        (default): the DAG registered with the annotations (``"GO.db"`` for the default annotations), else
        ``"go-basic"``.
    annotations
        Gene -> GO annotations keyed by the features' gene ids: registry name(s) or path(s) of GAF or org.*.eg.db
        SQLite files. ``None`` (default): the full annotations of the species of the ids (``species``, else
        detected): ``"org.Hs.eg.db"`` (human) or ``"org.Mm.eg.db"`` (mouse), Bioconductor 3.16, keyed by ENSEMBL
        id, Entrez id, symbol and alias symbol, fetched and cached on first use. ``"ensembl2go-tutorial"`` is the
        tutorial's subsampled file (demo only).
    interactions
        Optional gene–gene interaction table (registry name or CSV path).
    encoder
        ``"go"`` (GO-wired encoders) or ``"dense"`` (scvi-tools encoders, no GO resources needed).
    max_epochs
        Training epochs (``None``: scvi-tools' heuristic from the number of cells).
    query_ready
        Train a reference that :func:`~scvi_networkvi.tl.map_query` can map new batches onto: sets
        ``encode_covariates=True`` and ``deeply_inject_covariates=True`` (the query-mapping tutorial's settings), and
        needs ``batch_key``. ``False`` (default): the encoders do not see the batch, and that cannot be changed after
        training: ``map_query`` then applies the frozen reference encoders to a query's new batches without adapting
        them (it warns; only the decoders learn the new batches). One INFO line at training says so. A
        ``model_kwargs`` entry that contradicts ``query_ready=True`` is a ValueError.
    model_kwargs
        Further :class:`~scvi_networkvi.NETWORKVI` arguments (``n_latent``, ``gene_size``, ``go_size``,
        ``encode_covariates``...).
    train_kwargs
        Further :meth:`~scvi_networkvi.NETWORKVI.train` arguments (``lr``, ``batch_size``, ``accelerator``,
        ``enable_progress_bar``...).

    Returns
    -------
    The trained :class:`~scvi_networkvi.NETWORKVI`. Sets ``mdata.uns["networkvi"]["train"]["params"]`` (the
    arguments, the resolved ``modalities`` mapping and the epochs trained, JSON types only), and what scvi-tools'
    registration writes (``mdata.uns["_scvi_uuid"]``, ``_scvi_*`` obs columns). A failing call leaves ``mdata`` as it
    was.
    """
    from scvi_networkvi.model import NETWORKVI

    check_mudata(mdata)
    if encoder not in ("go", "dense"):
        raise ValueError(f"encoder must be 'go' or 'dense', got {encoder!r}.")
    if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs < 1):
        raise ValueError(f"max_epochs must be a positive integer or None, got {max_epochs!r}.")
    model_kwargs = dict(model_kwargs or {})
    train_kwargs = dict(train_kwargs or {})
    for name, given in (("model_kwargs", model_kwargs), ("train_kwargs", train_kwargs)):
        clash = sorted({"go", "annotations", "interactions", "encoder", "max_epochs", "mdata"} & set(given))
        if clash:
            raise ValueError(f"{name} must not set {clash}: pass them as arguments of nvi.tl.train.")
    if not isinstance(query_ready, bool):
        raise TypeError(f"query_ready must be True or False, got {query_ready!r}.")
    if query_ready:
        contradicting = {
            key: model_kwargs[key]
            for key, value in QUERY_READY.items()
            if key in model_kwargs and model_kwargs[key] != value
        }
        if contradicting:
            wanted = ", ".join(f"{key}={value}" for key, value in QUERY_READY.items())
            given = ", ".join(f"{key}={value!r}" for key, value in contradicting.items())
            raise ValueError(
                f"nvi.tl.train: query_ready=True sets {wanted} (what nvi.tl.map_query needs to adapt the encoders to "
                f"new batches), but model_kwargs sets {given}. Drop {sorted(contradicting)} from model_kwargs, or pass "
                "query_ready=False for a reference that no query will be mapped onto."
            )
        if batch_key is None:
            raise ValueError(
                "nvi.tl.train: query_ready=True prepares the encoders for a query's new batches, which needs the "
                "reference's batches: pass batch_key= (the obs column naming them; the query needs the same column)."
            )
        model_kwargs.update(QUERY_READY)

    mods = _normalise_modalities(mdata, modalities)
    layer_args = {}
    for key, layer in (layers or {}).items():
        layer_key = _ROLE_KEYS.get(key, key)
        if layer_key not in LAYER_ROLES:  # a modality name
            layer_key = next((k for k in LAYER_ROLES if mods.get(k) == key), None)
        if layer_key is None or layer_key not in mods:
            raise ValueError(f"layers names {key!r}, which is not a registered modality or role ({mods}).")
        layer_args[layer_key] = layer
    # setup_mudata's checks of modality, layer and species names, here before the gene ids are read
    check_setup_arguments(mdata, mods, layer_args, species, CALLER)
    if batch_key is not None:
        location = _obs_location(mdata, batch_key, "batch_key", mods.get("batch_key"))
        mods["batch_key"] = location
    else:
        mods.pop("batch_key", None)
    for name, keys in (
        ("categorical_covariate_keys", categorical_covariate_keys),
        ("continuous_covariate_keys", continuous_covariate_keys),
    ):
        if keys is None:
            continue
        if isinstance(keys, str):
            raise TypeError(f"{name} must be a list of obs columns, got the string {keys!r}.")
        places = {_obs_location(mdata, key, name, mods.get(name)) for key in keys}
        if len(places) > 1:
            raise ValueError(f"{name} must all live in one place (mdata.obs or one modality), found {places}.")
        mods[name] = places.pop() if places else None
    if encoder == "go":  # the gene ids, checked against the annotations before anything changes on mdata
        roles = {role: mods[layer_key] for layer_key, role in LAYER_ROLES.items() if layer_key in mods}
        if annotations is None:
            annotations = default_annotations(mdata, roles, gene_id_key=gene_id_key, species=species, caller=CALLER)
        if go is None:
            go = paired_ontology(annotations)
        detect_modality_gene_ids(
            mdata, roles, gene_id_key=gene_id_key, species=species, annotations=annotations, caller=CALLER
        )

    setup = {
        **layer_args,
        "batch_key": batch_key,
        "categorical_covariate_keys": list(categorical_covariate_keys) if categorical_covariate_keys else None,
        "continuous_covariate_keys": list(continuous_covariate_keys) if continuous_covariate_keys else None,
        "modalities": {k: v for k, v in mods.items() if v is not None},
    }
    if gene_id_key is not None:
        setup["gene_id_key"] = gene_id_key
    if species is not None:
        setup["species"] = species
    with rollback(mdata):
        NETWORKVI.setup_mudata(mdata, **setup, _caller=CALLER)
        model = NETWORKVI(
            mdata, go=go, annotations=annotations, interactions=interactions, encoder=encoder, **model_kwargs
        )
        logger.info("Training %s", model.summary_string.splitlines()[0])
        if "rna_layer" in mods:
            advice = gene_count_advice(mdata[mods["rna_layer"]].n_vars, encoder)
            if advice is not None:
                logger.info(advice)
        if not model_kwargs.get("encode_covariates", False):
            logger.info(
                "This reference is not query-ready: its encoders do not see the batch (encode_covariates=False), so "
                "nvi.tl.map_query cannot adapt them to a query's new batches (it only applies them unchanged, with a "
                "warning). Pass query_ready=True to nvi.tl.train for a reference to map queries onto."
            )
        model.train(max_epochs=max_epochs, **train_kwargs)
    history = getattr(model, "history_", None) or {}
    epochs = len(history["elbo_train"]) if "elbo_train" in history else None
    record(
        mdata,
        "train",
        {
            **setup,
            "go": go,
            "annotations": annotations,
            "interactions": interactions,
            "encoder": encoder,
            "max_epochs": max_epochs,
            "query_ready": query_ready,
            "n_epochs_trained": epochs,
            "model_kwargs": jsonable(model_kwargs),
            "train_kwargs": jsonable(train_kwargs),
        },
    )
    return model
