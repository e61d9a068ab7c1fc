"""Training NETWORKVI: scvi-tools' adversarial training plan and Lightning trainer, with the model's defaults."""

from __future__ import annotations

import logging
import numbers
from typing import Literal

from lightning.pytorch.callbacks import Callback
from scvi.model.base import UnsupervisedTrainingMixin

from ._finite_loss import FiniteLossCheck
from ._quiet import QUERY_WARNINGS, TRAINING_WARNINGS, quiet_lightning
from ._thread_backoff import ThreadBackoff, adapt_threads_by_default

logger = logging.getLogger(__name__)

#: Validation metrics the training plan logs each epoch, which ``train(early_stopping_monitor=...)`` may watch.
EARLY_STOPPING_MONITORS = ("elbo_validation", "reconstruction_loss_validation", "kl_local_validation")


class NetworkVITrainingMixin(UnsupervisedTrainingMixin):
    """``train`` of NETWORKVI: its optimiser, adversary and early-stopping defaults over scvi-tools' ``train``."""

    def train(
        self,
        max_epochs: int | None = None,
        *,
        lr: float = 4e-3,
        weight_decay: float | None = None,
        adversarial_mixing: bool = True,
        adversarial_scale: float | Literal["auto"] | None = None,
        n_epochs_kl_warmup: int | None = 50,
        n_steps_kl_warmup: int | None = None,
        gradient_spike_factor: float | None = 100.0,
        adapt_threads: bool | None = None,
        batch_size: int = 128,
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        early_stopping: bool = True,
        early_stopping_patience: int = 50,
        early_stopping_monitor: str = "elbo_validation",
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train with scvi-tools' adversarial training plan and Lightning trainer.

        Lightning's start-up lines (GPU / TPU available, tips) are not shown while this runs; give
        ``logging.getLogger("lightning.pytorch.utilities.rank_zero")`` a level (INFO) to see them. The progress bar
        and ``scvi.settings.verbosity`` work as in scvi-tools.

        Parameters
        ----------
        max_epochs
            ``None``: scvi-tools' heuristic from the number of cells.
        lr, weight_decay
            AdamW settings. The learning rate is TOTALVI's 4e-3 (the original's 1e-4, ``lr=1e-4``, trains far more
            slowly: results page). Weight decay: the original's 1e-3 (0 for a query model, whose frozen weights must
            not decay).
        adversarial_mixing
            Train a batch classifier on the latent and fool it (needs at least two batches; ignored with one).
        adversarial_scale
            Weight of the fooling term in the loss. ``"auto"``: scvi-tools' ``1 - KL weight``, which fades out with the
            KL warm-up (to 0 after ``n_epochs_kl_warmup`` epochs). A number: that weight throughout (MULTIVI trains
            with 1). ``None``: 1 on mosaic data (cells differ in the modalities they have), on data with a protein
            modality and for the GO encoder on paired RNA + ATAC, else ``"auto"`` (the default until 2026-12 for all
            data). In a mosaic the batch is typically the dataset, which also decides which modalities a cell has;
            the evidence for each rule is on the results page (mosaic and integration ablations).
        n_epochs_kl_warmup, n_steps_kl_warmup
            Linear KL warm-up.
        gradient_spike_factor
            A training step whose gradient norm exceeds this multiple of the median norm of the previous 200 steps is
            scaled down to that bound (AutoClip's rule, set so high that ordinary steps, at most 10-40x the median,
            are untouched). One such spike otherwise freezes the parameters it hits for thousands of AdamW steps
            (results page, "A guard against gradient spikes"). ``None``: no guard (the behaviour until 2026-12-06).
        adapt_threads
            On the CPU with several torch threads, train on fewer of them while other processes keep the cores busy
            and on all of them again once the cores are free (:class:`~scvi_networkvi.model.ThreadBackoff`; the thread
            count is restored when training ends). On a shared 2-core machine it kept an epoch at 1.3x its idle time
            where a fixed two-thread team took 3.6x (results page, "Under contention, with the thread back-off").
            ``False``: the thread count never changes, as before 2026-12-07 (two runs with the same seed then agree
            to the last digit whatever the load; a back-off changes torch's parallel reductions in the last digits).
            ``None``: ``True`` unless the environment variable ``SCVI_NETWORKVI_ADAPT_THREADS`` is ``0`` (for
            pipelines that need repeatable runs on shared machines, and the test suite).
        batch_size, train_size, validation_size, shuffle_set_split, datasplitter_kwargs
            Data splitting, as in scvi-tools.
        early_stopping, early_stopping_patience, early_stopping_monitor
            Stop when the validation metric ``early_stopping_monitor`` has not improved for this many epochs. The
            default, the validation ELBO (reconstruction + unweighted KL and modality penalty), is TOTALVI's; earlier
            versions monitored ``"reconstruction_loss_validation"`` (MULTIVI's choice), which stops sooner. One of
            ``"elbo_validation"``, ``"reconstruction_loss_validation"``, ``"kl_local_validation"``.
        accelerator, devices
            Lightning hardware settings (``strategy`` and other Trainer arguments pass through ``trainer_kwargs``).
        plan_kwargs
            Extra arguments of the training plan, :class:`~scvi_networkvi.model.NetworkVITrainingPlan` (scvi-tools'
            :class:`~scvi.train.AdversarialTrainingPlan` with its epoch metrics handed to Lightning once per epoch),
            overriding the ones above.
        **trainer_kwargs
            Passed to the Lightning Trainer; an unknown name is an error there.
        """
        if early_stopping and early_stopping_monitor not in EARLY_STOPPING_MONITORS:
            raise ValueError(
                f"train(early_stopping_monitor={early_stopping_monitor!r}) is not a validation metric the model logs; "
                f"use one of {list(EARLY_STOPPING_MONITORS)}."
            )
        spike_factor_ok = gradient_spike_factor is None or (
            isinstance(gradient_spike_factor, numbers.Real)
            and not isinstance(gradient_spike_factor, bool)
            and gradient_spike_factor > 1
        )
        if not spike_factor_ok:
            raise ValueError(
                f"train(gradient_spike_factor={gradient_spike_factor!r}) must be a number greater than 1 (how far above "
                "the recent median a step's gradient norm may go) or None (no guard)."
            )
        if adapt_threads is not None and not isinstance(adapt_threads, bool):
            raise ValueError(f"train(adapt_threads={adapt_threads!r}) must be True, False or None.")
        if adapt_threads is None:
            adapt_threads = adapt_threads_by_default()
        if weight_decay is None:
            weight_decay = 0.0 if getattr(self, "query_", False) else 1e-3
        n_batch = self.summary_stats.n_batch
        use_adversarial = adversarial_mixing and n_batch > 1
        if adversarial_mixing and n_batch < 2:
            logger.info("adversarial_mixing needs at least two batches; training without it.")
        plan = {
            "optimizer": "AdamW",
            "lr": lr,
            "weight_decay": weight_decay,
            "n_epochs_kl_warmup": n_epochs_kl_warmup,
            "n_steps_kl_warmup": n_steps_kl_warmup,
            "adversarial_classifier": use_adversarial,
            "scale_adversarial_loss": _adversarial_scale(
                adversarial_scale, self._data_type_defaults().full_weight_adversary
            ),
        }
        if gradient_spike_factor is not None:  # absent: the plan's own default, no guard (scvi-tools' plans have none)
            plan["gradient_spike_factor"] = float(gradient_spike_factor)
        plan.update(plan_kwargs or {})
        callbacks = trainer_kwargs.get("callbacks") or []
        callbacks = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
        trainer_kwargs["callbacks"] = [*callbacks, FiniteLossCheck(), *([ThreadBackoff()] if adapt_threads else [])]
        if early_stopping:
            trainer_kwargs.setdefault("early_stopping_monitor", early_stopping_monitor)
            trainer_kwargs.setdefault("early_stopping_patience", early_stopping_patience)
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        if not getattr(self, "query_", False):
            # scvi-tools leaves the module in eval mode after training and Lightning no longer switches it back:
            # a second train() would run with the GO levels' batch norm frozen (a query model is frozen on purpose)
            self.module.train()
        quiet = TRAINING_WARNINGS + (QUERY_WARNINGS if getattr(self, "query_", False) else ())
        with quiet_lightning(quiet):
            return super().train(
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                train_size=train_size,
                validation_size=validation_size,
                shuffle_set_split=shuffle_set_split,
                batch_size=batch_size,
                early_stopping=early_stopping,
                datasplitter_kwargs=datasplitter_kwargs,
                plan_kwargs=plan,
                **trainer_kwargs,
            )


def _adversarial_scale(value: float | str | None, full_weight: bool) -> float | str:
    """The adversary's weight: ``None`` -> 1 where ``full_weight``, else scvi-tools' ``"auto"`` (``1 - KL weight``)."""
    if value is None:
        return 1.0 if full_weight else "auto"
    if value != "auto" and not (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"adversarial_scale must be a number >= 0, 'auto' or None, got {value!r}.")
    return value if value == "auto" else float(value)
