"""A GO encoder's inference from the nonzero counts: the gene-node products of every GO level, zeros skipped.

Without autograd on CPU, a :class:`~scvi_networkvi.nn.WiredEncoder` whose gene layer is elementwise (one feature per
gene node, the two-path ReLU; or no gene layer) and that has no gene–gene layer and no attention on the gene nodes
computes the part of each GO level that reads the gene nodes straight from the counts (:mod:`._sparse_counts_kernel`):
neither the input transform nor the gene-node activations are written, and only the nonzero counts (~8 % of a
CITE-seq minibatch) are multiplied. A zero count is no zero input: it is the per-(batch, feature) constant
``(log1p(0) - shift) * scale`` and its gene nodes' activation ``h0`` a per-batch constant, so each level's product is
``W h0[batch] + W (h - h0[batch])``, whose first term is computed once per weights and batch constants and cached.
The parts of the levels that read deeper terms run on :class:`BlockSparseLinear` layers of those connections only
(the same parameters, copied). Not bitwise the dense path (the sums are reassociated); tested against it and the
dense reference in ``tests/test_sparse_counts.py``.

Gene–gene layers mix the gene nodes (a gene's output moves when a neighbour's count is nonzero): encoders with one
take the dense path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._block_sparse import BlockSparseLinear
from ._lanes import LANES
from ._log1p import _table
from ._sparse_counts_kernel import base_rows, blocks, nonzero_deltas
from ._two_path import _TwoPathBlockLayer

#: Minibatches with at most this share of nonzero counts take the sparse path; denser ones the dense path. Measured
#: on one thread of a 2-core AMD EPYC VM (the package defaults' RNA encoder, 4000 genes, 256 cells of random counts):
#: the sparse path is 2.6x as fast at 8 % nonzero, 1.7x at 20 %, 1.3x at 30 %, 1.16x at 40 %, 0.74x at 50 %.
SPARSE_MAX_SHARE = 0.4


@dataclass
class _Structure:
    """Index arrays of the kernels and of the weight packing (they depend on the wiring only)."""

    fptr: np.ndarray  # feature -> its gene nodes (those with connections) in fnodes
    fnodes: np.ndarray
    rows: np.ndarray  # the feature each gene node reads
    bstart: np.ndarray  # per output block: first padded row, padded width, first output row, real rows
    bwidth: np.ndarray
    brow: np.ndarray
    bsize: np.ndarray
    bptr: np.ndarray  # block -> its connections (gene node -> block)
    enode: np.ndarray  # per connection: gene node and offset of its (size, width) weights
    eoff: np.ndarray
    n_weights: int
    n_padded: int
    level_rows: list[np.ndarray]  # per level: padded position of each stacked output row
    level_entries: list[tuple[np.ndarray, np.ndarray]]  # per level: (gene entries in its flat weights, positions)
    term_layers: list[BlockSparseLinear | None]
    term_groups: list[list[tuple[int, int, np.ndarray]]]  # per level: (group, term-layer group, connection mask)
    cache: dict = field(default_factory=dict)


def _build(levels: list[_TwoPathBlockLayer], rows: np.ndarray, size: int, n_features: int) -> _Structure:
    """The structure for gene nodes of ``size`` neurons reading features ``rows`` and the GO ``levels``."""
    n_nodes = len(rows)
    n_in = n_nodes * size
    level_rows, entries, parts, blocks = [], [], [], []
    padded = first_row = n_blocks = 0
    for level in levels:
        out_sizes = level.block_sizes[1]
        out_offsets = np.concatenate([[0], np.cumsum(out_sizes)]).astype(np.int64)
        widths = -(-out_sizes // LANES) * LANES
        start = padded + np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        blocks.append((start, widths, first_row + out_offsets[:-1], out_sizes))
        block_of = np.repeat(np.arange(len(out_sizes)), out_sizes)
        level_rows.append(start[block_of] + np.arange(out_offsets[-1]) - out_offsets[block_of])
        entry_rows, entry_cols = level.linear._rows.numpy(), level.linear._cols.numpy()
        gene = np.flatnonzero(entry_cols < n_in)
        block = block_of[entry_rows[gene]]
        parts.append((n_blocks + block, entry_cols[gene] // size, entry_cols[gene] % size,
                      entry_rows[gene] - out_offsets[block]))  # fmt: skip
        entries.append(gene)
        padded += int(widths.sum())
        first_row += int(out_offsets[-1])
        n_blocks += len(out_sizes)
    bstart, bwidth, brow, bsize = (np.concatenate([b[i] for b in blocks]).astype(np.int64) for i in range(4))
    block, node, k, j = (np.concatenate([p[i] for p in parts]) for i in range(4))
    # connections (block, gene node), by block then node: the order in which _blocks reads the weights
    unique, inverse = np.unique(block * n_nodes + node, return_inverse=True)
    c_block, enode = unique // n_nodes, unique % n_nodes
    width = bwidth[c_block]
    eoff = np.concatenate([[0], np.cumsum(size * width)]).astype(np.int64)
    bptr = np.concatenate([[0], np.cumsum(np.bincount(c_block, minlength=n_blocks))]).astype(np.int64)
    positions = eoff[inverse] + k * width[inverse] + j
    bounds = np.cumsum([0, *[len(g) for g in entries]])
    level_entries = [(entries[i], positions[bounds[i] : bounds[i + 1]]) for i in range(len(levels))]
    used = np.flatnonzero(np.bincount(enode, minlength=n_nodes) > 0)  # gene nodes without connections change nothing
    order = used[np.argsort(rows[used], kind="stable")]
    fptr = np.concatenate([[0], np.cumsum(np.bincount(rows[order], minlength=n_features))]).astype(np.int64)
    term_layers, term_groups = [], []
    for level in levels:
        layer, groups = _term_layer(level, n_nodes)
        term_layers.append(layer)
        term_groups.append(groups)
    return _Structure(
        fptr, order.astype(np.int64), rows.astype(np.int64), bstart, bwidth, brow, bsize, bptr, enode.astype(np.int64),
        eoff[:-1], int(eoff[-1]), padded, level_rows, level_entries, term_layers, term_groups,
    )  # fmt: skip


def _term_layer(level: _TwoPathBlockLayer, n_nodes: int) -> tuple[BlockSparseLinear | None, list]:
    """The level's connections from deeper terms as their own layer (no bias), and how its weights are copied."""
    in_sizes, out_sizes = level.block_sizes
    src, dst = level.linear.connections
    terms = src >= n_nodes
    if not terms.any():
        return None, []
    with torch.random.fork_rng(devices=[]):  # its initialisation draws nothing from the caller's generator
        layer = BlockSparseLinear(
            in_sizes[n_nodes:], out_sizes, np.stack([src[terms] - n_nodes, dst[terms]]), bias=False
        )
    shapes = np.stack([in_sizes[src], out_sizes[dst]])
    groups = []
    for g, shape in enumerate(level.linear.groups):
        sel = (shapes[0] == shape[0]) & (shapes[1] == shape[1])
        mask = terms[sel]
        if mask.any():
            groups.append((g, layer.groups.index(shape), mask))
    return layer.requires_grad_(False), groups


