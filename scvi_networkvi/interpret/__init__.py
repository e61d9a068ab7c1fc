"""Interpretability: node activations, held-out probe importances, in-silico perturbation, attention statistics.

The functions take a trained :class:`~scvi_networkvi.NETWORKVI`; its methods (``get_importances``,
``get_perturbation_importances``, ``get_attention_statistics``) and ``nvi.tl`` wrap them.
"""

from ._activations import Activations, ModalityActivations, capture_activations
from ._attention_stats import compute_attention_statistics, covariate_names
from ._auroc import auroc, benjamini_hochberg, delong, delong_paired
from ._importances import IMPORTANCE_COLUMNS, compute_importances, importance_matrix, write_table
from ._logistic import fit_logistic
from ._nodes import read_gene_groups
from ._perturb import PERTURBATION_COLUMNS, compute_perturbation
from ._phenotypes import Phenotype, categorical_labels, define_phenotypes

__all__ = [
    "IMPORTANCE_COLUMNS",
    "PERTURBATION_COLUMNS",
    "Activations",
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
    "read_gene_groups",
    "write_table",
]
