"""Covariate-attention statistics per node, covariate and phenotype, accumulated over minibatches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm
from scvi import REGISTRY_KEYS

from scvi_networkvi.module import DATA_KEYS, MASK_KEY

from ._activations import _eval_without_side_effects, resolve_roles
from ._nodes import gene_names
from ._phenotypes import categorical_labels
from ._progress import show_progress, track

if TYPE_CHECKING:
    from scvi_networkvi.model import NETWORKVI

ATTENTION_COLUMNS = [
    "modality",
    "node_id",
    "node_type",
    "kind",
    "name",
    "level",
    "covariate_group",
    "covariate",
    "phenotype",
    "mean",
    "low",
    "high",
    "n_cells",
]


def covariate_names(model: NETWORKVI) -> list[tuple[str, str]]:
    """``(covariate group, column name)`` for each entry of the encoders' covariate vector, in its order."""
    manager = model.adata_manager
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


class _Accumulator:
    """Running sums of per-cell node attention, per cell group: count, sum and sum of squares (no cells kept)."""

    def __init__(self, n_groups: int, n_nodes: int, n_columns: int):
        self.count = np.zeros(n_groups)
        self.total = np.zeros((n_groups, n_nodes, n_columns))
        self.squares = np.zeros((n_groups, n_nodes, n_columns))

    def add(self, values: torch.Tensor, groups: np.ndarray) -> None:
        """``values`` ``(n, nodes, columns)`` for cells of groups ``groups`` (``-1``: only in the overall group 0)."""
        values = values.double()
        for target, rows in (
            (0, np.arange(len(groups))),
            *((g + 1, np.flatnonzero(groups == g)) for g in np.unique(groups[groups >= 0])),
        ):
            if len(rows) == 0:
                continue
            chunk = values[torch.as_tensor(rows)]
            self.count[target] += len(rows)
            self.total[target] += chunk.sum(0).cpu().numpy()
            self.squares[target] += chunk.square().sum(0).cpu().numpy()

    def summary(self, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean over cells and a normal interval of that mean, ``(groups, nodes, columns)`` each."""
        with np.errstate(invalid="ignore", divide="ignore"):
            count = self.count[:, None, None]
            mean = self.total / count
            var = np.clip(self.squares / count - mean**2, 0.0, None) * count / np.maximum(count - 1, 1)
            half = norm.ppf(0.5 + level / 2) * np.sqrt(var / count)
        return mean, mean - half, mean + half


def compute_attention_statistics(
    model: NETWORKVI,
    adata=None,
    *,
    groupby: str | None = None,
    modalities: str | Sequence[str] | None = None,
    indices: Sequence[int] | None = None,
    level: float = 0.95,
    batch_size: int = 256,
    progress_bar: bool | None = None,
) -> pd.DataFrame:
    """Mean attention of each node to each covariate (and covariate group), overall and per ``groupby`` label.

    See :meth:`scvi_networkvi.NETWORKVI.get_attention_statistics`.
    """
    roles = resolve_roles(model, modalities)
    module = model.module
    layers = {role: _attention_layers(model, role) for role in roles}
    layers = {role: found for role, found in layers.items() if found}
    if not layers:
        raise ValueError(
            "The model has no covariate attention: build it with covariate_attention='genes', 'go' or 'all' "
            "(and encode_covariates=True)."
        )
    adata = model.validate_mudata(adata)
    obs_names = adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]
    if groupby is not None:
        labels = categorical_labels(adata, groupby).reindex(obs_names)
        codes, label_names = labels.cat.codes.to_numpy(), [str(c) for c in labels.cat.categories]
    else:
        codes, label_names = np.full(len(obs_names), -1), []
    names = covariate_names(model)
    group_names = list(dict.fromkeys(g for g, _ in names))
    group_of = np.array([group_names.index(g) for g, _ in names])
    merge = torch.zeros(len(names), len(group_names), dtype=torch.float64)
    merge[torch.arange(len(names)), torch.as_tensor(group_of)] = 1.0
    current: dict[str, np.ndarray] = {}
    accumulators: dict[tuple[str, int], tuple[_Accumulator, _Accumulator]] = {}
    handles = []
    for role, found in layers.items():
        for index, (attention, nodes, _) in enumerate(found):
            if attention.key.shape[0] != len(names):
                raise RuntimeError(
                    f"Attention has {attention.key.shape[0]} covariates, the registry names {len(names)}."
                )
            n_nodes = len(nodes[1])
            accumulators[(role, index)] = (
                _Accumulator(len(label_names) + 1, n_nodes, len(names)),
                _Accumulator(len(label_names) + 1, n_nodes, len(group_names)),
            )

            def hook(mod, inputs, _output, role=role, index=index, nodes=nodes):
                x, u = inputs
                weights = mod.weights(x, u).double()  # (n, D, C): one minibatch, never kept
                owner, sizes = (t.to(weights.device) for t in nodes)
                per_node = weights.new_zeros(weights.shape[0], len(sizes), weights.shape[2])
                per_node = per_node.index_add_(1, owner, weights) / sizes.view(1, -1, 1)
                by_column, by_group = accumulators[(role, index)]
                by_column.add(per_node, current[role])
                by_group.add(per_node @ merge.to(per_node.device), current[role])

            handles.append(attention.register_forward_hook(hook))
    n_seen = 0
    loader = model.make_data_loader(adata, indices=indices, batch_size=batch_size)
    try:
        with _eval_without_side_effects(module):
            for tensors in track(loader, "Attention statistics", enabled=show_progress(progress_bar)):
                n = tensors[DATA_KEYS[module.modalities[0]]].shape[0]
                mask = tensors.get(MASK_KEY)
                for role in layers:
                    rows = np.arange(n) if mask is None else np.flatnonzero(mask[:, module.modalities.index(role)] > 0)
                    current[role] = codes[n_seen + rows]
                module.inference(**module._get_inference_input(tensors))
                n_seen += n
    finally:
        for handle in handles:
            handle.remove()
    frames = []
    phenotypes = ["all", *label_names]
    for role, found in layers.items():
        for index, (_, _, node_frame) in enumerate(found):
            by_column, by_group = accumulators[(role, index)]
            for acc, columns in ((by_column, names), (by_group, [(g, f"{g} (all)") for g in group_names])):
                mean, low, high = acc.summary(level)
                for g, phenotype in enumerate(phenotypes):
                    for c, (group, covariate) in enumerate(columns):
                        frame = node_frame.copy()
                        frame.insert(0, "modality", model.modality_name(role))
                        frame["covariate_group"] = group
                        frame["covariate"] = covariate
                        frame["phenotype"] = phenotype
                        frame["mean"] = mean[g, :, c]
                        frame["low"] = low[g, :, c]
                        frame["high"] = high[g, :, c]
                        frame["n_cells"] = int(acc.count[g])
                        frames.append(frame)
    result = pd.concat(frames, ignore_index=True)
    for column in ("modality", "node_type", "kind", "covariate_group", "covariate", "phenotype"):
        result[column] = result[column].astype("category")
    return result[ATTENTION_COLUMNS]


def _attention_layers(
    model: NETWORKVI, role: str
) -> list[tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor], pd.DataFrame]]:
    """Each attention layer of a wired encoder with its neurons' node index, the node widths and node descriptions."""
    encoder = model.module.encoders[role]
    wiring = model.wirings_[role]
    found = []
    if encoder.gene_attention is not None:
        sizes = torch.full((wiring.n_genes,), float(wiring.gene_size), dtype=torch.float64)
        owner = torch.repeat_interleave(torch.arange(wiring.n_genes), wiring.gene_size)
        frame = pd.DataFrame(
            {
                "node_id": wiring.gene_ids.astype(str),
                "node_type": "gene",
                "kind": "gene",
                "name": gene_names(wiring, np.asarray(model.adata[model.modality_name(role)].var_names)),
                "level": -1,
            }
        )
        found.append((encoder.gene_attention, (owner, sizes), frame))
    levels = wiring.levels
    for key, attention in encoder.go_network.attention.items():
        _, terms = levels[int(key)]
        widths = torch.tensor(np.asarray(wiring.term_size[terms]), dtype=torch.long)  # a copy: the wiring is read-only
        owner = torch.repeat_interleave(torch.arange(len(widths)), widths)
        frame = pd.DataFrame(
            {
                "node_id": wiring.term_ids[terms].astype(str),
                "node_type": "go_term",
                "kind": wiring.term_kind[terms].astype(str),
                "name": wiring.term_names[terms].astype(str),
                "level": wiring.term_depth[terms].astype(int),
            }
        )
        found.append((attention, (owner, widths.double()), frame))
    return found
