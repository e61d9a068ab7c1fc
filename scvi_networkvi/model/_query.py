"""Query mapping: :class:`NetworkVIQueryMixin` (``prepare_query_mudata``, ``load_query_data``) and its helpers.

The reference -> query weight transfer and the parameters a query model trains (scArches-style surgery):

scvi-tools' generic surgery appends new covariate columns at the end of every first-layer weight, which puts a new
batch's column where the reference kept its other categorical covariates; and its freezing keys on module names.
Here both follow the model's own covariate layout ``[inputs | continuous | one-hot per categorical]`` and its
own list of covariate-conditioned layers (every scvi-tools ``FCLayers`` in the module).

The query's features are aligned to the reference's here too (:func:`align_query_features`): once per modality,
with one log line each. scvi-tools' ``prepare_query_mudata`` pads every value of the registry's ``modalities`` map,
so a modality named twice there (``rna_layer`` and ``batch_key`` both ``"rna"``) was padded, and logged, twice.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.model.base._save_load import _load_saved_files
from scvi.nn import FCLayers
from torch import nn

from scvi_networkvi.nn import CovariateAttention, LevelBatchNorm

from ._defaults import flat_init_params, rebuilding_saved_model
from ._validation import LAYER_ROLES, Caller, query_caller

if TYPE_CHECKING:
    from ._networkvi import NETWORKVI

logger = logging.getLogger(__name__)

#: Below this share of the reference's features found in a query modality, a warning says the mapping may be poor.
MIN_SHARED_FEATURES = 0.8

#: Per-batch parameters of the module: (name, dimension that indexes batches).
_BATCH_PARAMETERS = {"background_pro_alpha": 1, "background_pro_log_beta": 1, "py_r": 1}
#: Buffers ``input_shift_<role>`` / ``input_sd_<role>``: the batch means subtracted from an encoder's input and the
#: batch spreads that rescale it, one row per batch (an all-zero row: a batch without reference cells). The target
#: spread (``input_target_sd_<role>``, one row) is the reference's and is copied as it is.
_INPUT_SHIFT, _INPUT_SD, _INPUT_TARGET_SD = "input_shift_", "input_sd_", "input_target_sd_"


def _one_hot_widths(n_cats: Sequence[int]) -> list[int]:
    """Columns each categorical covariate occupies in an FCLayers input (one-hot; none for a single category)."""
    return [n if n > 1 else 0 for n in n_cats]


def _remap_covariate_columns(
    reference: torch.Tensor, query: torch.Tensor, ref_cats: Sequence[int], query_cats: Sequence[int]
) -> torch.Tensor:
    """Query-shaped weight holding the reference's columns at their new positions; new categories get zero."""
    ref_widths, query_widths = _one_hot_widths(ref_cats), _one_hot_widths(query_cats)
    base = reference.shape[-1] - sum(ref_widths)
    if base != query.shape[-1] - sum(query_widths) or base < 0:
        raise ValueError("The reference and query layers do not share the covariate layout; cannot transfer.")
    out = query.detach().clone()
    out[..., :base] = reference[..., :base]
    ref_start, query_start = base, base
    for ref_width, query_width in zip(ref_widths, query_widths, strict=True):
        block = out[..., query_start : query_start + query_width]
        block.zero_()  # a category the reference never saw starts neutral, so reference cells decode as before
        block[..., :ref_width] = reference[..., ref_start : ref_start + ref_width]
        ref_start += ref_width
        query_start += query_width
    return out


def _attention_positions(ref_cats: Sequence[int], query_cats: Sequence[int], n_cont: int):
    """Positions of the reference's attention covariates ``[one-hots | continuous]`` in the query's vector."""
    ref_widths, query_widths = _one_hot_widths(ref_cats), _one_hot_widths(query_cats)
    ref_pos, query_pos = [], []
    ref_start = query_start = 0
    for ref_width, query_width in zip(ref_widths, query_widths, strict=True):
        ref_pos.extend(range(ref_start, ref_start + ref_width))
        query_pos.extend(range(query_start, query_start + ref_width))
        ref_start += ref_width
        query_start += query_width
    ref_pos.extend(range(ref_start, ref_start + n_cont))
    query_pos.extend(range(query_start, query_start + n_cont))
    return torch.as_tensor(ref_pos, dtype=torch.long), torch.as_tensor(query_pos, dtype=torch.long)


