"""Interpretability: node activations, held-out probe importances, in-silico perturbation, attention statistics.

The options of an importance run live in one :class:`ImportanceSettings`. :func:`probe_importances` works on captured
:class:`Activations`, labels and settings alone; the model's methods (``get_importances``,
``get_perturbation_importances``, ``get_attention_statistics``) load and check the data, capture the activations and
call the functions here, and ``nvi.tl`` wraps the methods.
"""

from ._activations import Activations, ModalityActivations, capture_activations
from ._attention_stats import compute_attention_statistics, covariate_names
from ._auroc import auroc, benjamini_hochberg, delong, delong_paired
from ._importances import IMPORTANCE_COLUMNS, compute_importances, importance_matrix, probe_importances, write_table
from ._logistic import fit_logistic
from ._nodes import read_gene_groups
from ._perturb import PERTURBATION_COLUMNS, PERTURBATION_SETTINGS, compute_perturbation
from ._phenotypes import Phenotype, categorical_labels, define_phenotypes, restrict_mask
from ._progress import show_progress
from ._settings import ImportanceSettings

__all__ = [
    "IMPORTANCE_COLUMNS",
    "PERTURBATION_COLUMNS",
    "PERTURBATION_SETTINGS",
    "Activations",
    "ImportanceSettings",
    "ModalityActivations",
    "Phenotype",
    "auroc",
    "benjamini_hochberg",
    "capture_activations",
    "categorical_labels",
    "compute_attention_statistics",
    "compute_importances",
    "compute_perturbation",
    "covariate_names",
    "define_phenotypes",
    "delong",
    "delong_paired",
    "fit_logistic",
    "importance_matrix",
    "probe_importances",
    "read_gene_groups",
    "restrict_mask",
    "show_progress",
    "write_table",
]
