"""Block-sparse layers and the GO-wired encoder respect the wiring exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scvi_networkvi.nn import BlockSparseLinear, GeneLayer, GONetwork, LevelBatchNorm, WiredEncoder
from scvi_networkvi.nn._wired_encoder import (
    WideDropout,
    _ElementwiseTwoPathReLU,
    _GatheredTwoPathReLU,
    _TwoPathBlockLayer,
    keep_mask,
)

DATA = Path(__file__).parent / "data"
GENES = ["g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path))
    torch.manual_seed(0)


@pytest.fixture
def wiring(tiny_wiring):
    return tiny_wiring([*GENES, "['g1', 'g8']", None])


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


def test_go_network_only_sees_what_the_wiring_connects(wiring):
    n_inputs = wiring.n_genes
    network = GONetwork(wiring, np.ones(n_inputs, dtype=np.int64), wiring.gene_term, linear_path=True)
    network.eval()  # in training the level batch norms couple the cells and centre the sum over cells to a constant
    h = torch.randn(4, n_inputs, requires_grad=True)
    out = network(h)
    assert out.shape == (4, wiring.term_size[-1])
    # Every gene reaches the root; the activations of one deep term depend only on its own genes.
    jac = torch.autograd.functional.jacobian(lambda v: network(v).sum(0), h).abs().sum(dim=(0, 1))
    assert torch.all(jac > 0)
    level = network.levels[0]  # deepest level reads genes only
    start, stop = network.level_slices[0]
    term = 0
    genes_of_term = set(wiring.gene_term[0][wiring.gene_term[1] == term].tolist())
    hidden = level(h)[:, : wiring.term_size[0]]
    grads = torch.autograd.grad(hidden.sum(), h)[0].abs().sum(0)
    assert set(torch.nonzero(grads).flatten().tolist()) <= genes_of_term
    assert stop - start == int(wiring.term_size[wiring.levels[0][1]].sum())


@pytest.mark.parametrize("gene_layer", ["none", "standard", "interaction"])
def test_wired_encoder_shapes_and_gradients(wiring, gene_layer):
    encoder = WiredEncoder(wiring, n_latent=4, gene_layer=gene_layer, n_cat_list=[3], inject_covariates=True)
    x = torch.rand(6, wiring.n_features) * 5
    batch = torch.randint(0, 3, (6, 1))
    q_m, q_v, z = encoder(x, batch)
    assert q_m.shape == q_v.shape == z.shape == (6, 4)
    assert torch.all(q_v > 0)
    (q_m.sum() + q_v.sum()).backward()
    assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)


def test_interaction_layer_uses_gene_edges(wiring):
    encoder = WiredEncoder(wiring, n_latent=2, gene_layer="interaction", n_interaction_layers=2)
    assert len(encoder.interaction_layers) == 2
    dense = encoder.interaction_layers[0].linear.to_dense()
    s = wiring.gene_size
    src, dst = wiring.gene_edges
    connected = {(int(a), int(b)) for a, b in zip(src, dst, strict=True)}
    for a in range(wiring.n_genes):
        for b in range(wiring.n_genes):
            block = dense[b * s : (b + 1) * s, a * s : (a + 1) * s]
            assert bool(block.abs().sum() > 0) == ((a, b) in connected)


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


def test_gene_layer_elementwise_path_matches_the_block_product(wiring):
    """One feature per gene: the fused elementwise two-path gene layer equals act(W1 x + b1) + W2 x + b2."""
    layer = GeneLayer(wiring, dropout_rate=0.0).layer
    fg = wiring.feature_gene
    single = np.bincount(fg[1], minlength=wiring.n_genes).max() == 1
    assert (layer._single_rows is not None) == single
    x = torch.rand(wiring.n_features, 6) * 3
    weight = layer.linear.to_dense()
    y = weight @ x + layer.linear.bias.detach()[:, None]
    expected = torch.relu(y[: layer.n_out]) + y[layer.n_out :]
    torch.testing.assert_close(layer.forward_t(x), expected)
    # a one-to-one wiring takes the elementwise path
    sizes = np.ones(7, dtype=np.int64)
    connections = np.stack([np.arange(7), np.arange(7)[::-1]])
    one_to_one = _TwoPathBlockLayer(sizes, np.full(7, 3), connections, "relu", linear_path=True)
    assert one_to_one._single_rows is not None
    linear = one_to_one.linear
    x = torch.randn(7, 5, requires_grad=True)
    out = one_to_one.forward_t(x)
    dense = linear.to_dense().requires_grad_(True)
    y = dense @ x + linear.bias[:, None]
    reference = torch.relu(y[:21]) + y[21:]
    torch.testing.assert_close(out, reference)
    g = torch.randn_like(out)
    grad_x, grad_bias, grad_weight = torch.autograd.grad(out, [x, linear.bias, linear.weights[0]], g)
    ref_x, ref_bias, ref_dense = torch.autograd.grad(reference, [x, linear.bias, dense], g)
    torch.testing.assert_close(grad_x, ref_x)
    torch.testing.assert_close(grad_bias, ref_bias)
    torch.testing.assert_close(grad_weight.reshape(-1), ref_dense[linear._rows, linear._cols])


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


@pytest.mark.parametrize("linear_path", [True, False])
def test_gene_layer_trains_with_dropout(wiring, linear_path):
    layer = GeneLayer(wiring, dropout_rate=0.5, linear_path=linear_path)
    x = torch.rand(8, wiring.n_features, requires_grad=True)
    layer(x).square().sum().backward()  # the in-place dropout must not clobber what backward reads
    assert x.grad is not None and all(p.grad is not None for p in layer.parameters())


@pytest.mark.parametrize("dense_limit", [0, None])
@pytest.mark.parametrize("gene_layer", ["none", "standard", "interaction"])
def test_wired_encoder_matches_a_dense_reference(wiring, gene_layer, dense_limit, monkeypatch):
    """The feature-major encoder computes the plain row-major, dense-weight network (eval mode: no dropout)."""
    if dense_limit is not None:  # every layer on the block kernel
        monkeypatch.setitem(BlockSparseLinear.__init__.__kwdefaults__, "dense_limit", dense_limit)
    encoder = WiredEncoder(wiring, n_latent=3, gene_layer=gene_layer, n_interaction_layers=2).double().eval()
    with torch.no_grad():  # non-trivial statistics and affine parameters for the GO-level batch norms
        for norm in encoder.go_network.norms:
            for tensor in (norm.running_mean, norm.weight, norm.bias):
                tensor.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    x = torch.rand(9, wiring.n_features, dtype=torch.float64) * 4

    def two_path(layer, h):
        y = h @ layer.linear.to_dense().T + layer.linear.bias
        return torch.relu(y[:, : layer.n_out]) + y[:, layer.n_out :]

    h = two_path(encoder.gene_layer.layer, x) if encoder.gene_layer is not None else x
    for interaction in encoder.interaction_layers:
        h = torch.relu(h @ interaction.linear.to_dense().T + interaction.linear.bias) + h
    state = h
    for level, norm in zip(encoder.go_network.levels, encoder.go_network.norms, strict=True):
        out = two_path(level, state)
        out = (out - norm.running_mean.T) / torch.sqrt(norm.running_var.T + norm.eps) * norm.weight.T + norm.bias.T
        state = torch.cat([state, out], dim=1)
    expected = encoder.activation(encoder.norm(out))
    assert all(m.dense == (dense_limit is None) for m in encoder.modules() if isinstance(m, BlockSparseLinear))
    with torch.no_grad():
        torch.testing.assert_close(encoder.hidden(x), expected)
        torch.testing.assert_close(encoder.go_network(h if encoder.gene_layer is not None else x), out)


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


def test_level_batch_norm_matches_torch_batch_norm_feature_major():
    """Training and inference equal torch's BatchNorm1d on the transposed activations, running statistics included."""
    ours, reference = LevelBatchNorm(7).double(), torch.nn.BatchNorm1d(7).double()
    with torch.no_grad():
        for p in (ours.weight, ours.bias):
            p.normal_()
        reference.weight.copy_(ours.weight.view(-1))
        reference.bias.copy_(ours.bias.view(-1))
    for step in range(3):
        x = (torch.randn(7, 20 + step, dtype=torch.float64) * 3 + 2).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        out, out_ref = ours(x), reference(x_ref.t()).t()
        torch.testing.assert_close(out, out_ref)
        upstream = torch.randn_like(out)
        (out * upstream).sum().backward()
        (out_ref * upstream).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad)
        torch.testing.assert_close(ours.weight.grad.view(-1), reference.weight.grad)
        torch.testing.assert_close(ours.bias.grad.view(-1), reference.bias.grad)
        ours.zero_grad(), reference.zero_grad()
    torch.testing.assert_close(ours.running_mean.view(-1), reference.running_mean)
    torch.testing.assert_close(ours.running_var.view(-1), reference.running_var)
    ours.eval(), reference.eval()
    x = torch.randn(7, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(x), reference(x.t()).t())


