"""The gene layer (features -> gene nodes), its dropout, and the gene–gene interaction layer."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from scvi_networkvi.wiring import Wiring

from ._block_sparse import BlockSparseLinear
from ._fused_gene_interaction import EdgePlan, FusedGeneInteraction
from ._fused_gene_layer import FusedGeneLayer, GenePlan
from ._keep_mask import keep_mask
from ._two_path import _activate, _TwoPathBlockLayer, activation_module


class WideDropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with a cheaper sampler of the keep mask (:func:`keep_mask`) on CPU.

    Same semantics (each element zeroed independently with probability ``p`` in training, the rest scaled by
    ``1 / (1 - p)``, identity in eval mode), seeded by torch's generator as usual. The mask is applied as a float
    tensor: mixed bool/float arithmetic and ``torch.where`` are several times slower on CPU than a float multiply.
    The gene layer fuses this dropout into its own kernel when it can (see :class:`GeneLayer`).
    """

    def active(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward` draws a mask for ``x`` with :func:`keep_mask` (training, ``0 < p < 1``, CPU)."""
        return self.training and 0.0 < self.p < 1.0 and x.device.type == "cpu" and x.is_floating_point()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active(x):
            return super().forward(x)
        mask = keep_mask(x.shape, self.p, x.dtype).mul_(1.0 / (1.0 - self.p))
        return x.mul_(mask) if self.inplace else x * mask


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
        self.dropout = WideDropout(dropout_rate)
        self.gene_plan: GenePlan | bool | None = None  # built on first use by forward_t_with (False: not fusable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gene-node activations ``(n, n_genes * gene_size)`` from the features ``(n, n_features)``."""
        return self.forward_t(x.t()).t().contiguous()

    def _fused_inputs(self, xt: torch.Tensor) -> tuple | None:
        """``(plan, w1, b1, w2, b2, mask, scale)`` for the fused CPU kernels, or ``None`` where they do not apply.

        They apply to the two-path layer of single features (one or several per gene) with ReLU, on a float32 /
        float64 CPU input of the parameters' dtype that needs no gradient. The dropout mask is the one
        :meth:`forward_t` draws for the same seed.
        """
        layer = self.layer
        gene_linear = layer.linear
        if (
            not layer.linear_path
            or type(layer.activation) is not nn.ReLU
            or len(gene_linear.weights) != 1
            or gene_linear.groups[0][0] != 1
            or gene_linear.bias is None
            or xt.device.type != "cpu"
            or xt.requires_grad
            or xt.dtype not in (torch.float32, torch.float64)
            or gene_linear.weights[0].dtype != xt.dtype
        ):
            return None
        size = gene_linear.groups[0][1]
        n_genes = layer.n_out // size
        if self.gene_plan is None:
            self.gene_plan = GenePlan.from_connections(gene_linear.connections, n_genes) or False
        if self.gene_plan is False:  # the two paths read different features
            return None
        flat = gene_linear.weights[0].reshape(-1, size)
        w1, w2 = flat.index_select(0, self.gene_plan.edge1), flat.index_select(0, self.gene_plan.edge2)
        b1, b2 = gene_linear.bias.view(2, n_genes, size).unbind(0)
        mask, scale = None, 1.0
        if self.dropout.active(xt):
            mask = keep_mask((n_genes, size, xt.shape[1]), self.dropout.p, torch.uint8).numpy()
            scale = 1.0 / (1.0 - self.dropout.p)
        return self.gene_plan, w1, b1, w2, b2, mask, scale

    def forward_t_with(self, xt: torch.Tensor, interaction: InteractionLayer) -> torch.Tensor | None:
        """Run this layer, then ``interaction``, as one CPU kernel (:class:`FusedGeneInteraction`), or return ``None``.

        ``None`` (the caller runs the two layers) unless the gene layer's fused kernels apply (see
        :meth:`forward_t`) and ``interaction`` is a ReLU layer of the gene nodes' size.
        """
        linear = interaction.linear
        if (
            type(interaction.activation) is not nn.ReLU
            or len(linear.weights) != 1
            or linear.bias is None
            or linear.weights[0].dtype != xt.dtype
        ):
            return None
        gene_groups = self.layer.linear.groups  # checked before _fused_inputs draws a dropout mask
        if len(gene_groups) != 1 or linear.groups[0] != (gene_groups[0][1],) * 2 or linear.n_out != self.layer.n_out:
            return None
        inputs = self._fused_inputs(xt)
        if inputs is None:
            return None
        plan = inputs[0]
        if interaction.edge_plan is None:
            interaction.edge_plan = EdgePlan.from_connections(linear.connections, len(plan.ptr) - 1)
        return FusedGeneInteraction.apply(xt, *inputs, linear.weights[0], linear.bias, interaction.edge_plan)

    def forward_t(self, xt: torch.Tensor, fused: bool = True) -> torch.Tensor:
        """Feature-major: ``(n_features, n)`` -> ``(n_genes * gene_size, n)``.

        ``fused``: one CPU kernel (:class:`FusedGeneLayer`) where it applies: the two-path ReLU layer of single
        features, a float32 / float64 CPU input of the parameters' dtype that needs no gradient; else (or with
        ``False``) the torch layers.
        """
        inputs = self._fused_inputs(xt) if fused else None
        if inputs is not None:
            return FusedGeneLayer.apply(xt, *inputs)
        if self.dropout.active(xt) and self.layer.fuses_dropout:  # same mask, applied inside the layer's kernel
            return self.layer.forward_t(xt, dropout=self.dropout.p)
        return self.dropout(self.layer.forward_t(xt))


class InteractionLayer(nn.Module):
    """Gene nodes -> gene nodes along the wiring's gene–gene edges (self loops included): ``act(W h + b) + h``."""

    def __init__(self, wiring: Wiring, activation: str = "relu"):
        super().__init__()
        sizes = np.full(wiring.n_genes, wiring.gene_size)
        self.linear = BlockSparseLinear(sizes, sizes, wiring.gene_edges)
        self.activation = activation_module(activation)
        self.edge_plan: EdgePlan | None = None  # built on first use by GeneLayer.forward_t_with

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``act(W h + b) + h`` over the gene nodes, ``(n, n_genes * gene_size)``."""
        return self.forward_t(h.t()).t().contiguous()

    def forward_t(self, ht: torch.Tensor) -> torch.Tensor:
        """Feature-major: ``(n_genes * gene_size, n)`` -> same shape."""
        if type(self.activation) is nn.ReLU:  # one kernel node, its backward starts from the skip's gradient
            return self.linear.forward_t_relu_residual(ht)
        return _activate(self.activation, self.linear.forward_t(ht)) + ht
