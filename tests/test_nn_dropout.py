"""Dropout in the gene layer: ``WideDropout``, the seeded keep mask, the fused two-path ReLU (elementwise, gathered)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scvi_networkvi.nn._wired_encoder import (
    WideDropout,
    _ElementwiseTwoPathReLU,
    _GatheredTwoPathReLU,
    _TwoPathBlockLayer,
    keep_mask,
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path))
    torch.manual_seed(0)


def test_wide_dropout_keeps_dropouts_meaning():
    dropout = WideDropout(0.25)
    x = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(5)
    y = dropout(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, y.detach())
    torch.manual_seed(5)
    assert torch.equal(dropout(x), y)  # seeded by torch's generator
    dropout.eval()
    assert dropout(x) is x
    dropout = WideDropout(0.25, inplace=True)
    z = x * 1
    torch.manual_seed(5)
    assert dropout(z) is z and torch.equal(z, y)


def test_keep_mask_is_bernoulli_and_seeded_by_torch():
    torch.manual_seed(3)
    mask = keep_mask((500, 400), 0.1)
    assert mask.dtype == torch.float32 and set(mask.unique().tolist()) == {0.0, 1.0}
    assert abs(mask.mean().item() - 0.9) < 0.004  # 200,000 draws: sd 0.0007
    torch.manual_seed(3)
    assert torch.equal(keep_mask((500, 400), 0.1), mask)
    assert not torch.equal(keep_mask((500, 400), 0.1), mask)
    assert keep_mask((3,), 0.5, torch.float64).dtype == torch.float64
    half = keep_mask((40, 50), 0.5, torch.bfloat16)  # no numba dtype: drawn as float32, then converted
    assert half.dtype == torch.bfloat16 and set(half.unique().tolist()) == {0.0, 1.0}
    assert keep_mask((7, 1), 1e-12).all() and not keep_mask((7, 1), 1 - 1e-12).any()
    torch.manual_seed(3)
    odd = keep_mask((301, 257), 0.2, torch.uint8)  # odd size: the middle element draws alone
    assert odd.dtype == torch.uint8 and abs(odd.float().mean().item() - 0.8) < 0.01
    torch.manual_seed(3)
    assert torch.equal(keep_mask((301, 257), 0.2, torch.float64), odd.double())  # same draws whatever the dtype
    flat = odd.double().reshape(-1)
    middle = (flat.numel() + 1) // 2  # the two halves of one 64-bit draw feed elements k and k + middle
    assert abs(torch.corrcoef(torch.stack([flat[: middle - 1], flat[middle:]]))[0, 1].item()) < 0.02


def test_keep_mask_draws_are_splitmix64_outputs_split_in_two_halves():
    """Pinned against a plain-Python SplitMix64: element k takes the low 32 bits of output k, k + ceil(n/2) the high."""
    from scvi_networkvi.nn import _keep_mask

    def splitmix(seed: int, k: int) -> int:
        full = (1 << 64) - 1
        z = (seed + (k + 1) * 0x9E3779B97F4A7C15) & full
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & full
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & full
        return z ^ (z >> 31)

    seed, n, p = 12345, 1001, 0.3
    threshold = round(p * 2**32)
    half = n - n // 2
    expected = np.empty(n, dtype=np.uint8)
    for k in range(n // 2):
        z = splitmix(seed, k)
        expected[k], expected[k + half] = (z & 0xFFFFFFFF) >= threshold, (z >> 32) >= threshold
    expected[half - 1] = (splitmix(seed, half - 1) & 0xFFFFFFFF) >= threshold  # odd n: the middle element
    out = np.full(n, 7, dtype=np.uint8)
    for start, stop in [(0, 123), (123, 400), (400, n // 2)]:  # chunks, as the threads take them
        _keep_mask._draw(np.uint64(seed), threshold, out, start, stop)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_keep_mask_is_the_same_for_every_thread_count(dtype, monkeypatch):
    """Large masks are drawn in chunks by torch's threads; the draws depend on the seed and position only."""
    from scvi_networkvi.nn import _torch_threads as threads

    runs, team_run = [], threads.run
    monkeypatch.setattr(threads, "run", lambda *a: runs.append(1) or team_run(*a))
    shape = (521, 3, 171)  # odd size above the team's minimum: the middle element falls to the last chunk
    before, masks = torch.get_num_threads(), []
    try:
        for n_threads in (2, 1):
            torch.set_num_threads(n_threads)
            torch.manual_seed(11)
            masks.append(keep_mask(shape, 0.3, dtype))
    finally:
        torch.set_num_threads(before)
    if "parallel backend: OpenMP" in torch.__config__.parallel_info():
        assert runs == [1]  # drawn by the team with two threads, here with one
    assert torch.equal(masks[0], masks[1])
    assert abs(masks[0].float().mean().item() - 0.7) < 0.005


