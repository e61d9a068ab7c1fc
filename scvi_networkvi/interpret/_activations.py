"""Per-node activations of the GO-wired encoders, captured with forward hooks in one inference pass."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from scvi_networkvi.module import DATA_KEYS, MASK_KEY
from scvi_networkvi.nn import WiredEncoder
from scvi_networkvi.wiring import Wiring

from ._progress import track

if TYPE_CHECKING:
    from scvi_networkvi.model import NETWORKVI

logger = logging.getLogger(__name__)

#: A function applied to every minibatch of registry tensors before inference (e.g. zeroing features).
TensorTransform = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class ModalityActivations:
    """Activations of one modality's wired encoder on the cells that have the modality.

    Attributes
    ----------
    role
        ``rna``, ``protein`` or ``atac``.
    modality
        The MuData modality name.
    wiring
        The encoder's wiring (node order and widths).
    cells
        Positions, among the requested cells, of the cells that have the modality (the rows below).
    terms
        ``(cells, term neurons)``: every term's neurons, terms in wiring order (deepest level first); term ``t`` owns
        columns ``term_offsets[t]:term_offsets[t + 1]``.
    genes
        ``(cells, n_genes * gene_size)``: the gene-node activations that feed the GO network (after the interaction
        layers), gene ``g`` owning columns ``g * gene_size:(g + 1) * gene_size``; ``None`` unless requested.
    """

    role: str
    modality: str
    wiring: Wiring
    cells: np.ndarray
    terms: np.ndarray
    genes: np.ndarray | None

    @property
    def term_offsets(self) -> np.ndarray:
        """Column where each term's neurons start, plus the total width at the end."""
        return np.concatenate([[0], np.cumsum(self.wiring.term_size)]).astype(np.int64)


@dataclass(frozen=True)
class Activations:
    """Activations of every requested modality on a set of cells (``obs_names``, in the order requested)."""

    obs_names: pd.Index
    modalities: dict[str, ModalityActivations]


def wired_roles(model: NETWORKVI) -> list[str]:
    """Modality roles of ``model`` whose encoder is GO-wired."""
    return [role for role in model.module.modalities if isinstance(model.module.encoders[role], WiredEncoder)]


def resolve_roles(model: NETWORKVI, modalities: str | Sequence[str] | None) -> list[str]:
    """Roles for a user's ``modalities`` (roles or MuData names; ``None``: every GO-wired modality)."""
    wired = wired_roles(model)
    if not wired:
        raise ValueError(
            "The model has no GO-wired encoder (it was built with encoder='dense'): node importances need "
            "NETWORKVI(..., encoder='go')."
        )
    if modalities is None:
        return wired
    wanted = [modalities] if isinstance(modalities, str) else list(modalities)
    roles = []
    for name in wanted:
        role = model.role_of(name)  # raises with the valid names for an unknown one
        if role not in wired:
            raise ValueError(f"Modality {name!r} has a dense encoder: it has no GO or gene nodes. Wired: {wired}.")
        roles.append(role)
    return list(dict.fromkeys(roles))


