"""Two-path block layers ``act(W1 x + b1) + (W2 x + b2)`` (the gene layer and every GO level) and activations.

The two paths share their block structure and are computed as one :class:`BlockSparseLinear` with the second path's
output blocks stacked after the first's. Output blocks that read single input neurons (the gene layer: one feature
per gene, or a few ATAC peaks) skip the block product for elementwise autograd functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ._block_csr_eval import needs_grad
from ._block_sparse import BlockSparseLinear
from ._elementwise_eval import two_path_relu_eval
from ._keep_mask import keep_mask
from ._shared_grad import SharedPartGrad

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
        #: (input block sizes, output block sizes of the stacked paths), as the block product was built
        self.block_sizes = (np.asarray(in_sizes, dtype=np.int64), np.asarray(out_sizes, dtype=np.int64))
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
        #: Without autograd, run the elementwise ReLU path as one pass (:mod:`._elementwise_eval`); ``False``: the
        #: autograd function there too (tests, benchmarks).
        self.eval_kernel = True

    @property
    def fuses_dropout(self) -> bool:
        """Whether :meth:`forward_t` can apply dropout itself (the elementwise and gathered ReLU paths)."""
        fused = self._single_rows is not None or bool(self._slot_sizes)
        return fused and type(self.activation) is nn.ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_t(x.t()).t().contiguous()

    def forward_t(
        self, xt: torch.Tensor | Sequence[torch.Tensor], dropout: float = 0.0, shared: SharedPartGrad | None = None
    ) -> torch.Tensor:
        """Feature-major: ``(n_in, n)`` (or row blocks of it) -> ``(n_out, n)``; the paths are row ranges.

        ``dropout``: drop probability of a dropout applied to the output (CPU, only where :attr:`fuses_dropout`);
        the same mask as :class:`WideDropout` on the output draws for the same seed. ``shared``: see
        :meth:`BlockSparseLinear.forward_t`.
        """
        if dropout and not (self.fuses_dropout and isinstance(xt, torch.Tensor)):
            raise ValueError("_TwoPathBlockLayer: dropout is fused only on the elementwise ReLU path.")
        if self._single_rows is not None and isinstance(xt, torch.Tensor):
            # Every output block reads one input neuron (one feature per gene): both paths are elementwise
            # ``w * x + b`` on the same gathered rows, so neither the stacked (2 n_out, n) product nor its gradient
            # is ever materialised.
            _, weight = self.linear.single_input_blocks()
            blocks = len(self._single_rows)
            bias = self.linear.bias.view(2 * blocks, -1, 1)
            w1, w2, b1, b2 = weight[:blocks], weight[blocks:], bias[:blocks], bias[blocks:]
            if (
                self.eval_kernel
                and type(self.activation) is nn.ReLU
                and not dropout
                and not needs_grad(xt, weight, bias)
            ):
                out = two_path_relu_eval(xt, self._single_rows, w1, b1, w2, b2)  # inference: one pass, no node
                if out is not None:
                    return out
            x = xt.index_select(0, self._single_rows).unsqueeze(1)  # (blocks, 1, n)
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
        return self.activate(self.linear.forward_t(xt, shared))

    def activate(self, y: torch.Tensor) -> torch.Tensor:
        """The layer's output from its block product ``y`` (``(2 n_out, n)``, the paths stacked, bias included)."""
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
