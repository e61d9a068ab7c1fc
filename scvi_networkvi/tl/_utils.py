"""Shared checks and helpers of the ``nvi.tl`` functions."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from scvi_networkvi.interpret import categorical_labels

#: ``mdata.uns`` key where the ``nvi.tl`` functions record their parameters.
UNS_KEY = "networkvi"


def check_mudata(mdata: Any, name: str = "mdata") -> None:
    """Raise a TypeError unless ``mdata`` is a :class:`~mudata.MuData`; for an AnnData, say how to get one."""
    if isinstance(mdata, AnnData):
        raise TypeError(
            f"{name} must be a MuData, got an AnnData. For an AnnData in scvi-tools' CITE-seq layout (proteins in "
            "obsm['protein_expression']), use the MuData that nvi.NETWORKVI.setup_anndata(adata, ...) returns; for RNA "
            "alone, mudata.MuData({'rna': adata})."
        )
    if not isinstance(mdata, MuData):
        raise TypeError(f"{name} must be a MuData, got {type(mdata).__name__}.")


def check_model(model: Any, *, trained: bool = True) -> None:
    """Raise unless ``model`` is a (trained) NETWORKVI."""
    from scvi_networkvi.model import NETWORKVI

    if not isinstance(model, NETWORKVI):
        raise TypeError(f"model must be a NETWORKVI, got {type(model).__name__}.")
    if trained and not model.is_trained_:
        raise ValueError("The model is not trained yet: train it first (model.train() or nvi.tl.train()).")


def check_features(mdata: MuData, model) -> None:
    """Raise a ValueError unless ``mdata`` holds the model's modalities with the same features in the same order."""
    if mdata is model.adata:
        return
    for role in model.modality_roles:
        mod = model.modality_name(role)
        if mod not in mdata.mod:
            raise ValueError(
                f"The MuData lacks modality {mod!r} the model was trained on (has {list(mdata.mod)}): this model was "
                "trained on other data."
            )
        expected = model.adata[mod].var_names
        found = mdata[mod].var_names
        if not np.array_equal(np.asarray(found), np.asarray(expected)):
            n_shared = len(pd.Index(found).intersection(expected))
            raise ValueError(
                f"Modality {mod!r} has other features than the model was trained on ({mdata[mod].n_vars} features, "
                f"{n_shared} of the model's {len(expected)} shared, or in another order). Use the model's data, or map "
                "new data with nvi.tl.map_query."
            )


def check_groupby(mdata: MuData, groupby: str, name: str = "groupby") -> pd.Series:
    """The ``groupby`` labels (``obs`` column or ``"mod:col"``) as a categorical; numeric columns are refused."""
    if not isinstance(groupby, str):
        raise TypeError(f"{name} must be an obs column name, got {type(groupby).__name__}.")
    labels = categorical_labels(mdata, groupby)
    if labels.notna().sum() == 0:
        raise ValueError(f"{name} {groupby!r} has no labelled cell.")
    return labels


def check_key(key_added: Any, name: str = "key_added") -> None:
    """Raise unless ``key_added`` is a non-empty string."""
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"{name} must be a non-empty string, got {key_added!r}.")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (paths as strings, numpy scalars as Python numbers); ``None`` entries dropped.

    The result can be written to ``.h5mu`` (``uns``) and to JSON alike.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike | PurePath):
        return os.fspath(value)
    if isinstance(value, np.ndarray | Sequence | set | frozenset):
        return [jsonable(v) for v in value if v is not None]
    return repr(value)


def record(mdata: MuData, section: str, params: Mapping[str, Any]) -> None:
    """Store ``params`` under ``mdata.uns["networkvi"][section]["params"]``."""
    entry = dict(mdata.uns.get(UNS_KEY, {}))
    entry[section] = {"params": jsonable(params)}
    mdata.uns[UNS_KEY] = entry


def _state(mdata: MuData) -> dict[str, Any]:
    state = {
        "uns": dict(mdata.uns),
        "obs": list(mdata.obs.columns),
        "obsm": set(mdata.obsm.keys()),
        "mod": {name: mdata.mod[name] for name in mdata.mod},
    }
    for name, adata in mdata.mod.items():
        state[f"{name}/obs"] = list(adata.obs.columns)
        state[f"{name}/uns"] = dict(adata.uns)
    return state


def _restore(mdata: MuData, state: dict[str, Any]) -> None:
    replaced = [name for name, adata in state["mod"].items() if mdata.mod.get(name) is not adata]
    for name in replaced:
        mdata.mod[name] = state["mod"][name]
    if replaced:
        mdata.update()
    for name, adata in mdata.mod.items():
        obs = state.get(f"{name}/obs")
        if obs is not None:
            extra = [c for c in adata.obs.columns if c not in obs]
            for column in extra:
                del adata.obs[column]
            adata.uns.clear()
            adata.uns.update(state[f"{name}/uns"])
    extra = [c for c in mdata.obs.columns if c not in state["obs"]]
    for column in extra:
        del mdata.obs[column]
    for key in set(mdata.obsm.keys()) - state["obsm"]:
        del mdata.obsm[key]
    mdata.uns.clear()
    mdata.uns.update(state["uns"])


@contextlib.contextmanager
def rollback(*mdatas: MuData) -> Iterator[None]:
    """Undo what scvi-tools' registration wrote (``uns``, ``_scvi_*`` obs columns, new obsm keys) if the block fails.

    The checks of each function run before anything is changed; this covers the errors only the model can detect
    (unreadable resource files, an unseen batch...), so that a failed call leaves the user's data as it was.
    """
    states = [_state(m) for m in mdatas]
    try:
        yield
    except BaseException:
        for m, state in zip(mdatas, states, strict=True):
            _restore(m, state)
        raise