def test_gene_layer_fuses_dropout_without_changing_it():
    """The fused elementwise gene layer + dropout equals the layer followed by WideDropout: same mask, gradients."""
    sizes = np.ones(9, dtype=np.int64)
    connections = np.stack([np.arange(9), np.random.default_rng(0).permutation(9)])
    layer = _TwoPathBlockLayer(sizes, np.full(9, 4), connections, "relu", linear_path=True).double()
    assert layer.fuses_dropout
    dropout = WideDropout(0.3)
    x = torch.randn(9, 50, dtype=torch.float64, requires_grad=True)
    params = [x, layer.linear.bias, layer.linear.weights[0]]
    g = torch.randn(36, 50, dtype=torch.float64)
    torch.manual_seed(8)
    fused = layer.forward_t(x, dropout=0.3)
    torch.manual_seed(8)
    reference = dropout(layer.forward_t(x))
    torch.testing.assert_close(fused, reference)
    assert 0.6 < (fused != 0).double().mean().item() < 0.8
    for a, b in zip(torch.autograd.grad(fused, params, g), torch.autograd.grad(reference, params, g), strict=True):
        torch.testing.assert_close(a, b)
    leaky = _TwoPathBlockLayer(sizes, np.full(9, 4), connections, "leaky_relu", linear_path=True)
    assert not leaky.fuses_dropout
    with pytest.raises(ValueError, match="fused"):
        leaky.forward_t(x.float().detach(), dropout=0.3)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_elementwise_two_path_relu_gradients(dropout):
    """The fused gene-layer kernel: numerical gradients (float64), its plain form, and a second backward pass through
    the same graph (its backward overwrites only a temporary of its own)."""
    blocks, size, n = 4, 3, 6
    x = torch.randn(blocks, 1, n, dtype=torch.float64, requires_grad=True)
    params = [torch.randn(blocks, size, 1, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    mask = (torch.rand(blocks, size, n) >= dropout).double() if dropout else None
    scale = 1.0 / (1.0 - dropout)

    def fused(*args):
        return _ElementwiseTwoPathReLU.apply(*args, mask, scale)

    assert torch.autograd.gradcheck(fused, (x, *params))
    w1, b1, w2, b2 = params
    reference = torch.relu(scale * (w1 * x + b1)) + scale * (w2 * x + b2)
    reference = (reference * mask if mask is not None else reference).reshape(blocks * size, n)
    out = fused(x, *params)
    torch.testing.assert_close(out, reference)
    g = torch.randn_like(out)
    first = torch.autograd.grad(out, [x, *params], g, retain_graph=True)
    second = torch.autograd.grad(out, [x, *params], g)
    for a, b, expected in zip(first, second, torch.autograd.grad(reference, [x, *params], g), strict=True):
        torch.testing.assert_close(a, expected)
        assert torch.equal(a, b)


def multi_input_structure(rng, n_features=9, n_blocks=6, empty_block=False):
    """Single-neuron inputs feeding 1-4 blocks each, blocks reading 1-4 inputs (peaks -> genes), duplicates included."""
    src = np.repeat(np.arange(n_features), rng.integers(1, 3, n_features))
    dst = rng.integers(0, n_blocks - empty_block, len(src))
    dst[: n_blocks - empty_block] = np.arange(n_blocks - empty_block)  # every block but the last has an input
    return np.ones(n_features, dtype=np.int64), np.stack([src, dst])


@pytest.mark.parametrize("empty_block", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_gathered_two_path_relu_matches_the_block_product(empty_block, dropout):
    """Several single-neuron inputs per block (ATAC peaks -> genes): the gathered kernel equals the two-path block
    product (+ the same dropout mask), output and every gradient, and passes gradcheck (float64)."""
    rng = np.random.default_rng(5 + empty_block)
    sizes, connections = multi_input_structure(rng, empty_block=empty_block)
    layer = _TwoPathBlockLayer(sizes, np.full(6, 3), connections, "relu", linear_path=True).double()
    assert layer._single_rows is None and layer._slot_sizes and layer.fuses_dropout
    assert layer._slot_pad == empty_block
    linear = layer.linear
    x = torch.randn(len(sizes), 5, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(2)
    out = layer.forward_t(x, dropout=dropout)
    dense = linear.to_dense().requires_grad_(True)
    y = dense @ x + linear.bias[:, None]
    reference = torch.relu(y[:18]) + y[18:]
    torch.manual_seed(2)
    if dropout:
        reference = reference * keep_mask(reference.shape, dropout, reference.dtype) / (1 - dropout)
    torch.testing.assert_close(out, reference)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, linear.bias, linear.weights[0]], g)
    ref_x, ref_bias, ref_dense = torch.autograd.grad(reference, [x, linear.bias, dense], g)
    torch.testing.assert_close(grads[0], ref_x)
    torch.testing.assert_close(grads[1], ref_bias)
    torch.testing.assert_close(grads[2].reshape(-1), ref_dense[linear._rows, linear._cols])
    mask = keep_mask((6, 3, 5), dropout, torch.float64) if dropout else None

    def fused(xt, weight, bias):
        return _GatheredTwoPathReLU.apply(layer, xt, weight, bias, mask, 1.0 / (1.0 - dropout))

    assert torch.autograd.gradcheck(fused, (x, linear.weights[0], linear.bias))


def test_gene_layer_takes_the_gathered_path_for_several_features_per_gene():
    """The generic block product stays the reference: a GeneLayer-shaped layer with shared peaks uses the kernel."""
    sizes, connections = multi_input_structure(np.random.default_rng(1), n_features=30, n_blocks=12)
    layer = _TwoPathBlockLayer(sizes, np.full(12, 5), connections, "relu", linear_path=True)
    assert layer._single_rows is None and len(layer._slot_sizes) > 1
    x = torch.rand(30, 7)
    y = layer.linear.forward_t(x)
    torch.testing.assert_close(layer.forward_t(x), torch.relu(y[:60]) + y[60:])
    leaky = _TwoPathBlockLayer(sizes, np.full(12, 5), connections, "leaky_relu", linear_path=True)
    y = leaky.linear.forward_t(x)
    torch.testing.assert_close(leaky.forward_t(x), torch.nn.functional.leaky_relu(y[:60]) + y[60:])