def _merge_shifts(reference: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Batch means (or spreads) for the query model: the reference's rows where it had cells, the query's own else.

    A batch category without reference cells (new, or a category of the batch column that the reference's cells do
    not use, which scvi-tools registers all the same) has an all-zero row in the reference; its cells are centred by
    their own means, as the reference's batches were.
    """
    out = query.detach().clone()
    n = reference.shape[0]
    seen = reference.abs().sum(dim=1) > 0
    out[:n][seen] = reference[seen]
    return out


def transfer_state(
    reference_state: dict[str, torch.Tensor],
    query_module: nn.Module,
    ref_cats: Sequence[int],
    query_cats: Sequence[int],
    n_cont: int = 0,
) -> dict[str, torch.Tensor]:
    """State dict for ``query_module`` from a reference state dict whose covariates had ``ref_cats`` categories.

    Parameters
    ----------
    reference_state
        The reference module's state dict.
    query_module
        The freshly built query module (its covariates have ``query_cats`` categories, batch first).
    ref_cats, query_cats
        Categories per covariate, ``[n_batch, *n_cats_per_cov]``, for the reference and the query.
    """
    fc_weights = {
        f"{prefix}.{name}"
        for prefix, module in query_module.named_modules()
        if isinstance(module, FCLayers)
        for name, _ in module.named_parameters()
        if name.endswith("weight")
    }
    attention_params = {
        f"{prefix}.{name}"
        for prefix, module in query_module.named_modules()
        if isinstance(module, CovariateAttention)
        for name in ("key", "value")
    }
    query_state = query_module.state_dict()
    new_state = {}
    for key, query_value in query_state.items():
        name = key.rsplit(".", 1)[-1]
        is_shift = name.startswith((_INPUT_SHIFT, _INPUT_SD))
        if name.startswith((_INPUT_SHIFT, _INPUT_SD, _INPUT_TARGET_SD)) and key not in reference_state:
            new_state[key] = torch.zeros_like(query_value)  # a reference saved before these: uncentred, unscaled
            continue
        if key not in reference_state:
            raise ValueError(f"The reference model has no parameter {key!r}: it was built differently.")
        ref_value = reference_state[key]
        if is_shift and ref_value.dim() == 2 and ref_value.shape[1] == query_value.shape[1]:
            new_state[key] = _merge_shifts(ref_value, query_value)
        elif ref_value.shape == query_value.shape:
            new_state[key] = ref_value.clone()
        elif key in fc_weights and ref_value.dim() == 2 and ref_value.shape[0] == query_value.shape[0]:
            new_state[key] = _remap_covariate_columns(ref_value, query_value, ref_cats, query_cats)
        elif key in attention_params:
            # New covariate entries keep their fresh initialisation, as in the original's surgery.
            ref_pos, query_pos = _attention_positions(ref_cats, query_cats, n_cont)
            out = query_value.detach().clone()
            if ref_value.dim() == 1:
                out[query_pos] = ref_value[ref_pos]
            else:
                out[query_pos.unsqueeze(1), query_pos] = ref_value[ref_pos.unsqueeze(1), ref_pos]
            new_state[key] = out
        elif key.rsplit(".", 1)[-1] in _BATCH_PARAMETERS and ref_value.dim() == 2:
            out = ref_value.mean(dim=1, keepdim=True).expand_as(query_value).clone()  # new batches: reference mean
            out[:, : ref_value.shape[1]] = ref_value
            new_state[key] = out
        else:
            raise ValueError(
                f"Parameter {key!r} has shape {tuple(ref_value.shape)} in the reference and "
                f"{tuple(query_value.shape)} in the query; only covariate columns may differ."
            )
    return new_state


def freeze_for_query(module: nn.Module) -> list[str]:
    """Freeze everything but covariate columns of covariate-conditioned layers, covariate attention, per-batch parameters.

    GO-level batch norms keep the reference's statistics (the query's minibatches neither normalise nor update them).
    Returns the names of the parameters that still receive (masked) gradients.
    """
    trainable: list[str] = []
    fc_params = set()
    for prefix, layer in module.named_modules():
        if isinstance(layer, LevelBatchNorm):
            layer.freeze()
        if isinstance(layer, FCLayers) and sum(layer.n_cat_list) > 0:
            layer.set_online_update_hooks(hook_first_layer=True)  # gradients only reach categorical columns
            for name, param in layer.named_parameters():
                fc_params.add(id(param))
                trainable.append(f"{prefix}.{name}")
    attention = {
        id(param) for layer in module.modules() if isinstance(layer, CovariateAttention) for param in layer.parameters()
    }
    for name, param in module.named_parameters():
        per_batch = name.rsplit(".", 1)[-1] in _BATCH_PARAMETERS and param.dim() == 2
        keep = id(param) in fc_params or per_batch or id(param) in attention
        param.requires_grad_(keep)
        if keep and id(param) not in fc_params:
            trainable.append(name)
    return trainable


def _zero_columns(like, n_obs: int, n_missing: int) -> sp.csr_matrix:
    """An all-zero sparse block of ``n_missing`` features, of ``like``'s dtype (counts stay integer)."""
    dtype = getattr(like, "dtype", np.float32)
    return sp.csr_matrix((n_obs, n_missing), dtype=dtype)