def test_level_batch_norm_standardises_each_neuron_over_cells():
    norm = LevelBatchNorm(4)
    x = torch.randn(4, 50) * torch.tensor([[1.0], [10.0], [0.5], [5.0]]) + 100.0
    y = norm(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    y.sum().backward()
    assert norm.weight.grad is not None and norm.bias.grad is not None


def test_level_batch_norm_single_cell_and_frozen_use_running_statistics():
    norm = LevelBatchNorm(3)
    norm.running_mean.fill_(2.0)
    norm.running_var.fill_(4.0)
    one_cell = torch.tensor([[4.0], [2.0], [0.0]])
    expected = (one_cell - 2.0) / torch.sqrt(torch.tensor(4.0 + norm.eps))
    torch.testing.assert_close(norm(one_cell), expected)  # one cell in training: no batch statistics exist
    assert torch.all(norm.running_mean == 2.0) and torch.all(norm.running_var == 4.0)
    norm.freeze()
    cells = torch.randn(3, 30) * 5
    torch.testing.assert_close(norm(cells), (cells - 2.0) / torch.sqrt(torch.tensor(4.0 + norm.eps)))
    assert torch.all(norm.running_mean == 2.0) and torch.all(norm.running_var == 4.0)
    state = norm.state_dict()
    assert bool(state["frozen"])  # a saved query model keeps its encoder frozen
    fresh = LevelBatchNorm(3)
    fresh.load_state_dict(state)
    assert bool(fresh.frozen)
    torch.testing.assert_close(fresh(cells), norm(cells))  # and it behaves frozen: running statistics in training
    assert torch.all(fresh.running_mean == 2.0)


def test_go_network_normalises_every_level_or_none(wiring):
    inputs = np.ones(wiring.n_genes, dtype=np.int64)
    normed = GONetwork(wiring, inputs, wiring.gene_term, norm="batch")
    plain = GONetwork(wiring, inputs, wiring.gene_term, norm="none")
    assert len(normed.norms) == len(normed.levels) and len(plain.norms) == 0
    assert [n.weight.shape[0] for n in normed.norms] == [b - a for a, b in normed.level_slices]
    captured = []
    for tap in normed.level_taps:
        tap.register_forward_hook(lambda module, args, out: captured.append(out.detach()))
    normed(torch.rand(40, wiring.n_genes) * 10)
    for level in captured:  # what the next level (and the interpretation taps) see is standardised per neuron
        torch.testing.assert_close(level.mean(1), torch.zeros(level.shape[0]), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="norm must be 'batch' or 'none'"):
        GONetwork(wiring, inputs, wiring.gene_term, norm="layer")


def test_wired_encoder_heads_read_every_level_with_head_input_levels(wiring):
    root = WiredEncoder(wiring, n_latent=3, head_input="root")
    levels = WiredEncoder(wiring, n_latent=3, head_input="levels")
    widths = [b - a for a, b in levels.go_network.level_slices]
    assert root.mean_encoder.in_features == widths[-1] == wiring.term_size[-1]
    assert levels.mean_encoder.in_features == levels.var_encoder.in_features == sum(widths) > widths[-1]
    # With every level above the deepest cut to zero, only heads that read the levels still depend on the input.
    x = torch.rand(5, wiring.n_features) * 5
    assert levels.hidden(x).shape == (5, sum(widths))
    for encoder in (root, levels):
        encoder.eval()
        with torch.no_grad():
            for level in encoder.go_network.levels[1:]:
                for p in level.parameters():
                    p.zero_()
    x.requires_grad_(True)
    assert torch.autograd.grad(root(x)[0].sum(), x, allow_unused=True)[0].abs().sum() == 0
    assert torch.autograd.grad(levels(x)[0].sum(), x)[0].abs().sum() > 0
    with pytest.raises(ValueError, match="head_input must be 'root' or 'levels'"):
        WiredEncoder(wiring, n_latent=3, head_input="all")


@pytest.mark.parametrize("kwargs", [{"n_neurons": 0}, {"n_neurons": 3, "momentum": 1.5}, {"n_neurons": 3, "eps": 0.0}])
def test_level_batch_norm_rejects_invalid_settings(kwargs):
    with pytest.raises(ValueError, match="LevelBatchNorm needs"):
        LevelBatchNorm(**kwargs)


def test_go_levels_above_the_first_return_sparse_input_gradients_that_sum_to_the_dense_one(wiring, monkeypatch):
    """Levels above the first hand autograd the gene rows they read as a sparse gradient (CPU): same sum as dense."""
    network = GONetwork(wiring, np.full(wiring.n_genes, wiring.gene_size), wiring.gene_term).double()
    flags = [level.linear.sparse_first_part_grad for level in network.levels]
    assert len(flags) > 1 and flags == [False] + [True] * (len(flags) - 1)
    reads_genes = [level.linear.n_in > wiring.n_genes * wiring.gene_size for level in network.levels[1:]]
    assert any(reads_genes)  # some level above the first reads gene rows beside the deeper terms
    h = torch.rand(wiring.n_genes * wiring.gene_size, 7, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(network.n_output, 7, dtype=torch.float64)
    made = []
    sparse_coo_tensor = torch.sparse_coo_tensor
    monkeypatch.setattr(torch, "sparse_coo_tensor", lambda *a, **k: made.append(1) or sparse_coo_tensor(*a, **k))
    grads = []
    for flag in (True, False):
        for level in network.levels[1:]:
            level.linear.sparse_first_part_grad = flag
        made.clear()
        (grad,) = torch.autograd.grad((network.forward_t(h) * weights).sum(), h)
        assert grad.layout == torch.strided
        assert bool(made) == flag
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)


def test_transposed_equals_contiguous_transpose_with_gradient():
    from scvi_networkvi.nn._wired_encoder import transposed

    x = torch.randn(7, 130, requires_grad=True)
    out = transposed(x)
    assert out.is_contiguous() and out.shape == (130, 7)
    assert torch.equal(out, x.t().contiguous())
    g = torch.randn(130, 7)
    (grad,) = torch.autograd.grad(out, x, g)
    assert torch.equal(grad, g.t())
