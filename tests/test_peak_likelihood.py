"""The peaks' likelihood from logits (CPU kernels) equals its torch composition, in value and in every gradient."""

import pytest
import torch

from scvi_networkvi.module._likelihood import bernoulli_nll_cells
from scvi_networkvi.module._peak_likelihood import _PeakNLL, peak_nll_cells


def _inputs(dtype, seed=0, n=9, m=301):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, m, generator=gen, dtype=dtype) * 3
    counts = (torch.rand(n, m, generator=gen) < 0.2).to(dtype) * torch.randint(1, 4, (n, m), generator=gen).to(dtype)
    logits[0, :4] = -200.0  # sigmoid exactly 0: open peaks there have q = 0, their log clamped at -100
    counts[0, :2] = 1.0
    counts[0, 2:4] = 0.0
    depth = torch.rand(n, 1, generator=gen, dtype=dtype) * 0.9 + 0.05
    region = torch.randn(m, generator=gen, dtype=dtype)
    weights = torch.rand(n, generator=gen, dtype=dtype)
    weights[1] = 0.0  # a masked cell (no ATAC in a mosaic)
    return logits, counts, depth, region, weights


def _run(inputs, reference, factors=True):
    logits, counts, depth, region, weights = (t.clone() for t in inputs)
    logits.requires_grad_()
    depth.requires_grad_()
    region.requires_grad_()
    nll = peak_nll_cells(
        logits, torch.sigmoid(logits), depth, torch.sigmoid(region) if factors else None, counts, reference=reference
    )
    (nll * weights).sum().backward()
    return nll.detach(), logits.grad, depth.grad, region.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("factors", [True, False])
def test_kernel_matches_the_torch_composition(dtype, factors):
    inputs = _inputs(dtype)
    fast = _run(inputs, reference=False, factors=factors)
    slow = _run(inputs, reference=True, factors=factors)
    torch.testing.assert_close(fast[0], slow[0], rtol=0, atol=0)  # q and the log: the same operations, bit for bit
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(fast[1], slow[1], **tol)
    torch.testing.assert_close(fast[2], slow[2], **tol)
    if factors:
        torch.testing.assert_close(fast[3], slow[3], **tol)
    else:
        assert fast[3] is None and slow[3] is None
    assert torch.all(fast[1][0, :2] == 0)  # open peaks with q ~ 0: the log was clamped, no gradient
    assert torch.all(fast[1][1] == 0)  # nor does a cell of weight 0


def test_reference_equals_binary_cross_entropy_of_the_product():
    logits, counts, depth, region, _ = _inputs(torch.float64, seed=3)
    p = torch.sigmoid(logits) * depth * torch.sigmoid(region)
    expected = torch.nn.functional.binary_cross_entropy(p, (counts > 0).double(), reduction="none").sum(-1)
    got = peak_nll_cells(logits, torch.sigmoid(logits), depth, torch.sigmoid(region), counts)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got, bernoulli_nll_cells(p, counts))


def test_the_kernel_runs_for_cpu_tensors_and_the_composition_otherwise(monkeypatch):
    calls = []
    original = _PeakNLL.apply
    monkeypatch.setattr(_PeakNLL, "apply", lambda *args: calls.append(1) or original(*args))
    logits, counts, depth, region, _ = _inputs(torch.float32)
    peak_nll_cells(logits, torch.sigmoid(logits), depth, torch.sigmoid(region), counts)
    assert calls == [1]
    # posterior samples in front (3-D): the composition, broadcasting the depth over the samples as before
    samples = torch.stack([logits, logits])
    out = peak_nll_cells(samples, torch.sigmoid(samples), depth, torch.sigmoid(region), counts)
    assert calls == [1] and out.shape == (2, logits.shape[0])
    # a float64 region factor against float32 probabilities: the composition
    peak_nll_cells(logits, torch.sigmoid(logits), depth, torch.sigmoid(region.double()), counts)
    assert calls == [1]


def test_gradient_reaches_the_logits_not_the_probabilities():
    logits, counts, depth, region, _ = _inputs(torch.float32)
    logits.requires_grad_()
    probs = torch.sigmoid(logits)
    probs.retain_grad()
    peak_nll_cells(logits, probs, depth, torch.sigmoid(region), counts).sum().backward()
    assert probs.grad is None and logits.grad is not None and torch.isfinite(logits.grad).all()
