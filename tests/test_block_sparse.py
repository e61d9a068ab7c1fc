"""The bucketed block kernel (the GPU's; run here on CPU with ``cpu_kernel = False``): bounded bucket counts, padded
connections that change nothing. The CPU kernel is tested in ``test_block_csr.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scvi_networkvi.nn import BlockSparseLinear
from scvi_networkvi.nn._block_plan import bucket_size


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def many_counts(rng, n_out: int = 40, n_in: int = 90, square: bool = False, twins: bool = False):
    """Output block ``o`` reads ``o + 1`` distinct input blocks (many distinct ``k``), two block shapes per side.

    ``twins``: every output block twice, as the two paths of a GO level stack them (blocks ``o`` and ``o + n_out``).
    """
    in_sizes = rng.integers(1, 3, n_in)
    out_sizes = in_sizes.copy() if square else rng.choice([1, 3], n_out)
    n_out = len(out_sizes)
    pairs = [(s, o) for o in range(n_out) for s in rng.choice(n_in, min(n_in, o % 47 + 1), replace=False)]
    connections = np.array(pairs, dtype=np.int64).T
    if square:  # self loops, as the interaction layer has
        connections = np.concatenate([np.tile(np.arange(n_in), (2, 1)), connections], axis=1)
    if twins:
        connections = np.concatenate([connections, connections + np.array([[0], [n_out]])], axis=1)
        out_sizes = np.concatenate([out_sizes, out_sizes])
    return in_sizes, out_sizes, connections


def configured(layer: BlockSparseLinear, per_octave: int, run_bytes: int | None) -> BlockSparseLinear:
    layer.per_octave, layer.run_bytes = per_octave, run_bytes
    layer.cpu_kernel = False  # the bucketed kernel, on CPU
    return layer


@pytest.mark.parametrize("per_octave", [1, 2])
def test_bucket_sizes_are_a_geometric_grid(per_octave):
    k = np.arange(1, 5000)
    size = bucket_size(k, per_octave)
    assert np.all(size >= k)
    assert np.all(size <= (2 * k if per_octave == 1 else np.maximum(3 * k // 2 + 1, 2)))
    assert len(np.unique(size)) <= per_octave * math.ceil(math.log2(k.max())) + 1
    np.testing.assert_array_equal(bucket_size(k, 0), k)


@pytest.mark.parametrize("per_octave", [1, 2])
def test_bucket_count_does_not_grow_with_distinct_counts(per_octave):
    """Every plan has at most ``per_octave * ceil(log2(max k)) + 1`` buckets (+1 in-place self-loop bucket)."""
    rng = np.random.default_rng(0)
    for square in (False, True):
        layer = configured(BlockSparseLinear(*many_counts(rng, square=square), dense_limit=0), per_octave, None)
        x = torch.randn(layer.n_in, 3)
        plan = layer._plan(x)
        exact = configured(layer, 0, None)._plan(x)
        for plans, exact_plans in ((plan.fwd, exact.fwd), (plan.bwd, exact.bwd)):
            for buckets, exact_buckets in zip(plans, exact_plans, strict=True):
                max_k = max(bucket.k for bucket in exact_buckets)
                in_place = int(not buckets[0].accumulate and buckets[0].gather_range is not None and square)
                assert len(buckets) <= per_octave * math.ceil(math.log2(max(max_k, 2))) + 1 + in_place
        assert sum(len(b) for b in exact.fwd) > sum(len(b) for b in plan.fwd)  # the structure has many distinct k


@pytest.mark.parametrize("per_octave", [0, 1, 2])
@pytest.mark.parametrize("run_bytes", [None, 1, 200])
@pytest.mark.parametrize("shape", ["plain", "square", "twins"])
def test_padded_and_split_kernels_match_the_dense_equivalent(per_octave, run_bytes, shape):
    """Output, input, weight and bias gradients equal those of ``to_dense()`` (float64), whatever the bucketing."""
    square = shape == "square"
    rng = np.random.default_rng(5 + square)
    for trial in range(3):
        structure = many_counts(rng, square=square, twins=shape == "twins")
        layer = BlockSparseLinear(*structure, dense_limit=0, bias=trial != 1).double()
        configured(layer, per_octave, run_bytes)
        if shape == "twins":
            plan = layer._plan(torch.zeros(layer.n_in, 5, dtype=torch.float64))
            assert all(bucket.twins == 2 for buckets in (*plan.fwd, *plan.bwd) for bucket in buckets)
        dense = layer.to_dense().requires_grad_(True)
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.n_out, dtype=torch.float64)
        x = torch.randn(layer.n_in, 5, dtype=torch.float64, requires_grad=True)
        params = [*layer.weights, *([layer.bias] if layer.bias is not None else [])]
        outputs = [(layer.forward_t(x), dense @ x + bias[:, None])]
        if square:
            outputs.append((layer.forward_t_relu_residual(x), torch.relu(dense @ x + bias[:, None]) + x))
        for y, reference in outputs:
            torch.testing.assert_close(y, reference)
            g = torch.randn_like(y)
            grads = torch.autograd.grad(y, [x, *params], g)
            has_bias = [layer.bias] if layer.bias is not None else []
            grad_x, grad_dense, *grad_bias = torch.autograd.grad(reference, [x, dense, *has_bias], g)
            torch.testing.assert_close(grads[0], grad_x)
            for grad, weight in zip(grads[1:], layer.weights, strict=False):
                assert grad.shape == weight.shape  # padding never reaches the parameters
            grad_blocks = torch.cat([grad.reshape(-1) for grad in grads[1 : 1 + len(layer.weights)]])
            torch.testing.assert_close(grad_blocks, grad_dense[layer._rows, layer._cols])
            if grad_bias:
                torch.testing.assert_close(grads[-1], grad_bias[0])


def test_padding_adds_no_parameters_and_bucketing_no_state():
    rng = np.random.default_rng(1)
    in_sizes, out_sizes, connections = many_counts(rng)
    layer = BlockSparseLinear(in_sizes, out_sizes, connections, dense_limit=0)
    structural = sum(in_sizes[s] * out_sizes[d] for s, d in set(zip(*connections.tolist(), strict=True)))
    keys, numel = set(layer.state_dict()), sum(w.numel() for w in layer.weights)
    for per_octave in (0, 1, 2):
        configured(layer, per_octave, None)._plan(torch.zeros(layer.n_in, 2))
        assert set(layer.state_dict()) == keys and sum(w.numel() for w in layer.weights) == numel == structural


@pytest.mark.parametrize("per_octave", [1, 2])
def test_padded_kernel_is_deterministic_and_matches_the_exact_buckets(per_octave):
    """Two runs agree bitwise; exact (today's CPU) and padded buckets agree up to float rounding (float32)."""
    layer = BlockSparseLinear(*many_counts(np.random.default_rng(2)), dense_limit=0)
    x = torch.randn(layer.n_in, 16, requires_grad=True)
    runs = {}
    for name, octave, repeat in (("padded", per_octave, 0), ("padded", per_octave, 1), ("exact", 0, 0)):
        configured(layer, octave, None)
        y = layer.forward_t(x)
        runs[name, repeat] = (y, *torch.autograd.grad(y.sin().sum(), [x, *layer.parameters()]))
    for a, b in zip(runs["padded", 0], runs["padded", 1], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(runs["padded", 0], runs["exact", 0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_row_blocks_with_padded_buckets():
    """A GO level reads ``[genes | deeper terms]`` as row blocks; the padded kernel gives the stacked result."""
    layer = configured(BlockSparseLinear(*many_counts(np.random.default_rng(3)), dense_limit=0).double(), 1, 64)
    x = torch.randn(layer.n_in, 4, dtype=torch.float64)
    cut = layer.n_in // 3
    parts = [x[:cut].clone().requires_grad_(True), x[cut:].clone().requires_grad_(True)]
    y = layer.forward_t(parts)
    torch.testing.assert_close(y, layer.to_dense() @ x + layer.bias[:, None])
    grads = torch.autograd.grad(y.square().sum(), parts)
    expected = layer.to_dense().T @ (2 * y.detach())
    torch.testing.assert_close(torch.cat(grads), expected)


@pytest.mark.parametrize("sparse", [False, True])
def test_parts_read_in_place_with_a_sparse_first_gradient(sparse):
    """Each group reads one part (genes of size 5, terms of size 2): no stacking, part 0's gradient may be sparse."""
    rng = np.random.default_rng(4)
    in_sizes = np.concatenate([np.full(60, 5), np.full(20, 2)])
    out_sizes = np.full(12, 2)
    connections = np.stack([rng.integers(0, 80, 150), rng.integers(0, 12, 150)])
    connections = np.concatenate([connections, connections + np.array([[0], [12]])], axis=1)  # two paths
    layer = BlockSparseLinear(in_sizes, np.concatenate([out_sizes, out_sizes]), connections, dense_limit=0).double()
    layer.sparse_first_part_grad, layer.cpu_kernel = sparse, False
    x = torch.randn(layer.n_in, 4, dtype=torch.float64)
    parts = [x[:300].clone().requires_grad_(True), x[300:].clone().requires_grad_(True)]
    plan = layer._plan(parts)
    assert plan is not None and sorted(plan.part_of) == [0, 1] and (plan.sparse_rows is not None) == sparse
    y = layer.forward_t(parts)
    torch.testing.assert_close(y, layer.to_dense() @ x + layer.bias[:, None])
    (grad_genes, grad_terms) = torch.autograd.grad(y.square().sum(), parts)
    assert grad_genes.is_sparse == sparse
    expected = layer.to_dense().T @ (2 * y.detach())
    torch.testing.assert_close(grad_genes.to_dense(), expected[:300])
    torch.testing.assert_close(grad_terms, expected[300:])


@pytest.mark.parametrize("residual", [False, True])
def test_input_blocks_without_connections_get_their_gradient(residual):
    """One block shape, some input blocks unconnected: only their rows are zeroed (or take the skip's gradient)."""
    rng = np.random.default_rng(6)
    sizes = np.full(30, 2)
    connections = np.stack([rng.integers(5, 30, 80), rng.integers(0, 30, 80)])  # blocks 0-4 feed nothing
    layer = configured(BlockSparseLinear(sizes, sizes, connections, dense_limit=0).double(), 2, 64)
    x = torch.randn(60, 3, dtype=torch.float64, requires_grad=True)
    assert layer._plan(x).bwd_init == "rest" and set(layer._plan(x).unwritten.tolist()) >= set(range(10))
    dense, bias = layer.to_dense(), layer.bias[:, None]
    y = layer.forward_t_relu_residual(x) if residual else layer.forward_t(x)
    reference = torch.relu(dense @ x + bias) + x if residual else dense @ x + bias
    torch.testing.assert_close(y, reference)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(reference, x, g)[0])
