"""The biology compiler: GO + annotations + interactions + feature ids -> an immutable :class:`Wiring`.

Pure numpy / scipy / pandas (goatools for the OBO); no torch.
"""

from ._annotations import annotation_keys, normalize_gene_id, read_gaf
from ._compile import compile_wiring, compile_wirings, parse_feature_gene_ids
from ._config import WiringConfig
from ._gene_ids import GENE_ID_COLUMNS, VAR_NAMES, Detection, GeneIdSource, detect_gene_ids, read_source, symbols_of
from ._id_types import ANTIBODY_ALIASES, antibody_to_symbols, classify_gene_id, normalize_antibody_name
from ._interactions import read_interactions
from ._ontology import NAMESPACES, RELATIONS, Ontology, read_obo
from ._wiring import WIRING_FORMAT_VERSION, Wiring

__all__ = [
    "ANTIBODY_ALIASES",
    "GENE_ID_COLUMNS",
    "NAMESPACES",
    "RELATIONS",
    "VAR_NAMES",
    "WIRING_FORMAT_VERSION",
    "Detection",
    "GeneIdSource",
    "Ontology",
    "Wiring",
    "WiringConfig",
    "annotation_keys",
    "antibody_to_symbols",
    "classify_gene_id",
    "compile_wiring",
    "compile_wirings",
    "detect_gene_ids",
    "normalize_antibody_name",
    "normalize_gene_id",
    "parse_feature_gene_ids",
    "read_gaf",
    "read_interactions",
    "read_obo",
    "read_source",
    "symbols_of",
]
