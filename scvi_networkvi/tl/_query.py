"""``nvi.tl.map_query``: map new cells onto a trained reference and transfer its labels."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from mudata import MuData
from sklearn.neighbors import KNeighborsClassifier

from scvi_networkvi.model import check_categories, query_caller

from ._utils import check_groupby, check_key, check_model, check_mudata, record, rollback

logger = logging.getLogger(__name__)
#: Errors raised while the query is registered name map_query.
CALLER = query_caller("nvi.tl.map_query")


def transfer_labels(
    reference_latent: np.ndarray, labels: pd.Series, query_latent: np.ndarray, *, n_neighbors: int = 15
) -> tuple[pd.Categorical, np.ndarray]:
    """Label transfer by k nearest neighbours: each query cell takes the majority label of its nearest reference cells.

    Returns the predicted labels (categorical, the reference's categories) and the confidence: the fraction of the
    neighbours that carry the predicted label.
    """
    known = labels.notna().to_numpy()
    y = labels[known].astype(str).to_numpy()
    k = min(n_neighbors, int(known.sum()))
    clf = KNeighborsClassifier(n_neighbors=k).fit(reference_latent[known], y)
    proba = clf.predict_proba(query_latent)
    best = proba.argmax(axis=1)
    categories = (
        [str(c) for c in labels.cat.categories if str(c) in set(clf.classes_)]
        if isinstance(labels.dtype, pd.CategoricalDtype)
        else list(clf.classes_)
    )
    predicted = pd.Categorical(clf.classes_[best], categories=categories)
    return predicted, proba[np.arange(len(best)), best]


def map_query(
    query_mdata: MuData,
    model,
    *,
    max_epochs: int = 100,
    groupby: str | None = None,
    n_neighbors: int = 15,
    key_added: str = "X_networkvi",
    freeze: bool = True,
    train_kwargs: Mapping[str, Any] | None = None,
):
    """Map a query MuData onto a trained reference model (scArches-style) and transfer the reference's labels.

    The query's features are reordered and zero-padded to the reference's
    (:meth:`~scvi_networkvi.NETWORKVI.prepare_query_mudata`), a query model is built from the reference's weights
    with the query's batches as new categories (:meth:`~scvi_networkvi.NETWORKVI.load_query_data`) and trained
    (only covariate columns and per-batch parameters with ``freeze=True``). With ``groupby``, a kNN classifier on the
    reference cells' joint latent predicts each query cell's label from its ``n_neighbors`` nearest reference cells.

    Parameters
    ----------
    query_mdata
        Query MuData with the reference's modalities (names), the same kind of features and the batch column the
        reference was registered with. Changed in place (features aligned, registered, annotated).
    model
        The trained reference :class:`~scvi_networkvi.NETWORKVI` (a saved model's folder also works without
        ``groupby``). Train it with ``nvi.tl.train(..., query_ready=True)`` (or ``encode_covariates=True``): a
        reference whose encoders do not see the batch cannot be adapted to the query's new batches, whose latent is
        then the frozen reference encoders' output (a warning says so); this is decided when the reference is trained.
    max_epochs
        Query training epochs.
    groupby
        Label column of the reference MuData (``obs`` column or ``"mod:col"``, categorical or strings) to transfer.
    n_neighbors
        Neighbours of the kNN label transfer.
    key_added
        ``query_mdata.obsm`` key of the query's joint latent.
    freeze
        Keep the reference's encoder weights (see :meth:`~scvi_networkvi.NETWORKVI.load_query_data`).
    train_kwargs
        Further :meth:`~scvi_networkvi.NETWORKVI.train` arguments.

    Returns
    -------
    The trained query model. Sets ``query_mdata.obsm[key_added]`` (joint latent),
    ``query_mdata.obs[f"{groupby}_predicted"]`` (categorical) and ``query_mdata.obs[f"{groupby}_confidence"]`` (the
    fraction of neighbours agreeing, in [0, 1]) with ``groupby``, and ``query_mdata.uns["networkvi"]["map_query"]``.
    """
    from scvi_networkvi.model import NETWORKVI

    check_mudata(query_mdata, "query_mdata")
    check_key(key_added)
    if not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}.")
    if not isinstance(n_neighbors, int) or n_neighbors < 1:
        raise ValueError(f"n_neighbors must be a positive integer, got {n_neighbors!r}.")
    train_kwargs = dict(train_kwargs or {})
    if "max_epochs" in train_kwargs:
        raise ValueError("train_kwargs must not set max_epochs: pass it as an argument of map_query.")
    if isinstance(model, str | os.PathLike):
        if groupby is not None:
            raise ValueError(
                "Label transfer needs the reference cells: pass the reference model loaded with its MuData "
                "(NETWORKVI.load(path, adata=reference_mdata)), not its folder."
            )
    else:
        check_model(model)
        names = [model.modality_name(r) for r in model.modality_roles]
        missing = [m for m in names if m not in query_mdata.mod]
        if missing:
            raise ValueError(
                f"The query MuData lacks modalities {missing} of the reference (has {list(query_mdata.mod)})."
            )
        setup_args = model.registry_["setup_args"]
        batch_key = setup_args.get("batch_key")
        batch_mod = setup_args["modalities"].get("batch_key")
        if batch_key is not None:
            obs = query_mdata.obs if batch_mod is None else query_mdata[batch_mod].obs
            if batch_key not in obs.columns:
                where = "mdata.obs" if batch_mod is None else f"mdata[{batch_mod!r}].obs"
                raise ValueError(f"The query has no batch column {batch_key!r} in {where}, as the reference has.")
        for name in ("batch_key", "categorical_covariate_keys"):  # before the query's features are aligned
            mod = setup_args["modalities"].get(name)
            if mod is not None and mod not in query_mdata.mod:
                continue
            obs, where = (
                (query_mdata.obs, "query_mdata.obs")
                if mod is None
                else (query_mdata[mod].obs, f"query_mdata[{mod!r}].obs")
            )
            check_categories(obs, setup_args.get(name), f"the reference's {name}", where, CALLER)
    labels = None
    if groupby is not None:
        labels = check_groupby(model.adata, groupby)
        for suffix in ("predicted", "confidence"):
            if f"{groupby}_{suffix}" == groupby:
                raise ValueError("groupby must not end in '_predicted' / '_confidence'.")
    with rollback(query_mdata):
        NETWORKVI.prepare_query_mudata(query_mdata, model)
        query_model = NETWORKVI.load_query_data(query_mdata, model, freeze=freeze, _caller=CALLER)
        query_model.train(max_epochs=max_epochs, **train_kwargs)
        latent = np.asarray(query_model.get_latent_representation())
        if labels is not None:
            reference_latent = np.asarray(model.get_latent_representation())
            predicted, confidence = transfer_labels(reference_latent, labels, latent, n_neighbors=n_neighbors)
        query_mdata.obsm[key_added] = latent
        if labels is not None:
            query_mdata.obs[f"{groupby}_predicted"] = predicted
            query_mdata.obs[f"{groupby}_confidence"] = confidence
            logger.info(
                "Transferred %r to %d query cells (median confidence %.2f).",
                groupby,
                len(confidence),
                float(np.median(confidence)),
            )
    record(
        query_mdata,
        "map_query",
        {
            "max_epochs": max_epochs,
            "groupby": groupby,
            "n_neighbors": n_neighbors,
            "key_added": key_added,
            "freeze": freeze,
            "train_kwargs": train_kwargs,
        },
    )
    return query_model
