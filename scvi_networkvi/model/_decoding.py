"""Decoding helpers shared by NETWORKVI's per-cell estimates (``_outputs``) and differential tests (``_differential``).

The mixin relies on what :class:`~scvi_networkvi.model.NETWORKVI` provides (``module``, ``adata_manager``,
``_make_data_loader``, ``modality_name``, ``_batch_code``): it runs the encoders once per minibatch and the decoders
once per requested batch, and hands each minibatch's decoded values back as an array.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from mudata import MuData

from scvi_networkvi.module import DATA_KEYS

Indices = Sequence[int] | np.ndarray | None
BatchSpec = str | int | Sequence[str | int] | None


class DecodingMixin:
    """Feature names, batch codes and minibatch decoding for the output methods of NETWORKVI."""

    def _output_feature_names(self, role: str) -> np.ndarray:
        """Names of a role's features as registered (the order the module uses)."""
        self.modality_name(role)  # a clear error if the model lacks the modality
        state = self.adata_manager.get_state_registry(DATA_KEYS[role])
        return np.asarray(state.column_names)

    def _output_batch_codes(self, transform_batch: BatchSpec) -> list[int | None]:
        """Batch codes of ``transform_batch`` (one value or a list), validated."""
        if transform_batch is None or isinstance(transform_batch, str | numbers.Integral):
            return [self._batch_code(transform_batch)]
        batches = list(transform_batch)
        if not batches:
            raise ValueError("transform_batch is an empty list; give batch names or None (each cell's own batch).")
        return [self._batch_code(b) for b in batches]

    def _decode_minibatches(
        self,
        adata: MuData,
        indices: Indices,
        batch_codes: list[int | None],
        use_z_mean: bool,
        batch_size: int | None,
        extract: Callable[[dict[str, Any], dict[str, Any]], torch.Tensor],
    ) -> Iterator[np.ndarray]:
        """Per minibatch: ``extract(inference, generative)`` averaged over the decoder batches ``batch_codes``.

        The encoders run once per minibatch (each cell with its own batch); only the decoders see ``batch_codes``.
        Call inside :func:`torch.inference_mode`.
        """
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        for tensors in loader:
            inference = self.module.inference(**self.module._get_inference_input(tensors))
            total = None
            for code in batch_codes:
                gen_input = self.module._get_generative_input(tensors, inference, transform_batch=code)
                values = extract(inference, self.module.generative(**gen_input, use_z_mean=use_z_mean))
                total = values if total is None else total + values
            yield (total / len(batch_codes)).cpu().numpy()

    def _output_obs_names(self, adata: MuData, indices: Indices) -> pd.Index:
        return adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))