def _parameters(gene_layer: _TwoPathBlockLayer | None, levels: list[_TwoPathBlockLayer]) -> list[torch.Tensor]:
    layers = ([gene_layer.linear] if gene_layer is not None else []) + [level.linear for level in levels]
    return [p for layer in layers for p in layer.parameters()]


class SparseCounts:
    """The gene-node products of a GO encoder's levels from the counts (see the module notes); not a module.

    Parameters
    ----------
    gene_layer
        The encoder's gene layer (the elementwise two-path ReLU), or ``None`` (the levels read the features).
    levels
        The GO levels, deepest first.
    n_features
        Input features.
    """

    def __init__(self, gene_layer: _TwoPathBlockLayer | None, levels: list[_TwoPathBlockLayer], n_features: int):
        self.gene_layer, self.levels = gene_layer, levels
        if gene_layer is not None:
            rows = gene_layer._single_rows.numpy()
            size = gene_layer.n_out // len(rows)
        else:
            rows, size = np.arange(n_features), 1
        self.size, self.n_features = size, n_features
        self.structure = _build(levels, rows, size, n_features)
        self.parameters = _parameters(gene_layer, levels)  # what the packed weights are copied from
        self._found = np.zeros(0, dtype=np.int32)  # nonzero_deltas' work buffer, kept between minibatches

    @staticmethod
    def supports(gene_layer: _TwoPathBlockLayer | None, levels: list[_TwoPathBlockLayer]) -> bool:
        """Whether the layers have the structure this path computes (see the module notes)."""
        if any(getattr(level, "block_sizes", None) is None for level in levels):
            return False
        if gene_layer is None:
            return True
        return gene_layer._single_rows is not None and type(gene_layer.activation) is nn.ReLU

    def _weights(self, dtype: torch.dtype) -> dict:
        """Packed weights, bias rows, gene-layer parameters and the term layers' weights for the current parameters."""
        cache = self.structure.cache
        if any(p.is_inference() for p in self.parameters):  # no version counter: packed again every time
            key = None
        else:
            key = (dtype, *[(p.data_ptr(), p._version) for p in self.parameters])
            if cache.get("key") == key:
                return cache
        s = self.structure
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        wp = np.zeros(s.n_weights, np_dtype)
        bias = np.zeros(s.n_padded, np_dtype)
        for level, rows, (entries, positions), term, groups in zip(
            self.levels, s.level_rows, s.level_entries, s.term_layers, s.term_groups, strict=True
        ):
            values = torch.cat([w.detach().reshape(-1) for w in level.linear.weights]).to(dtype).numpy()
            wp[positions] = values[entries]
            if level.linear.bias is not None:
                bias[rows] = level.linear.bias.detach().to(dtype).numpy()
            if term is not None:
                term.to(dtype)
                with torch.no_grad():
                    for g, t, mask in groups:
                        term.weights[t].copy_(level.linear.weights[g].detach()[torch.as_tensor(mask)].to(dtype))
        if self.gene_layer is not None:
            _, weight = self.gene_layer.linear.single_input_blocks()
            blocks = len(s.rows)
            flat = [t.detach().reshape(2, blocks, self.size).to(dtype) for t in (weight, self.gene_layer.linear.bias)]
            gene = [flat[0][0], flat[1][0], flat[0][1], flat[1][1]]  # w1, b1, w2, b2
        else:
            ones = torch.ones(len(s.rows), 1, dtype=dtype)
            gene = [ones * 0, ones * 0, ones, ones * 0]  # the identity: relu(0) + x
        cache.clear()
        cache.update(key=key, wp=wp, bias=bias, gene=[t.contiguous().numpy() for t in gene])
        return cache

    def _base(self, cache: dict, shift: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``h0`` (batch, gene node, neuron) and the base rows (batch, padded rows) for these batch constants."""
        held = cache.get("base")
        if held is not None and np.array_equal(held[0], shift) and np.array_equal(held[1], scale):
            return held[2], held[3]
        s = self.structure
        const = ((0 - shift) * scale)[:, s.rows, None]  # the input of a zero count, per batch and gene node
        w1, b1, w2, b2 = cache["gene"]
        h0 = np.ascontiguousarray((w2 * const + b2) + np.maximum(w1 * const + b1, 0))
        base = np.empty((len(shift), s.n_padded), shift.dtype)
        base_rows(h0, s.bstart, s.bwidth, s.bptr, s.enode, s.eoff, cache["wp"], cache["bias"], base)
        cache["base"] = (shift.copy(), scale.copy(), h0, base)
        return h0, base

    def level_products(
        self, x: torch.Tensor, batch: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor | None
    ) -> list[torch.Tensor] | None:
        """Per level, ``(2 n_out, n)``: its gene-node product plus bias (the stacked paths), or ``None``.

        Parameters
        ----------
        x
            Counts, cells x features (float32 / float64, CPU).
        batch
            Batch code of each cell.
        shift, scale
            ``(n_batch, n_features)`` per-batch shift and scale of the ``log1p`` counts, or ``None``.

        Returns
        -------
        ``None`` (the caller takes the dense path) where the counts have more than :data:`SPARSE_MAX_SHARE` nonzero
        entries or the inputs do not fit (device, dtype, shapes).
        """
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.ndim != 2:
            return None
        n, n_features = x.shape
        given = [t for t in (shift, scale) if t is not None]
        if n_features != self.n_features or any(t.device.type != "cpu" or t.dtype != x.dtype for t in given):
            return None
        n_batch = len(given[0]) if given else 1
        if any(tuple(t.shape) != (n_batch, n_features) for t in given):
            return None
        counts = x.detach().contiguous().numpy()
        if not n:
            return None
        codes = batch.reshape(-1).long().contiguous().numpy() if given else np.zeros(n, dtype=np.int64)
        if len(codes) != n or codes.min() < 0 or codes.max() >= n_batch:
            return None
        dtype = counts.dtype
        shift_np = np.zeros((n_batch, n_features), dtype) if shift is None else shift.detach().contiguous().numpy()
        scale_np = np.ones((n_batch, n_features), dtype) if scale is None else scale.detach().contiguous().numpy()
        cache = self._weights(x.dtype)
        h0, base = self._base(cache, shift_np, scale_np)
        s = self.structure
        if len(self._found) < counts.size + 1:
            self._found = np.empty(counts.size + 1, dtype=np.int32)
        limit = int(SPARSE_MAX_SHARE * counts.size)
        n_nonzero, ptr, cells, deltas = nonzero_deltas(counts, limit, self._found, codes, shift_np, scale_np, _table(x.dtype), s.fptr, s.fnodes,
                                            *cache["gene"], h0, len(s.rows))  # fmt: skip
        if n_nonzero > limit:
            return None
        out = torch.empty(sum(len(r) for r in s.level_rows), n, dtype=x.dtype)
        arrays = [
            ptr, cells, deltas, codes, s.bstart, s.bwidth, s.brow, s.bsize, s.bptr, s.enode, s.eoff, cache["wp"], base,
            out.numpy(),
        ]  # fmt: skip
        blocks(arrays, len(out))
        return list(torch.split(out, [len(r) for r in s.level_rows]))

    def term_product(self, i: int, terms: list[torch.Tensor]) -> torch.Tensor | None:
        """Level ``i``'s product of the deeper levels' outputs ``terms`` (feature-major), or ``None`` (none read)."""
        layer = self.structure.term_layers[i]
        return None if layer is None else layer.forward_t(terms)
