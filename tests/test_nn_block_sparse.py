"""``BlockSparseLinear`` equals its dense equivalent, forward and backward, and loads checkpoints of the old layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scvi_networkvi.nn import BlockSparseLinear


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path))
    torch.manual_seed(0)


def reference_mask(in_sizes, out_sizes, connections):
    in_off = np.concatenate([[0], np.cumsum(in_sizes)])
    out_off = np.concatenate([[0], np.cumsum(out_sizes)])
    mask = np.zeros((out_off[-1], in_off[-1]), dtype=bool)
    for s, d in connections.T:
        mask[out_off[d] : out_off[d + 1], in_off[s] : in_off[s + 1]] = True
    return mask


@pytest.mark.parametrize("dense_limit", [0, 1 << 30])
def test_block_sparse_linear_matches_its_dense_equivalent(dense_limit):
    in_sizes, out_sizes = np.array([1, 3, 2, 2]), np.array([2, 4, 1])
    connections = np.array([[0, 1, 1, 3, 2], [0, 0, 1, 1, 2]])
    layer = BlockSparseLinear(in_sizes, out_sizes, connections, dense_limit=dense_limit)
    assert layer.dense == (dense_limit > 0)
    dense = layer.to_dense()
    mask = reference_mask(in_sizes, out_sizes, connections)
    assert torch.all(dense[~torch.as_tensor(mask)] == 0)
    assert torch.all(dense[torch.as_tensor(mask)] != 0)
    x = torch.randn(7, int(in_sizes.sum()), requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(y, x @ dense.T + layer.bias)
    y.square().sum().backward()
    # no gradient reaches an input that feeds nothing (block 2 feeds only output block 2 ...)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_block_sparse_init_is_bounded_by_fan_in():
    layer = BlockSparseLinear(np.array([4, 4]), np.array([3, 3]), np.array([[0, 1, 1], [0, 0, 1]]), dense_limit=0)
    dense = layer.to_dense()
    assert dense[:3].abs().max() <= 1 / np.sqrt(8) + 1e-6  # output block 0 reads 8 neurons
    assert dense[3:].abs().max() <= 1 / np.sqrt(4) + 1e-6


def test_block_sparse_rejects_out_of_range_connections():
    with pytest.raises(ValueError, match="does not exist"):
        BlockSparseLinear(np.array([1]), np.array([1]), np.array([[0], [3]]))


def random_structure(rng, square=False):
    """Block sizes 1-3 (mixed shapes), repeated and duplicated connections, blocks without any connection."""
    n_in, n_out = (int(v) for v in rng.integers(2, 9, 2))
    in_sizes = rng.integers(1, 4, n_in)
    out_sizes = in_sizes.copy() if square else rng.integers(1, 4, n_out)
    n_out = len(out_sizes)
    e = int(rng.integers(1, 30))
    connections = np.stack([rng.integers(0, n_in, e), rng.integers(0, n_out, e)])
    if square:  # self loops, as the interaction layer has
        connections = np.concatenate([np.tile(np.arange(n_in), (2, 1)), connections], axis=1)
    return in_sizes, out_sizes, connections


@pytest.mark.parametrize("square", [False, True])
@pytest.mark.parametrize("dense_limit", [0, 6, 1 << 30])
def test_block_sparse_gradients_match_the_dense_equivalent(square, dense_limit):
    """Output, input, weight and bias gradients of every compute path equal those of ``to_dense()`` (float64)."""
    rng = np.random.default_rng(7 + square)
    for trial in range(25):
        layer = BlockSparseLinear(*random_structure(rng, square), dense_limit=dense_limit, bias=trial % 4 != 0)
        layer = layer.double()
        dense = layer.to_dense().requires_grad_(True)
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.n_out, dtype=torch.float64)
        x = torch.randn(5, layer.n_in, dtype=torch.float64, requires_grad=True)
        for y in (layer(x), layer.forward_t(x.t()).t(), layer.forward_t(x.t().contiguous()).t()):
            reference = x @ dense.T + bias
            torch.testing.assert_close(y, reference)
            g = torch.randn_like(y)
            params = [*layer.weights, *([layer.bias] if layer.bias is not None else [])]
            grads = torch.autograd.grad(y, [x, *params], g, allow_unused=True)
            grad_x, grad_dense = torch.autograd.grad(reference, [x, dense], g)
            torch.testing.assert_close(grads[0] if grads[0] is not None else torch.zeros_like(x), grad_x)
            grad_blocks = torch.cat([grad.reshape(-1) for grad in grads[1 : 1 + len(layer.weights)]])
            torch.testing.assert_close(grad_blocks, grad_dense[layer._rows, layer._cols])
            if layer.bias is not None:
                torch.testing.assert_close(grads[-1], g.sum(0))


@pytest.mark.parametrize("dense_limit", [0, 6, 1 << 30])
def test_block_sparse_relu_residual_matches_the_dense_equivalent(dense_limit):
    """``relu(W x + b) + x`` in one kernel node (the interaction layer): output and every gradient (float64)."""
    rng = np.random.default_rng(11)
    for trial in range(25):
        in_sizes, _, connections = random_structure(rng, square=True)
        if trial % 3 == 0:  # without the self loops: the backward pass starts from a copy of the skip gradient
            connections = connections[:, connections[0] != connections[1]]
        layer = BlockSparseLinear(in_sizes, in_sizes, connections, dense_limit=dense_limit, bias=trial % 4 != 0)
        layer = layer.double()
        dense = layer.to_dense().requires_grad_(True)
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.n_out, dtype=torch.float64)
        x = torch.randn(layer.n_in, 5, dtype=torch.float64, requires_grad=True)
        y = layer.forward_t_relu_residual(x)
        reference = torch.relu(dense @ x + bias[:, None]) + x
        torch.testing.assert_close(y, reference)
        g = torch.randn_like(y)
        params = [*layer.weights, *([layer.bias] if layer.bias is not None else [])]
        grads = torch.autograd.grad(y, [x, *params], g)
        grad_x, grad_dense, *grad_bias = torch.autograd.grad(
            reference, [x, dense, *([layer.bias] if layer.bias is not None else [])], g
        )
        torch.testing.assert_close(grads[0], grad_x)
        grad_blocks = torch.cat([grad.reshape(-1) for grad in grads[1 : 1 + len(layer.weights)]])
        torch.testing.assert_close(grad_blocks, grad_dense[layer._rows, layer._cols])
        if grad_bias:
            torch.testing.assert_close(grads[-1], grad_bias[0])
    with pytest.raises(ValueError, match="residual"):
        BlockSparseLinear(np.array([1, 2]), np.array([2]), np.array([[0], [0]])).forward_t_relu_residual(x)


@pytest.mark.parametrize("dense_limit", [0, 1 << 30])
def test_block_sparse_gradcheck(dense_limit):
    in_sizes, out_sizes = np.array([2, 1, 3, 2]), np.array([2, 2, 3, 1])
    connections = np.array([[0, 0, 1, 2, 3, 3, 2, 1], [0, 1, 1, 2, 2, 0, 0, 3]])  # shared sources and destinations
    layer = BlockSparseLinear(in_sizes, out_sizes, connections, dense_limit=dense_limit).double()
    xt = torch.randn(layer.n_in, 3, dtype=torch.float64, requires_grad=True)
    params = [*layer.weights, layer.bias]
    assert torch.autograd.gradcheck(lambda x, *_: layer.forward_t(x), (xt, *params))


def test_block_sparse_parameters_are_the_structural_weights():
    in_sizes, out_sizes = np.array([1, 3, 2, 2]), np.array([2, 4, 1])
    connections = np.array([[0, 1, 1, 3, 2, 2], [0, 0, 1, 1, 2, 2]])  # one duplicate
    for dense_limit in (0, 1 << 30):
        layer = BlockSparseLinear(in_sizes, out_sizes, connections, dense_limit=dense_limit)
        structural = sum(in_sizes[s] * out_sizes[d] for s, d in set(zip(*connections.tolist(), strict=True)))
        assert sum(w.numel() for w in layer.weights) == structural
        assert sum(p.numel() for p in layer.parameters()) == structural + out_sizes.sum()
        assert set(layer.state_dict()) == {"bias", *(f"weights.{k}" for k in range(len(layer.weights)))}


def test_block_sparse_self_loops_are_computed_in_place():
    """A square layer whose blocks all connect to themselves starts from an in-place bucket (no gather)."""
    sizes = np.full(6, 3)
    connections = np.array([[0, 1, 2, 3, 4, 5, 0, 3, 5, 5], [0, 1, 2, 3, 4, 5, 2, 2, 0, 1]])
    layer = BlockSparseLinear(sizes, sizes, connections, dense_limit=0).double()
    x = torch.randn(18, 4, dtype=torch.float64)
    buckets = layer._plan(x).fwd[0]
    assert buckets[0].place_range == buckets[0].gather_range == (0, 18) and not buckets[0].accumulate
    assert all(bucket.accumulate for bucket in buckets[1:])
    torch.testing.assert_close(layer.forward_t(x), layer.to_dense() @ x + layer.bias[:, None])


def test_block_sparse_reads_row_blocks_without_stacking():
    rng = np.random.default_rng(3)
    for dense_limit in (0, 40, 1 << 30):
        layer = BlockSparseLinear(*random_structure(rng), dense_limit=dense_limit).double()
        x = torch.randn(layer.n_in, 4, dtype=torch.float64)
        cut = layer.n_in // 2
        parts = [x[:cut].clone().requires_grad_(True), x[cut:].clone().requires_grad_(True)]
        y = layer.forward_t(parts)
        torch.testing.assert_close(y, layer.forward_t(x))
        grads = torch.autograd.grad(y.square().sum(), parts, allow_unused=True)
        expected = layer.to_dense().T @ (2 * y.detach())
        for grad, rows in zip(grads, (slice(0, cut), slice(cut, None)), strict=True):
            torch.testing.assert_close(grad if grad is not None else torch.zeros_like(x[rows]), expected[rows])
    with pytest.raises(ValueError, match="input rows"):
        layer.forward_t([x[:1]])


def test_block_sparse_is_deterministic():
    layer = BlockSparseLinear(np.full(50, 4), np.full(50, 4), np.random.default_rng(0).integers(0, 50, (2, 300)))
    x = torch.randn(200, 16, requires_grad=True)
    runs = []
    for _ in range(2):
        y = layer.forward_t(x)
        runs.append(torch.autograd.grad(y.sin().sum(), [x, *layer.parameters()]))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_block_sparse_loads_checkpoints_of_the_earlier_layout():
    """Dense layers stored an (n_out, n_in) masked ``weight``, kernel layers their ``_src{k}``/``_dst{k}`` indices."""
    in_sizes, out_sizes = np.array([1, 3, 2]), np.array([2, 2])
    connections = np.array([[0, 1, 2], [0, 1, 1]])
    layer = BlockSparseLinear(in_sizes, out_sizes, connections)
    old = {"weight": layer.to_dense() * 2, "bias": layer.bias.detach() + 1}
    fresh = BlockSparseLinear(in_sizes, out_sizes, connections)
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh.to_dense(), old["weight"])
    torch.testing.assert_close(fresh.bias.detach(), old["bias"])
    kernel = BlockSparseLinear(in_sizes, out_sizes, connections, dense_limit=0)
    old = {**{k: v * 3 for k, v in kernel.state_dict().items()}, "_src0": torch.arange(3), "_dst1": torch.arange(2)}
    kernel.load_state_dict(old)  # strict: the old index buffers are not unexpected keys
    torch.testing.assert_close(kernel.weights[0].detach(), old["weights.0"])
