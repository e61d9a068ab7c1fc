"""Covariate-attention statistics per node, covariate and phenotype, accumulated over minibatches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from scvi_networkvi.nn import CovariateAttention, WiredEncoder
from scvi_networkvi.wiring import Wiring

from ._nodes import gene_names

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


@dataclass(frozen=True)
class AttentionLayer:
    """One covariate-attention layer of a wired encoder and the nodes its neurons belong to.

    Attributes
    ----------
    attention
        The layer; its ``weights(x, u)`` are ``(cells, neurons, covariates)``.
    owner
        Node index of each neuron.
    sizes
        Width of each node (float64), to average its neurons.
    nodes
        ``node_id``, ``node_type``, ``kind``, ``name``, ``level`` per node.
    """

    attention: CovariateAttention
    owner: torch.Tensor
    sizes: torch.Tensor
    nodes: pd.DataFrame


def attention_layers(encoder: WiredEncoder, wiring: Wiring, feature_names: Sequence[str]) -> list[AttentionLayer]:
    """Each attention layer of ``encoder`` (gene nodes, then each attending GO level) with its nodes.

    Parameters
    ----------
    encoder
        A GO-wired encoder.
    wiring
        The wiring it was built from.
    feature_names
        The modality's feature names, in the wiring's order (gene nodes are named after their features).
    """
    found = []
    if encoder.gene_attention is not None:
        sizes = torch.full((wiring.n_genes,), float(wiring.gene_size), dtype=torch.float64)
        owner = torch.repeat_interleave(torch.arange(wiring.n_genes), wiring.gene_size)
        frame = pd.DataFrame(
            {
                "node_id": wiring.gene_ids.astype(str),
                "node_type": "gene",
                "kind": "gene",
                "name": gene_names(wiring, np.asarray(feature_names)),
                "level": -1,
            }
        )
        found.append(AttentionLayer(encoder.gene_attention, owner, sizes, frame))
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
        found.append(AttentionLayer(attention, owner, widths.double(), frame))
    return found


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


class AttentionStatistics:
    """Mean attention of each node to each covariate (and covariate group), overall and per label, streamed.

    Feed it each minibatch's attention weights with :meth:`add` (memory does not grow with the number of cells), then
    read the table with :meth:`table`.

    Parameters
    ----------
    layers
        Role -> its :class:`AttentionLayer` s (from :func:`attention_layers`).
    covariates
        ``(covariate group, column name)`` of each entry of the encoders' covariate vector, in its order.
    labels
        The label names; a cell's code indexes them (``-1``: no label, counted only in ``"all"``).
    """

    def __init__(
        self,
        layers: Mapping[str, Sequence[AttentionLayer]],
        covariates: Sequence[tuple[str, str]],
        labels: Sequence[str] = (),
    ):
        self.layers = {role: list(found) for role, found in layers.items()}
        self.covariates = list(covariates)
        self.labels = [str(label) for label in labels]
        self.groups = list(dict.fromkeys(g for g, _ in self.covariates))
        group_of = np.array([self.groups.index(g) for g, _ in self.covariates])
        self._merge = torch.zeros(len(self.covariates), len(self.groups), dtype=torch.float64)
        self._merge[torch.arange(len(self.covariates)), torch.as_tensor(group_of)] = 1.0
        self._accumulators: dict[tuple[str, int], tuple[_Accumulator, _Accumulator]] = {}
        for role, found in self.layers.items():
            for index, layer in enumerate(found):
                if layer.attention.key.shape[0] != len(self.covariates):
                    raise RuntimeError(
                        f"Attention has {layer.attention.key.shape[0]} covariates, the registry names "
                        f"{len(self.covariates)}."
                    )
                n_nodes = len(layer.sizes)
                self._accumulators[(role, index)] = (
                    _Accumulator(len(self.labels) + 1, n_nodes, len(self.covariates)),
                    _Accumulator(len(self.labels) + 1, n_nodes, len(self.groups)),
                )

    def add(self, role: str, index: int, weights: torch.Tensor, codes: np.ndarray) -> None:
        """Add a minibatch of layer ``index`` of ``role``: ``weights`` ``(cells, neurons, covariates)``, label codes."""
        layer = self.layers[role][index]
        weights = weights.double()
        owner, sizes = (t.to(weights.device) for t in (layer.owner, layer.sizes))
        per_node = weights.new_zeros(weights.shape[0], len(sizes), weights.shape[2])
        per_node = per_node.index_add_(1, owner, weights) / sizes.view(1, -1, 1)
        by_column, by_group = self._accumulators[(role, index)]
        by_column.add(per_node, codes)
        by_group.add(per_node @ self._merge.to(per_node.device), codes)

    def table(self, modality_names: Mapping[str, str], level: float = 0.95) -> pd.DataFrame:
        """The tidy table (columns :data:`ATTENTION_COLUMNS`), with normal intervals at ``level``.

        ``modality_names`` maps each role to the name shown in the ``modality`` column.
        """
        frames = []
        phenotypes = ["all", *self.labels]
        group_columns = [(g, f"{g} (all)") for g in self.groups]
        for role, found in self.layers.items():
            for index, layer in enumerate(found):
                by_column, by_group = self._accumulators[(role, index)]
                for acc, columns in ((by_column, self.covariates), (by_group, group_columns)):
                    mean, low, high = acc.summary(level)
                    for g, phenotype in enumerate(phenotypes):
                        for c, (group, covariate) in enumerate(columns):
                            frame = layer.nodes.copy()
                            frame.insert(0, "modality", modality_names[role])
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
