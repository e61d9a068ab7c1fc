"""The CPU block kernel (:mod:`scvi_networkvi.nn._block_csr`) against the plain-torch dense reference (float64)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from scvi_networkvi.nn import BlockSparseLinear, _block_csr
from scvi_networkvi.nn import _torch_threads as threads
from scvi_networkvi.nn._block_csr import BlockCSRFunction


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def go_level(rng, n_genes: int = 60, n_terms: int = 20, n_out: int = 12, unknown: bool = True):
    """A GO level's structure: ``[genes (5) | deeper terms (2)]`` -> terms (2; an UNKNOWN of 12), two paths."""
    in_sizes = np.concatenate([np.full(n_genes, 5), np.full(n_terms, 2)])
    out_sizes = np.full(n_out, 2)
    src = rng.integers(0, n_genes + n_terms, 4 * n_out * 3)
    dst = rng.integers(0, n_out - unknown, len(src))
    if unknown:  # the last term reads many genes, with wider blocks
        out_sizes[-1] = 12
        src = np.concatenate([src, np.arange(0, n_genes, 2)])
        dst = np.concatenate([dst, np.full(len(range(0, n_genes, 2)), n_out - 1)])
    connections = np.stack([src, dst])
    connections = np.concatenate([connections, connections + np.array([[0], [n_out]])], axis=1)
    return in_sizes, np.concatenate([out_sizes, out_sizes]), connections


def reference_check(layer: BlockSparseLinear, parts: list[torch.Tensor], y: torch.Tensor) -> None:
    """Output, input, weight and bias gradients equal those of ``to_dense()``."""
    x = torch.cat([p.detach() for p in parts]).requires_grad_(True)
    dense = layer.to_dense().requires_grad_(True)
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.n_out, dtype=x.dtype)
    reference = dense @ x + bias[:, None]
    torch.testing.assert_close(y, reference)
    g = torch.randn_like(y)
    params = [*layer.weights, *([layer.bias] if layer.bias is not None else [])]
    grads = torch.autograd.grad(y, [*parts, *params], g)
    grad_x, grad_dense = torch.autograd.grad(reference, [x, dense], g)
    grad_parts = torch.cat([grad.to_dense() for grad in grads[: len(parts)]])
    torch.testing.assert_close(grad_parts, grad_x)
    grad_blocks = torch.cat([grad.reshape(-1) for grad in grads[len(parts) : len(parts) + len(layer.weights)]])
    torch.testing.assert_close(grad_blocks, grad_dense[layer._rows, layer._cols])
    if layer.bias is not None:
        torch.testing.assert_close(grads[-1], g.sum(1))


