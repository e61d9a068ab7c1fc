"""The fused CPU kernel of the gene layer alone equals the torch layers it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fused_gene_interaction import GENES, assert_team_equals_serial, plain_gene_layer, random_problem

from scvi_networkvi.nn import WiredEncoder
from scvi_networkvi.nn._fused_gene_layer import FusedGeneLayer


def run(encoder, x, fuse: bool, seed: int = 5):
    encoder.fuse_gene_layers = fuse
    encoder.zero_grad()
    torch.manual_seed(seed)
    hidden = encoder.hidden(x)
    g = torch.linspace(-1.0, 1.0, hidden.numel(), dtype=hidden.dtype).view_as(hidden)
    (hidden * g).sum().backward()
    return hidden.detach(), {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("extra_ids", [[], ["['g1', 'g8']", None]], ids=["one-feature-per-gene", "several-features"])
def test_fused_gene_layer_equals_the_torch_layers(tiny_wiring, train, extra_ids, monkeypatch):
    """An encoder without interaction layer: same output and parameter gradients (float64), same dropout mask for the
    same seed, in training and eval; one feature per gene (RNA) and genes reading several features (ATAC)."""
    torch.manual_seed(0)
    wiring = tiny_wiring([*GENES, *extra_ids])
    calls = []
    apply = FusedGeneLayer.apply
    monkeypatch.setattr(FusedGeneLayer, "apply", lambda *a: calls.append(1) or apply(*a))
    encoder = WiredEncoder(wiring, n_latent=3, dropout_rate=0.3).double()
    assert not encoder.interaction_layers
    encoder.train(train)
    x = torch.rand(11, wiring.n_features, dtype=torch.float64) * 4
    reference, reference_grads = run(encoder, x, fuse=False)
    assert not calls
    fused, fused_grads = run(encoder, x, fuse=True)
    assert len(calls) == 1
    torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    assert fused_grads.keys() == reference_grads.keys()
    assert any(name.startswith("gene_layer.") for name in fused_grads)
    for name, grad in reference_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-10, atol=1e-12, msg=name)
    if train:  # dropout really acted (a different seed gives another output)
        other, _ = run(encoder, x, fuse=True, seed=6)
        assert not torch.allclose(other, fused)


@pytest.mark.parametrize("dropout", [0.0, 0.4])
@pytest.mark.parametrize("features_per_gene", [(1,), (0, 1, 3)])
def test_fused_gene_layer_gradients(dropout, features_per_gene):
    """Numerical gradients (float64) and a plain reference, with and without a dropout mask, for one feature per gene
    and for none, one or several."""
    x, genes, params, _, _, _, mask = random_problem(1, dropout=dropout, features_per_gene=features_per_gene)
    scale = 1.0 / (1.0 - dropout)

    def fused(w1, b1, w2, b2):
        return FusedGeneLayer.apply(x, genes, w1, b1, w2, b2, mask, scale)

    assert torch.autograd.gradcheck(fused, tuple(params))
    out = fused(*params)
    expected = plain_gene_layer(x, genes, params, mask, scale).reshape(out.shape)
    torch.testing.assert_close(out, expected)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(expected, params, g), strict=True):
        torch.testing.assert_close(a, b)


def test_fused_gene_layer_is_deterministic_and_skips_frozen_parameters():
    x, genes, params, *_ = random_problem(2, features_per_gene=(1, 2))
    params = [p.float().detach().requires_grad_(k % 2 == 0) for k, p in enumerate(params)]
    x = x.float()
    results = []
    for _ in range(2):
        out = FusedGeneLayer.apply(x, genes, *params, None, 1.0)
        grads = torch.autograd.grad(out.square().sum(), [params[0], params[2]])
        results.append((out, *grads))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
    FusedGeneLayer.apply(x, genes, *params, None, 1.0).sum().backward()
    assert params[1].grad is None and params[3].grad is None
    assert params[0].grad is not None and params[2].grad is not None


def test_fused_gene_layer_applies_only_where_it_is_exact(tiny_wiring):
    several = tiny_wiring([*GENES, "['g1', 'g8']"])
    layer = WiredEncoder(several, n_latent=2).gene_layer.eval()
    xt = torch.rand(several.n_features, 4)
    assert layer._fused_inputs(xt) is not None
    assert layer._fused_inputs(xt.clone().requires_grad_()) is None  # input gradient: torch
    assert layer._fused_inputs(xt.double()) is None  # dtype differs from the parameters
    assert WiredEncoder(several, n_latent=2, activation="leaky_relu").gene_layer._fused_inputs(xt) is None
    assert WiredEncoder(several, n_latent=2, linear_path=False).gene_layer._fused_inputs(xt) is None
    # forward_t(fused=False) keeps the torch layers; both agree
    torch.testing.assert_close(layer.forward_t(xt), layer.forward_t(xt, fused=False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("features_per_gene", [(1,), (0, 1, 3)])
def test_torch_threads_give_the_serial_gene_layer_bit_for_bit(dtype, features_per_gene, monkeypatch):
    """Genes are split into chunks for torch's CPU threads; every chunk computes exactly what the serial loop does."""
    x, genes, params, *_, mask = random_problem(
        3, n_genes=60, size=4, n_cells=33, n_features=70, dropout=0.3, features_per_gene=features_per_gene
    )
    inputs = [t.detach().to(dtype).requires_grad_() for t in params]

    def apply(w1, b1, w2, b2):
        return FusedGeneLayer.apply(x.to(dtype), genes, w1, b1, w2, b2, mask, 1 / 0.7)

    assert_team_equals_serial(apply, inputs, monkeypatch)


def test_gene_layer_team_workers_have_no_closure():
    """Closure variables would change numba's cache key in every process (a recompile each time)."""
    from scvi_networkvi.nn import _fused_gene_layer as fused

    assert all(worker._pyfunc.__closure__ is None for worker in fused._team_workers(np.float32))
