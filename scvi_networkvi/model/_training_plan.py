"""scvi-tools' adversarial training plan, with the epoch metrics handed to Lightning once per epoch."""

from __future__ import annotations

from scvi.train import AdversarialTrainingPlan
from torchmetrics import Metric


class NetworkVITrainingPlan(AdversarialTrainingPlan):
    """:class:`~scvi.train.AdversarialTrainingPlan` that registers its training ELBO metrics once per epoch.

    scvi-tools updates the ELBO metric objects (torchmetrics) in every training step and logs them with
    ``on_epoch=True``, so Lightning computes them from their own accumulated state at the end of the epoch. Logging
    the same objects again in every step only repeats Lightning's bookkeeping (~1 ms per metric and step on CPU,
    several per step); here the first step of an epoch registers them and later steps only update them. The logged
    values (``elbo_train``, ``reconstruction_loss_train``, ``kl_local_train``, ``kl_global_train``) are unchanged.
    Validation and step-level logging are as in scvi-tools.
    """

    def on_train_epoch_start(self) -> None:
        """Let the epoch's first training step register the ELBO metrics."""
        self._epoch_metrics_registered = False
        super().on_train_epoch_start()

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
