"""A linear map whose weight is dense inside listed (input block, output block) pairs and zero elsewhere.

Layouts: :meth:`BlockSparseLinear.forward` takes ``(n, n_in)`` like :class:`torch.nn.Linear`;
:meth:`BlockSparseLinear.forward_t` takes the transposed ``(n_in, n)`` ("feature-major") and returns ``(n_out, n)``.
The wired encoder keeps its wide gene-node activations feature-major: every block of a cell batch is then a
contiguous run of rows, and gathering or writing whole rows is several times faster on CPU than picking 5-column
slivers out of ``(n, 20000)`` rows; no transposes are needed between its layers either.

Parameters are stored the same way whatever the compute path: one ``(e, b_in, b_out)`` tensor per block shape, one
slice per connection, so a checkpoint depends neither on ``dense_limit`` nor on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ._block_csr import BlockCSRFunction, CSRPlan, build_csr_plan
from ._block_csr_eval import block_csr_forward_eval, needs_grad
from ._block_dense import _DenseGroupsFunction, _SharedDenseGroups
from ._block_kernel import _BlockSparseFunction
from ._block_plan import (
    BUCKETS_PER_OCTAVE,
    KernelPlan,
    _expand,
    build_plan,
    split_buckets,
)
from ._shared_grad import SharedPartGrad
from ._sparse_inference import INFERENCE_CSR_MIN_DENSE_RATIO, csr_product, csr_structure

#: Connection groups whose dense form (rows written x rows read) has at most this many entries use a dense matmul
#: (narrow layers such as GO levels); larger ones use the block kernel.
DENSE_LIMIT = 1 << 22
#: ... and whose dense form is at least this full: sparser groups (the protein encoder's gene and interaction layers,
#: under 1 % full) run several times faster on the block kernel.
DENSE_MIN_FILL = 0.02
#: Groups this small are dense whatever their fill: the kernel's per-bucket overhead would dominate.
DENSE_ALWAYS = 4096
#: A dense group reading at least this fraction of the input rows multiplies the whole input: the extra zero columns
#: cost less than gathering the rows and scattering their gradient back.
WHOLE_INPUT_FRACTION = 0.75
#: On CPU the block kernel gathers at most this many bytes per batched matmul (see :func:`split_buckets`); 1, 2 and
#: 4 MiB measured 74, 64 and 67 ms on the first GO level of the full human annotations (one thread, 128 cells).
CPU_RUN_BYTES = 1 << 21
#: On CPU, a whole-input dense group at least this full stays a dense matmul; sparser groups run on the CPU block kernel
#: (:mod:`._block_csr`, about a fifth of a dense matmul's speed per multiply-add on one thread).
CPU_DENSE_MIN_FILL = 0.25


@dataclass(frozen=True)
class _DenseGroup:
    """A connection group computed as one dense ``(n_rows, n_cols)`` matrix."""

    index: int  # the group, i.e. its parameter tensor
    whole_in: bool  # the columns are all input rows, in order
    all_out: bool  # the rows are all output rows, in order
    n_rows: int
    n_cols: int


class BlockSparseLinear(nn.Module):
    """``y = W x + b`` with ``W`` block-sparse: dense ``out_size x in_size`` blocks for listed block pairs.

    Parameters
    ----------
    in_sizes
        Neurons of each input block, in input order.
    out_sizes
        Neurons of each output block, in output order.
    connections
        ``(2, e)`` array of (input block, output block) pairs (duplicates are merged).
    bias
        Add a bias to every output neuron.
    dense_limit
        A group of connections with one block shape is computed as a dense matmul over the rows it reads and writes
        when that matrix has at most this many entries and is not too sparse (``DENSE_MIN_FILL``; narrow layers such
        as GO levels), else with the block kernel (gene and interaction layers; memory ~ connections x block sizes x
        batch). ``0`` forces the kernel everywhere.

    Attributes
    ----------
    weights
        One ``(connections, b_in, b_out)`` parameter per block shape (``groups``), connections in sorted (input
        block, output block) order: exactly the structural weights, whatever the compute path.
    bias
        ``(n_out,)`` or ``None``.
    dense
        Whether every group runs as a dense matmul.

    Notes
    -----
    Initialisation follows :class:`torch.nn.Linear` per output neuron: weights and bias ~ U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) where fan_in counts the neuron's structural inputs; output neurons without inputs get a bias
    ~ U(-0.5, 0.5).

    The block kernel (a custom autograd function, :mod:`._block_kernel`) buckets output blocks by their number of
    connections rounded up to a geometric grid, ``k`` (:mod:`._block_plan`; blocks with fewer connections are padded
    with zero weights, which are no parameters, so a layer issues O(log max connections) buckets however many GO
    terms it has): the ``k`` input blocks of every output block of a bucket are gathered as one
    ``(blocks, k * b_in, n)`` tensor and multiplied by the ``(blocks, b_out, k * b_in)`` stacked weights in one
    batched matmul, so each output row is written once, without a scatter-add over connections. Output blocks ``o``
    and ``o + h`` with the same inputs (the two paths of a GO level) share one gather. On CPU the buckets run in
    cache-sized pieces. When every block of a square layer connects to itself (the self loops of the interaction
    layer), those connections form a first bucket that reads and writes the rows in place, with no gather at all;
    the other connections are added to it. The backward pass runs the same kind of plan on the transposed map (input
    blocks by their number of outputs): one gather of output-gradient rows per bucket feeds the input gradient and,
    with the bucket's input rows, the weight gradient. The input may come as row blocks (``[genes | terms]``), read in
    place. All indices are precomputed; the kernel is deterministic on CPU and differentiable once (no double
    backward). The plain-torch reference it is tested against is the dense equivalent (:meth:`to_dense`).
    """

    def __init__(
        self,
        in_sizes: np.ndarray,
        out_sizes: np.ndarray,
        connections: np.ndarray,
        *,
        bias: bool = True,
        dense_limit: int = DENSE_LIMIT,
    ):
        super().__init__()
        in_sizes = np.asarray(in_sizes, dtype=np.int64)
        out_sizes = np.asarray(out_sizes, dtype=np.int64)
        connections = np.asarray(connections, dtype=np.int64).reshape(2, -1)
        if connections.size and (
            connections[0].max() >= len(in_sizes) or connections[1].max() >= len(out_sizes) or connections.min() < 0
        ):
            raise ValueError("BlockSparseLinear: a connection refers to a block that does not exist.")
        connections = np.unique(connections, axis=1)
        #: the deduplicated ``(2, e)`` connections in sorted order (callers that fuse the map index by it)
        self.connections = connections
        self.n_in = int(in_sizes.sum())
        self.n_out = int(out_sizes.sum())
        self.n_connections = connections.shape[1]
        in_offsets = np.concatenate([[0], np.cumsum(in_sizes)[:-1]]).astype(np.int64)
        out_offsets = np.concatenate([[0], np.cumsum(out_sizes)[:-1]]).astype(np.int64)
        src, dst = connections
        fan_in = np.zeros(self.n_out, dtype=np.float64)
        np.add.at(fan_in, _expand(out_offsets[dst], out_sizes[dst]), np.repeat(in_sizes[src], out_sizes[dst]))
        bound = np.where(fan_in > 0, 1.0 / np.sqrt(np.maximum(fan_in, 1.0)), 0.5)
        self.register_buffer("_bound", torch.as_tensor(bound, dtype=torch.float32), persistent=False)

        # Parameters: one (e, b_in, b_out) tensor per block shape, connections in (input, output) order.
        self.groups: list[tuple[int, int]] = []
        self.weights = nn.ParameterList()
        group_src, group_dst = [], []
        shapes = np.stack([in_sizes[src], out_sizes[dst]])
        for b_in, b_out in np.unique(shapes, axis=1).T:
            sel = (shapes[0] == b_in) & (shapes[1] == b_out)
            self.weights.append(nn.Parameter(torch.zeros(int(sel.sum()), int(b_in), int(b_out))))
            self.groups.append((int(b_in), int(b_out)))
            group_src.append(src[sel])
            group_dst.append(dst[sel])
        self.bias = nn.Parameter(torch.zeros(self.n_out)) if bias else None

        # Row (output neuron) and column (input neuron) of every weight entry, group by group, in parameter order.
        rows, cols = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for (b_in, b_out), s, d in zip(self.groups, group_src, group_dst, strict=True):
            shape = (len(s), b_in, b_out)
            rows.append(np.broadcast_to((out_offsets[d][:, None] + np.arange(b_out))[:, None, :], shape).reshape(-1))
            cols.append(np.broadcast_to((in_offsets[s][:, None] + np.arange(b_in))[:, :, None], shape).reshape(-1))
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        self.register_buffer("_rows", torch.as_tensor(rows), persistent=False)
        self.register_buffer("_cols", torch.as_tensor(cols), persistent=False)

        # Per group: a dense matmul over the rows it reads and writes (GO levels, whose many input neurons mostly
        # feed one wide UNKNOWN term), or the block kernel (gene and interaction layers).
        self._dense: list[_DenseGroup] = []
        self._kernel_groups: list[int] = []
        start = 0
        for g, weight in enumerate(self.weights):
            stop = start + weight.numel()
            used_in, used_out = np.unique(cols[start:stop]), np.unique(rows[start:stop])
            entries = len(used_in) * len(used_out)
            if entries <= dense_limit and (weight.numel() >= DENSE_MIN_FILL * entries or entries <= DENSE_ALWAYS):
                whole = len(used_in) >= WHOLE_INPUT_FRACTION * self.n_in
                if whole:
                    used_in = np.arange(self.n_in)
                in_pos = np.full(self.n_in, -1, dtype=np.int64)
                in_pos[used_in] = np.arange(len(used_in))
                out_pos = np.full(self.n_out, -1, dtype=np.int64)
                out_pos[used_out] = np.arange(len(used_out))
                flat = out_pos[rows[start:stop]] * len(used_in) + in_pos[cols[start:stop]]
                self.register_buffer(f"_in{g}", torch.as_tensor(used_in), persistent=False)
                self.register_buffer(f"_out{g}", torch.as_tensor(used_out), persistent=False)
                self.register_buffer(f"_flat{g}", torch.as_tensor(flat), persistent=False)
                all_out = len(used_out) == self.n_out
                self._dense.append(_DenseGroup(g, whole, all_out, len(used_out), len(used_in)))
            else:
                self._kernel_groups.append(g)
            start = stop
        # Whole-input groups first: the first one writes the input gradient, the others add to it.
        self._dense.sort(key=lambda group: (not group.whole_in, not group.all_out, group.index))
        self._part_index: dict[tuple, list] = {}
        self.dense = not self._kernel_groups
        #: Multiply the weight as CSR without autograd on CPU (:meth:`forward_t`); ``False`` keeps the training path.
        dense_entries = sum(group.n_rows * group.n_cols for group in self._dense)
        self.inference_csr = bool(
            self.dense and len(rows) and dense_entries >= INFERENCE_CSR_MIN_DENSE_RATIO * len(rows)
        )
        self._csr_plans: dict[tuple, list] = {}  # per part sizes and device: CSR structure of each column range
        #: On CPU, return the input gradient of the first input part (given as row blocks) as a sparse tensor of the
        #: rows the dense groups read, when no whole-input group writes it densely. Only for a caller that knows
        #: another reader of that part produces a dense gradient (a GO level above the first reading the gene nodes),
        #: so that autograd's sum is dense again: a zero-filled full-size gradient costs more than the product.
        self.sparse_first_part_grad = False

        # Kernel plans, built per device, batch and input row blocks on first use (:meth:`_plan`).
        self._kernel_structure = (
            [self.groups[g] for g in self._kernel_groups],
            [group_src[g] for g in self._kernel_groups],
            [group_dst[g] for g in self._kernel_groups],
            in_offsets,
            out_offsets,
        )
        # On the CPU kernel every group but the full enough whole-input dense ones runs on it: a dense group over
        # gathered rows multiplies mostly zeros (the second GO level of the full human annotations: 6 % full) and its
        # input gradient is a zero-filled full-size tensor plus a scatter, which autograd then adds to the kernel's.
        self._cpu_dense = [
            group
            for group in self._dense
            if group.whole_in and self.weights[group.index].numel() >= CPU_DENSE_MIN_FILL * group.n_rows * group.n_cols
        ]
        self._cpu_groups = sorted(set(range(len(self.weights))) - {group.index for group in self._cpu_dense})
        self._cpu_structure = (
            [self.groups[g] for g in self._cpu_groups],
            [group_src[g] for g in self._cpu_groups],
            [group_dst[g] for g in self._cpu_groups],
            in_offsets,
            out_offsets,
        )
        self._plans: dict[tuple, KernelPlan | CSRPlan | None] = {}
        #: On CPU (float32 / float64), run the kernel groups on the compressed-block-row kernel (:mod:`._block_csr`);
        #: ``False``: the bucketed kernel of the GPU (:mod:`._block_kernel`) there too (tests, benchmarks).
        self.cpu_kernel = True
        #: Without autograd, run the CPU kernel's forward product (:mod:`._block_csr_eval`) without an autograd node;
        #: ``False``: through the training kernel's autograd function, as with autograd (tests, benchmarks).
        self.eval_kernel = True
        #: Buckets per doubling of the connection count (:func:`bucket_size`); ``None``: ``BUCKETS_PER_OCTAVE``.
        self.per_octave: int | None = None
        #: Bytes gathered per batched matmul on CPU (:func:`split_buckets`); ``None``: ``CPU_RUN_BYTES``.
        self.run_bytes: int | None = None

        # Every output block reads exactly one input neuron (features -> gene nodes, one feature per gene): the map is
        # elementwise; callers may fuse it (see single_input_blocks).
        single_src = single_edge = None
        one_each = np.array_equal(np.sort(dst), np.arange(len(out_sizes)))
        if len(self.groups) == 1 and self.groups[0][0] == 1 and one_each:
            single_edge = np.argsort(dst)  # the connection of each output block, in output order
            single_src = torch.as_tensor(in_offsets[src[single_edge]])
            single_edge = torch.as_tensor(single_edge)
        self.register_buffer("_single_src", single_src, persistent=False)
        self.register_buffer("_single_edge", single_edge, persistent=False)
        self._register_load_state_dict_pre_hook(self._load_dense_weight)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Uniform initialisation scaled by each output neuron's structural fan-in (see class notes)."""
        start = 0
        for weight in self.weights:
            rows = self._rows[start : start + weight.numel()].view_as(weight)
            weight.copy_((torch.rand_like(weight) * 2 - 1) * self._bound[rows])
            start += weight.numel()
        if self.bias is not None:
            self.bias.copy_((torch.rand_like(self.bias) * 2 - 1) * self._bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the map to ``x`` of shape ``(n, n_in)``; returns ``(n, n_out)``."""
        if self.dense and len(self._dense) == 1 and self._dense[0].all_out:  # one matmul, as nn.Linear
            group = self._dense[0]
            inputs = x if group.whole_in else x.index_select(1, getattr(self, f"_in{group.index}"))
            weight = self._dense_weight(group.index)
            return torch.addmm(self.bias, inputs, weight.t()) if self.bias is not None else inputs @ weight.t()
        return self.forward_t(x.t()).t().contiguous()

    def forward_t(
        self, xt: torch.Tensor | Sequence[torch.Tensor], shared: SharedPartGrad | None = None
    ) -> torch.Tensor:
        """Apply the map to feature-major inputs; returns ``(n_out, n)``.

        ``xt`` is ``(n_in, n)``, or a sequence of ``(rows, n)`` tensors that stacked make up the ``n_in`` input rows
        (a GO level reads ``[gene nodes | deeper terms]``; its wide first part is then never copied). ``shared``: on
        the CPU kernel, the first part's gradient goes into that buffer of the GO network's forward pass
        (:mod:`._shared_grad`); ignored elsewhere.
        """
        parts = tuple(xt) if isinstance(xt, (list, tuple)) else (xt,)
        if sum(p.shape[0] for p in parts) != self.n_in:
            raise ValueError(f"BlockSparseLinear: got {sum(p.shape[0] for p in parts)} input rows, not {self.n_in}.")
        if self._cpu_kernel_applies(parts[0]):  # also without autograd: faster than the torch.sparse path below
            return self._forward_t_cpu(parts, shared)
        if self._csr_applies(parts[0]):
            return self._forward_t_csr(parts)
        out = None
        if self._kernel_groups:
            if self._plan(parts) is None:  # a group reads rows of several parts
                parts_k = (parts[0] if len(parts) == 1 else torch.cat(parts),)
            else:
                parts_k = parts
            weights = [self.weights[g] for g in self._kernel_groups]
            out = _BlockSparseFunction.apply(self, len(parts_k), self.bias, False, *parts_k, *weights)
        if self._dense:
            bias = self.bias if out is None else None
            weights = [self.weights[group.index] for group in self._dense]
            dense = _DenseGroupsFunction.apply(self, self._dense, len(parts), *parts, bias, *weights)
            out = dense if out is None else out + dense
        return self._bias_rows(parts[0]) if out is None else out

    def forward_t_relu_residual(self, xt: torch.Tensor) -> torch.Tensor:
        """``relu(W x + b) + x`` for a square layer and feature-major ``xt`` ``(n_in, n)`` (the interaction layer).

        On the block kernel (every group) this is one autograd node: the ReLU works in place on the product and the
        backward pass writes the input gradient starting from the skip connection's (a batched ``baddbmm`` on the
        self loops), instead of adding two full-size gradients; otherwise it is the plain composition.
        """
        if self.n_in != self.n_out:
            raise ValueError("BlockSparseLinear: a residual connection needs as many outputs as inputs.")
        if self._csr_applies(xt):  # no autograd: in place
            return torch.relu_(self._forward_t_csr((xt,))).add_(xt)
        if self._dense or not self._kernel_groups or self._cpu_kernel_applies(xt):
            return torch.relu(self.forward_t(xt)) + xt
        weights = [self.weights[g] for g in self._kernel_groups]
        return _BlockSparseFunction.apply(self, 1, self.bias, True, xt, *weights)

    def _cpu_kernel_applies(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward_t` runs on the CPU kernel (:mod:`._block_csr`) rather than the bucketed one."""
        return (
            self.cpu_kernel
            and bool(self._cpu_groups)
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
        )

    def _forward_t_cpu(self, parts: tuple[torch.Tensor, ...], shared: SharedPartGrad | None = None) -> torch.Tensor:
        """:meth:`forward_t` on CPU: the CPU kernel's groups (bias included), plus the whole-input dense groups."""
        # part 0's gradient into the shared full-size buffer of the forward pass, not as sparse rows
        share = shared is not None and torch.is_grad_enabled() and parts[0].requires_grad
        plan = self._csr_kernel_plan(parts, share)
        parts_k = parts if plan is not None else (torch.cat(parts),)
        if plan is None:
            share, plan = False, self._csr_kernel_plan(parts_k)
        weights = [self.weights[g] for g in self._cpu_groups]
        member = None
        if self.eval_kernel and not needs_grad(*parts_k, *weights, self.bias):
            out = block_csr_forward_eval(plan, list(parts_k), self.bias, weights)  # inference: no autograd node
        else:
            token = shared.join(parts_k[0]) if share else None
            member = (shared, token) if token is not None else None
            out = BlockCSRFunction.apply(plan, len(parts_k), member, self.bias, *parts_k, *weights)
        if self._cpu_dense:
            weights = [self.weights[group.index] for group in self._cpu_dense]
            token = shared.join(parts[0]) if member is not None and len(parts) == 1 else None
            if token is not None:  # the dense groups' input gradient into the same buffer
                return _SharedDenseGroups.apply(self, self._cpu_dense, (shared, token), out, parts[0], *weights)
            out = out + _DenseGroupsFunction.apply(self, self._cpu_dense, len(parts), *parts, None, *weights)
        return out

    def _csr_kernel_plan(self, parts: Sequence[torch.Tensor], shared: bool = False) -> CSRPlan | None:
        """The CPU kernel's plan on these input row blocks, cached; ``None`` when a group reads several parts.

        ``shared``: part 0's gradient is a full-size buffer (:mod:`._shared_grad`), never the sparse rows.
        """
        sizes = tuple(p.shape[0] for p in parts)
        sparse = bool(self.sparse_first_part_grad and len(parts) > 1 and not shared)
        key = ("csr", sizes, sparse)
        if key not in self._plans:
            shapes, sources, targets, in_offsets, out_offsets = self._cpu_structure
            bounds = np.cumsum([0, *sizes])
            self._plans[key] = build_csr_plan(
                shapes, sources, targets, in_offsets, out_offsets, self.n_out, bounds, sparse_first=sparse
            )
        return self._plans[key]

    def _csr_applies(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward_t` takes the inference path: no autograd, CPU, a sparse enough layer."""
        return (
            self.inference_csr
            and not torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and x.shape[1] > 0
            and len(self.weights) > 0
        )

    def _forward_t_csr(self, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``W x + b`` with the weight as CSR matrices, one per input part (inference only: :mod:`._sparse_inference`)."""
        key = (tuple(p.shape[0] for p in parts), parts[0].device)
        if key not in self._csr_plans:
            self._csr_plans[key] = csr_structure(self._rows, self._cols, self.n_out, *key)
        out = csr_product(self.weights, self.bias, self.n_out, self._csr_plans[key], parts)
        return self._bias_rows(parts[0]) if out is None else out

    def _plan(self, parts: torch.Tensor | Sequence[torch.Tensor]) -> KernelPlan | None:
        """The kernel plan as it runs on these input row blocks (device, batch size, part sizes), cached.

        The buckets are padded to the grid (``BUCKETS_PER_OCTAVE``, or :attr:`per_octave`); on CPU they are cut
        into cache-sized runs (:func:`split_buckets`), elsewhere they run whole, so that the number of kernels
        depends neither on the batch nor on the number of distinct connection counts. ``None`` when a kernel group
        reads rows of several parts (the caller stacks them).
        """
        parts = (parts,) if isinstance(parts, torch.Tensor) else tuple(parts)
        xt = parts[0]
        cpu = xt.device.type == "cpu"
        per_octave = self.per_octave if self.per_octave is not None else BUCKETS_PER_OCTAVE
        run_bytes = (self.run_bytes or CPU_RUN_BYTES) if cpu else 0
        sizes = tuple(p.shape[0] for p in parts)
        sparse = bool(self.sparse_first_part_grad and cpu and len(parts) > 1)
        base_key = (xt.device, per_octave, sizes, sparse)
        key = (*base_key, run_bytes, xt.shape[1] * xt.element_size() if run_bytes else 0)
        if key in self._plans:
            return self._plans[key]
        if base_key not in self._plans:
            bounds = np.cumsum([0, *sizes])
            self._plans[base_key] = build_plan(
                *self._kernel_structure, self.n_out, per_octave, xt.device, bounds, sparse_first=sparse
            )
        plan = base = self._plans[base_key]
        if run_bytes and base is not None:
            row = xt.shape[1] * xt.element_size()
            fwd = [split_buckets(buckets, row, run_bytes) for buckets in base.fwd]
            bwd = [split_buckets(buckets, row, run_bytes) for buckets in base.bwd]
            plan = replace(base, fwd=fwd, bwd=bwd)
        self._plans[key] = plan
        return plan

    def single_input_blocks(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per output block, in output order, its only input neuron and its ``(blocks, b_out, 1)`` weights.

        Defined when every output block reads exactly one input block of one neuron (features -> gene nodes with one
        feature per gene): the map is then ``y[block] = w[block] * x[input] + b``, elementwise, which callers can fuse
        with what follows. The weights are gathered from the parameters (differentiable). ``None`` otherwise.
        """
        if self._single_src is None:
            return None
        return self._single_src, self.weights[0].index_select(0, self._single_edge).transpose(1, 2)

    def _bias_rows(self, xt: torch.Tensor) -> torch.Tensor:
        """``(n_out, n)``: the bias in every column, or zeros."""
        n = xt.shape[1]
        if self.bias is None:
            return xt.new_zeros(self.n_out, n)
        return self.bias[:, None].expand(self.n_out, n).contiguous()

    def _dense_weight(self, g: int) -> torch.Tensor:
        """Group ``g`` as a dense ``(rows written, rows read)`` matrix; its gradient flows back to the blocks."""
        rows, cols = getattr(self, f"_out{g}").numel(), getattr(self, f"_in{g}").numel()
        values = self.weights[g].reshape(-1)
        return values.new_zeros(rows * cols).index_copy(0, getattr(self, f"_flat{g}"), values).view(rows, cols)

    @torch.no_grad()
    def to_dense(self) -> torch.Tensor:
        """The full ``(n_out, n_in)`` weight matrix (for tests and inspection; large for big layers)."""
        values = torch.cat([w.reshape(-1) for w in self.weights]) if len(self.weights) else self._bound.new_zeros(0)
        dense = values.new_zeros(self.n_out, self.n_in)
        dense[self._rows, self._cols] = values
        return dense

    def _load_dense_weight(self, state_dict, prefix, *args) -> None:
        """Read checkpoints of the earlier layout.

        It saved the kernel's index buffers ``_src{k}`` / ``_dst{k}`` (now rebuilt from the structure, dropped here)
        and dense layers as a masked ``(n_out, n_in)`` ``weight`` (its block entries become the block parameters).
        """
        for key in list(state_dict):
            name = key[len(prefix) :] if key.startswith(prefix) else ""
            if name[:4] in ("_src", "_dst") and name[4:].isdigit():
                del state_dict[key]
        dense = state_dict.pop(prefix + "weight", None)
        if dense is None or any(f"{prefix}weights.{k}" in state_dict for k in range(len(self.weights))):
            return
        values = dense[self._rows.to(dense.device), self._cols.to(dense.device)]
        start = 0
        for k, weight in enumerate(self.weights):
            state_dict[f"{prefix}weights.{k}"] = values[start : start + weight.numel()].view_as(weight)
            start += weight.numel()

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}, connections={self.n_connections}, dense={self.dense}"
