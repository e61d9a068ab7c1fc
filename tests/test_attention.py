"""GO covariate attention layer."""

from __future__ import annotations

import pytest
import torch

from scvi_networkvi.nn._attention import CovariateAttention, covariate_vector, covariate_width


def test_covariate_vector_layout():
    batch = torch.tensor([[0], [2], [1]])
    single = torch.tensor([[0], [0], [0]])  # one category: no column, as in scvi-tools' FCLayers
    cont = torch.tensor([[0.5], [1.0], [-1.0]])
    u = covariate_vector([3, 1], [batch, single], cont)
    assert u.shape == (3, covariate_width([3, 1], 1)) == (3, 4)
    torch.testing.assert_close(u[:, :3], torch.eye(3)[[0, 2, 1]])
    torch.testing.assert_close(u[:, 3], cont[:, 0])
    assert covariate_vector([1], [single], None) is None


def test_attention_weights_are_a_distribution_over_covariates():
    torch.manual_seed(0)
    layer = CovariateAttention(n_neurons=6, n_covariates=4)
    x, u = torch.randn(5, 6), torch.rand(5, 4)
    weights = layer.weights(x, u)
    assert weights.shape == (5, 6, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 6))
    y = layer(x, u)
    assert y.shape == x.shape
    y.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_attention_output_depends_on_covariates():
    torch.manual_seed(0)
    layer = CovariateAttention(n_neurons=3, n_covariates=2)
    x = torch.randn(1, 3)
    a = layer(x, torch.tensor([[1.0, 0.0]]))
    b = layer(x, torch.tensor([[0.0, 1.0]]))
    assert not torch.allclose(a, b)


def test_attention_needs_covariates():
    with pytest.raises(ValueError, match="at least one covariate"):
        CovariateAttention(4, 0)
