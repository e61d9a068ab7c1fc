"""The inference-only gene layer (:mod:`scvi_networkvi.nn._elementwise_eval`) against the autograd path, bitwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scvi_networkvi.nn import _two_path
from scvi_networkvi.nn._two_path import _TwoPathBlockLayer


def gene_layer(n_features: int = 50, size: int = 4, activation: str = "relu") -> _TwoPathBlockLayer:
    """Features -> gene nodes of ``size`` neurons, one feature per gene (in shuffled order), two paths."""
    rng = np.random.default_rng(0)
    genes = rng.permutation(n_features)
    return _TwoPathBlockLayer(
        np.ones(n_features, dtype=np.int64), np.full(n_features, size), np.stack([genes, np.arange(n_features)]),
        activation, linear_path=True,
    )  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inference_gene_layer_is_bitwise_the_autograd_path(dtype, monkeypatch):
    torch.manual_seed(0)
    layer = gene_layer().to(dtype)
    with torch.no_grad():
        layer.linear.bias.normal_()  # both signs before the ReLU
    x = torch.randn(50, 33, dtype=dtype)
    calls = []
    original = _two_path.two_path_relu_eval
    monkeypatch.setattr(_two_path, "two_path_relu_eval", lambda *a: calls.append(1) or original(*a))
    with torch.inference_mode():
        fast = layer.forward_t(x)
    assert calls == [1]
    reference = layer.forward_t(x)  # autograd records: the autograd function
    assert reference.requires_grad and calls == [1]
    torch.testing.assert_close(fast, reference.detach(), rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
    if torch.backends.cpu.get_cpu_capability().startswith("AVX"):  # x86 with FMA: torch's addcmul fuses too
        assert torch.equal(fast, reference.detach())
    dense = torch.relu(layer.linear.to_dense()[: layer.n_out] @ x + layer.linear.bias[: layer.n_out, None])
    dense = dense + layer.linear.to_dense()[layer.n_out :] @ x + layer.linear.bias[layer.n_out :, None]
    torch.testing.assert_close(fast, dense.detach())


def test_other_activations_and_dtypes_keep_the_torch_path(monkeypatch):
    monkeypatch.setattr(_two_path, "two_path_relu_eval", lambda *a: pytest.fail("inference kernel ran"))
    layer = gene_layer(activation="leaky_relu")
    with torch.inference_mode():
        layer.forward_t(torch.randn(50, 3))
    layer = gene_layer().to(torch.bfloat16)
    monkeypatch.undo()
    with torch.inference_mode():
        out = layer.forward_t(torch.randn(50, 3, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (200, 3)
