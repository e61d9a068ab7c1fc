"""Encoders wired by a :class:`~scvi_networkvi.wiring.Wiring`: features -> gene nodes -> GO levels -> latent."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch
from scvi.nn import FCLayers
from torch import nn
from torch.distributions import Normal

from scvi_networkvi.wiring import Wiring

from ._block_sparse import BlockSparseLinear

GeneLayerType = Literal["none", "standard", "interaction"]
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "hardswish": nn.Hardswish}


def activation_module(name: str) -> nn.Module:
    """The activation called ``name`` (``relu``, ``leaky_relu``, ``hardswish``)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}.") from None


class _TwoPathBlockLayer(nn.Module):
    """``act(W1 x + b1) + (W2 x + b2)`` with W1 and W2 on the same block structure, computed as one product."""

    def __init__(self, in_sizes, out_sizes, connections, activation: str, linear_path: bool, dense_limit=None):
        super().__init__()
        out_sizes = np.asarray(out_sizes)
        self.n_out = int(out_sizes.sum())
        self.linear_path = linear_path
        if linear_path:  # second copy of every output block after the first n_out neurons
            connections = np.concatenate([connections, connections + np.array([[0], [len(out_sizes)]])], axis=1)
            out_sizes = np.concatenate([out_sizes, out_sizes])
        kwargs = {} if dense_limit is None else {"dense_limit": dense_limit}
        self.linear = BlockSparseLinear(in_sizes, out_sizes, connections, **kwargs)
        self.activation = activation_module(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        if not self.linear_path:
            return self.activation(y)
        return self.activation(y[:, : self.n_out]) + y[:, self.n_out :]


class GeneLayer(nn.Module):
    """Features -> gene nodes of ``gene_size`` neurons each (a feature feeds every gene it maps to)."""

    def __init__(self, wiring: Wiring, activation: str = "relu", dropout_rate: float = 0.1, linear_path: bool = True):
        super().__init__()
        self.layer = _TwoPathBlockLayer(
            np.ones(wiring.n_features, dtype=np.int64),
            np.full(wiring.n_genes, wiring.gene_size),
            wiring.feature_gene,
            activation,
            linear_path,
        )
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.layer(x))


class InteractionLayer(nn.Module):
    """Gene nodes -> gene nodes along the wiring's gene–gene edges (self loops included): ``act(W h + b) + h``."""

    def __init__(self, wiring: Wiring, activation: str = "relu"):
        super().__init__()
        sizes = np.full(wiring.n_genes, wiring.gene_size)
        self.linear = BlockSparseLinear(sizes, sizes, wiring.gene_edges)
        self.activation = activation_module(activation)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(h)) + h


