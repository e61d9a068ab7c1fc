"""A guard against rare gradient spikes: a step whose gradient norm is far above the recent median is scaled down.

One huge gradient does lasting harm under Adam(W): it enters the second-moment estimate ``v`` of every parameter it
touches, and ``v`` decays by ``beta2 = 0.999`` per step, so a gradient 10^6 times the usual one leaves those parameters
with almost no step size for thousands of steps. Measured on paired multiome with GO-wired ATAC encoders of narrow
gene nodes (`docs/benchmarks.md`, "A guard against gradient spikes"): a norm of 10^8 against a median of ~55 in one
step of epoch 18 left the encoders frozen half-trained (kNN-15 0.70 against 0.80 for the other seeds).

The rule is AutoClip's (Seetharaman et al. 2020: clip to a percentile of the norms seen so far) with the threshold set
far above the usual spread (the largest step of a normal epoch is 10-40x the median), so that ordinary steps are never
changed and a training without spikes is exactly the training without the guard.
"""

from __future__ import annotations

import torch

#: Steps whose norms the median is taken over, and steps seen before the guard acts (no median before them).
HISTORY_STEPS = 200
WARMUP_STEPS = 50


class GradientSpikeGuard:
    """Scale a step's gradients down to ``factor`` times the median norm of the previous steps where they exceed it.

    Parameters
    ----------
    factor
        How far above the median of the last :data:`HISTORY_STEPS` gradient norms a step may go before it is scaled
        down to that bound. Must be greater than 1.
    history, warmup
        Steps in the median; steps seen before the guard acts.
    """

    def __init__(self, factor: float, history: int = HISTORY_STEPS, warmup: int = WARMUP_STEPS):
        if not factor > 1:
            raise ValueError(
                f"gradient_spike_factor must be greater than 1 (or None to turn the guard off), got {factor!r}."
            )
        self.factor = float(factor)
        self.history = int(history)
        self.warmup = int(warmup)
        self._norms: torch.Tensor | None = None  # ring buffer on the gradients' device (no host sync on a GPU)
        self._seen = 0
        self._scaled: torch.Tensor | None = None

    @property
    def n_scaled(self) -> int:
        """How many steps were scaled down so far."""
        return 0 if self._scaled is None else int(self._scaled)

    def __call__(self, grads: list[torch.Tensor]) -> None:
        """Record this step's gradient norm and, past the warm-up, scale ``grads`` in place if the norm is a spike."""
        if not grads:
            return
        norm = torch.nn.utils.get_total_norm(grads)  # one fused launch per device and dtype (foreach)
        if self._norms is None:
            self._norms = torch.zeros(self.history, dtype=norm.dtype, device=norm.device)
            self._scaled = torch.zeros((), dtype=torch.int64, device=norm.device)
        finite = torch.isfinite(norm)
        if self._seen >= self.warmup:
            # a non-finite gradient is left to the loss checks: neither scaled nor kept in the median; a median of 0
            # (gradients that were all zero) bounds nothing
            limit = self.factor * self._norms[: min(self._seen, self.history)].nanmedian()
            acts = finite & (limit > 0)
            scale = torch.where(acts, torch.clamp(limit / norm, max=1.0), 1.0).nan_to_num(nan=1.0)
            # On the CPU the test costs nothing and skips a pass over every gradient; a GPU scales without a host sync.
            if norm.device.type != "cpu" or bool(scale < 1.0):
                torch._foreach_mul_(grads, scale)  # as torch's own clip_grad_norm_ scales (one launch)
                self._scaled += (scale < 1.0).to(torch.int64)
        self._norms[self._seen % self.history] = torch.where(finite, norm, torch.nan)
        self._seen += 1
