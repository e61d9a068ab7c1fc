"""The likelihoods equal reference implementations, in value and gradient: the RNA ones with a per-gene dispersion
row, the peaks' Bernoulli one torch's binary cross-entropy.

ZINB: scvi-tools' distribution. NB: torch's ``NegativeBinomial`` (``total_count = theta``, ``logits = log(mu / theta)``)
- scvi-tools' own ``NegativeBinomial.log_prob`` raised a NameError in the oldest supported release (1.4.0) in this test.
"""

import pytest
import torch
from scvi.distributions import ZeroInflatedNegativeBinomial
from torch.distributions import NegativeBinomial

from scvi_networkvi.module._likelihood import (
    bernoulli_nll_cells,
    log_gamma_ratio,
    nb_log_prob,
    nb_log_prob_cells,
    zinb_log_prob,
    zinb_log_prob_cells,
)


def _params(seed: int = 0, n: int = 64, genes: int = 50):
    gen = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.rand(n, genes, generator=gen) * 3, generator=gen)
    x[:, 0] = 0.0  # a gene with no counts
    x[0, 1] = 500.0  # and a large count
    mu = torch.rand(n, genes, generator=gen, dtype=torch.float64) * 5 + 1e-3
    theta = torch.rand(genes, generator=gen, dtype=torch.float64) * 10 + 0.05
    logits = torch.randn(n, genes, generator=gen, dtype=torch.float64) * 2
    return x.double(), mu.requires_grad_(), theta.requires_grad_(), logits.requires_grad_()


@pytest.mark.parametrize("seed", [0, 1])
def test_zinb_matches_scvi_tools(seed):
    x, mu, theta, logits = _params(seed)
    ours = zinb_log_prob(x, mu, theta, logits)
    reference = ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=logits).log_prob(x)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-9)
    for a, b in zip(
        torch.autograd.grad(ours.sum(), (mu, theta, logits)),
        torch.autograd.grad(reference.sum(), (mu, theta, logits)),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("per_gene", [True, False])
def test_nb_matches_torch(per_gene):
    x, mu, theta, _ = _params(2)
    if not per_gene:  # full-shape dispersion (e.g. gene-cell) is accepted too
        theta = theta.detach().expand_as(mu).clone().requires_grad_()
    ours = nb_log_prob(x, mu, theta)
    reference = NegativeBinomial(total_count=theta, logits=torch.log(mu) - torch.log(theta)).log_prob(x)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)  # eps = 1e-8 inside our logs
    grads = torch.autograd.grad(ours.sum(), (mu, theta)), torch.autograd.grad(reference.sum(), (mu, theta))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_zinb_is_a_distribution_over_counts():
    """Probabilities over 0..K sum to one (up to the tail), and extra zeros raise P(0) above the NB's."""
    mu, theta = torch.tensor([[2.0]], dtype=torch.float64), torch.tensor([1.5], dtype=torch.float64)
    counts = torch.arange(0, 400, dtype=torch.float64).view(-1, 1)
    logits = torch.full_like(counts, 0.3)
    probs = zinb_log_prob(counts, mu.expand_as(counts), theta, logits).exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-7)  # eps = 1e-8 inside the logs
    nb_zero = nb_log_prob(counts[:1], mu, theta).exp().item()
    assert probs[0].item() > nb_zero


