"""The features' gene ids of a MuData: detected per modality (:func:`~scvi_networkvi.wiring.detect_gene_ids`)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence

from mudata import MuData

from scvi_networkvi.resources import default_registry
from scvi_networkvi.wiring import Detection, annotation_keys, detect_gene_ids

from ._validation import Caller

logger = logging.getLogger(__name__)


def detect(
    mdata: MuData,
    modalities: Mapping[str, str],
    *,
    gene_id_key: str | Mapping[str, str] | None,
    species: str | None,
    annotations: str | os.PathLike | Sequence[str | os.PathLike] | None,
    caller: Caller,
    strict: bool = True,
) -> Detection:
    """Detect the gene-id source of each modality (role -> modality name) against the annotations' keys.

    Reads the data only: nothing on ``mdata`` changes, so a failing call leaves it as it was.
    """
    keys = set(annotation_keys(annotations)) if annotations is not None else None
    tables = {mod: (role, mdata[mod].var_names, mdata[mod].var) for role, mod in modalities.items()}
    return detect_gene_ids(
        tables, gene_id_key=gene_id_key, species=species, keys=keys, caller=caller.name, strict=strict
    )


def default_annotations(
    mdata: MuData,
    modalities: Mapping[str, str],
    *,
    gene_id_key: str | Mapping[str, str] | None,
    species: str | None,
    caller: Caller,
) -> str:
    """The registered full annotations for the species of the features' gene ids (``annotations=None``).

    The species is ``species`` when given, else read from the ids (ENSEMBL prefixes, symbol case). Reads the data
    only; raises before anything is done when the species cannot be told or has no registered annotations.
    """
    if species is None:
        detection = detect(mdata, modalities, gene_id_key=gene_id_key, species=None, annotations=None, caller=caller)
        species = detection.species
        if species is None:
            raise ValueError(
                f"The features' gene ids do not tell the species ({detection.summary()}), so no default GO "
                f"annotations can be chosen: pass species='human' or species='mouse' to {caller.name}, or "
                "annotations= a GAF or org.*.eg.db file keyed by these ids."
            )
    resource = default_registry().default_annotations(species)
    if resource is None:
        raise ValueError(f"No registered GO annotations for species {species!r}: pass annotations= to {caller.name}.")
    logger.info("GO annotations: %s (%s), the default for %s gene ids.", resource.name, resource.release, species)
    return resource.name


def paired_ontology(annotations: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """The GO DAG to use with ``annotations`` when none is given: the one registered with them, else go-basic."""
    sources = [annotations] if isinstance(annotations, str | os.PathLike) else list(annotations)
    registry = default_registry()
    paired = {registry[s].ontology for s in sources if isinstance(s, str) and s in registry and registry[s].ontology}
    return paired.pop() if len(paired) == 1 else "go-basic"


def report(detection: Detection) -> None:
    """The one INFO line of the choice; a warning for sparse annotations and one for unmapped antibody names."""
    logger.info("Gene ids: %s.", detection.summary())
    for mod in detection.sparse:
        source = detection.chosen[mod]
        logger.warning(
            "Only %.0f%% of the features of modality %r have an annotation (ids of the annotations' own type): the "
            "others take the UNKNOWN path. A fuller annotation file gives them GO terms.",
            100 * (source.matched or 0),
            mod,
        )
    for mod, source in detection.chosen.items():
        if source.id_type == "antibody" and source.unmapped:
            warnings.warn(
                f"{len(source.unmapped)} antibody names of modality {mod!r} map to no gene symbol and get no GO "
                f"annotation: {source.unmapped}. Give their gene ids in a var column (gene_id_key=) to use them.",
                UserWarning,
                stacklevel=3,
            )