class GONetwork(nn.Module):
    """The GO levels of a wiring, deepest first; each level reads ``[genes | all deeper terms]`` in one product.

    Parameters
    ----------
    wiring
        The compiled wiring.
    input_sizes
        Neurons of each input node (gene nodes, or single features when there is no gene layer).
    input_term
        ``(2, k)`` (input node, term) connections.
    activation
        Activation inside each level.
    linear_path
        Add a parallel linear path on the same structure (``act(W1 x + b1) + W2 x + b2``), as the original does.
    """

    def __init__(
        self,
        wiring: Wiring,
        input_sizes: np.ndarray,
        input_term: np.ndarray,
        activation: str = "relu",
        linear_path: bool = True,
    ):
        super().__init__()
        n_inputs = len(input_sizes)
        term_offset = np.concatenate([[0], np.cumsum(wiring.term_size)]).astype(np.int64)
        self.level_depths: list[int] = []
        self.level_slices: list[tuple[int, int]] = []  # neuron range of each level in the concatenated term vector
        self.levels = nn.ModuleList()
        for depth, terms in wiring.levels:
            in_sizes = np.concatenate([input_sizes, wiring.term_size[: terms.start]])
            out_sizes = wiring.term_size[terms]
            from_inputs = input_term[:, (input_term[1] >= terms.start) & (input_term[1] < terms.stop)]
            child, parent = wiring.term_term
            from_terms = np.stack([child, parent])[:, (parent >= terms.start) & (parent < terms.stop)]
            connections = np.concatenate(
                [
                    np.stack([from_inputs[0], from_inputs[1] - terms.start]),
                    np.stack([from_terms[0] + n_inputs, from_terms[1] - terms.start]),
                ],
                axis=1,
            )
            self.levels.append(_TwoPathBlockLayer(in_sizes, out_sizes, connections, activation, linear_path))
            self.level_depths.append(depth)
            self.level_slices.append((int(term_offset[terms.start]), int(term_offset[terms.stop])))
        self.n_output = int(wiring.term_size[-1])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Activations of the top node (``n, root_size``) from the input-node activations ``h``."""
        state = h
        out = h
        for level in self.levels:
            out = level(state)
            state = torch.cat([state, out], dim=1)
        return out


class WiredEncoder(nn.Module):
    """One modality's encoder: gene layer, optional interaction layers, GO network, Gaussian heads.

    Parameters
    ----------
    wiring
        The modality's compiled wiring.
    n_latent
        Latent dimensions.
    gene_layer
        ``"standard"`` (features -> gene nodes), ``"interaction"`` (standard + gene–gene layers) or ``"none"``
        (features straight into GO terms).
    n_interaction_layers
        Stacked interaction layers when ``gene_layer="interaction"``.
    activation
        ``relu``, ``leaky_relu`` or ``hardswish``.
    dropout_rate
        Dropout after the gene layer and in the optional covariate projection.
    linear_path
        The original's parallel linear path in the gene layer and every GO level.
    n_cat_list, n_cont
        Categories per categorical covariate and number of continuous covariates for the covariate projection.
    inject_covariates
        After the GO root, a dense layer (scvi-tools ``FCLayers``) that sees the covariates (the original's
        ``last_layer_inject_covariates``); otherwise LayerNorm + activation.
    var_eps
        Floor added to the posterior variance.
    """

    def __init__(
        self,
        wiring: Wiring,
        n_latent: int,
        *,
        gene_layer: GeneLayerType = "standard",
        n_interaction_layers: int = 1,
        activation: str = "relu",
        dropout_rate: float = 0.1,
        linear_path: bool = True,
        n_cat_list: Iterable[int] | None = None,
        n_cont: int = 0,
        inject_covariates: bool = False,
        var_eps: float = 1e-4,
    ):
        super().__init__()
        if gene_layer not in ("none", "standard", "interaction"):
            raise ValueError(f"gene_layer must be 'none', 'standard' or 'interaction', got {gene_layer!r}.")
        self.gene_layer = GeneLayer(wiring, activation, dropout_rate, linear_path) if gene_layer != "none" else None
        n_stack = n_interaction_layers if gene_layer == "interaction" else 0
        self.interaction_layers = nn.ModuleList([InteractionLayer(wiring, activation) for _ in range(n_stack)])
        if self.gene_layer is not None:
            input_sizes, input_term = np.full(wiring.n_genes, wiring.gene_size), wiring.gene_term
        else:  # each feature feeds the terms of every gene it maps to
            feature_of, gene_of = wiring.feature_gene
            pairs = {(int(f), int(t)) for f, g in zip(feature_of, gene_of, strict=True) for t in _terms_of(wiring, g)}
            input_sizes = np.ones(wiring.n_features, dtype=np.int64)
            input_term = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2).T
        self.go_network = GONetwork(wiring, input_sizes, input_term, activation, linear_path)
        n_hidden = self.go_network.n_output
        self.inject_covariates = inject_covariates
        if inject_covariates:
            self.covariate_layer = FCLayers(
                n_in=n_hidden,
                n_out=n_hidden,
                n_cat_list=list(n_cat_list or []),
                n_cont=n_cont,
                n_layers=1,
                n_hidden=n_hidden,
                dropout_rate=dropout_rate,
                use_batch_norm=False,
                use_layer_norm=True,
            )
        else:
            self.norm = nn.LayerNorm(n_hidden, elementwise_affine=False)
            self.activation = activation_module(activation)
        self.mean_encoder = nn.Linear(n_hidden, n_latent)
        self.var_encoder = nn.Linear(n_hidden, n_latent)
        self.var_eps = var_eps

    def hidden(self, x: torch.Tensor, *cat_list: torch.Tensor, cont: torch.Tensor | None = None) -> torch.Tensor:
        """The representation fed to the Gaussian heads."""
        h = self.gene_layer(x) if self.gene_layer is not None else x
        for layer in self.interaction_layers:
            h = layer(h)
        h = self.go_network(h)
        if self.inject_covariates:
            return self.covariate_layer(h, *cat_list, cont=cont)
        return self.activation(self.norm(h))

    def forward(self, x: torch.Tensor, *cat_list: torch.Tensor, cont: torch.Tensor | None = None):
        """Posterior mean, variance and a reparameterised sample."""
        h = self.hidden(x, *cat_list, cont=cont)
        q_m = self.mean_encoder(h)
        q_v = torch.exp(self.var_encoder(h)) + self.var_eps
        return q_m, q_v, Normal(q_m, q_v.sqrt()).rsample()


def _terms_of(wiring: Wiring, gene: int) -> np.ndarray:
    return wiring.gene_term[1][wiring.gene_term[0] == gene]
