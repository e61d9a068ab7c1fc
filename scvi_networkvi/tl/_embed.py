"""``nvi.tl.embed``: latent representations into ``mdata.obsm``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mudata import MuData

from scvi_networkvi.model import modality_rows

from ._utils import check_features, check_key, check_model, check_mudata, record, rollback


def _resolve_modalities(model, modality: str | Sequence[str]) -> list[str]:
    """``"joint"``, roles or MuData modality names -> ``"joint"`` and MuData modality names, checked."""
    if isinstance(modality, str):
        wanted = ["joint", *[model.modality_name(r) for r in model.modality_roles]] if modality == "all" else [modality]
    else:
        wanted = list(modality)
        if not wanted:
            raise ValueError("modality is empty.")
    resolved = []
    for name in wanted:
        if not isinstance(name, str):
            raise TypeError(f"modality must be a string or a list of strings, got {name!r}.")
        resolved.append("joint" if name == "joint" else model.modality_name(model.role_of(name)))
    return list(dict.fromkeys(resolved))


def embed(
    mdata: MuData,
    model,
    *,
    modality: str | Sequence[str] = "joint",
    key_added: str = "X_networkvi",
    batch_size: int | None = None,
    copy: bool = False,
) -> MuData | None:
    """Write the model's latent representation of the cells into ``mdata.obsm``.

    Parameters
    ----------
    mdata
        The MuData the model was trained on, or one with the same modalities and features (and batches the model
        knows).
    model
        A trained :class:`~scvi_networkvi.NETWORKVI`.
    modality
        ``"joint"`` (the mixed posterior mean), a modality (role such as ``"protein"`` or MuData name such as
        ``"prot"``: that encoder's posterior mean), a list of these, or ``"all"`` (joint and every modality).
    key_added
        ``obsm`` key of the joint latent; a modality's latent goes to ``f"{key_added}_{name}"`` with the MuData
        modality name (``X_networkvi_rna``, ``X_networkvi_prot``).
    batch_size
        Cells per inference minibatch; ``None``: the model's default (``INFERENCE_BATCH_SIZE`` of
        ``get_latent_representation``, 256).
    copy
        Work on a copy of ``mdata`` and return it.

    Returns
    -------
    ``None``, or the annotated copy with ``copy=True``. Sets:

    - ``mdata.obsm[key_added]``: cells x ``n_latent`` joint latent (``modality`` includes ``"joint"``);
    - ``mdata.obsm[f"{key_added}_{mod}"]``: a modality's latent, ``NaN`` for cells that modality does not hold
      (mosaic data);
    - ``mdata.uns["networkvi"]["embed"]["params"]``: the modalities and keys written.
    """
    check_mudata(mdata)
    check_model(model)
    check_key(key_added)
    mods = _resolve_modalities(model, modality)
    check_features(mdata, model)
    mdata = mdata.copy() if copy else mdata
    keys = {}
    with rollback(mdata):
        latents = {}
        for mod in mods:
            latent = np.asarray(model.get_latent_representation(mdata, batch_size=batch_size, modality=mod))
            if mod != "joint":
                absent = modality_rows(mdata, mod) < 0
                if absent.any():
                    latent = latent.astype(np.float64, copy=True)
                    latent[absent] = np.nan
            latents[mod] = latent
        for mod, latent in latents.items():
            key = key_added if mod == "joint" else f"{key_added}_{mod}"
            mdata.obsm[key] = latent
            keys[mod] = key
    record(mdata, "embed", {"modality": mods, "keys": keys, "key_added": key_added})
    return mdata if copy else None
