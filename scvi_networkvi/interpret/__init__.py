"""Interpretability: held-out probe importances, in-silico perturbation, attention statistics, on captured data.

This layer never sees the model: it computes on public, typed inputs. The options of an importance run live in one
:class:`ImportanceSettings`; :func:`probe_importances` works on captured :class:`Activations`, labels and settings;
:func:`compute_perturbation` on the activations before and a function giving them after each :class:`Perturbation`;
:class:`AttentionStatistics` on the attention weights of each minibatch. The model's methods (``get_activations``,
``get_importances``, ``get_perturbation_importances``, ``get_attention_statistics``) load and check the data, look up
the modalities, run the inference passes and call the functions here, and ``nvi.tl`` wraps the methods.
"""

from ._activations import Activations, ModalityActivations
from ._attention_stats import ATTENTION_COLUMNS, AttentionLayer, AttentionStatistics, attention_layers
from ._auroc import auroc, benjamini_hochberg, delong, delong_paired
from ._importances import IMPORTANCE_COLUMNS, importance_matrix, probe_importances, write_table
from ._logistic import fit_logistic
from ._nodes import read_gene_groups
from ._perturb import PERTURBATION_COLUMNS, PERTURBATION_SETTINGS, Perturbation, compute_perturbation
from ._phenotypes import Phenotype, categorical_labels, define_phenotypes, restrict_mask
from ._progress import show_progress, track
from ._settings import ImportanceSettings

__all__ = [
    "ATTENTION_COLUMNS",
    "IMPORTANCE_COLUMNS",
    "PERTURBATION_COLUMNS",
    "PERTURBATION_SETTINGS",
    "Activations",
    "AttentionLayer",
    "AttentionStatistics",
    "ImportanceSettings",
    "ModalityActivations",
    "Perturbation",
    "Phenotype",
    "attention_layers",
    "auroc",
    "benjamini_hochberg",
    "categorical_labels",
    "compute_perturbation",
    "define_phenotypes",
    "delong",
    "delong_paired",
    "fit_logistic",
    "importance_matrix",
    "probe_importances",
    "read_gene_groups",
    "restrict_mask",
    "show_progress",
    "track",
    "write_table",
]
