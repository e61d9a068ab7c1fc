"""scvi-tools' adversarial training plan, with the epoch metrics handed to Lightning once per epoch."""

from __future__ import annotations

import logging

import torch
from scvi.train import AdversarialTrainingPlan
from torchmetrics import Metric

from ._gradient_guard import GradientSpikeGuard

logger = logging.getLogger(__name__)


class NetworkVITrainingPlan(AdversarialTrainingPlan):
    """:class:`~scvi.train.AdversarialTrainingPlan` that registers its training ELBO metrics once per epoch.

    scvi-tools updates the ELBO metric objects (torchmetrics) in every training step and logs them with
    ``on_epoch=True``, so Lightning computes them from their own accumulated state at the end of the epoch. Logging
    the same objects again in every step only repeats Lightning's bookkeeping (~1 ms per metric and step on CPU,
    several per step); here the first step of an epoch registers them and later steps only update them. The logged
    values (``elbo_train``, ``reconstruction_loss_train``, ``kl_local_train``, ``kl_global_train``) are unchanged.
    Validation and step-level logging are as in scvi-tools.

    Parameters
    ----------
    adversarial_modalities
        The batch classifier also reads every modality's own posterior mean (each on the cells that have the
        modality), so every encoder, not only their mixture, is trained to hide the batch. ``False``: the joint
        sample only, as scvi-tools does.
    **kwargs
        :class:`~scvi.train.AdversarialTrainingPlan`'s arguments.
    """

    def __init__(
        self,
        module,
        *,
        adversarial_modalities: bool = False,
        gradient_spike_factor: float | None = None,
        **kwargs,
    ):
        super().__init__(module, **kwargs)
        self.adversarial_modalities = adversarial_modalities
        self._modality_latents: tuple[torch.Tensor, torch.Tensor] | None = None
        self.gradient_guard = None if gradient_spike_factor is None else GradientSpikeGuard(gradient_spike_factor)

    def on_before_optimizer_step(self, optimizer) -> None:
        """The gradient-spike guard on the model's optimizer (the batch classifier's steps are left as they are)."""
        super().on_before_optimizer_step(optimizer)
        if self.gradient_guard is None:
            return
        optimizers = self.optimizers(use_pl_optimizer=False)
        main = optimizers[0] if isinstance(optimizers, list) else optimizers
        if optimizer is main:
            self.gradient_guard(
                [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            )

    def on_train_epoch_end(self) -> None:
        """Log how many steps the gradient-spike guard has scaled so far (``history["gradient_spikes_scaled"]``)."""
        super().on_train_epoch_end()
        if self.gradient_guard is not None:
            self.log("gradient_spikes_scaled", float(self.gradient_guard.n_scaled), on_step=False, on_epoch=True)

    def on_train_end(self) -> None:
        """Say so where the gradient-spike guard acted."""
        super().on_train_end()
        if self.gradient_guard is not None and self.gradient_guard.n_scaled:
            logger.info(
                "%d training step(s) had a gradient norm over %g x the recent median and were scaled down to it "
                "(train(gradient_spike_factor=...)).",
                self.gradient_guard.n_scaled,
                self.gradient_guard.factor,
            )

    def on_train_epoch_start(self) -> None:
        """Let the epoch's first training step register the ELBO metrics."""
        self._epoch_metrics_registered = False
        super().on_train_epoch_start()

    def forward(self, *args, **kwargs):
        """The module's forward pass; keeps the modality posteriors for the classifier of this training step."""
        outputs = super().forward(*args, **kwargs)
        if self.adversarial_modalities and self.training and "means" in outputs[0]:
            self._modality_latents = (outputs[0]["means"], outputs[0]["masks"])
        return outputs

    def loss_adversarial_classifier(self, z, batch_index, predict_true_class=True):
        """scvi-tools' classifier loss on ``z``, plus, with ``adversarial_modalities``, on each modality's mean.

        Each modality's term is averaged over the cells that have the modality and weighs as much as the joint term;
        the classifier's own step (``z`` detached) sees the means detached too.
        """
        loss = super().loss_adversarial_classifier(z, batch_index, predict_true_class)
        if self._modality_latents is None or not self.adversarial_modalities:
            return loss
        means, masks = self._modality_latents
        if not z.requires_grad:
            means = means.detach()
        batch = batch_index.reshape(-1)
        for i in range(means.shape[1]):
            rows = masks[:, i] > 0
            if bool(rows.any()):
                loss = loss + super().loss_adversarial_classifier(means[rows, i], batch[rows, None], predict_true_class)
        if not predict_true_class:
            return loss
        self._modality_latents = None  # the classifier's step is the last use in a training step
        return loss

    def log_dict(self, dictionary, *args, **kwargs) -> None:
        """Lightning's ``log_dict``, skipped for training epoch metrics already registered in this epoch."""
        epoch_metrics = (
            self.training
            and not kwargs.get("on_step", False)
            and bool(dictionary)
            and all(isinstance(value, Metric) for value in dictionary.values())
        )
        if epoch_metrics:
            if getattr(self, "_epoch_metrics_registered", False):
                return
            self._epoch_metrics_registered = True
        super().log_dict(dictionary, *args, **kwargs)
