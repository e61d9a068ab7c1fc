"""The GO-wired encoder and its layers respect the wiring exactly.

The block-sparse product itself: ``test_nn_block_sparse.py``; dropout and the two-path ReLU: ``test_nn_dropout.py``;
the per-level batch norm: ``test_nn_level_norm.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scvi_networkvi.nn import BlockSparseLinear, GeneLayer, GONetwork, WiredEncoder
from scvi_networkvi.nn._wired_encoder import _TwoPathBlockLayer

GENES = ["g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path))
    torch.manual_seed(0)


@pytest.fixture
def wiring(tiny_wiring):
    return tiny_wiring([*GENES, "['g1', 'g8']", None])


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


def test_go_levels_above_the_first_return_sparse_input_gradients_that_sum_to_the_dense_one(wiring, monkeypatch):
    """Levels above the first hand autograd the gene rows they read as a sparse gradient (CPU, off the CPU kernel,
    which sums them in one buffer instead: tests/test_shared_grad.py): same sum as dense."""
    network = GONetwork(wiring, np.full(wiring.n_genes, wiring.gene_size), wiring.gene_term).double()
    for level in network.levels:
        level.linear.cpu_kernel = False
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
