"""``nvi.tl.importances`` / ``perturb`` / ``attention``: the interpretation engine on MuData, results in ``uns``."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pandas as pd
from mudata import MuData

from scvi_networkvi.interpret import PERTURBATION_SETTINGS, ImportanceSettings

from ._utils import check_features, check_groupby, check_key, check_model, check_mudata, record, rollback

#: The keywords that are :class:`~scvi_networkvi.interpret.ImportanceSettings` fields.
SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(ImportanceSettings))


def _prepare(mdata: MuData, model, groupby: str | None, key_added: str | None, modalities) -> None:
    check_mudata(mdata)
    check_model(model)
    if key_added is not None:
        check_key(key_added)
    check_features(mdata, model)
    if groupby is not None:
        check_groupby(mdata, groupby)
    if modalities is not None:
        for mod in [modalities] if isinstance(modalities, str) else list(modalities):
            if mod != "joint":
                model.role_of(mod)


def _store(mdata: MuData, table: pd.DataFrame, key_added: str | None, section: str, params: Mapping[str, Any]) -> None:
    if key_added is None:
        return
    mdata.uns[key_added] = table
    record(mdata, key_added, {"function": section, **params})


def _settings(
    settings: ImportanceSettings | None, kwargs: dict[str, Any], function: str, accepted: Collection[str]
) -> ImportanceSettings:
    """``settings`` with the keywords that are its fields applied (taken out of ``kwargs``); the rest go on."""
    fields = {key: kwargs.pop(key) for key in list(kwargs) if key in SETTINGS_FIELDS}
    return ImportanceSettings.merge(settings, fields, function=function, accepted=accepted)


def importances(
    mdata: MuData,
    model,
    *,
    groupby: str,
    settings: ImportanceSettings | None = None,
    modalities: str | Sequence[str] | None = None,
    key_added: str | None = "networkvi_importances",
    **kwargs: Any,
) -> pd.DataFrame:
    """Which GO terms (genes, gene groups) tell each ``groupby`` label apart: held-out AUROC of a probe per node.

    A thin wrapper of :meth:`~scvi_networkvi.NETWORKVI.get_importances` (see there for the method) that checks its
    inputs before anything is computed or stored.

    Parameters
    ----------
    mdata
        The model's MuData (or one with the same modalities and features).
    model
        A trained :class:`~scvi_networkvi.NETWORKVI`.
    groupby
        Label column (categorical, string or boolean) of ``mdata.obs``, or ``"mod:col"``.
    settings
        The run's options, :class:`~scvi_networkvi.interpret.ImportanceSettings` (which labels are tested against
        which, the nodes, the probes, the seed...). Default: its defaults, every label against the rest.
    modalities
        GO-wired modalities to probe (roles or MuData names; default all).
    key_added
        ``mdata.uns`` key of the table (``None``: return it only).
    **kwargs
        Any :class:`~scvi_networkvi.interpret.ImportanceSettings` field (``targets``, ``reference``, ``groups``,
        ``node_types``, ``seed``, ``heldout_size``, ``C``, ``null_sets``...), replacing it in ``settings``, and the
        further :meth:`~scvi_networkvi.NETWORKVI.get_importances` arguments (``indices``, ``save_path``,
        ``progress_bar``). Progress bars are scvi-tools' own and show by default; ``progress_bar=False`` or
        ``scvi.settings.verbosity = logging.WARNING`` hides them.

    Returns
    -------
    The tidy importance table (one row per modality, node and phenotype; ``auroc`` is the held-out AUROC, with
    ``auroc_low`` / ``auroc_high``, ``pval``, ``qval`` and ``rank``). Sets ``mdata.uns[key_added]`` (the table) and
    ``mdata.uns["networkvi"][key_added]["params"]``.
    """
    settings = _settings(settings, kwargs, "importances", SETTINGS_FIELDS)
    _prepare(mdata, model, groupby, key_added, modalities)
    with rollback(mdata):
        table = model.get_importances(
            mdata, groupby=groupby, settings=settings, modalities=modalities, key_added=None, **kwargs
        )
    params = {"groupby": groupby, **_phenotype_params(settings)}
    _store(
        mdata, table, key_added, "importances", {**params, "modalities": modalities, "node_types": settings.node_types}
    )
    return table


def _phenotype_params(settings: ImportanceSettings) -> dict[str, Any]:
    return {"targets": settings.targets, "reference": settings.reference, "groups": settings.groups}


def perturb(
    mdata: MuData,
    model,
    *,
    genes: Sequence[str] | Mapping[str, Sequence[str]],
    groupby: str,
    settings: ImportanceSettings | None = None,
    perturb_modalities: Sequence[str] | None = None,
    modalities: str | Sequence[str] | None = None,
    key_added: str | None = "networkvi_perturbation",
    **kwargs: Any,
) -> pd.DataFrame:
    """In-silico knock-out: zero genes' features and report how each node's held-out AUROC changes.

    A thin wrapper of :meth:`~scvi_networkvi.NETWORKVI.get_perturbation_importances` (see there for the method).

    Parameters
    ----------
    mdata
        The model's MuData (or one with the same modalities and features).
    model
        A trained :class:`~scvi_networkvi.NETWORKVI`.
    genes
        Gene ids or feature names: a list (one perturbation per gene) or ``{name: [genes]}``.
    groupby
        The label column, as in :func:`importances`.
    settings
        :class:`~scvi_networkvi.interpret.ImportanceSettings` without ``cells_with``, ``gene_groups`` and
        ``null_sets`` (default: its defaults).
    perturb_modalities
        Modalities whose features are zeroed (default: every modality measuring the gene).
    modalities
        Modalities whose nodes are probed (default: the perturbed GO-wired ones).
    key_added
        ``mdata.uns`` key of the table (``None``: return it only).
    **kwargs
        Those :class:`~scvi_networkvi.interpret.ImportanceSettings` fields (``targets``, ``reference``, ``seed``...),
        replacing them in ``settings``, and the further :meth:`~scvi_networkvi.NETWORKVI.get_perturbation_importances`
        arguments (``refit``, ``indices``, ``save_path``; ``progress_bar=False`` hides the progress bars).

    Returns
    -------
    The tidy table (``perturbation``, node columns, ``phenotype``, ``auroc_before``, ``auroc_after``, ``delta`` with
    its interval, ``pval``, ``qval``). Sets ``mdata.uns[key_added]`` and
    ``mdata.uns["networkvi"][key_added]["params"]``.
    """
    settings = _settings(settings, kwargs, "perturb", PERTURBATION_SETTINGS)
    _prepare(mdata, model, groupby, key_added, modalities)
    if perturb_modalities is not None:
        for mod in [perturb_modalities] if isinstance(perturb_modalities, str) else list(perturb_modalities):
            model.role_of(mod)
    with rollback(mdata):
        table = model.get_perturbation_importances(
            mdata,
            genes=genes,
            groupby=groupby,
            settings=settings,
            perturb_modalities=perturb_modalities,
            modalities=modalities,
            key_added=None,
            **kwargs,
        )
    params = {"genes": genes, "groupby": groupby, **_phenotype_params(settings)}
    _store(mdata, table, key_added, "perturb", {**params, "modalities": modalities})
    return table


def attention(
    mdata: MuData,
    model,
    *,
    groupby: str | None = None,
    modalities: str | Sequence[str] | None = None,
    key_added: str | None = "networkvi_attention",
    **kwargs: Any,
) -> pd.DataFrame:
    """Mean covariate attention of every attending node, overall and per ``groupby`` label.

    A thin wrapper of :meth:`~scvi_networkvi.NETWORKVI.get_attention_statistics`; needs a model built with
    ``covariate_attention``.

    Parameters
    ----------
    mdata
        The model's MuData (or one with the same modalities and features).
    model
        A trained :class:`~scvi_networkvi.NETWORKVI` with covariate attention.
    groupby
        Optional label column: statistics per label besides the overall ones.
    modalities
        Modalities to report (default all GO-wired ones).
    key_added
        ``mdata.uns`` key of the table (``None``: return it only).
    **kwargs
        Further :meth:`~scvi_networkvi.NETWORKVI.get_attention_statistics` arguments (``level``, ``batch_size``,
        ``progress_bar``...).

    Returns
    -------
    The tidy table (``modality``, ``node_id``, ``covariate_group``, ``covariate``, ``phenotype``, ``mean``, ``low``,
    ``high``, ``n_cells``). Sets ``mdata.uns[key_added]`` and ``mdata.uns["networkvi"][key_added]["params"]``.
    """
    _prepare(mdata, model, groupby, key_added, modalities)
    if model.init_settings.get("covariate_attention", "none") == "none":
        raise ValueError("The model has no covariate attention: build it with covariate_attention='genes'/'go'/'all'.")
    with rollback(mdata):
        table = model.get_attention_statistics(mdata, groupby=groupby, modalities=modalities, key_added=None, **kwargs)
    _store(mdata, table, key_added, "attention", {"groupby": groupby, "modalities": modalities})
    return table
