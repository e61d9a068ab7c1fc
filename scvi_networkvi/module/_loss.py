"""The loss of :class:`~scvi_networkvi.module.NetworkVAE`: masked reconstruction, KL, modality penalty, background KL."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput
from torch.distributions import Normal, kl_divergence

from ._mixing import pairwise_penalty


class NetworkVAELossMixin:
    """``loss`` of the module: what training minimises and scvi-tools logs."""

    def loss(self, tensors, inference_outputs, generative_outputs, kl_weight: float = 1.0) -> LossOutput:
        """Masked reconstruction + ``kl_weight`` x (KL of the joint posterior + pairwise modality penalty).

        The penalty is warmed up only with ``modality_penalty_warmup``; ``kl_divergence_paired`` logs it unweighted.
        """
        masks = inference_outputs["masks"]
        recon = self.reconstruction_losses(inference_outputs["data"], inference_outputs, generative_outputs)
        recon = {m: recon[m] * masks[:, self.modalities.index(m)] for m in recon}
        qz_m, qz_v = inference_outputs["qz_m"], inference_outputs["qz_v"]
        kl_z = 0.5 * (qz_m.square() + qz_v - qz_v.log() - 1.0).sum(-1)  # KL(N(m, v) || N(0, 1)), closed form
        means, variances = inference_outputs["means"], inference_outputs["variances"]
        if self.penalty_anchor is not None:
            anchor = torch.zeros(len(self.modalities), dtype=torch.bool, device=means.device)
            anchor[self.modalities.index(self.penalty_anchor)] = True
            means = torch.where(anchor[None, :, None], means.detach(), means)
            variances = torch.where(anchor[None, :, None], variances.detach(), variances)
        penalty = pairwise_penalty(means, variances, masks, self.modality_penalty)
        kl_local = {"kl_divergence_z": kl_z, "kl_divergence_paired": penalty}
        extra = torch.zeros(())
        if "protein" in self.modalities and self.protein_background_prior:
            batch = tensors[REGISTRY_KEYS.BATCH_KEY].squeeze(-1).long()
            n_cols = self.background_pro_alpha.shape[1]
            one_hot = F.one_hot(batch.clamp_max(n_cols - 1), n_cols).float()
            prior = Normal(
                F.linear(one_hot, self.background_pro_alpha),
                torch.exp(F.linear(one_hot, self.background_pro_log_beta)),
                validate_args=False,
            )
            py_ = generative_outputs["py_"]
            kl_back = kl_divergence(Normal(py_["back_alpha"], py_["back_beta"], validate_args=False), prior).sum(-1)
            kl_local["kl_divergence_background"] = kl_back * masks[:, self.modalities.index("protein")]
            extra = kl_local["kl_divergence_background"]
        penalty_weight = (kl_weight if self.penalty_warmup else 1.0) * self.penalty_scale
        total = sum(recon.values()) + kl_weight * kl_z + penalty_weight * penalty + kl_weight * extra
        return LossOutput(
            loss=total.mean(),
            reconstruction_loss=recon,
            kl_local=kl_local,
        )
