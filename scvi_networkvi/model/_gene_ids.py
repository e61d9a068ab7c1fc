"""The features' gene ids of a MuData: detected per modality (:func:`~scvi_networkvi.wiring.detect_gene_ids`)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence

from mudata import MuData

from scvi_networkvi.resources import default_registry
from scvi_networkvi.wiring import Detection, Wiring, annotation_keys, detect_gene_ids

from ._validation import Caller

logger = logging.getLogger(__name__)


def detect_modality_gene_ids(
    mdata: MuData,
    modalities: Mapping[str, str],
    *,
    gene_id_key: str | Mapping[str, str] | None,
    species: str | None,
    annotations: str | os.PathLike | Sequence[str | os.PathLike] | None,
    caller: Caller,
    strict: bool = True,
) -> Detection:
    """Detect the gene-id source of each registered modality against the annotations' keys.

    :func:`~scvi_networkvi.wiring.detect_gene_ids` on the modalities of a MuData. Reads the data only: nothing on
    ``mdata`` changes, so a failing call leaves it as it was.

    Parameters
    ----------
    mdata
        The MuData.
    modalities
        Modality role (``"rna"``, ``"protein"``, ``"atac"``) -> MuData modality name.
    gene_id_key
        Where the ids are (a var column, ``"var_names"``, or a mapping role -> column); ``None``: detected, as
        :meth:`~scvi_networkvi.NETWORKVI.setup_mudata` describes.
    species
        ``"human"``, ``"mouse"`` or ``None`` (detected from the ids).
    annotations
        Registry name(s) or path(s) of the annotations whose gene keys the ids are matched against; ``None``: the
        ids alone decide.
    caller
        The function the user called, named in the errors.
    strict
        Raise (``True``) or only warn for too few matched ids and ids of no known type.

    Returns
    -------
    The chosen source per modality name and the candidates found.

    Raises
    ------
    ValueError
        For mixed human and mouse ids, too few features matched to the annotations, or ids of no known type
        (``strict=True``).
    """
    keys = set(annotation_keys(annotations)) if annotations is not None else None
    tables = {mod: (role, mdata[mod].var_names, mdata[mod].var) for role, mod in modalities.items()}
    return detect_gene_ids(
        tables, gene_id_key=gene_id_key, species=species, keys=keys, caller=caller.name, strict=strict
    )


#: A modality with fewer of its features annotated than this share gets a warning: the full human annotations reach
#: 78-94 % of the tutorial's genes; below a quarter most of the modality's signal takes the UNKNOWN path.
MIN_ANNOTATED = 0.25
#: A modality with more of its features without a usable gene id than this share gets a warning.
MAX_WITHOUT_ID = 0.1


def annotation_release(annotations: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """The release of annotations, as the registry or the file says (``""`` when neither does)."""
    sources = [annotations] if isinstance(annotations, str | os.PathLike) else list(annotations)
    registry = default_registry()
    releases = []
    for source in sources:
        if isinstance(source, str) and source in registry:
            releases.append(f"{source} ({registry[source].release})")
        else:
            releases.append(os.path.basename(os.fspath(source)))
    return ", ".join(releases)


def report_coverage(
    modality: str, wiring: Wiring, annotations: str | os.PathLike | Sequence[str | os.PathLike]
) -> None:
    """One INFO line per modality: features with a usable id, features annotated, the GO and annotation releases.

    Warns when fewer than :data:`MIN_ANNOTATED` of the features are annotated or more than :data:`MAX_WITHOUT_ID`
    have no usable gene id.
    """
    cov = wiring.coverage()
    n = max(cov["features"], 1)
    logger.info(
        "Coverage of modality %r: %d of %d features annotated (%.0f%%), %d with a usable gene id (%.0f%%); GO release "
        "%s, annotations %s.",
        modality,
        cov["annotated"],
        cov["features"],
        100 * cov["annotated"] / n,
        cov["with_id"],
        100 * cov["with_id"] / n,
        cov["go_release"] or "unknown",
        annotation_release(annotations),
    )
    if cov["annotated"] / n < MIN_ANNOTATED:
        warnings.warn(
            f"Only {cov['annotated']} of the {cov['features']} features of modality {modality!r} "
            f"({cov['annotated'] / n:.0%}) have a GO annotation: the others reach the latent through the UNKNOWN "
            "path only. Use annotations that cover your genes (annotations=None: the full annotations of the species; "
            "'ensembl2go-tutorial' is subsampled, for demos).",
            UserWarning,
            stacklevel=3,
        )
    without = cov["features"] - cov["with_id"]
    if without / n > MAX_WITHOUT_ID:
        warnings.warn(
            f"{without} of the {cov['features']} features of modality {modality!r} ({without / n:.0%}) have no usable "
            "gene id: each is its own unannotated gene node. Give their ids in a var column (gene_id_key=) to use "
            "their GO annotations.",
            UserWarning,
            stacklevel=3,
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

    Parameters
    ----------
    mdata
        The MuData.
    modalities
        Modality role (``"rna"``, ``"protein"``, ``"atac"``) -> MuData modality name.
    gene_id_key
        Where the ids are, as in :func:`detect_modality_gene_ids`.
    species
        ``"human"``, ``"mouse"`` or ``None`` (detected from the ids).
    caller
        The function the user called, named in the errors.

    Returns
    -------
    The registry name of the annotations (``"org.Hs.eg.db"``, ``"org.Mm.eg.db"``).

    Raises
    ------
    ValueError
        When the ids do not tell the species, or the species has no registered annotations.
    """
    if species is None:
        detection = detect_modality_gene_ids(
            mdata, modalities, gene_id_key=gene_id_key, species=None, annotations=None, caller=caller
        )
        # The chosen sources may not tell the species (Entrez ids, symbols of unclear case); another source may.
        told = {s.species for sources in detection.found.values() for s in sources if s.species is not None}
        species = detection.species or (told.pop() if len(told) == 1 else None)
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
    """The GO DAG to use with ``annotations`` when none is given: the one registered with them, else go-basic.

    Parameters
    ----------
    annotations
        Registry name(s) or path(s) of the annotations.

    Returns
    -------
    The registry name of the GO DAG (``"GO.db"`` for the Bioconductor annotations, else ``"go-basic"``).
    """
    sources = [annotations] if isinstance(annotations, str | os.PathLike) else list(annotations)
    registry = default_registry()
    paired = {registry[s].ontology for s in sources if isinstance(s, str) and s in registry and registry[s].ontology}
    return paired.pop() if len(paired) == 1 else "go-basic"


def report(detection: Detection) -> None:
    """The one INFO line of the choice, and a warning for unmapped antibody names."""
    logger.info("Gene ids: %s.", detection.summary())
    for mod, source in detection.chosen.items():
        if source.id_type == "antibody" and source.unmapped:
            warnings.warn(
                f"{len(source.unmapped)} antibody names of modality {mod!r} map to no gene symbol and get no GO "
                f"annotation: {source.unmapped}. Give their gene ids in a var column (gene_id_key=) to use them.",
                UserWarning,
                stacklevel=3,
            )
