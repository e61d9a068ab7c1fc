"""The biology compiler: GO + annotations + interactions + feature ids -> an immutable :class:`Wiring`.

Pure numpy / scipy / pandas (goatools for the OBO); no torch.
"""

from ._annotations import normalize_gene_id, read_gaf
from ._compile import compile_wiring, compile_wirings, parse_feature_gene_ids
from ._config import WiringConfig
from ._interactions import read_interactions
from ._ontology import NAMESPACES, RELATIONS, Ontology, read_obo
from ._wiring import WIRING_FORMAT_VERSION, Wiring

__all__ = [
    "NAMESPACES",
    "RELATIONS",
    "WIRING_FORMAT_VERSION",
    "Ontology",
    "Wiring",
    "WiringConfig",
    "compile_wiring",
    "compile_wirings",
    "normalize_gene_id",
    "parse_feature_gene_ids",
    "read_gaf",
    "read_interactions",
    "read_obo",
]
