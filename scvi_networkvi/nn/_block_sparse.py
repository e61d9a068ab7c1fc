"""A linear map whose weight is dense inside listed (input block, output block) pairs and zero elsewhere."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: Below this many weight entries (n_in * n_out) a masked dense weight is faster than gather/scatter on CPU and GPU.
DENSE_LIMIT = 1 << 22


class BlockSparseLinear(nn.Module):
    """``y = W x + b`` with ``W`` block-sparse: dense ``out_size x in_size`` blocks for listed block pairs.

    Parameters
    ----------
    in_sizes
        Neurons of each input block, in input order.
    out_sizes
        Neurons of each output block, in output order.
    connections
        ``(2, e)`` array of (input block, output block) pairs.
    bias
        Add a bias to every output neuron.
    dense_limit
        Use a masked dense weight when ``n_in * n_out`` is at most this (fast for narrow layers such as GO levels),
        else grouped gather / batched matmul / scatter over the connections (memory ~ e x block sizes).

    Notes
    -----
    Initialisation follows :class:`torch.nn.Linear` per output neuron: weights and bias ~ U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) where fan_in counts the neuron's structural inputs; output neurons without inputs get a bias
    ~ U(-0.5, 0.5).
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
        self.dense = self.n_in * self.n_out <= dense_limit
        if self.dense:
            rows = _expand(out_offsets[dst], out_sizes[dst])  # per connection, its output neurons ...
            rows = np.repeat(rows, np.repeat(in_sizes[src], out_sizes[dst]))
            cols = (
                np.concatenate(
                    [
                        np.tile(np.arange(in_offsets[s], in_offsets[s] + in_sizes[s]), out_sizes[d])
                        for s, d in zip(src, dst, strict=True)
                    ]
                )
                if len(src)
                else np.zeros(0, dtype=np.int64)
            )
            mask = torch.zeros(self.n_out, self.n_in, dtype=torch.bool)
            mask[torch.as_tensor(rows), torch.as_tensor(cols)] = True
            self.register_buffer("mask", mask, persistent=False)
            self.weight = nn.Parameter(torch.zeros(self.n_out, self.n_in))
        else:
            # Group connections by block shape so each group is one batched matmul.
            self.groups: list[tuple[int, int]] = []
            self.weights = nn.ParameterList()
            shapes = np.stack([in_sizes[src], out_sizes[dst]])
            for b_in, b_out in np.unique(shapes, axis=1).T:
                sel = (shapes[0] == b_in) & (shapes[1] == b_out)
                k = len(self.groups)
                self.register_buffer(f"_src{k}", torch.as_tensor(_expand(in_offsets[src[sel]], in_sizes[src[sel]])))
                self.register_buffer(f"_dst{k}", torch.as_tensor(_expand(out_offsets[dst[sel]], out_sizes[dst[sel]])))
                self.weights.append(nn.Parameter(torch.zeros(int(sel.sum()), int(b_in), int(b_out))))
                self.groups.append((int(b_in), int(b_out)))
        self.bias = nn.Parameter(torch.zeros(self.n_out)) if bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Uniform initialisation scaled by each output neuron's structural fan-in (see class notes)."""
        if self.dense:
            bound = self._bound[:, None].expand_as(self.weight)
            self.weight.copy_((torch.rand_like(self.weight) * 2 - 1) * bound * self.mask)
        else:
            for k, weight in enumerate(self.weights):
                dst = getattr(self, f"_dst{k}").view(weight.shape[0], weight.shape[2])
                bound = self._bound[dst][:, None, :].expand_as(weight)
                weight.copy_((torch.rand_like(weight) * 2 - 1) * bound)
        if self.bias is not None:
            self.bias.copy_((torch.rand_like(self.bias) * 2 - 1) * self._bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the map to ``x`` of shape ``(n, n_in)``."""
        if self.dense:
            return nn.functional.linear(x, self.weight * self.mask, self.bias)
        n = x.shape[0]
        out = x.new_zeros(n, self.n_out) if self.bias is None else self.bias.expand(n, self.n_out).clone()
        for k, (b_in, _) in enumerate(self.groups):
            weight = self.weights[k]
            gathered = x.index_select(1, getattr(self, f"_src{k}")).view(n, weight.shape[0], b_in)
            contribution = torch.einsum("neb,ebo->neo", gathered, weight).reshape(n, -1)
            out = out.index_add(1, getattr(self, f"_dst{k}"), contribution)
        return out

    def to_dense(self) -> torch.Tensor:
        """The full ``(n_out, n_in)`` weight matrix (for tests and inspection; large for big layers)."""
        if self.dense:
            return (self.weight * self.mask).detach().clone()
        dense = torch.zeros(self.n_out, self.n_in)
        for k, weight in enumerate(self.weights):
            e, b_in, b_out = weight.shape
            src = getattr(self, f"_src{k}").view(e, b_in)
            dst = getattr(self, f"_dst{k}").view(e, b_out)
            rows = dst[:, None, :].expand(e, b_in, b_out)
            cols = src[:, :, None].expand(e, b_in, b_out)
            dense.index_put_((rows.reshape(-1), cols.reshape(-1)), weight.detach().reshape(-1), accumulate=True)
        return dense

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}, connections={self.n_connections}, dense={self.dense}"


def _expand(offsets: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(offset, offset + size)`` over pairs, vectorised."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.asarray(offsets, dtype=np.int64), sizes)
    within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return starts + within


def block_density(n_connections: int, n_in_blocks: int, n_out_blocks: int) -> float:
    """Connected block pairs over all block pairs (the original's "block structure density")."""
    return n_connections / max(1, n_in_blocks * n_out_blocks)
