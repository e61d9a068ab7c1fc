"""Block-sparse layers and the GO-wired encoder respect the wiring exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scvi_networkvi.nn import BlockSparseLinear, GONetwork, WiredEncoder
from scvi_networkvi.wiring import compile_wiring

DATA = Path(__file__).parent / "data"
GENES = ["g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path))
    torch.manual_seed(0)


@pytest.fixture
def wiring():
    ids = [*GENES, "['g1', 'g8']", None]
    return compile_wiring(
        ids,
        go=DATA / "tiny.obo",
        annotations=DATA / "tiny.gaf",
        interactions=DATA / "tiny_interactions.csv",
        max_depth=3,
        gene_size=3,
        term_size=2,
        root_size=5,
        cache=False,
    )


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