def run(layer: BlockSparseLinear, x: torch.Tensor, cuts: list[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
    parts = [piece.clone().requires_grad_(True) for piece in x.split(cuts)] if cuts else [x.clone().requires_grad_()]
    return parts, layer.forward_t(parts)


@pytest.mark.parametrize("dense_limit", [0, None])
@pytest.mark.parametrize("cuts", [[], [300, 40], [200, 100, 40]])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_the_dense_reference(dense_limit, cuts, bias):
    """Every group on the kernel (``dense_limit=0``) or the default split; one, two or three input parts (a group
    reading terms of several deeper levels is planned once per part)."""
    rng = np.random.default_rng(len(cuts) + 3 * bias)
    kwargs = {} if dense_limit is None else {"dense_limit": dense_limit}
    layer = BlockSparseLinear(*go_level(rng), bias=bias, **kwargs).double()
    x = torch.randn(layer.n_in, 7, dtype=torch.float64)
    parts, y = run(layer, x, cuts)
    if cuts:
        assert layer._csr_kernel_plan(parts) is not None  # the parts are read in place
    reference_check(layer, parts, y)


def test_block_straddling_two_parts_falls_back_to_stacking():
    layer = BlockSparseLinear(*go_level(np.random.default_rng(1)), dense_limit=0).double()
    x = torch.randn(layer.n_in, 4, dtype=torch.float64)
    parts, y = run(layer, x, [301, layer.n_in - 301])  # row 301 is inside the first term block (rows 300-301)
    assert layer._csr_kernel_plan(parts) is None
    reference_check(layer, parts, y)


def test_sparse_first_part_gradient():
    """A GO level above the first returns the gene rows' gradient as a sparse tensor of the rows it reads."""
    layer = BlockSparseLinear(*go_level(np.random.default_rng(2), unknown=False), dense_limit=0).double()
    layer.sparse_first_part_grad = True
    x = torch.randn(layer.n_in, 5, dtype=torch.float64)
    parts, y = run(layer, x, [300, 40])
    genes, terms = torch.autograd.grad(y.square().sum(), parts)
    assert genes.is_sparse and not terms.is_sparse
    expected = layer.to_dense().T @ (2 * y.detach())
    torch.testing.assert_close(torch.cat([genes.to_dense(), terms]), expected)


def test_residual_layer_and_unconnected_input_blocks():
    """The interaction layer's ``relu(W x + b) + x``, input blocks 0-4 reading nothing (their gradient: the skip's)."""
    rng = np.random.default_rng(6)
    sizes = np.full(30, 2)
    connections = np.stack([rng.integers(5, 30, 80), rng.integers(0, 30, 80)])
    layer = BlockSparseLinear(sizes, sizes, connections, dense_limit=0).double()
    x = torch.randn(60, 3, dtype=torch.float64, requires_grad=True)
    y = layer.forward_t_relu_residual(x)
    reference = torch.relu(layer.to_dense() @ x + layer.bias[:, None]) + x
    torch.testing.assert_close(y, reference)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(reference, x, g)[0])


def test_matches_the_bucketed_kernel_and_is_deterministic():
    """Same results as the GPU's bucketed kernel (float32 rounding), bitwise the same on a second run."""
    layer = BlockSparseLinear(*go_level(np.random.default_rng(3)), dense_limit=0)
    x = torch.randn(layer.n_in, 16)
    runs = []
    for cpu_kernel in (True, True, False):
        layer.cpu_kernel = cpu_kernel
        parts, y = run(layer, x, [300, 40])
        runs.append((y, *torch.autograd.grad(y.sin().sum(), [*parts, *layer.parameters()])))
    for a, b in zip(runs[0], runs[1], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(runs[0], runs[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(threads._gomp_parallel() is None, reason="torch's OpenMP team is not reachable")
def test_same_result_for_every_thread_count():
    """Large enough to run on torch's OpenMP team: bitwise the same results with one and two threads."""
    layer = BlockSparseLinear(*go_level(np.random.default_rng(4), n_genes=3000, n_terms=200, n_out=400), dense_limit=0)
    x = torch.randn(layer.n_in, 128)
    before, runs = torch.get_num_threads(), []
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            parts, y = run(layer, x, [15000, 400])
            runs.append((y, *torch.autograd.grad(y.sin().sum(), [*parts, *layer.parameters()])))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_inference_without_autograd_matches_training_path():
    layer = BlockSparseLinear(*go_level(np.random.default_rng(5)), dense_limit=0)
    x = torch.randn(layer.n_in, 9)
    with torch.no_grad():
        inference = layer.forward_t([x[:300], x[300:]])
    torch.testing.assert_close(inference, layer.forward_t([x[:300], x[300:]]).detach())


def test_applies_on_cpu_float_only():
    layer = BlockSparseLinear(*go_level(np.random.default_rng(7)), dense_limit=0)
    assert layer._cpu_kernel_applies(torch.zeros(1, 1))
    assert not layer._cpu_kernel_applies(torch.zeros(1, 1, dtype=torch.bfloat16))
    layer.cpu_kernel = False
    assert not layer._cpu_kernel_applies(torch.zeros(1, 1))
    assert BlockCSRFunction is not None


@pytest.mark.parametrize("cuts", [[], [300, 40], [200, 100, 40]])
@pytest.mark.parametrize("bias", [True, False])
def test_inference_kernel_matches_the_dense_reference(cuts, bias, monkeypatch):
    """Without autograd the forward pass runs on the inference kernel (:mod:`._block_csr_eval`): the dense reference's
    result (float64), and in float32 bitwise the training kernel's."""
    from scvi_networkvi.nn import _block_sparse

    calls = []
    original = _block_sparse.block_csr_forward_eval
    monkeypatch.setattr(_block_sparse, "block_csr_forward_eval", lambda *a: calls.append(1) or original(*a))
    rng = np.random.default_rng(10 + len(cuts) + 3 * bias)
    layer = BlockSparseLinear(*go_level(rng), bias=bias, dense_limit=0)
    for dtype in (torch.float64, torch.float32):
        layer = layer.to(dtype)
        x = torch.randn(layer.n_in, 37, dtype=dtype)
        parts = list(x.split(cuts)) if cuts else [x]
        with torch.inference_mode():
            y = layer.forward_t(parts)
        assert len(calls) == 1
        calls.clear()
        reference = layer.to_dense().detach() @ x + (layer.bias.detach()[:, None] if bias else 0)
        torch.testing.assert_close(y, reference)
        layer.eval_kernel = False
        with torch.no_grad():
            training = layer.forward_t(parts)
        layer.eval_kernel = True
        assert not calls
        if dtype == torch.float32:
            assert torch.equal(y, training)


def test_inference_kernel_only_without_autograd(monkeypatch):
    """With autograd recording, the training kernel runs (its backward needs the autograd node)."""
    from scvi_networkvi.nn import _block_sparse

    monkeypatch.setattr(_block_sparse, "block_csr_forward_eval", lambda *a: pytest.fail("inference kernel ran"))
    layer = BlockSparseLinear(*go_level(np.random.default_rng(11)), dense_limit=0)
    y = layer.forward_t(torch.randn(layer.n_in, 3))
    assert y.requires_grad


@pytest.mark.skipif(threads._gomp_parallel() is None, reason="torch's OpenMP team is not reachable")
def test_inference_kernel_same_result_for_every_thread_count(monkeypatch):
    """Large enough for torch's OpenMP team: bitwise the same inference results with one and two threads."""
    from scvi_networkvi.nn import _block_csr_eval

    teams = []
    original = threads.run
    monkeypatch.setattr(_block_csr_eval.threads, "run", lambda *a: teams.append(a[2]) or original(*a))
    layer = BlockSparseLinear(*go_level(np.random.default_rng(12), n_genes=3000, n_terms=200, n_out=400), dense_limit=0)
    x = torch.randn(layer.n_in, 256)
    before, runs = torch.get_num_threads(), []
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            with torch.inference_mode():
                runs.append(layer.forward_t([x[:15000], x[15000:]]))
    finally:
        torch.set_num_threads(before)
    assert teams and set(teams) == {2}  # the two-thread run went to the team, the one-thread run did not
    assert torch.equal(*runs)


@numba.njit(fastmath={"contract"})
def _one_term_per_pass(grad, terms, factors, count, acc):
    for i in range(acc.shape[0]):
        acc[i, :] = 0
        for q in range(count):
            for c in range(acc.shape[1]):
                acc[i, c] += factors[i, q] * grad[terms[q], c]


@pytest.mark.parametrize("count", [0, 3, 8, 21])
def test_eight_terms_per_pass_is_bitwise_one_term_per_pass(count):
    """The backward kernel's input-gradient sums (:func:`_block_csr._sum_rows`): the same fused multiply-adds in the
    same order as one term per pass (float32), and the numpy sum within float rounding."""
    rng = np.random.default_rng(count)
    grad = rng.standard_normal((30, 37)).astype(np.float32)
    terms = rng.integers(0, 30, 24)
    factors = rng.standard_normal((5, 24)).astype(np.float32)
    acc, expected = np.full((5, 37), np.nan, np.float32), np.empty((5, 37), np.float32)
    _block_csr._sum_rows(grad, terms, factors, count, acc, np.float32(0))
    _one_term_per_pass(grad, terms, factors, count, expected)
    np.testing.assert_array_equal(acc, expected)
    np.testing.assert_allclose(acc, factors[:, :count] @ grad[terms[:count]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("count", [0, 3, 4, 8, 13, 21])
def test_weight_gradients_from_the_input_gradient_pass(count):
    """:func:`_block_csr._sum_rows_dots`: the input-gradient sums bitwise those of :func:`_block_csr._sum_rows`, and
    the weight gradients (input row . term row) the numpy products within float rounding."""
    rng = np.random.default_rng(count)
    grad = rng.standard_normal((30, 37)).astype(np.float32)
    x = rng.standard_normal((12, 37)).astype(np.float32)
    terms = rng.integers(0, 30, 24)
    factors = rng.standard_normal((5, 24)).astype(np.float32)
    acc, expected = np.full((5, 37), np.nan, np.float32), np.empty((5, 37), np.float32)
    dots = np.full((5, 24), np.nan, np.float32)
    _block_csr._sum_rows_dots(grad, terms, factors, count, acc, x, 4, dots, np.float32(0))
    _block_csr._sum_rows(grad, terms, factors, count, expected, np.float32(0))
    np.testing.assert_array_equal(acc, expected)
    np.testing.assert_allclose(dots[:, :count], x[4:9] @ grad[terms[:count]].T, rtol=1e-5, atol=1e-5)
    assert np.isnan(dots[:, count:]).all()  # nothing written past the terms


def test_weight_gradients_without_the_input_gradient():
    """The weight gradients taken alone (no input gradient asked for) equal those of the fused pass."""
    layer = BlockSparseLinear(*go_level(np.random.default_rng(5)), dense_limit=0)
    x = torch.randn(layer.n_in, 19)
    g = torch.randn(layer.n_out, 19)
    both = torch.autograd.grad(layer.forward_t([x.requires_grad_(True)]), [x, *layer.weights], g)[1:]
    alone = torch.autograd.grad(layer.forward_t([x.detach()]), list(layer.weights), g)
    for a, b in zip(both, alone, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
