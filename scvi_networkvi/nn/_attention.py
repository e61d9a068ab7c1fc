"""GO-specific covariate attention: every neuron of a level attends over the covariates (NetworkVI section 4.5)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def covariate_vector(
    n_cat_list: Sequence[int], cat_list: Sequence[torch.Tensor], cont: torch.Tensor | None
) -> torch.Tensor | None:
    """``[one-hot per categorical covariate with > 1 category | continuous covariates]`` per cell, or None."""
    parts = [
        F.one_hot(cat.long().view(-1), n).float()
        for n, cat in zip(n_cat_list, cat_list, strict=False)
        if n > 1 and cat is not None
    ]
    if cont is not None and cont.shape[-1] > 0:
        parts.append(cont.float())
    return torch.cat(parts, dim=-1) if parts else None


def covariate_width(n_cat_list: Sequence[int], n_cont: int) -> int:
    """Width of :func:`covariate_vector`."""
    return sum(n for n in n_cat_list if n > 1) + n_cont


class CovariateAttention(nn.Module):
    """``y = LayerNorm(x + sum_c A[:, j, c] v[:, c])`` with ``A = softmax_c(x_j a_j * u_c k_c / sqrt(D))``.

    One head with a per-neuron query weight ``a`` (D), a per-covariate key weight ``k`` (C) and a value map ``V``
    (C x C) applied to the covariate vector ``u``, as the original. The attention tensor is ``n x D x C``: it is
    computed per minibatch and never kept.

    Parameters
    ----------
    n_neurons
        Width D of the level it acts on.
    n_covariates
        Width C of the covariate vector.
    """

    def __init__(self, n_neurons: int, n_covariates: int):
        super().__init__()
        if n_covariates < 1:
            raise ValueError("Covariate attention needs at least one covariate (a batch with > 1 category or more).")
        self.query = nn.Parameter(torch.rand(n_neurons))
        self.key = nn.Parameter(torch.rand(n_covariates))
        self.value = nn.Parameter(torch.rand(n_covariates, n_covariates))
        self.norm = nn.LayerNorm(n_neurons)
        self.scale = 1.0 / math.sqrt(n_neurons)

    def weights(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Attention ``(n, D, C)`` of each neuron over the covariates."""
        logits = (x * self.query).unsqueeze(-1) * (u * self.key).unsqueeze(1) * self.scale
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Attend and add the covariate values to ``x`` (``n, D``), then normalise."""
        values = u @ self.value
        attended = torch.einsum("ndc,nc->nd", self.weights(x, u), values)
        return self.norm(x + attended)
