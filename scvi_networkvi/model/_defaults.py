"""Defaults that depend on the data type, each chosen by a measurement on the results page (the ablations).

One home for the rules, so that the constructor and ``train`` resolve the same choice and the model saves it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataTypeDefaults:
    """What ``None`` resolves to for one data type.

    Attributes
    ----------
    dropout_rate
        Encoder dropout.
    batch_centered_input
        Roles whose encoder reads its inputs centred within the batch (``"all"`` or a tuple of roles).
    full_weight_adversary
        Whether the adversary keeps weight 1 throughout training (else scvi-tools' fading ``"auto"``).
    head_input
        What the GO encoder's posterior heads read (``"root"`` or ``"levels"``).
    penalty_anchor
        The modality role whose posterior the modality penalty does not move (``None``: the penalty pulls both).
    batch_scaled_input
        Whether the batch-centred inputs are also rescaled within each batch to the spread of all batches.
    depth_normalized
        Roles whose encoder reads each cell's counts scaled to one total (``depth_normalized_input``).
    penalty_warmup
        Whether the modality penalty follows the KL warm-up (``modality_penalty_warmup``; else full weight from the
        first step, as MULTIVI adds it).
    wiring_by_modality
        Wiring fields per modality role over the shared ones (``wiring_by_modality``), for the GO encoder.
    dense_modalities
        Roles that get scvi-tools' dense encoder in a model whose other encoders are GO-wired (``dense_modalities``).
    n_latent
        Latent dimensions (``n_latent``).
    """

    dropout_rate: float
    batch_centered_input: str | tuple[str, ...]
    full_weight_adversary: bool
    head_input: str = "root"
    penalty_anchor: str | None = None
    batch_scaled_input: bool = False
    depth_normalized: tuple[str, ...] = ()
    penalty_warmup: bool = True
    wiring_by_modality: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    dense_modalities: tuple[str, ...] = ()
    n_latent: int = 10


#: What an option introduced after a model was saved means for that model: how it was built and trained. A model
#: rebuilt from saved parameters (``load``, ``load_query_data``) without the option gets this value, not the default.
BEFORE_THE_OPTION: dict[str, object] = {
    "wiring_by_modality": {},  # None meant "no per-modality fields" until the paired-multiome rule
    "head_input": "root",
    "modality_penalty_anchor": None,
    "batch_scaled_input": False,
    "depth_normalized_input": (),
    "modality_penalty_warmup": True,
    "n_latent": 10,  # models save the resolved width; one rebuilt without it was built before the mosaic rule
}

_rebuilding = ContextVar("rebuilding_saved_model", default=False)


@contextmanager
def rebuilding_saved_model() -> Iterator[None]:
    """Within this block the model constructor rebuilds a saved model (see :data:`BEFORE_THE_OPTION`)."""
    token = _rebuilding.set(True)
    try:
        yield
    finally:
        _rebuilding.reset(token)


def flat_init_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A model's ``init_params_`` as the keywords that rebuild it, as scvi-tools' loader reads them.

    ``non_kwargs`` (the named arguments; before the module options moved to ``**model_kwargs``, all of them) and the
    contents of each ``kwargs`` entry (``{"model_kwargs": {...}}``).
    """
    flat = dict(params.get("non_kwargs", {}))
    for group in params.get("kwargs", {}).values():
        flat.update(group)
    return flat


def resolve_option(name: str, value, default):
    """``value``, or for ``None`` the saved model's :data:`BEFORE_THE_OPTION` value when rebuilding, else ``default``."""
    if value is not None:
        return value
    return BEFORE_THE_OPTION[name] if _rebuilding.get() and name in BEFORE_THE_OPTION else default


def data_type_defaults(roles: Sequence[str], is_mosaic: bool, encoder: str) -> DataTypeDefaults:
    """The defaults for a model with modality ``roles`` and ``encoder``; ``is_mosaic``: some cell lacks a modality.

    - Two or more modalities (paired or mosaic): no encoder dropout; one modality keeps the original's 0.1 (not
      measured).
    - A protein modality (paired CITE-seq, mosaics with one): every input centred within its batch and the adversary
      at weight 1. Protein panels carry per-batch offsets; a mosaic's batch is typically its dataset, which a fading
      adversary and uncentred RNA left apart.
    - The GO encoder on data with a protein modality, paired or mosaic: the centred inputs also rescaled per batch to
      the pooled within-batch spread (``batch_scaled_input``); the dense encoder lost bio conservation with them on
      paired CITE-seq; RNA + ATAC keeps unscaled inputs (not measured there). On the CITE-seq + multiome mosaic, with
      the symmetric penalty of the next rule, the label transfer across datasets rose from 0.716 to 0.751 (3 seeds).
    - Paired RNA + ATAC: the GO encoder likewise; the dense encoder uncentred with the fading adversary (the
      cell-type composition differs between batches, and a dense encoder keeps that in its input).
    - Other mosaics (RNA + ATAC): uncentred (not measured) with the adversary at weight 1, as every mosaic.
    - The GO encoder on paired RNA + ATAC: posterior heads that read every GO level (``head_input="levels"``);
      elsewhere the root (the original's).
    - The GO encoder on mosaic data of RNA and ATAC without proteins: the modality penalty moves the ATAC posterior
      towards the RNA one, not the RNA posterior towards it (``modality_penalty_anchor="rna"``); with proteins (the
      CITE-seq mosaic, the CITE-seq + multiome mosaic, whose inputs are also rescaled per batch) and for the dense
      encoder the penalty stays symmetric.
    - The GO encoder on mosaic data of RNA and ATAC without proteins: the RNA and ATAC encoders read each cell's
      counts scaled to one total (``depth_normalized_input=("rna", "atac")``); elsewhere raw counts (the CITE-seq +
      multiome mosaic measured lower with them, 3 seeds; paired data and the dense encoder not measured).
    - The GO encoder on mosaic data with RNA and ATAC (proteins or not): the modality penalty at full weight from the
      first step (``modality_penalty_warmup=False``, as MULTIVI adds it) rather than along the KL warm-up.
    - The GO encoder on paired RNA + ATAC: ATAC gene nodes of one neuron (``wiring_by_modality={"atac":
      {"gene_size": 1}}``; most read one or two peaks): multiome training 1.5x faster than with the shared width
      (1.16 of MULTIVI's speed against 0.75) at a scib total level with it (3 seeds each), with the gradient-spike
      guard of ``train``; mosaics keep the shared ``gene_size`` (level there, not measured with the guard).
    - The GO encoder on mosaic data of RNA and ATAC without proteins: ATAC GO terms of two neurons
      (``wiring_by_modality={"atac": {"go_size": 2}}``); every wider ATAC encoder placed the ATAC-only cells worse,
      this narrower one better at 20 % and 60 % paired (3 seeds each); the CITE-seq + multiome mosaic keeps the shared
      width (level there, 3 seeds). Only where ATAC is GO-wired (``dense_modalities=()``), since the next rule.
    - The GO encoder on mosaic data with RNA and ATAC (proteins or not): a dense ATAC encoder (``dense_modalities=
      ("atac",)``), the other encoders GO-wired. On the multiome mosaics every GO-wired ATAC encoder measured placed
      the ATAC-only cells below MULTIVI (0.91-0.95 of its transfer accuracy), the dense one above it at 20 % and 60 %
      paired; on the CITE-seq + multiome mosaic it raised the label transfer and the dataset mixing (3 seeds each).
    - The GO encoder on mosaic data of RNA and ATAC without proteins: a latent of 16 dimensions (elsewhere 10, as
      scVI). At 60 % paired it placed the RNA-only cells better on each of 5 seeds (0.738 -> 0.758, MULTIVI 0.755),
      at 20 % slightly worse (0.704 -> 0.698, MULTIVI 0.704); the ATAC-only cells better at both.

    The evidence for each rule, per data type and encoder, is on the results page (``docs/benchmarks.md``: the
    integration, multiome and mosaic ablations).
    """
    multimodal = len(roles) > 1
    paired_go_atac = encoder == "go" and multimodal and not is_mosaic and "atac" in roles
    centre = "protein" in roles or paired_go_atac
    rna_atac_go_mosaic = encoder == "go" and is_mosaic and {"rna", "atac"} <= set(roles)
    rna_atac_go_mosaic_without_protein = rna_atac_go_mosaic and "protein" not in roles
    return DataTypeDefaults(
        dropout_rate=0.0 if multimodal else 0.1,
        batch_centered_input="all" if centre else (),
        full_weight_adversary=centre or is_mosaic,
        head_input="levels" if paired_go_atac else "root",
        penalty_anchor="rna" if rna_atac_go_mosaic_without_protein else None,
        batch_scaled_input=encoder == "go" and "protein" in roles,
        depth_normalized=("rna", "atac") if rna_atac_go_mosaic_without_protein else (),
        penalty_warmup=not rna_atac_go_mosaic,
        wiring_by_modality=_atac_wiring(paired_go_atac, rna_atac_go_mosaic_without_protein),
        dense_modalities=("atac",) if rna_atac_go_mosaic else (),
        n_latent=16 if rna_atac_go_mosaic_without_protein else 10,
    )


def _atac_wiring(paired_go_atac: bool, rna_atac_go_mosaic_without_protein: bool) -> dict[str, dict[str, int]]:
    """The per-modality wiring fields of the rules above (``wiring_by_modality``).

    ATAC gene nodes of one neuron on paired RNA + ATAC, ATAC GO terms of two on RNA + ATAC mosaics without proteins,
    the shared fields elsewhere.
    """
    if paired_go_atac:
        return {"atac": {"gene_size": 1}}
    if rna_atac_go_mosaic_without_protein:
        return {"atac": {"go_size": 2}}
    return {}
