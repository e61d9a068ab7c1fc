"""The gradient-spike guard: a step far above the recent median gradient norm is scaled down, others are untouched."""

from __future__ import annotations

import lightning.pytorch as pl
import mudata as md
import numpy as np
import pytest
import scvi
import torch

import scvi_networkvi as nvi
from scvi_networkvi.model._gradient_guard import WARMUP_STEPS, GradientSpikeGuard

MODS = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}
TRAIN = {"max_epochs": 3, "accelerator": "cpu", "enable_progress_bar": False, "batch_size": 64}


@pytest.fixture(scope="module")
def example(example_sites) -> md.MuData:
    """400 cells of the embedded example, from two sites (so the batch classifier trains too)."""
    cells = example_sites(["site2", "site4"])
    return cells[np.r_[0:200, cells.n_obs - 200 : cells.n_obs]].copy()


def model_of(example, seed: int = 0) -> nvi.NETWORKVI:
    mdata = example.copy()
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MODS)
    scvi.settings.seed = seed
    return nvi.NETWORKVI(mdata, encoder="dense")


def grads_of_norm(norm: float, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    grads = [torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)]
    total = torch.linalg.vector_norm(torch.cat([x.flatten() for x in grads]))
    return [x * (norm / total) for x in grads]


def total_norm(grads) -> float:
    return float(torch.linalg.vector_norm(torch.cat([x.flatten() for x in grads])))


# ---- the rule -------------------------------------------------------------------------------------------------------
def test_a_spike_is_scaled_to_the_factor_times_the_median_and_ordinary_steps_are_untouched():
    guard = GradientSpikeGuard(10.0, history=20, warmup=5)
    norms = [1.0, 2.0, 3.0, 4.0, 5.0, 30.0, 6.0]  # 30 = 6x the median of the steps before it: not a spike
    for step, norm in enumerate(norms):
        grads = grads_of_norm(norm, step)
        before = [g.clone() for g in grads]
        guard(grads)
        for g, b in zip(grads, before, strict=True):
            assert torch.equal(g, b)
    assert guard.n_scaled == 0
    spike = grads_of_norm(1e6, 99)
    direction = [g / 1e6 for g in spike]
    guard(spike)
    median = float(torch.tensor(norms, dtype=torch.float64).median())  # torch's median: the lower of the middle two
    assert total_norm(spike) == pytest.approx(10.0 * median, rel=1e-12)
    for g, d in zip(spike, direction, strict=True):  # scaled, not clipped element-wise: the direction is kept
        torch.testing.assert_close(g / total_norm(spike), d)
    assert guard.n_scaled == 1


def test_the_guard_waits_for_its_warm_up_and_keeps_the_spike_out_of_later_bounds():
    guard = GradientSpikeGuard(10.0, history=20, warmup=5)
    early = grads_of_norm(1e6, 0)
    guard([early[0], early[1]])
    assert total_norm(early) == pytest.approx(1e6)  # no median yet: nothing is scaled
    for step in range(1, 6):
        guard(grads_of_norm(1.0, step))
    later = grads_of_norm(50.0, 7)
    guard(later)
    assert total_norm(later) == pytest.approx(10.0)  # the early spike is one of six norms, the median stays 1
    assert guard.n_scaled == 1


def test_a_non_finite_gradient_is_neither_scaled_nor_counted_in_the_median():
    guard = GradientSpikeGuard(10.0, history=20, warmup=3)
    for step in range(3):
        guard(grads_of_norm(1.0, step))
    broken = [torch.tensor([float("inf"), 1.0]), torch.tensor([float("nan")])]
    guard(broken)
    assert torch.isinf(broken[0][0]) and broken[0][1] == 1.0 and torch.isnan(broken[1][0])  # left as they were
    for step in range(4, 30):  # the non-finite norm leaves the median (and the bound) as it was
        grads = grads_of_norm(1.0, step)
        guard(grads)
        assert total_norm(grads) == pytest.approx(1.0)
    spike = grads_of_norm(1e3, 31)
    guard(spike)
    assert total_norm(spike) == pytest.approx(10.0) and guard.n_scaled == 1


def test_zero_gradients_in_the_history_bound_nothing():
    guard = GradientSpikeGuard(10.0, history=20, warmup=3)
    for _ in range(5):
        guard([torch.zeros(3)])
    grads = grads_of_norm(5.0, 0)
    guard(grads)
    assert total_norm(grads) == pytest.approx(5.0) and guard.n_scaled == 0


@pytest.mark.parametrize("factor", [1.0, 0.5, -3])
def test_the_guard_needs_a_factor_above_one(factor):
    with pytest.raises(ValueError, match="greater than 1"):
        GradientSpikeGuard(factor)


# ---- in training ----------------------------------------------------------------------------------------------------
class SpikeAt(pl.Callback):
    """Multiply the model's gradients by ``scale`` in one training step (before the plan's own hook runs)."""

    def __init__(self, step: int, scale: float):
        self.step, self.scale, self.calls = step, scale, 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if optimizer is not trainer.optimizers[0]:
            return
        if self.calls == self.step:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(self.scale)
        self.calls += 1


def largest_second_moment(model) -> float:
    state = model.trainer.optimizers[0].state
    return max(float(s["exp_avg_sq"].max()) for s in state.values() if "exp_avg_sq" in s)


def test_a_spike_in_training_no_longer_floods_adamw_second_moments(example):
    trained = {}
    for factor in (100.0, None):
        model = model_of(example)
        # past the guard's 50-step warm-up: 6 steps per epoch here
        spike = SpikeAt(step=WARMUP_STEPS + 4, scale=1e6)
        model.train(gradient_spike_factor=factor, callbacks=[spike], **{**TRAIN, "max_epochs": 10})
        trained[factor] = model
    guarded, unguarded = trained[100.0], trained[None]
    assert guarded.history["gradient_spikes_scaled"].iloc[-1, 0] == 1
    assert "gradient_spikes_scaled" not in unguarded.history
    # without the guard the spike's squared gradient sits in v (decaying by 0.999 per step): ~1e12 times the rest
    assert largest_second_moment(unguarded) > 1e6 * largest_second_moment(guarded)
    assert np.isfinite(guarded.get_latent_representation()).all()


def test_without_spikes_the_guard_changes_nothing_and_skips_the_classifier_steps(example):
    latents, plans = {}, {}
    for factor in (100.0, None):
        model = model_of(example, seed=1)
        model.train(gradient_spike_factor=factor, **TRAIN)
        latents[factor] = model.get_latent_representation()
        plans[factor] = model.trainer.lightning_module
    np.testing.assert_array_equal(latents[100.0], latents[None])
    guard = plans[100.0].gradient_guard
    assert guard.factor == 100.0 and guard.n_scaled == 0
    assert plans[100.0].adversarial_classifier is not False  # two sites: the classifier trains with its own optimiser
    steps = int(np.ceil(0.9 * 400 / 64)) * TRAIN["max_epochs"]  # scvi-tools' 90 % training split
    assert guard._seen == steps  # one norm per model step, none for the classifier's steps
    assert plans[None].gradient_guard is None


def test_the_default_guard_and_its_bad_values(example):
    model = model_of(example)
    model.train(**{**TRAIN, "max_epochs": 1})
    assert model.trainer.lightning_module.gradient_guard.factor == 100.0
    fresh = model_of(example)
    for bad in (1, 0.5, "high", True, float("nan")):
        with pytest.raises(ValueError, match=r"train\(gradient_spike_factor=.*greater than 1"):
            fresh.train(gradient_spike_factor=bad, **TRAIN)
        assert not fresh.is_trained_ and fresh.history_ is None
