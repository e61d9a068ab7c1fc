"""Encoders wired by a :class:`~scvi_networkvi.wiring.Wiring`: features -> gene nodes -> GO levels -> latent.

The layers live in their own modules (:mod:`._two_path`, :mod:`._gene_layers`, :mod:`._go_network`); their names
stay importable from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from scvi.nn import FCLayers
from torch import nn
from torch.distributions import Normal

from scvi_networkvi.wiring import Wiring

from ._attention import CovariateAttention, covariate_vector, covariate_width
from ._block_csr_eval import needs_grad
from ._gene_layers import GeneLayer, InteractionLayer, WideDropout
from ._go_network import GONetwork, GONorm
from ._keep_mask import keep_mask
from ._options import check_choices
from ._sparse_counts import SparseCounts
from ._two_path import (
    ACTIVATIONS,
    _ElementwiseTwoPathReLU,
    _GatheredTwoPathReLU,
    _input_slots,
    _TwoPathBlockLayer,
    activation_module,
)

__all__ = [
    "ACTIVATIONS",
    "GeneLayer",
    "GONetwork",
    "InteractionLayer",
    "WideDropout",
    "WiredEncoder",
    "_ElementwiseTwoPathReLU",
    "_GatheredTwoPathReLU",
    "_TwoPathBlockLayer",
    "_input_slots",
    "activation_module",
    "keep_mask",
    "transposed",
]

GeneLayerType = Literal["none", "standard", "interaction"]


def transposed(x: torch.Tensor) -> torch.Tensor:
    """``x.t().contiguous()`` for a 2-D ``x``, written through the transposed view of a new tensor.

    torch copies into a transposed destination with its blocked, multi-threaded kernel, while ``contiguous()`` takes a
    slower path for this layout (128 x 4000 floats: 0.13 vs 0.44 ms on two threads, 0.32 vs 0.44 ms on one).
    """
    out = x.new_empty(x.shape[1], x.shape[0])
    out.t().copy_(x)
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
    covariate_attention
        GO-specific covariate attention (the original's section 4.5): every neuron attends over the covariate vector
        ``[one-hot batch and categorical covariates | continuous covariates]``. ``"genes"``: on the gene-node
        output; ``"go"``: on every GO level but the deepest; ``"all"``: both (the original's
        ``deeply_inject_covariates`` for GO encoders). Needs covariates (``NetworkVAE``'s ``encode_covariates=True``).
    go_norm
        ``"batch"``: batch-normalise every GO level's output (each neuron over the cells of the minibatch; running
        statistics at inference), see :class:`GONetwork`. ``"none"``: the original's un-normalised GO network, whose
        encoders of large modalities collapse: a GO term sums many non-negative gene activations, the top node
        becomes a function of the cell's total signal alone and the posterior falls back to the prior (results
        page).
    head_input
        What the posterior heads read: ``"root"``, the top node's neurons (the original), or ``"levels"``, the
        neurons of every GO level, root included, so that each term also reaches the latent without passing the
        narrower levels above it. Either way the latent is a function of GO-term activations only.
    var_eps
        Floor added to the posterior variance.

    Notes
    -----
    A new option of the GO encoder is a keyword here, documented above (with its allowed values in :attr:`CHOICES`
    for a choice). :class:`~scvi_networkvi.module.NetworkVAE` passes its ``**encoder_kwargs`` on to this class, and
    ``NETWORKVI`` its ``**model_kwargs`` to the module, so both accept it and check it before building anything.
    """

    #: Allowed values of the choice options, checked by :meth:`check_options` (a new choice option: add it here).
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "gene_layer": ("none", "standard", "interaction"),
        "activation": tuple(ACTIVATIONS),
        "covariate_attention": ("none", "genes", "go", "all"),
        "go_norm": ("batch", "none"),
        "head_input": ("root", "levels"),
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise a ValueError for a choice option of ``options`` (name -> value) outside its allowed values."""
        check_choices(options, cls.CHOICES)

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
        covariate_attention: Literal["none", "genes", "go", "all"] = "none",
        go_norm: GONorm = "batch",
        head_input: Literal["root", "levels"] = "root",
        var_eps: float = 1e-4,
    ):
        self.check_options({name: value for name, value in locals().items() if name in self.CHOICES})
        super().__init__()
        self.head_input = head_input
        self.n_features = wiring.n_features
        self.n_cat_list = list(n_cat_list or [])
        n_covariates = covariate_width(self.n_cat_list, n_cont)
        if covariate_attention != "none" and n_covariates == 0:
            raise ValueError(
                "covariate_attention needs covariates: encode them (encode_covariates=True) and have a batch or "
                "categorical covariate with more than one category, or continuous covariates."
            )
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
        # As the original: "genes" attends on the gene-node output, "go" on every GO level but the deepest, "all" both.
        go_levels = [d for d, _ in wiring.levels][1:] if covariate_attention in ("go", "all") else []
        self.gene_attention = (
            CovariateAttention(wiring.n_genes * wiring.gene_size, n_covariates)
            if covariate_attention in ("genes", "all") and self.gene_layer is not None
            else None
        )
        self.go_network = GONetwork(
            wiring,
            input_sizes,
            input_term,
            activation,
            linear_path,
            n_covariates=n_covariates,
            attention_levels=go_levels,
            norm=go_norm,
        )
        # Parameter-free tap on the gene-node activations that feed the GO network, ``(n_genes * gene_size, n)``.
        self.gene_tap = nn.Identity() if self.gene_layer is not None else None
        #: run the gene layer (with the first interaction layer, if any) as one CPU kernel where it applies (see
        #: GeneLayer.forward_t / forward_t_with); ``False``: the torch layers (tests, benchmarks)
        self.fuse_gene_layers = True
        #: without autograd on CPU, compute the GO levels' gene-node products from the nonzero counts where it
        #: applies (:meth:`forward_counts`, :mod:`._sparse_counts`); ``False``: the dense path (tests, benchmarks)
        self.sparse_counts = True
        self._sparse_path: SparseCounts | None | bool = None  # built on first use (False: does not apply)
        n_hidden = self.go_network.n_output if head_input == "root" else self.go_network.n_level_neurons
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

    def hidden(
        self, x: torch.Tensor, *cat_list: torch.Tensor, cont: torch.Tensor | None = None, feature_major: bool = False
    ) -> torch.Tensor:
        """The representation fed to the Gaussian heads; ``feature_major``: ``x`` is given as ``(n_features, n)``."""
        # Feature-major (neurons x cells) up to the GO root: each gene node's neurons are whole rows, which the
        # block-sparse layers gather and write far faster than column slivers (see BlockSparseLinear).
        h = x if feature_major else transposed(x)
        u = covariate_vector(self.n_cat_list, cat_list, cont) if self.n_cat_list or cont is not None else None
        interaction_layers = list(self.interaction_layers)
        if self.gene_layer is not None:
            fused = None
            if self.fuse_gene_layers and interaction_layers and self.gene_attention is None:
                fused = self.gene_layer.forward_t_with(h, interaction_layers[0])
            if fused is None:
                h = self.gene_layer.forward_t(h, fused=self.fuse_gene_layers)
            else:
                h, interaction_layers = fused, interaction_layers[1:]
        if self.gene_attention is not None:
            h = self.gene_attention(h.t(), u).t().contiguous()
        for layer in interaction_layers:
            h = layer.forward_t(h)
        if self.gene_tap is not None:
            h = self.gene_tap(h)
        h = self.go_network.forward_t(h, u, all_levels=self.head_input == "levels").t()
        return self._head_input(h, cat_list, cont)

    def _head_input(self, h: torch.Tensor, cat_list, cont: torch.Tensor | None) -> torch.Tensor:
        """The Gaussian heads' input from the GO network's output ``h`` (cells x neurons)."""
        if self.inject_covariates:
            return self.covariate_layer(h, *cat_list, cont=cont)
        return self.activation(self.norm(h))

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state["_sparse_path"] = None  # a cache of index arrays and weight copies: rebuilt on first use
        return state

    def _counts_path(self) -> SparseCounts | None:
        """The inference from the counts for this encoder's structure, built once; ``None`` where it cannot apply."""
        if getattr(self, "_sparse_path", None) is None:
            gene = self.gene_layer.layer if self.gene_layer is not None else None
            levels = list(self.go_network.levels)
            fits = not self.interaction_layers and self.gene_attention is None and SparseCounts.supports(gene, levels)
            n_features = getattr(self, "n_features", None)
            fits = fits and n_features is not None
            self._sparse_path = SparseCounts(gene, levels, n_features) if fits else False
        return self._sparse_path or None

    def forward_counts(
        self,
        x: torch.Tensor,
        batch: torch.Tensor,
        shift: torch.Tensor | None,
        scale: torch.Tensor | None,
        *cat_list: torch.Tensor,
        cont: torch.Tensor | None = None,
    ):
        """:meth:`forward` of ``(log1p(x) - shift[batch]) * scale[batch]`` from the counts ``x``, or ``None``.

        Runs the GO levels' gene-node products on the nonzero counts only (:mod:`._sparse_counts`, the same result
        within float rounding) and returns what :meth:`forward` returns; ``None`` (the caller takes the dense path)
        in training mode, with autograd, with a hook on the gene tap (the gene-node activations are never
        computed), where :attr:`sparse_counts` or an inference kernel is off, where the structure does not fit (a
        gene–gene layer, gene attention, a gene layer reading several features per gene) and for dense counts.
        """
        gene = self.gene_layer.layer if self.gene_layer is not None else None
        levels = list(self.go_network.levels)
        kernels = all(level.eval_kernel and level.linear.eval_kernel for level in levels)
        kernels = kernels and (gene is None or gene.eval_kernel)
        tapped = self.gene_tap is not None and bool(self.gene_tap._forward_hooks or self.gene_tap._forward_pre_hooks)
        # grad mode first: in inference no walk over the parameters
        grad = torch.is_grad_enabled() and needs_grad(x, *self.parameters())
        if not self.sparse_counts or self.training or not kernels or tapped or grad or x.device.type != "cpu":
            return None
        path = self._counts_path()
        products = path.level_products(x, batch, shift, scale) if path is not None else None
        if products is None:
            return None

        def level_product(i: int, terms: list[torch.Tensor]) -> torch.Tensor:
            deeper = path.term_product(i, terms)
            return products[i] if deeper is None else products[i].add_(deeper)

        u = covariate_vector(self.n_cat_list, cat_list, cont) if self.n_cat_list or cont is not None else None
        h = self.go_network.forward_t(None, u, all_levels=self.head_input == "levels", products=level_product)
        return self._heads(self._head_input(h.t(), cat_list, cont))

    def forward(
        self, x: torch.Tensor, *cat_list: torch.Tensor, cont: torch.Tensor | None = None, feature_major: bool = False
    ):
        """Posterior mean, variance and a reparameterised sample.

        ``x``: the input, cells x features, or features x cells with ``feature_major`` (what the encoder computes
        on; :class:`~scvi_networkvi.module.NetworkVAE` writes its CPU input transform in that layout).
        """
        return self._heads(self.hidden(x, *cat_list, cont=cont, feature_major=feature_major))

    def _heads(self, h: torch.Tensor):
        """Posterior mean, variance and a reparameterised sample from the heads' input ``h``."""
        q_m = self.mean_encoder(h)
        q_v = torch.exp(self.var_encoder(h)) + self.var_eps
        return q_m, q_v, Normal(q_m, q_v.sqrt(), validate_args=False).rsample()


def _terms_of(wiring: Wiring, gene: int) -> np.ndarray:
    return wiring.gene_term[1][wiring.gene_term[0] == gene]
