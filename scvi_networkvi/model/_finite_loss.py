"""Stop training with an error that says what to change when the training loss stops being finite."""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import Callback


class FiniteLossCheck(Callback):
    """Raise :class:`FloatingPointError` at the end of an epoch whose training loss is NaN or infinite.

    The module builds its distributions without torch's argument validation (each check is a device synchronisation
    on a GPU, several per step), so a diverging run no longer stops inside a distribution's constructor. This check
    reads the epoch's logged loss once per epoch instead and names the usual causes.
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        loss = metrics.get("train_loss_epoch", metrics.get("train_loss"))
        if loss is None:
            return
        value = float(loss)
        if not math.isfinite(value):
            raise FloatingPointError(
                f"The training loss became {value} in epoch {trainer.current_epoch}: training diverged. Lower the "
                "learning rate (train(lr=...)), keep continuous covariates standardised "
                "(standardize_continuous_covariates=True) and check the counts for extreme values."
            )
