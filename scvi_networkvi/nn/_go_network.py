"""The GO levels of a wiring as one network, deepest level first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from scvi_networkvi.wiring import Wiring

from ._attention import CovariateAttention
from ._level_norm import LevelBatchNorm
from ._shared_grad import SharedPartGrad
from ._two_path import _TwoPathBlockLayer

GONorm = Literal["batch", "none"]


class GONetwork(nn.Module):
    """The GO levels of a wiring, deepest first; each level reads ``[genes | all deeper terms]`` in one product.

    Parameters
    ----------
    wiring
        The compiled wiring.
    input_sizes
        Neurons of each input node (gene nodes, or single features when there is no gene layer).
    input_term
        ``(2, k)`` (input node, term) connections.
    activation
        Activation inside each level.
    linear_path
        Add a parallel linear path on the same structure (``act(W1 x + b1) + W2 x + b2``), as the original does.
    n_covariates
        Width of the covariate vector that covariate attention reads.
    attention_levels
        GO depths followed by covariate attention.
    norm
        ``"batch"``: every level's output is batch-normalised (:class:`LevelBatchNorm`) before the levels above
        read it; ``"none"``: the original's un-normalised levels.
    """

    def __init__(
        self,
        wiring: Wiring,
        input_sizes: np.ndarray,
        input_term: np.ndarray,
        activation: str = "relu",
        linear_path: bool = True,
        n_covariates: int = 0,
        attention_levels: Sequence[int] = (),
        norm: GONorm = "batch",
    ):
        super().__init__()
        if norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {norm!r}.")
        n_inputs = len(input_sizes)
        term_offset = np.concatenate([[0], np.cumsum(wiring.term_size)]).astype(np.int64)
        self.level_depths: list[int] = []
        self.level_slices: list[tuple[int, int]] = []  # neuron range of each level in the concatenated term vector
        self.levels = nn.ModuleList()
        for depth, terms in wiring.levels:
            in_sizes = np.concatenate([input_sizes, wiring.term_size[: terms.start]])
            out_sizes = wiring.term_size[terms]
            from_inputs = input_term[:, (input_term[1] >= terms.start) & (input_term[1] < terms.stop)]
            child, parent = wiring.term_term
            from_terms = np.stack([child, parent])[:, (parent >= terms.start) & (parent < terms.stop)]
            connections = np.concatenate(
                [
                    np.stack([from_inputs[0], from_inputs[1] - terms.start]),
                    np.stack([from_terms[0] + n_inputs, from_terms[1] - terms.start]),
                ],
                axis=1,
            )
            level = _TwoPathBlockLayer(in_sizes, out_sizes, connections, activation, linear_path)
            if not self.levels:
                first_reads_inputs = from_inputs.shape[1] > 0
            # The first level's input gradient is dense; the input rows read by the levels above add to it sparsely.
            level.linear.sparse_first_part_grad = bool(self.levels) and first_reads_inputs
            self.levels.append(level)
            self.level_depths.append(depth)
            self.level_slices.append((int(term_offset[terms.start]), int(term_offset[terms.stop])))
        self.n_output = int(wiring.term_size[-1])
        self.norms = nn.ModuleList(
            [LevelBatchNorm(stop - start) for start, stop in self.level_slices] if norm == "batch" else []
        )
        # Parameter-free taps on each level's output (feature-major), where analysis hooks in (interpret).
        self.level_taps = nn.ModuleList([nn.Identity() for _ in self.levels])
        # Covariate attention after the levels listed by depth (keys are the level positions as strings).
        self.attention = nn.ModuleDict(
            {
                str(i): CovariateAttention(int(wiring.term_size[terms].sum()), n_covariates)
                for i, (depth, terms) in enumerate(wiring.levels)
                if depth in set(attention_levels)
            }
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Activations of the top node (``n, root_size``) from the input-node activations ``h``."""
        return self.forward_t(h.t()).t().contiguous()

    def forward_t(
        self,
        ht: torch.Tensor | None,
        covariates: torch.Tensor | None = None,
        all_levels: bool = False,
        products: Callable[[int, list[torch.Tensor]], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Feature-major :meth:`forward`: ``(n_inputs, n)`` -> ``(root_size, n)``; ``covariates`` feed attention.

        ``all_levels``: return every level's output stacked (``(n_level_neurons, n)``, deepest first, root last).
        ``products``: level ``i``'s block product (bias included) from the deeper levels' outputs, computed by the
        caller (the inference from the counts, :mod:`._sparse_counts`); ``ht`` is then not read.
        """
        # Each level reads [inputs | all deeper terms] as row blocks: the wide input rows are never copied. Their
        # gradient for the input rows is summed in one buffer (CPU kernel, :mod:`._shared_grad`).
        state = [ht]
        grad = products is None and ht is not None and ht.requires_grad and torch.is_grad_enabled()
        shared = SharedPartGrad() if grad else None
        for i, level in enumerate(self.levels):
            out = level.forward_t(state, shared=shared) if products is None else level.activate(products(i, state[1:]))
            if str(i) in self.attention:
                out = self.attention[str(i)](out.t(), covariates).t().contiguous()
            if self.norms:
                out = self.norms[i](out)
            state.append(self.level_taps[i](out))
        return torch.cat(state[1:], 0) if all_levels else state[-1]

    @property
    def n_level_neurons(self) -> int:
        """Neurons of all levels together, root included (the width of ``forward_t(..., all_levels=True)``)."""
        return sum(stop - start for start, stop in self.level_slices)
