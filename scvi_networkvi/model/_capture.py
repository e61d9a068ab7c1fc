"""The inference passes of interpretation: one run of the module over the cells with forward hooks on its layers.

The model owns these passes (its data loader, its module, its wirings); :mod:`scvi_networkvi.interpret` computes on
what they capture. Nothing on the model changes: hooks are removed, the training flag and torch's random state are
restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from scvi_networkvi.module import DATA_KEYS, MASK_KEY, NetworkVAE
from scvi_networkvi.nn import WiredEncoder, transposed

if TYPE_CHECKING:
    from scvi_networkvi.interpret import AttentionStatistics

#: A function applied to every minibatch of registry tensors before inference (e.g. zeroing features).
TensorTransform = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@contextlib.contextmanager
def eval_without_side_effects(module: torch.nn.Module) -> Iterator[None]:
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


def wired_roles(module: NetworkVAE) -> list[str]:
    """Modality roles of ``module`` whose encoder is GO-wired."""
    return [role for role in module.modalities if isinstance(module.encoders[role], WiredEncoder)]


def inference_pass(
    module: NetworkVAE,
    loader: Iterable[Mapping[str, torch.Tensor]],
    roles: Sequence[str],
    *,
    before_batch: Callable[[dict[str, np.ndarray]], None],
    transform: TensorTransform | None = None,
    progress: bool = False,
    description: str = "Activations",
) -> None:
    """Run ``module.inference`` over ``loader`` without side effects; the caller's hooks see each minibatch.

    ``before_batch`` receives, for each role, the positions among the loader's cells of the minibatch's cells that
    have the modality (all of them unless the data are mosaic), before the minibatch's inference runs.
    """
    from scvi_networkvi.interpret import track

    n_seen = 0
    with eval_without_side_effects(module):
        for tensors in track(loader, description, enabled=progress):
            if transform is not None:
                tensors = transform(dict(tensors))
            n = tensors[DATA_KEYS[module.modalities[0]]].shape[0]
            mask = tensors.get(MASK_KEY)
            rows = {}
            for role in roles:
                present = np.arange(n) if mask is None else np.flatnonzero(mask[:, module.modalities.index(role)] > 0)
                rows[role] = present + n_seen
            before_batch(rows)
            module.inference(**module._get_inference_input(tensors))
            n_seen += n


def capture_taps(
    module: NetworkVAE,
    loader: Iterable[Mapping[str, torch.Tensor]],
    roles: Sequence[str],
    *,
    genes: bool = False,
    transform: TensorTransform | None = None,
    progress: bool = False,
    description: str = "Activations",
) -> tuple[dict[str, np.ndarray], dict[tuple[str, str], np.ndarray | None]]:
    """One inference pass keeping the activations of the GO levels' taps (and the gene taps with ``genes``).

    Returns
    -------
    Per role, the positions of the cells that have the modality; per ``(role, "level<i>")`` and ``(role, "genes")``,
    the stacked ``cells x neurons`` activations (``None`` where no minibatch had a cell with the modality).
    """
    chunks: dict[tuple[str, str], list[np.ndarray]] = {}
    handles = []

    def keep(key: tuple[str, str]):
        def hook(_module, _inputs, output):
            # feature-major -> cells x neurons, copied by torch's blocked transpose: numpy's concatenation of the
            # transposed views (column-strided reads) took about a fifth of the activation pass
            chunks.setdefault(key, []).append(transposed(output.detach().float().cpu()).numpy())

        return hook

    for role in roles:
        encoder = module.encoders[role]
        for i, tap in enumerate(encoder.go_network.level_taps):
            handles.append(tap.register_forward_hook(keep((role, f"level{i}"))))
        if genes:
            handles.append(encoder.gene_tap.register_forward_hook(keep((role, "genes"))))
    present: dict[str, list[np.ndarray]] = {role: [] for role in roles}

    def record(rows: dict[str, np.ndarray]) -> None:
        for role, positions in rows.items():
            present[role].append(positions)

    try:
        inference_pass(
            module, loader, roles, before_batch=record, transform=transform, progress=progress, description=description
        )
    finally:
        for handle in handles:
            handle.remove()
    cells = {role: np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64) for role, parts in present.items()}
    stacked = {}
    for role in roles:
        encoder = module.encoders[role]
        keys = [(role, f"level{i}") for i in range(len(encoder.go_network.level_slices))]
        for key in [*keys, *([(role, "genes")] if genes else [])]:
            parts = chunks.get(key, [])
            stacked[key] = _stack(parts, cells[role]) if parts else None
    return cells, stacked


def _stack(parts: list[np.ndarray], cells: np.ndarray) -> np.ndarray:
    stacked = np.concatenate(parts, axis=0)
    if stacked.shape[0] != len(cells):
        raise RuntimeError(f"Captured {stacked.shape[0]} rows for {len(cells)} cells with the modality.")
    return stacked


def attention_pass(
    module: NetworkVAE,
    loader: Iterable[Mapping[str, torch.Tensor]],
    statistics: AttentionStatistics,
    codes: np.ndarray,
    *,
    progress: bool = False,
) -> None:
    """One inference pass feeding each attention layer's weights to ``statistics``, minibatch by minibatch.

    ``codes`` are the label codes of the loader's cells (``-1``: no label).
    """
    current: dict[str, np.ndarray] = {}  # label codes of the minibatch's cells with each modality

    def keep(rows: dict[str, np.ndarray]) -> None:
        for role, positions in rows.items():
            current[role] = codes[positions]

    handles = []
    for role, layers in statistics.layers.items():
        for index, layer in enumerate(layers):

            def hook(mod, inputs, _output, role=role, index=index):
                statistics.add(role, index, mod.weights(*inputs), current[role])  # one minibatch, never kept

            handles.append(layer.attention.register_forward_hook(hook))
    try:
        inference_pass(
            module,
            loader,
            list(statistics.layers),
            before_batch=keep,
            progress=progress,
            description="Attention statistics",
        )
    finally:
        for handle in handles:
            handle.remove()


def zeroing(plan: Mapping[str, np.ndarray]) -> TensorTransform:
    """A minibatch transform setting the planned features to zero (on a copy: the loader's tensors stay intact)."""
    positions = {DATA_KEYS[role]: torch.as_tensor(pos, dtype=torch.long) for role, pos in plan.items()}

    def transform(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for key, pos in positions.items():
            data = tensors[key].clone()
            data[:, pos.to(data.device)] = 0
            tensors[key] = data
        return tensors

    return transform
