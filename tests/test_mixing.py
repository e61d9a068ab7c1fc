"""Joint posterior mixing and the modality alignment penalty (``scvi_networkvi.module._mixing``)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from scvi_networkvi.module._mixing import ModalityMixer, drop_modalities, pairwise_penalty


def posteriors(n=6, n_mod=3, n_latent=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(n, n_mod, n_latent, generator=generator, dtype=torch.float64)
    variances = torch.rand(n, n_mod, n_latent, generator=generator, dtype=torch.float64) * 2 + 0.05
    masks = torch.ones(n, n_mod, dtype=torch.float64)
    masks[0, 1] = masks[1, 0] = masks[2, 2] = 0.0
    masks[3, 1:] = 0.0  # one modality only: no pair, no penalty
    return means, variances, masks


def test_jeffreys_penalty_is_the_symmetric_kl_summed_over_observed_pairs():
    means, variances, masks = posteriors()
    means.requires_grad_(), variances.requires_grad_()
    ours = pairwise_penalty(means, variances, masks, "jeffreys")
    expected = torch.zeros(means.shape[0], dtype=torch.float64)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        qa, qb = Normal(means[:, a], variances[:, a].sqrt()), Normal(means[:, b], variances[:, b].sqrt())
        expected = expected + masks[:, a] * masks[:, b] * (kl_divergence(qa, qb) + kl_divergence(qb, qa)).sum(-1)
    torch.testing.assert_close(ours, expected)
    assert ours[3] == 0.0 and (ours[[4, 5]] > 0).all()
    grads = torch.autograd.grad(ours.sum(), (means, variances))
    expected_grads = torch.autograd.grad(expected.sum(), (means, variances))
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_jeffreys_penalty_is_zero_for_identical_posteriors_and_grows_with_the_distance():
    means, variances, _ = posteriors()
    masks = torch.ones(6, 2, dtype=torch.float64)
    masks[0, 1] = 0.0
    same = pairwise_penalty(means[:, :1].expand(-1, 2, -1), variances[:, :1].expand(-1, 2, -1), masks, "jeffreys")
    torch.testing.assert_close(same, torch.zeros_like(same))
    shifted = means[:, :1].expand(-1, 2, -1).clone()
    shifted[:, 1] += 1.0
    near = pairwise_penalty(shifted, variances[:, :1].expand(-1, 2, -1), masks, "jeffreys")
    shifted[:, 1] += 1.0
    far = pairwise_penalty(shifted, variances[:, :1].expand(-1, 2, -1), masks, "jeffreys")
    both = (masks[:, 0] * masks[:, 1]) > 0
    assert (far[both] > near[both]).all() and (near[both] > 0).all()


def test_mmd_none_and_unknown_penalties():
    means, variances, masks = posteriors()
    mmd = pairwise_penalty(means, variances, masks, "mmd")
    expected = sum(
        masks[:, a] * masks[:, b] * torch.linalg.vector_norm(means[:, a] - means[:, b], dim=-1)
        for a, b in [(0, 1), (0, 2), (1, 2)]
    )
    torch.testing.assert_close(mmd, expected)
    torch.testing.assert_close(pairwise_penalty(means, variances, masks, None), torch.zeros(6, dtype=torch.float64))
    with pytest.raises(ValueError, match="modality penalty must be"):
        pairwise_penalty(means, variances, masks, "kl")


def test_mean_mixing_is_the_moment_matched_mixture_of_observed_modalities():
    means, variances, masks = posteriors()
    joint_mean, joint_var, weights = ModalityMixer(3, 4, "mean")(means, variances, masks)
    torch.testing.assert_close(weights.sum(1), torch.ones(6, dtype=torch.float64))
    assert (weights[masks == 0] == 0).all()
    w = weights[..., None]
    torch.testing.assert_close(joint_mean, (w * means).sum(1))
    torch.testing.assert_close(joint_var, (w * (variances + means.square())).sum(1) - joint_mean.square())
    torch.testing.assert_close(joint_mean[3], means[3, 0])  # a cell with one modality keeps its posterior
    torch.testing.assert_close(joint_var[3], variances[3, 0])


def test_drop_modalities_keeps_one_present_modality_of_the_dropped_cells_only():
    torch.manual_seed(0)
    masks = torch.ones(4000, 3)
    masks[:1000, 1:] = 0.0  # one modality: never dropped
    masks[1000:2000, 2] = 0.0  # two modalities
    masks[2000:3000, 0] = 0.0
    dropped = drop_modalities(masks, 0.3)
    assert ((dropped <= masks).all()) and (dropped.sum(1) >= 1).all()  # only present modalities, at least one
    torch.testing.assert_close(dropped[:1000], masks[:1000])
    changed = (dropped != masks).any(1)
    assert (dropped[changed].sum(1) == 1).all()  # a dropped cell keeps exactly one modality
    share = changed[1000:].float().mean().item()
    assert 0.27 < share < 0.33  # the rate, over the cells with two or more modalities
    kept = dropped[3000:][changed[3000:]].argmax(1)
    assert set(kept.tolist()) == {0, 1, 2}  # drawn among all of a cell's modalities
    assert torch.equal(drop_modalities(masks, 0.0), masks)
