"""Batch normalisation of one GO level's activations, kept feature-major (neurons x cells)."""

from __future__ import annotations

import torch
from torch import nn


class LevelBatchNorm(nn.Module):
    """Standardise every neuron of a GO level over the cells of the minibatch, then scale and shift it.

    A GO term sums hundreds to thousands of non-negative gene-node activations. Without normalisation that sum is
    dominated by how much the cell expresses overall, so after training the top GO node becomes rank one and the
    encoder's posterior collapses onto the prior (tutorial multiome: spread of the ATAC posterior means 0.0001).
    Centring each level keeps the between-cell differences that carry cell identity. ``torch.nn.BatchNorm1d`` expects
    cells x neurons; the GO network runs neurons x cells, and transposing every level costs a copy each way.

    Parameters
    ----------
    n_neurons
        Width of the level.
    momentum
        Weight of the current minibatch in the running mean and variance (as ``torch.nn.BatchNorm1d``).
    eps
        Added to the variance before the square root.

    Notes
    -----
    In training, a minibatch with fewer than two cells (possible for a modality that few cells of a mosaic minibatch
    have) is normalised with the running statistics. After :meth:`freeze`, the running statistics are used in
    training as well and are no longer updated: query training then sees the reference encoder unchanged.
    """

    def __init__(self, n_neurons: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if n_neurons < 1:
            raise ValueError(f"LevelBatchNorm needs at least one neuron, got n_neurons={n_neurons}.")
        if not 0.0 <= momentum <= 1.0 or eps <= 0.0:
            raise ValueError(
                f"LevelBatchNorm needs 0 <= momentum <= 1 and eps > 0, got momentum={momentum}, eps={eps}."
            )
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_neurons, 1))
        self.bias = nn.Parameter(torch.zeros(n_neurons, 1))
        self.register_buffer("running_mean", torch.zeros(n_neurons, 1))
        self.register_buffer("running_var", torch.ones(n_neurons, 1))
        self.register_buffer("frozen", torch.tensor(False))  # saved with the model
        self._frozen = False  # its host copy: reading the buffer on a GPU would synchronise every forward

    def freeze(self) -> None:
        """Use (and keep) the running statistics in training too; for query mapping on a frozen encoder."""
        self.frozen.fill_(True)
        self._frozen = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._frozen = bool(self.frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (``n_neurons, n_cells``)."""
        update = self.training and x.shape[1] > 1 and not self._frozen
        # torch's batch norm on the (1, neurons, cells) view: statistics per neuron over the cells, the running
        # statistics updated inside the op (unbiased variance, as here), one autograd node instead of ~10 small ops
        return torch.nn.functional.batch_norm(
            x.unsqueeze(0),
            self.running_mean.view(-1),
            self.running_var.view(-1),
            self.weight.view(-1),
            self.bias.view(-1),
            training=update,
            momentum=self.momentum,
            eps=self.eps,
        ).squeeze(0)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, momentum={self.momentum}, eps={self.eps}"
