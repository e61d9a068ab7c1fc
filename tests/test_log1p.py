"""The table ``log1p`` of count inputs (:mod:`scvi_networkvi.nn._log1p`) and the one-pass input transform of the GO
encoders (:mod:`scvi_networkvi.nn._input_transform`) against torch, bitwise."""

from __future__ import annotations

import pytest
import torch

from scvi_networkvi.nn import _log1p
from scvi_networkvi.nn._log1p import TABLE_SIZE, log1p


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_counts_are_bitwise_torch_log1p(dtype):
    torch.manual_seed(0)
    x = torch.poisson(torch.rand(64, 300) * 20).to(dtype)
    x[0, :5] = torch.tensor([0, 6, 46, 48, TABLE_SIZE - 1])  # where log(1 + x) and log1p(x) differ in float32
    assert torch.equal(log1p(x), torch.log1p(x))


def test_other_values_fall_back_to_torch_log1p():
    x = torch.tensor([[0.5, -0.25, float(TABLE_SIZE), 1e9, 3.0], [float("nan"), float("inf"), -1.0, 2.0, 1e-7]])
    torch.testing.assert_close(log1p(x), torch.log1p(x), rtol=0, atol=0, equal_nan=True)


def test_non_contiguous_and_autograd_inputs():
    x = torch.poisson(torch.rand(20, 30) * 5)
    assert torch.equal(log1p(x.t()), torch.log1p(x.t()))
    leaf = x.clone().requires_grad_(True)
    y = log1p(leaf)
    assert y.grad_fn is not None
    torch.testing.assert_close(torch.autograd.grad(y.sum(), leaf)[0], 1 / (1 + x))


def test_table_path_is_taken_for_counts(monkeypatch):
    """Counts never reach torch.log1p outside the table (the fast path is really used)."""
    calls = []
    original = torch.log1p
    monkeypatch.setattr(_log1p.torch, "log1p", lambda t: calls.append(t.numel()) or original(t))
    _log1p._table.cache_clear()
    try:
        log1p(torch.poisson(torch.rand(10, 10) * 5))
        assert calls == [TABLE_SIZE]  # the table, built once
        log1p(torch.poisson(torch.rand(10, 10) * 5))
        assert calls == [TABLE_SIZE]
    finally:
        _log1p._table.cache_clear()


def _torch_transform(x, batch, shift, scale):
    """The torch composition of NetworkVAE._encode: log1p, minus the batch's shift, times its scale."""
    out = torch.log1p(x)
    if shift is not None:
        out = out - shift.index_select(0, batch.reshape(-1).long())
    if scale is not None:
        out = out * scale.index_select(0, batch.reshape(-1).long())
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shifted, scaled", [(True, True), (True, False), (False, False)])
def test_input_transform_is_bitwise_the_torch_composition(dtype, shifted, scaled):
    from scvi_networkvi.nn._input_transform import log1p_shift_scale_t

    torch.manual_seed(1)
    x = torch.poisson(torch.rand(70, 130) * 8).to(dtype)  # 130 features: more than one 64-row pass
    batch = torch.randint(0, 3, (70, 1))
    shift = torch.randn(3, 130, dtype=dtype) if shifted else None
    scale = torch.rand(3, 130, dtype=dtype) + 0.5 if scaled else None
    got = log1p_shift_scale_t(x, batch, shift, scale)
    assert got.shape == (130, 70)
    assert torch.equal(got, _torch_transform(x, batch, shift, scale).t())


def test_input_transform_declines_what_it_does_not_cover():
    from scvi_networkvi.nn._input_transform import log1p_shift_scale_t

    x = torch.poisson(torch.rand(5, 4) * 3)
    batch = torch.zeros(5, dtype=torch.long)
    shift = torch.zeros(1, 4)
    assert log1p_shift_scale_t(x + 0.5, batch, shift, None) is None  # fractions: torch's log1p
    assert log1p_shift_scale_t(x.double(), batch, shift, None) is None  # shift of another dtype
    assert log1p_shift_scale_t(x, batch + 1, shift, None) is None  # a batch code without a shift row
    assert log1p_shift_scale_t(x.requires_grad_(True), batch, shift, None) is None