@contextlib.contextmanager
def _eval_without_side_effects(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside; training flag and torch's random state restored afterwards."""
    was_training = module.training
    device = next(module.parameters()).device
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    try:
        # The inference pass draws a latent sample: fork the generators so analysis never shifts later random draws.
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            module.eval()
            yield
    finally:
        module.train(was_training)


def capture_activations(
    model: NETWORKVI,
    adata=None,
    indices: Sequence[int] | None = None,
    *,
    modalities: str | Sequence[str] | None = None,
    genes: bool = False,
    batch_size: int = 256,
    transform: TensorTransform | None = None,
    progress: bool = False,
    description: str = "Activations",
) -> Activations:
    """Run the model once over the cells and keep every GO term's (and optionally gene node's) activations.

    Forward hooks on the encoders' parameter-free taps copy each minibatch's activations to CPU; they are removed
    before returning, the module's training flag and torch's random state are restored, and nothing on the model
    changes (later training and inference are unaffected).

    Parameters
    ----------
    model
        A trained :class:`~scvi_networkvi.NETWORKVI` with at least one GO-wired encoder.
    adata, indices
        Cells (default: the model's registered MuData, all cells).
    modalities
        Roles or MuData names; default every GO-wired modality.
    genes
        Also keep the gene-node activations (``cells x n_genes * gene_size`` floats: large for big data).
    batch_size
        Cells per minibatch.
    transform
        Applied to each minibatch of registry tensors before inference (in-silico perturbation).
    progress, description
        Draw scvi-tools' progress bar over the minibatches, with this description.
    """
    roles = resolve_roles(model, modalities)
    if genes:
        missing = [r for r in roles if model.module.encoders[r].gene_tap is None]
        if missing:
            raise ValueError(f"Modalities {missing} were built with gene_layer='none': they have no gene nodes.")
    adata = model.validate_mudata(adata)
    loader = model.make_data_loader(adata, indices=indices, batch_size=batch_size)
    module = model.module
    chunks: dict[tuple[str, str], list[np.ndarray]] = {}
    handles = []

    def keep(key: tuple[str, str]):
        def hook(_module, _inputs, output):
            chunks.setdefault(key, []).append(output.t().float().cpu().numpy())  # feature-major -> cells x neurons

        return hook

    for role in roles:
        encoder = module.encoders[role]
        for i, tap in enumerate(encoder.go_network.level_taps):
            handles.append(tap.register_forward_hook(keep((role, f"level{i}"))))
        if genes:
            handles.append(encoder.gene_tap.register_forward_hook(keep((role, "genes"))))
    present: dict[str, list[np.ndarray]] = {role: [] for role in roles}
    n_seen = 0
    try:
        with _eval_without_side_effects(module):
            for tensors in track(loader, description, enabled=progress):
                if transform is not None:
                    tensors = transform(dict(tensors))
                n = tensors[DATA_KEYS[module.modalities[0]]].shape[0]
                mask = tensors.get(MASK_KEY)
                for role in roles:
                    rows = np.arange(n) if mask is None else np.flatnonzero(mask[:, module.modalities.index(role)] > 0)
                    present[role].append(rows + n_seen)
                module.inference(**module._get_inference_input(tensors))
                n_seen += n
    finally:
        for handle in handles:
            handle.remove()

    obs_names = adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]
    out = {}
    for role in roles:
        encoder = module.encoders[role]
        cells = np.concatenate(present[role]) if present[role] else np.zeros(0, dtype=np.int64)
        wiring = _wiring_of(model, role)
        slices = encoder.go_network.level_slices
        levels = [
            _stack(chunks.get((role, f"level{i}"), []), cells, stop - start) for i, (start, stop) in enumerate(slices)
        ]
        terms = np.concatenate(levels, axis=1)
        gene_acts = _stack(chunks.get((role, "genes"), []), cells, wiring.n_genes * wiring.gene_size) if genes else None
        if terms.shape[1] != int(wiring.term_size.sum()):  # guards the tap <-> wiring correspondence
            raise RuntimeError(
                f"Captured {terms.shape[1]} term neurons for {role}, the wiring has {wiring.term_size.sum()}."
            )
        out[role] = ModalityActivations(role, model.modality_name(role), wiring, cells, terms, gene_acts)
    logger.info("Captured activations of %d cells for %s.", len(obs_names), ", ".join(roles))
    return Activations(pd.Index(obs_names), out)


def _stack(parts: list[np.ndarray], cells: np.ndarray, width: int) -> np.ndarray:
    if not parts:
        return np.zeros((len(cells), width), dtype=np.float32)
    stacked = np.concatenate(parts, axis=0)
    if stacked.shape[0] != len(cells):
        raise RuntimeError(f"Captured {stacked.shape[0]} rows for {len(cells)} cells with the modality.")
    return stacked


def _wiring_of(model: NETWORKVI, role: str) -> Wiring:
    return model.wirings_[role]
