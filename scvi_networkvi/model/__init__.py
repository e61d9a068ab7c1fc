"""The NETWORKVI scvi-tools model, its training plan and callbacks, and totalVI's protein prior start.

Also the model layer's helpers that the tools (``nvi.tl``) build on: the modality roles of
:meth:`NETWORKVI.setup_mudata` (:data:`LAYER_ROLES`), the checks made on the user's behalf (:class:`Caller`,
:func:`check_setup_arguments`, :func:`check_categories`), the gene-id detection and default resources (:func:`detect_modality_gene_ids`,
:func:`default_annotations`, :func:`paired_ontology`), the cells of a mosaic MuData's modality
(:func:`modality_rows`) and the block that keeps Lightning's start-up lines out of a call (:func:`quiet_lightning`).
"""

from ._data import modality_rows
from ._finite_loss import FiniteLossCheck
from ._gene_ids import default_annotations, detect_modality_gene_ids, paired_ontology
from ._networkvi import NETWORKVI
from ._protein_prior import empirical_protein_background
from ._quiet import quiet_lightning
from ._thread_backoff import ThreadBackoff, run_queue_seconds
from ._training_plan import NetworkVITrainingPlan
from ._validation import LAYER_ROLES, Caller, check_categories, check_setup_arguments, query_caller

__all__ = [
    "LAYER_ROLES",
    "NETWORKVI",
    "Caller",
    "FiniteLossCheck",
    "NetworkVITrainingPlan",
    "ThreadBackoff",
    "check_categories",
    "check_setup_arguments",
    "default_annotations",
    "detect_modality_gene_ids",
    "empirical_protein_background",
    "modality_rows",
    "paired_ontology",
    "query_caller",
    "quiet_lightning",
    "run_queue_seconds",
]
