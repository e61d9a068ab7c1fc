"""``nvi.tl.importances`` / ``perturb`` / ``attention``: the interpretation engine on MuData, results in ``uns``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from mudata import MuData

from ._utils import check_features, check_groupby, check_key, check_model, check_mudata, record, rollback


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


def importances(
    mdata: MuData,
    model,
    *,
    groupby: str,
    targets: Sequence[str] | None = None,
    reference: str | Sequence[str] = "rest",
    groups: Mapping[str, Sequence[str]] | None = None,
    modalities: str | Sequence[str] | None = None,
    node_types: Sequence[str] = ("go_term",),
    key_added: str | None = "networkvi_importances",
    seed: int | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Which GO terms (genes, gene groups) tell each ``groupby`` label apart: held-out AUROC of a probe per node.

    A thin wrapper of :meth:`~scvi_networkvi.NETWORKVI.get_importances` (see there for the method and every
    option) that checks its inputs before anything is computed or stored.

    Parameters
    ----------
    mdata
        The model's MuData (or one with the same modalities and features).
    model
        A trained :class:`~scvi_networkvi.NETWORKVI`.
    groupby
        Label column (categorical, string or boolean) of ``mdata.obs``, or ``"mod:col"``.
    targets, reference, groups
        Which labels are tested against which (default: every label against the rest).
    modalities
        GO-wired modalities to probe (roles or MuData names; default all).
    node_types
        ``"go_term"``, ``"gene"``, ``"gene_group"``.
    key_added
        ``mdata.uns`` key of the table (``None``: return it only).
    seed
        Seed of the held-out split (default ``scvi.settings.seed``).
    **kwargs
        Further :meth:`~scvi_networkvi.NETWORKVI.get_importances` arguments (``heldout_size``, ``C``, ``restrict``, ``device``,
        ``null_sets``, ``gene_groups``, ``save_path``, ``progress_bar``...). Progress bars are scvi-tools' own and
        show by default; ``progress_bar=False`` or ``scvi.settings.verbosity = logging.WARNING`` hides them.

    Returns
    -------
    The tidy importance table (one row per modality, node and phenotype; ``auroc`` is the held-out AUROC, with
    ``auroc_low`` / ``auroc_high``, ``pval``, ``qval`` and ``rank``). Sets ``mdata.uns[key_added]`` (the table) and
    ``mdata.uns["networkvi"][key_added]["params"]``.
    """
    _prepare(mdata, model, groupby, key_added, modalities)
    with rollback(mdata):
        table = model.get_importances(
            mdata,
            groupby=groupby,
            targets=targets,
            reference=reference,
            groups=groups,
            modalities=modalities,
            node_types=node_types,
            seed=seed,
            key_added=None,
            **kwargs,
        )
    params = {"groupby": groupby, "targets": targets, "reference": reference, "groups": groups}
    _store(mdata, table, key_added, "importances", {**params, "modalities": modalities, "node_types": node_types})
    return table


def perturb(
    mdata: MuData,
    model,
    *,
    genes: Sequence[str] | Mapping[str, Sequence[str]],
    groupby: str,
    targets: Sequence[str] | None = None,
    reference: str | Sequence[str] = "rest",
    perturb_modalities: Sequence[str] | None = None,
    modalities: str | Sequence[str] | None = None,
    key_added: str | None = "networkvi_perturbation",
    seed: int | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """In-silico knock-out: zero genes' features and report how each node's held-out AUROC changes.

    A thin wrapper of :meth:`~scvi_networkvi.NETWORKVI.get_perturbation_importances` (see there for every option).

    Parameters
    ----------
    mdata
        The model's MuData (or one with the same modalities and features).
    model
        A trained :class:`~scvi_networkvi.NETWORKVI`.
    genes
        Gene ids or feature names: a list (one perturbation per gene) or ``{name: [genes]}``.
    groupby, targets, reference
        The phenotypes, as in :func:`importances`.
    perturb_modalities
        Modalities whose features are zeroed (default: every modality measuring the gene).
    modalities
        Modalities whose nodes are probed (default: the perturbed GO-wired ones).
    key_added
        ``mdata.uns`` key of the table (``None``: return it only).
    seed
        Seed of the held-out split.
    **kwargs
        Further :meth:`~scvi_networkvi.NETWORKVI.get_perturbation_importances` arguments (``progress_bar=False``
        hides the progress bars).

    Returns
    -------
    The tidy table (``perturbation``, node columns, ``phenotype``, ``auroc_before``, ``auroc_after``, ``delta`` with
    its interval, ``pval``, ``qval``). Sets ``mdata.uns[key_added]`` and
    ``mdata.uns["networkvi"][key_added]["params"]``.
    """
    _prepare(mdata, model, groupby, key_added, modalities)
    if perturb_modalities is not None:
        for mod in [perturb_modalities] if isinstance(perturb_modalities, str) else list(perturb_modalities):
            model.role_of(mod)
    with rollback(mdata):
        table = model.get_perturbation_importances(
            mdata,
            genes=genes,
            groupby=groupby,
            targets=targets,
            reference=reference,
            perturb_modalities=perturb_modalities,
            modalities=modalities,
            seed=seed,
            key_added=None,
            **kwargs,
        )
    params = {"genes": genes, "groupby": groupby, "targets": targets, "reference": reference}
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
    if model.init_params_.get("non_kwargs", {}).get("covariate_attention", "none") == "none":
        raise ValueError("The model has no covariate attention: build it with covariate_attention='genes'/'go'/'all'.")
    with rollback(mdata):
        table = model.get_attention_statistics(mdata, groupby=groupby, modalities=modalities, key_added=None, **kwargs)
    _store(mdata, table, key_added, "attention", {"groupby": groupby, "modalities": modalities})
    return table