def _aligned(adata: ad.AnnData, reference: pd.Index) -> ad.AnnData:
    """``adata`` with exactly the ``reference`` features in their order: absent ones all-zero, extra ones dropped."""
    missing = reference.difference(adata.var_names, sort=False)
    if len(missing):
        padding = ad.AnnData(
            X=None if adata.X is None else _zero_columns(adata.X, adata.n_obs, len(missing)),
            layers={  # anndata >= 0.13 lists X as layers[None]
                key: _zero_columns(value, adata.n_obs, len(missing))
                for key, value in adata.layers.items()
                if key is not None
            },
            obs=pd.DataFrame(index=adata.obs_names),
            var=pd.DataFrame(index=missing),
        )
        adata = ad.concat([adata, padding], axis=1, join="outer", merge="unique", uns_merge="first")
    return adata[:, reference].copy()


def align_query_features(mdata, reference_var_names: Mapping[str, Sequence[str]], modalities: Sequence[str]) -> None:
    """Reorder and zero-pad the query's ``modalities`` to the reference's features, in place, each modality once.

    Logs one INFO line per modality (features found, features zero-filled) and warns when a modality holds fewer
    than :data:`MIN_SHARED_FEATURES` of the reference's features.
    """
    replaced = False
    for mod in dict.fromkeys(modalities):
        adata = mdata.mod[mod]
        reference = pd.Index(reference_var_names[mod])
        n_found = int(reference.isin(adata.var_names).sum())
        share = n_found / max(1, len(reference))
        logger.info(
            "Query modality %r: %d of the reference's %d features found (%.1f%%), %d zero-filled, %d extra dropped.",
            mod,
            n_found,
            len(reference),
            100 * share,
            len(reference) - n_found,
            int((~adata.var_names.isin(reference)).sum()),
        )
        if share < MIN_SHARED_FEATURES:
            warnings.warn(
                f"The query's modality {mod!r} holds only {share:.0%} of the reference's features: the others are "
                "zero-filled and the mapping may be poor. Check that both use the same feature names.",
                UserWarning,
                stacklevel=3,
            )
        if adata.var_names.equals(reference):
            continue
        mdata.mod[mod] = _aligned(adata, reference)
        replaced = True
    if replaced:
        mdata.update()


class NetworkVIQueryMixin:
    """Query mapping of NETWORKVI: a query's features aligned to the reference's, a query model from its weights."""

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
