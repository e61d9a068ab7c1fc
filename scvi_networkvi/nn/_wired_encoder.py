"""Encoders wired by a :class:`~scvi_networkvi.wiring.Wiring`: features -> gene nodes -> GO levels -> latent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from scvi.nn import FCLayers
from torch import nn
from torch.autograd.function import once_differentiable
from torch.distributions import Normal

from scvi_networkvi.wiring import Wiring

from ._attention import CovariateAttention, covariate_vector, covariate_width
from ._block_sparse import BlockSparseLinear
from ._fused_gene_interaction import EdgePlan, FusedGeneInteraction, GenePlan
from ._keep_mask import keep_mask
from ._level_norm import LevelBatchNorm
from ._options import check_choices

GeneLayerType = Literal["none", "standard", "interaction"]
GONorm = Literal["batch", "none"]
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "hardswish": nn.Hardswish}


def activation_module(name: str) -> nn.Module:
    """The activation called ``name`` (``relu``, ``leaky_relu``, ``hardswish``)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}.") from None


def _activate(activation: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """``activation(y)``, in place for ReLU: ``y`` is a fresh product nothing else reads (one less full-size write)."""
    return torch.relu_(y) if type(activation) is nn.ReLU else activation(y)


def transposed(x: torch.Tensor) -> torch.Tensor:
    """``x.t().contiguous()`` for a 2-D ``x``, written through the transposed view of a new tensor.

    torch copies into a transposed destination with its blocked, multi-threaded kernel, while ``contiguous()`` takes a
    slower path for this layout (128 x 4000 floats: 0.13 vs 0.44 ms on two threads, 0.32 vs 0.44 ms on one).
    """
    out = x.new_empty(x.shape[1], x.shape[0])
    out.t().copy_(x)
    return out


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


class _TwoPathBlockLayer(nn.Module):
    """``act(W1 x + b1) + (W2 x + b2)`` with W1 and W2 on the same block structure, computed as one product.

    When every output block reads a single input neuron (the gene layer with one feature per gene) both paths are
    elementwise and are computed without the stacked product (see :meth:`forward_t`).
    """

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
        single = self.linear.single_input_blocks() if linear_path else None
        rows = None
        if single is not None:
            rows, blocks = single[0], len(single[0]) // 2
            rows = rows[:blocks] if torch.equal(rows[:blocks], rows[blocks:]) else None  # both paths read the same
        self.register_buffer("_single_rows", rows, persistent=False)
        # Several single-neuron inputs per output block (a peak feeds ~2 genes, a gene reads 1-6 peaks): the fused
        # gathered kernel, one slot (input rank within its block) at a time; see _GatheredTwoPathReLU.
        slots = _input_slots(self.linear, len(out_sizes) // 2) if linear_path and rows is None else None
        self._slot_sizes: list[int] = [] if slots is None else slots["sizes"]
        self._slot_pad = bool(slots is not None and slots["pad"])
        for name in ("src", "edge1", "edge2", "blocks"):
            self.register_buffer(f"_slot_{name}", None if slots is None else slots[name], persistent=False)

    @property
    def fuses_dropout(self) -> bool:
        """Whether :meth:`forward_t` can apply dropout itself (the elementwise and gathered ReLU paths)."""
        fused = self._single_rows is not None or bool(self._slot_sizes)
        return fused and type(self.activation) is nn.ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_t(x.t()).t().contiguous()

    def forward_t(self, xt: torch.Tensor | Sequence[torch.Tensor], dropout: float = 0.0) -> torch.Tensor:
        """Feature-major: ``(n_in, n)`` (or row blocks of it) -> ``(n_out, n)``; the paths are row ranges.

        ``dropout``: drop probability of a dropout applied to the output (CPU, only where :attr:`fuses_dropout`);
        the same mask as :class:`WideDropout` on the output draws for the same seed.
        """
        if dropout and not (self.fuses_dropout and isinstance(xt, torch.Tensor)):
            raise ValueError("_TwoPathBlockLayer: dropout is fused only on the elementwise ReLU path.")
        if self._single_rows is not None and isinstance(xt, torch.Tensor):
            # Every output block reads one input neuron (one feature per gene): both paths are elementwise
            # ``w * x + b`` on the same gathered rows, so neither the stacked (2 n_out, n) product nor its gradient
            # is ever materialised.
            _, weight = self.linear.single_input_blocks()
            blocks = len(self._single_rows)
            x = xt.index_select(0, self._single_rows).unsqueeze(1)  # (blocks, 1, n)
            bias = self.linear.bias.view(2 * blocks, -1, 1)
            w1, w2, b1, b2 = weight[:blocks], weight[blocks:], bias[:blocks], bias[blocks:]
            if type(self.activation) is nn.ReLU:
                mask = keep_mask((blocks, w1.shape[1], x.shape[-1]), dropout, x.dtype) if dropout else None
                return _ElementwiseTwoPathReLU.apply(x, w1, b1, w2, b2, mask, 1.0 / (1.0 - dropout))
            nonlinear = self.activation(torch.addcmul(b1, w1, x))
            return torch.addcmul(b2, w2, x).add_(nonlinear).view(self.n_out, -1)
        if self._slot_sizes and type(self.activation) is nn.ReLU and isinstance(xt, torch.Tensor):
            # Output blocks read several single neurons (peaks -> genes): both paths are sums of elementwise
            # products, gathered slot by slot, instead of the block kernel's stacked (2 n_out, n) product.
            shape = (self._slot_sizes[0], self.n_out // self._slot_sizes[0], xt.shape[1])
            mask = keep_mask(shape, dropout, xt.dtype) if dropout else None
            return _GatheredTwoPathReLU.apply(
                self, xt, self.linear.weights[0], self.linear.bias, mask, 1.0 / (1.0 - dropout)
            )
        y = self.linear.forward_t(xt)
        if not self.linear_path:
            return self.activation(y)
        # split, not two slices: its backward writes one gradient tensor instead of two zero-filled full-size ones
        nonlinear, linear = torch.split(y, self.n_out)
        return self.activation(nonlinear) + linear


class _ElementwiseTwoPathReLU(torch.autograd.Function):
    """``mask * scale * (relu(w1 * x + b1) + (w2 * x + b2))``, elementwise, with an optional dropout mask.

    ``x`` is ``(blocks, 1, n)``, ``w`` and ``b`` ``(blocks, size, 1)``, the keep ``mask`` ``(blocks, size, n)``
    (``None``: no dropout).

    Dropout's ``scale = 1 / (1 - p)`` is folded into the four small parameter tensors (``scale * relu(a) =
    relu(scale * a)`` as ``scale > 0``), so the mask costs one multiply each way. The weight gradients are batched
    matmuls of the output gradient with ``x`` (reads only), where autograd's addcmul backward would write ``grad * x``
    in full before reducing it; the ReLU mask comes from the saved activation.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, mask=None, scale=1.0):
        if mask is not None:
            w1, b1, w2, b2 = (t * scale for t in (w1, b1, w2, b2))
        hidden = torch.addcmul(b1, w1, x).relu_()
        ctx.save_for_backward(x, w1, w2, hidden, mask)
        ctx.scale = scale if mask is not None else 1.0
        # Returned as (blocks * size, n) itself, not as a view of a (blocks, size, n) result: in-place operations on
        # a view of a custom function's output make autograd rebuild the whole base in the backward pass.
        out = x.new_empty(hidden.shape[0] * hidden.shape[1], x.shape[-1])
        result = torch.addcmul(b2, w2, x, out=out.view(hidden.shape)).add_(hidden)
        if mask is not None:
            result.mul_(mask)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, w1, w2, hidden, mask = ctx.saved_tensors
        grad = grad.contiguous().view(hidden.shape)
        # One full-size temporary: the masked gradient (dropout), which the ReLU's gradient overwrites in place once
        # the linear path has used it (one allocation and one pass less); without dropout the ReLU's gradient alone.
        if mask is not None:
            grad = temp = grad * mask
        else:
            temp = torch.empty_like(grad)
        xt = x.transpose(1, 2)  # (blocks, n, 1): bmm takes this view as is; a contiguous [x | 1] is much slower
        grads = [None, None, torch.bmm(grad, xt), grad.sum(-1, keepdim=True)]
        grad_x = None
        if ctx.needs_input_grad[0]:  # w1, w2 are the scaled weights the forward pass used
            grad_x = torch.bmm(w2.transpose(1, 2), grad)
        grad_hidden = torch.ops.aten.threshold_backward.grad_input(grad, hidden, 0, grad_input=temp)
        if grad_x is not None:
            grad_x.baddbmm_(w1.transpose(1, 2), grad_hidden)
        grads[:2] = torch.bmm(grad_hidden, xt), grad_hidden.sum(-1, keepdim=True)
        if ctx.scale != 1.0:
            grads = [g.mul_(ctx.scale) for g in grads]
        return grad_x, *grads, None, None


def _input_slots(linear: BlockSparseLinear, n_blocks: int) -> dict | None:
    """Index plan of :class:`_GatheredTwoPathReLU` for a two-path layer of single-neuron inputs, or ``None``.

    Applies when ``linear`` (the two paths stacked: output blocks ``[0, n_blocks)`` then their copies) has one
    parameter group of ``(1, size)`` blocks and both paths read the same inputs. Slot ``i`` holds the ``i``-th input
    (in parameter order) of every block that has more than ``i``; slot 0 lists every block in order, blocks without
    input reading a zero weight appended after the parameters (``pad``). Per slot entry: its input row (``src``),
    the parameter index of its path-1 and path-2 connection (``edge1``, ``edge2``) and, from slot 1 on, its output
    block (``blocks``).
    """
    if len(linear.groups) != 1 or linear.groups[0][0] != 1 or linear.n_out != 2 * n_blocks * linear.groups[0][1]:
        return None
    src, dst = linear.connections  # parameter order (one group)
    first = np.flatnonzero(dst < n_blocks)
    second = np.flatnonzero(dst >= n_blocks)
    # both sorted by (input, block): the paths share their structure iff the keys agree entry by entry
    if not np.array_equal(src[first], src[second]) or not np.array_equal(dst[first], dst[second] - n_blocks):
        return None
    order = first[np.lexsort((first, dst[first]))]  # by block, then parameter order
    block = dst[order]
    counts = np.bincount(block, minlength=n_blocks)
    rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    partner = np.empty(len(linear.connections[0]), dtype=np.int64)
    partner[first] = second
    pad_edge = len(src)
    srcs, edges1, edges2, blocks, sizes = [], [], [], [], []
    for i in range(int(counts.max()) if len(counts) else 0):
        sel = order[rank == i]
        if i == 0:
            edge1, edge2 = np.full(n_blocks, pad_edge, dtype=np.int64), np.full(n_blocks, pad_edge, dtype=np.int64)
            edge1[dst[sel]], edge2[dst[sel]] = sel, partner[sel]
            row = np.zeros(n_blocks, dtype=np.int64)  # blocks without input: any row, times the zero weight
            row[dst[sel]] = src[sel]
            edges1.append(edge1)
            edges2.append(edge2)
            srcs.append(row)
        else:
            blocks.append(dst[sel])
            edges1.append(sel)
            edges2.append(partner[sel])
            srcs.append(src[sel])
        sizes.append(len(srcs[-1]))
    if not sizes:
        return None

    def tensor(parts):
        return torch.as_tensor(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))

    return {
        "sizes": sizes,
        "pad": bool((counts == 0).any()),
        "src": tensor(srcs),
        "edge1": tensor(edges1),
        "edge2": tensor(edges2),
        "blocks": tensor(blocks),
    }


class _GatheredTwoPathReLU(torch.autograd.Function):
    """``mask * scale * (relu(W1 x + b1) + (W2 x + b2))`` for output blocks that read single input neurons.

    The multi-input generalisation of :class:`_ElementwiseTwoPathReLU` (ATAC: a peak feeds ~2 genes, a gene reads
    1-6 peaks), planned by :func:`_input_slots`: slot 0 is one elementwise ``addcmul`` over every block, each later
    slot (few blocks) an ``index_add_`` of its products. Neither the stacked ``(2 n_out, n)`` product of the block
    kernel nor its gradient exists, the inputs are gathered once per connection (``(connections, n)``, not per
    output neuron), and the weight gradients are per-connection dot products (batched matrix-vector products).

    ``layer`` holds the plan, ``weight`` is the ``(e, 1, size)`` parameter, ``bias`` the ``(2 n_out,)`` one, ``mask``
    a ``(blocks, size, n)`` keep mask or ``None``; dropout's ``scale`` is folded into the gathered weights and biases
    as in :class:`_ElementwiseTwoPathReLU`. Differentiable once.
    """

    @staticmethod
    def forward(ctx, layer, xt, weight, bias, mask=None, scale=1.0):
        sizes, size = layer._slot_sizes, weight.shape[2]
        blocks, n = sizes[0], xt.shape[1]
        flat = weight.reshape(-1, size)
        if layer._slot_pad:  # blocks without input read a zero weight
            flat = torch.cat([flat, flat.new_zeros(1, size)])
        w1 = flat.index_select(0, layer._slot_edge1)  # (entries, size)
        w2 = flat.index_select(0, layer._slot_edge2)
        b1, b2 = bias.view(2, blocks, size, 1).unbind(0)
        if mask is not None:
            w1, w2, b1, b2 = (t * scale for t in (w1, w2, b1, b2))
        x = xt.index_select(0, layer._slot_src)  # (entries, n): each connection's input row, gathered once
        xs, w1s, w2s = x.split(sizes), w1.split(sizes), w2.split(sizes)
        targets = layer._slot_blocks.split(sizes[1:]) if len(sizes) > 1 else ()
        hidden = torch.addcmul(b1, w1s[0][:, :, None], xs[0][:, None, :])
        for target, xi, wi in zip(targets, xs[1:], w1s[1:], strict=True):
            hidden.index_add_(0, target, wi[:, :, None] * xi[:, None, :])
        hidden.relu_()
        # Returned as (blocks * size, n) itself, not a view of a 3-d result (see _ElementwiseTwoPathReLU).
        out = xt.new_empty(blocks * size, n)
        result = torch.addcmul(b2, w2s[0][:, :, None], xs[0][:, None, :], out=out.view(hidden.shape))
        for target, xi, wi in zip(targets, xs[1:], w2s[1:], strict=True):
            result.index_add_(0, target, wi[:, :, None] * xi[:, None, :])
        result.add_(hidden)
        if mask is not None:
            result.mul_(mask)
        ctx.layer = layer
        ctx.scale = scale if mask is not None else 1.0
        ctx.weight_shape = weight.shape
        ctx.save_for_backward(x, w1, w2, hidden, mask)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        layer = ctx.layer
        x, w1, w2, hidden, mask = ctx.saved_tensors
        sizes = layer._slot_sizes
        grad = grad.contiguous().view(hidden.shape)
        # As in _ElementwiseTwoPathReLU: one full-size temporary, which the ReLU's gradient overwrites once the
        # linear path has used the (masked) gradient.
        if mask is not None:
            grad = temp = grad * mask
        else:
            temp = torch.empty_like(grad)
        targets = layer._slot_blocks.split(sizes[1:]) if len(sizes) > 1 else ()
        xs = [xi[:, :, None] for xi in x.split(sizes)]  # (entries, n, 1)
        need_x = ctx.needs_input_grad[1]
        grad_x = torch.zeros_like(x) if need_x else None  # per entry, added to the input rows at the end
        gx = grad_x.split(sizes) if need_x else ()

        def path(g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            """Per-entry weight gradient of one path; adds its input gradient to ``gx``."""
            rows = [g, *(g.index_select(0, target) for target in targets)]
            grads = [torch.bmm(r, xi).squeeze(2) for r, xi in zip(rows, xs, strict=True)]
            if need_x:
                for r, wi, gi in zip(rows, w.split(sizes), gx, strict=True):
                    gi.unsqueeze(1).baddbmm_(wi[:, None, :], r)
            return torch.cat(grads)

        grad_w2, grad_b2 = path(grad, w2), grad.sum(-1)
        grad_hidden = torch.ops.aten.threshold_backward.grad_input(grad, hidden, 0, grad_input=temp)
        grad_w1, grad_b1 = path(grad_hidden, w1), grad_hidden.sum(-1)
        n_params = ctx.weight_shape[0] * ctx.weight_shape[2]
        grad_weight = grad_w1.new_empty(n_params // ctx.weight_shape[2] + layer._slot_pad, ctx.weight_shape[2])
        grad_weight.index_copy_(0, layer._slot_edge1, grad_w1).index_copy_(0, layer._slot_edge2, grad_w2)
        grad_weight = grad_weight[: ctx.weight_shape[0]].view(ctx.weight_shape)
        grad_bias = torch.cat([grad_b1.reshape(-1), grad_b2.reshape(-1)])
        if ctx.scale != 1.0:
            grad_weight, grad_bias = grad_weight * ctx.scale, grad_bias * ctx.scale
        if need_x:
            grad_x = grad_x.new_zeros(layer.linear.n_in, x.shape[1]).index_add_(0, layer._slot_src, grad_x)
        return None, grad_x, grad_weight, grad_bias, None, None


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

    def forward_t_with(self, xt: torch.Tensor, interaction: InteractionLayer) -> torch.Tensor | None:
        """Run this layer and then ``interaction`` as one CPU kernel (:class:`FusedGeneInteraction`), or return ``None``.

        ``None`` (the caller runs the two layers) unless: the two-path layer of single features (one or several per
        gene), ReLU in both layers, ``xt`` a float32 / float64 CPU tensor that needs no gradient, of the parameters'
        dtype. The same dropout mask as :meth:`forward_t` is drawn for the same seed.
        """
        layer, linear = self.layer, interaction.linear
        gene_linear = layer.linear
        if (
            not layer.linear_path
            or type(layer.activation) is not nn.ReLU
            or type(interaction.activation) is not nn.ReLU
            or len(gene_linear.weights) != 1
            or gene_linear.groups[0][0] != 1
            or gene_linear.bias is None
            or len(linear.weights) != 1
            or linear.bias is None
            or xt.device.type != "cpu"
            or xt.requires_grad
            or xt.dtype not in (torch.float32, torch.float64)
            or linear.weights[0].dtype != xt.dtype
        ):
            return None
        size = gene_linear.groups[0][1]
        n_genes = layer.n_out // size
        if linear.groups[0] != (size, size) or linear.n_out != n_genes * size:
            return None
        if self.gene_plan is None:
            self.gene_plan = GenePlan.from_connections(gene_linear.connections, n_genes) or False
        if self.gene_plan is False:  # the two paths read different features
            return None
        if interaction.edge_plan is None:
            interaction.edge_plan = EdgePlan.from_connections(linear.connections, n_genes)
        flat = gene_linear.weights[0].reshape(-1, size)
        w1, w2 = flat.index_select(0, self.gene_plan.edge1), flat.index_select(0, self.gene_plan.edge2)
        b1, b2 = gene_linear.bias.view(2, n_genes, size).unbind(0)
        mask, scale = None, 1.0
        if self.dropout.active(xt):
            mask = keep_mask((n_genes, size, xt.shape[1]), self.dropout.p, torch.uint8).numpy()
            scale = 1.0 / (1.0 - self.dropout.p)
        return FusedGeneInteraction.apply(
            xt, self.gene_plan, w1, b1, w2, b2, mask, scale, linear.weights[0], linear.bias, interaction.edge_plan
        )

    def forward_t(self, xt: torch.Tensor) -> torch.Tensor:
        """Feature-major: ``(n_features, n)`` -> ``(n_genes * gene_size, n)``."""
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
    n_covariates
        Width of the covariate vector that covariate attention reads.
    attention_levels
        GO depths followed by covariate attention.
    norm
        ``"batch"``: every level's output is batch-normalised (:class:`LevelBatchNorm`) before the levels above
        read it; ``"none"``: the original's un-normalised levels.
    """

    def __init__(
        self,
        wiring: Wiring,
        input_sizes: np.ndarray,
        input_term: np.ndarray,
        activation: str = "relu",
        linear_path: bool = True,
        n_covariates: int = 0,
        attention_levels: Sequence[int] = (),
        norm: GONorm = "batch",
    ):
        super().__init__()
        if norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {norm!r}.")
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
            level = _TwoPathBlockLayer(in_sizes, out_sizes, connections, activation, linear_path)
            if not self.levels:
                first_reads_inputs = from_inputs.shape[1] > 0
            # The first level's input gradient is dense; the input rows read by the levels above add to it sparsely.
            level.linear.sparse_first_part_grad = bool(self.levels) and first_reads_inputs
            self.levels.append(level)
            self.level_depths.append(depth)
            self.level_slices.append((int(term_offset[terms.start]), int(term_offset[terms.stop])))
        self.n_output = int(wiring.term_size[-1])
        self.norms = nn.ModuleList(
            [LevelBatchNorm(stop - start) for start, stop in self.level_slices] if norm == "batch" else []
        )
        # Parameter-free taps on each level's output (feature-major), where analysis hooks in (interpret).
        self.level_taps = nn.ModuleList([nn.Identity() for _ in self.levels])
        # Covariate attention after the levels listed by depth (keys are the level positions as strings).
        self.attention = nn.ModuleDict(
            {
                str(i): CovariateAttention(int(wiring.term_size[terms].sum()), n_covariates)
                for i, (depth, terms) in enumerate(wiring.levels)
                if depth in set(attention_levels)
            }
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Activations of the top node (``n, root_size``) from the input-node activations ``h``."""
        return self.forward_t(h.t()).t().contiguous()

    def forward_t(
        self, ht: torch.Tensor, covariates: torch.Tensor | None = None, all_levels: bool = False
    ) -> torch.Tensor:
        """Feature-major :meth:`forward`: ``(n_inputs, n)`` -> ``(root_size, n)``; ``covariates`` feed attention.

        ``all_levels``: return every level's output stacked (``(n_level_neurons, n)``, deepest first, root last).
        """
        # Each level reads [inputs | all deeper terms] as row blocks: the wide input rows are never copied.
        state = [ht]
        for i, level in enumerate(self.levels):
            out = level.forward_t(state)
            if str(i) in self.attention:
                out = self.attention[str(i)](out.t(), covariates).t().contiguous()
            if self.norms:
                out = self.norms[i](out)
            state.append(self.level_taps[i](out))
        return torch.cat(state[1:], 0) if all_levels else state[-1]

    @property
    def n_level_neurons(self) -> int:
        """Neurons of all levels together, root included (the width of ``forward_t(..., all_levels=True)``)."""
        return sum(stop - start for start, stop in self.level_slices)


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
        #: run the gene layer and the first interaction layer as one CPU kernel where it applies (see GeneLayer)
        self.fuse_gene_layers = True
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

    def hidden(self, x: torch.Tensor, *cat_list: torch.Tensor, cont: torch.Tensor | None = None) -> torch.Tensor:
        """The representation fed to the Gaussian heads."""
        # Feature-major (neurons x cells) up to the GO root: each gene node's neurons are whole rows, which the
        # block-sparse layers gather and write far faster than column slivers (see BlockSparseLinear).
        h = transposed(x)
        u = covariate_vector(self.n_cat_list, cat_list, cont) if self.n_cat_list or cont is not None else None
        interaction_layers = list(self.interaction_layers)
        if self.gene_layer is not None:
            fused = None
            if self.fuse_gene_layers and interaction_layers and self.gene_attention is None:
                fused = self.gene_layer.forward_t_with(h, interaction_layers[0])
            if fused is None:
                h = self.gene_layer.forward_t(h)
            else:
                h, interaction_layers = fused, interaction_layers[1:]
        if self.gene_attention is not None:
            h = self.gene_attention(h.t(), u).t().contiguous()
        for layer in interaction_layers:
            h = layer.forward_t(h)
        if self.gene_tap is not None:
            h = self.gene_tap(h)
        h = self.go_network.forward_t(h, u, all_levels=self.head_input == "levels").t()
        if self.inject_covariates:
            return self.covariate_layer(h, *cat_list, cont=cont)
        return self.activation(self.norm(h))

    def forward(self, x: torch.Tensor, *cat_list: torch.Tensor, cont: torch.Tensor | None = None):
        """Posterior mean, variance and a reparameterised sample."""
        h = self.hidden(x, *cat_list, cont=cont)
        q_m = self.mean_encoder(h)
        q_v = torch.exp(self.var_encoder(h)) + self.var_eps
        return q_m, q_v, Normal(q_m, q_v.sqrt(), validate_args=False).rsample()


def _terms_of(wiring: Wiring, gene: int) -> np.ndarray:
    return wiring.gene_term[1][wiring.gene_term[0] == gene]