@pytest.mark.parametrize("theta_shape", ["row", "full", "samples"])
def test_log_gamma_ratio_sparse_path_equals_dense_formula(theta_shape):
    """The CPU path computes on non-zero counts only; values and theta gradients equal the dense formula."""
    x, _, theta, _ = _params(3)
    if theta_shape == "row":
        theta = theta.detach().view(1, -1).requires_grad_()
    elif theta_shape == "full":
        theta = (theta.detach() * torch.linspace(0.5, 2.0, x.shape[0], dtype=theta.dtype).view(-1, 1)).requires_grad_()
    else:  # a leading samples axis broadcasts against the counts: computed densely
        theta = theta.detach().expand(3, *x.shape).clone().requires_grad_()
    ours = log_gamma_ratio(x, theta)
    dense = torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
    assert ours.shape == dense.shape
    torch.testing.assert_close(ours, dense, rtol=1e-12, atol=1e-12)
    assert bool((ours[..., x == 0] == 0).all())  # exactly zero where there are no counts
    weights = torch.rand(dense.shape, generator=torch.Generator().manual_seed(0), dtype=dense.dtype)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), theta)
    (grad_dense,) = torch.autograd.grad((dense * weights).sum(), theta)
    torch.testing.assert_close(grad_ours, grad_dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("likelihood", ["zinb", "nb"])
@pytest.mark.parametrize("seed", [0, 4])
def test_per_cell_sums_equal_the_summed_elementwise_likelihood(likelihood, seed):
    """The non-zero-only per-cell form: same values and gradients, also for a cell without counts and samples."""
    x, mu, theta, logits = _params(seed)
    x[3] = 0.0  # a cell without counts
    if likelihood == "zinb":
        ours, reference = zinb_log_prob_cells(x, mu, theta, logits), zinb_log_prob(x, mu, theta, logits).sum(-1)
        params = (mu, theta, logits)
    else:
        ours, reference = nb_log_prob_cells(x, mu, theta), nb_log_prob(x, mu, theta).sum(-1)
        params = (mu, theta)
    assert ours.shape == (x.shape[0],)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-10)
    weights = torch.linspace(0.5, 1.5, x.shape[0], dtype=x.dtype)
    for a, b in zip(
        torch.autograd.grad((ours * weights).sum(), params),
        torch.autograd.grad((reference * weights).sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # a leading samples axis (posterior samples of mu) takes the dense form
    mu_samples = mu.detach().expand(2, *mu.shape) * torch.tensor([1.0, 2.0], dtype=mu.dtype).view(2, 1, 1)
    if likelihood == "zinb":
        samples = zinb_log_prob_cells(x, mu_samples, theta, logits.expand(2, *x.shape))
        expected = zinb_log_prob(x, mu_samples, theta, logits.expand(2, *x.shape)).sum(-1)
    else:
        samples, expected = nb_log_prob_cells(x, mu_samples, theta), nb_log_prob(x, mu_samples, theta).sum(-1)
    assert samples.shape == (2, x.shape[0])
    torch.testing.assert_close(samples, expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_bernoulli_nll_is_torchs_binary_cross_entropy_in_value_and_gradient(dtype):
    gen = torch.Generator().manual_seed(0)
    p = (torch.rand(40, 300, generator=gen, dtype=dtype) * (1 - 2e-6) + 1e-6).requires_grad_()
    counts = torch.poisson(torch.rand(40, 300, generator=gen) * 0.3, generator=gen).to(dtype)  # mostly 0, some > 1
    weights = torch.rand(40, generator=gen, dtype=dtype)
    ours = bernoulli_nll_cells(p, counts)
    (ours * weights).sum().backward()
    grad, p.grad = p.grad.clone(), None
    reference = torch.nn.functional.binary_cross_entropy(p, (counts > 0).to(dtype), reduction="none").sum(-1)
    (reference * weights).sum().backward()
    tol = {"rtol": 1e-10, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-3}
    torch.testing.assert_close(ours, reference, **tol)
    torch.testing.assert_close(grad, p.grad, rtol=1e-10 if dtype == torch.float64 else 1e-5, atol=0.0)


def test_the_bernoulli_nll_clamps_certain_mistakes_at_100_with_no_gradient():
    p = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    counts = torch.tensor([[1.0, 0.0, 0.0, 2.0, 1.0]], dtype=torch.float64)
    loss = bernoulli_nll_cells(p, counts)
    reference = torch.nn.functional.binary_cross_entropy(p.detach(), (counts > 0).double(), reduction="none").sum(-1)
    torch.testing.assert_close(loss.detach(), reference)  # 100 + 100 + 0 + 0 + log 2, as torch
    loss.sum().backward()
    torch.testing.assert_close(p.grad, torch.tensor([[0.0, 0.0, 1.0, -1.0, -2.0]], dtype=torch.float64))
    gen = torch.Generator().manual_seed(1)
    inside = (torch.rand(3, 7, generator=gen, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(bernoulli_nll_cells, (inside, torch.bernoulli(inside.detach(), generator=gen)))
