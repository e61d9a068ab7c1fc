"""The GO levels' gene-row gradients summed in one buffer on the CPU kernel (:mod:`scvi_networkvi.nn._shared_grad`),
against the bucketed kernel, where autograd sums them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scvi_networkvi.nn import GONetwork, _shared_grad

GENES = ["g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10"]


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)  # tiny_wiring reads the test files directly (no resource cache to isolate)


@pytest.fixture
def network(tiny_wiring):
    wiring = tiny_wiring([*GENES, "['g1', 'g8']", None])
    network = GONetwork(wiring, np.full(wiring.n_genes, wiring.gene_size), wiring.gene_term).double()
    reads_genes = [level.linear.n_in > wiring.n_genes * wiring.gene_size for level in network.levels[1:]]
    assert len(network.levels) > 2 and sum(reads_genes) >= 2  # several levels above the first read gene rows
    return network


def gradients(network: GONetwork, h: torch.Tensor, weights: torch.Tensor, cpu_kernel: bool) -> list[torch.Tensor]:
    for level in network.levels:
        level.linear.cpu_kernel = cpu_kernel
    params = list(network.parameters())
    return list(torch.autograd.grad((network.forward_t(h) * weights).sum(), [h, *params]))


def test_one_buffer_gives_the_gradients_of_the_reference_kernel(network, monkeypatch):
    """Input and parameter gradients as on the bucketed kernel (autograd sums the levels' gene-row gradients there);
    on the CPU kernel the levels share one buffer, which only the first level hands to autograd."""
    h = torch.rand(network.levels[0].linear.n_in, 7, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(network.n_output, 7, dtype=torch.float64)
    reference = gradients(network, h, weights, cpu_kernel=False)
    taken, handed = [], []
    take, hand_over = _shared_grad.SharedPartGrad.take, _shared_grad.SharedPartGrad.hand_over
    monkeypatch.setattr(_shared_grad.SharedPartGrad, "take", lambda self, *a: taken.append(a[0]) or take(self, *a))
    monkeypatch.setattr(_shared_grad.SharedPartGrad, "hand_over", lambda self: handed.append(1) or hand_over(self))
    monkeypatch.setattr(torch, "sparse_coo_tensor", lambda *a, **k: pytest.fail("a sparse gradient was made"))
    shared = gradients(network, h, weights, cpu_kernel=True)
    assert taken[-1] == 0 and sorted(taken) == sorted(set(taken)) and len(taken) >= 3  # the owner last, once each
    assert handed == [1]
    assert shared[0].layout == torch.strided
    for got, expected in zip(shared, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_backward_twice_and_after_a_partial_backward(network):
    """``retain_graph``: a second pass gives the same gradient; a pass that stopped above the first level (gradient
    of an upper level's output only) leaves nothing in the next pass's sum."""
    h = torch.rand(network.levels[0].linear.n_in, 5, dtype=torch.float64, requires_grad=True)
    outputs = []
    handle = network.level_taps[-2].register_forward_hook(lambda module, args, out: outputs.append(out))
    y = network.forward_t(h).square().sum()
    handle.remove()
    (expected,) = torch.autograd.grad(y, h, retain_graph=True)
    (again,) = torch.autograd.grad(y, h, retain_graph=True)
    torch.testing.assert_close(again, expected, rtol=0, atol=0)
    upper = list(network.levels[-2].parameters())
    torch.autograd.grad(outputs[0].square().sum(), upper, retain_graph=True)  # stops above the first level
    (after,) = torch.autograd.grad(y, h)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_join_only_the_tensor_of_the_first_member():
    shared = _shared_grad.SharedPartGrad()
    a, b = torch.zeros(3, 2, requires_grad=True), torch.zeros(3, 2, requires_grad=True)
    assert shared.join(a) == 0 and shared.join(a) == 1
    assert shared.join(b) is None and shared.join(torch.zeros(3, 2)) is None
    assert shared.hand_over() is None  # nothing written


def test_whole_input_dense_groups_add_their_gradient_to_the_buffer(tiny_wiring, monkeypatch):
    """A first level with whole-input dense groups (as the tutorial's UNKNOWN node reading every ATAC gene): their
    input gradient goes into the shared buffer (no second full-size gradient) and every gradient is the reference
    kernel's; a second pass over the same graph gives the same."""
    from scvi_networkvi.nn import _block_dense, _block_sparse

    monkeypatch.setattr(_block_sparse, "CPU_DENSE_MIN_FILL", 0.0)  # every whole-input dense group on the CPU path
    monkeypatch.setattr(_block_sparse, "WHOLE_INPUT_FRACTION", 0.4)  # a group of the first level reads 5 of 11 genes
    wiring = tiny_wiring([*GENES, "['g1', 'g8']", None])
    network = GONetwork(wiring, np.full(wiring.n_genes, wiring.gene_size), wiring.gene_term).double()
    first = network.levels[0].linear
    assert first._cpu_dense, "the test needs a whole-input dense group on the first level"
    calls = []
    apply = _block_dense._SharedDenseGroups.apply
    monkeypatch.setattr(_block_dense._SharedDenseGroups, "apply", lambda *a: calls.append(1) or apply(*a))
    h = torch.rand(first.n_in, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(network.n_output, 6, dtype=torch.float64)
    reference = gradients(network, h, weights, cpu_kernel=False)
    assert not calls
    shared = gradients(network, h, weights, cpu_kernel=True)
    assert calls
    for got, expected in zip(shared, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    y = (network.forward_t(h) * weights).sum()
    (once,) = torch.autograd.grad(y, h, retain_graph=True)
    (twice,) = torch.autograd.grad(y, h)
    torch.testing.assert_close(twice, once, rtol=0, atol=0)
    torch.testing.assert_close(once, reference[0], rtol=1e-12, atol=1e-12)
