"""``LevelBatchNorm``: per-neuron batch norm of the feature-major GO levels, as torch's, with running statistics."""

from __future__ import annotations

import pytest
import torch

from scvi_networkvi.nn import LevelBatchNorm


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path))
    torch.manual_seed(0)


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


@pytest.mark.parametrize("kwargs", [{"n_neurons": 0}, {"n_neurons": 3, "momentum": 1.5}, {"n_neurons": 3, "eps": 0.0}])
def test_level_batch_norm_rejects_invalid_settings(kwargs):
    with pytest.raises(ValueError, match="LevelBatchNorm needs"):
        LevelBatchNorm(**kwargs)
