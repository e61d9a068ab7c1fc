"""NETWORKVI methods for interpretation: thin wrappers over :mod:`scvi_networkvi.interpret`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import torch


class NetworkVIInterpretMixin:
    """GO-term, gene and gene-group importances, in-silico perturbation and covariate-attention statistics."""

    def get_importances(
        self,
        adata=None,
        *,
        groupby: str,
        targets: Sequence[str] | None = None,
        reference: str | Sequence[str] = "rest",
        groups: Mapping[str, Sequence[str]] | None = None,
        restrict: Mapping[str, Any] | None = None,
        cells_with: Sequence[str] | None = None,
        modalities: str | Sequence[str] | None = None,
        node_types: Sequence[str] = ("go_term",),
        gene_groups=None,
        indices: Sequence[int] | None = None,
        heldout_size: float = 0.3,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        min_cells: int = 5,
        level: float = 0.95,
        seed: int | None = None,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        null_sets: int = 0,
        key_added: str | None = "networkvi_importances",
        save_path: str | os.PathLike | None = None,
        progress_bar: bool | None = None,
    ) -> pd.DataFrame:
        """How well each GO term (gene, gene group) tells a phenotype apart: held-out AUROC of a probe on its neurons.

        One inference pass (eval mode, forward hooks, nothing on the model changes) captures every node's
        activations. The cells are split once, stratified by ``groupby`` and seeded; for every node and phenotype an
        L2 logistic regression (``C``, balanced classes, neurons standardised on the fitting cells) is fitted on the
        fitting split and scored on the held-out split. All probes of a width are fitted together (batched Newton).

        Parameters
        ----------
        adata
            MuData set up like the model's (default: the registered one).
        groupby
            Categorical ``obs`` column with the labels (``"mod:col"`` for a modality's column).
        targets
            Labels tested as cases (default: every label present, except the reference labels).
        reference
            ``"rest"`` (one-vs-rest) or a label / list of labels as controls.
        groups
            ``{name: [labels]}``: label groups, each tested as one phenotype (instead of ``targets``).
        restrict
            ``{obs column: value or list}``: only cells with these values take part.
        cells_with
            Only cells measured in these modalities (mosaic data); each modality's probes always use only the cells
            that have it.
        modalities
            GO-wired modalities to probe (roles or MuData names; default all).
        node_types
            Any of ``"go_term"`` (every kept term: GO terms, the root and UNKNOWN nodes, see ``kind``), ``"gene"``
            (each gene node's ``gene_size`` neurons), ``"gene_group"`` (with ``gene_groups``).
        gene_groups
            Gene-id (or symbol) sets: ``{name: ids}``, a list of sets, or an ``.npy`` array of sets; a group's node is
            the union of its genes' neurons (groups with fewer than two genes in a modality are left out).
        indices
            Cells of ``adata`` to use (default all).
        heldout_size
            Fraction of each label's cells held out for scoring.
        C, class_weight
            Probe regularisation (scikit-learn's meaning) and class weighting (``"balanced"`` or ``None``).
        min_cells
            Phenotypes with fewer cases or controls in either split are skipped (with a warning).
        level
            Confidence level of the intervals.
        seed
            Seed of the split (default ``scvi.settings.seed``); the same seed gives the same table.
        batch_size
            Cells per inference minibatch (the inference pass runs on the model's device).
        device
            Torch device the probes are fitted on (float64 batched Newton): ``None`` or ``"cpu"`` (default), or
            ``"cuda"`` / ``"cuda:N"``. Independent of where the model is; an unusable device raises before any work.
        null_sets
            Size- and width-matched reference for GO terms (``kind == "go"``): per term size (log-spaced bins of
            ratio 1.5; a bin's draws have its geometric middle size, within a factor 1.22 of each term's)
            ``null_sets`` random sets of as many annotated genes of the modality; their gene-node activations (the
            gene layer the term reads) are summarised in ``width`` dimensions by PCA (fitted on up to 500 seeded
            fitting cells) and probed like the term. The random sets' summaries are not trained while the term's
            neurons are: beating the reference takes the term's size out of its importance, it does not prove that
            its genes are special. For that, the term's own genes are summarised and probed exactly like the random
            sets (``auroc_set``, ``pval_set``): a like-with-like test of its gene set against random sets of its
            size. ``0`` (default): no reference. 100 sets resolve p-values down to 0.01 and cost about
            ``null_sets`` probes per size bin and phenotype, plus one per GO term and phenotype.
        key_added
            Store the table in ``adata.uns[key_added]`` (``None``: do not store).
        save_path
            Also write the table to ``.parquet`` or ``.csv``.
        progress_bar
            Draw scvi-tools' progress bars (``scvi.settings.progress_bar_style``) over the inference pass, the probes
            and the random gene sets. Default: while ``scvi.settings.verbosity`` is INFO or lower (scvi-tools'
            default); ``scvi.settings.verbosity = logging.WARNING`` or ``False`` hides them.

        Returns
        -------
        One row per modality, node and phenotype: ``modality``, ``node_id``, ``node_type``, ``kind`` (``go``,
        ``root``, ``unknown``, ``gene``, ``gene_group``), ``name``, ``level``, ``n_genes``, ``width``, ``phenotype``,
        ``reference``, ``auroc`` (held-out, the number to read), ``auroc_low`` / ``auroc_high`` (DeLong interval),
        ``pval`` (one-sided DeLong test of AUROC > 0.5), ``qval`` (Benjamini–Hochberg across the nodes of a
        phenotype), ``rank`` (among GO terms, structural nodes unranked), ``auroc_null`` (mean held-out AUROC of the
        term's random gene sets; NaN without ``null_sets`` and for other nodes), ``pval_null`` (share of random sets
        scoring at least the term's AUROC, ``(1 + count) / (1 + null_sets)``: small when the term beats gene sets of
        its size and width), ``auroc_set`` (held-out AUROC of the term's own genes summarised like the random sets),
        ``pval_set`` (share of random sets scoring at least ``auroc_set``: small when the term's genes separate the
        phenotype better than random genes of the same number; one test per term and phenotype, so correct for
        multiple testing across terms and raise ``null_sets`` for finer p-values), ``auroc_fit`` (in-sample,
        optimistic), ``n_cells_fit``, ``n_cells_heldout``, ``n_cases_heldout``.
        """
        from scvi_networkvi.interpret import compute_importances

        adata = self._validate_anndata(adata)
        table = compute_importances(
            self,
            adata,
            groupby=groupby,
            targets=targets,
            reference=reference,
            groups=groups,
            restrict=restrict,
            cells_with=cells_with,
            modalities=modalities,
            node_types=node_types,
            gene_groups=gene_groups,
            indices=indices,
            heldout_size=heldout_size,
            C=C,
            class_weight=class_weight,
            min_cells=min_cells,
            level=level,
            seed=seed,
            batch_size=batch_size,
            device=device,
            null_sets=null_sets,
            save_path=save_path,
            progress_bar=progress_bar,
        )
        if key_added is not None:
            adata.uns[key_added] = table
        return table

    def get_perturbation_importances(
        self,
        adata=None,
        *,
        genes: Sequence[str] | Mapping[str, Sequence[str]],
        groupby: str,
        perturb_modalities: Sequence[str] | None = None,
        modalities: str | Sequence[str] | None = None,
        targets: Sequence[str] | None = None,
        reference: str | Sequence[str] = "rest",
        groups: Mapping[str, Sequence[str]] | None = None,
        restrict: Mapping[str, Any] | None = None,
        node_types: Sequence[str] = ("go_term",),
        indices: Sequence[int] | None = None,
        refit: bool = True,
        heldout_size: float = 0.3,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        min_cells: int = 5,
        level: float = 0.95,
        seed: int | None = None,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        key_added: str | None = "networkvi_perturbation",
        save_path: str | os.PathLike | None = None,
        progress_bar: bool | None = None,
    ) -> pd.DataFrame:
        """In-silico perturbation: zero genes' features and report how each node's held-out AUROC changes.

        Every perturbation starts from the original data (never cumulative). The probes use the cells and split of
        the unperturbed run; ``refit=True`` fits them again on the perturbed fitting cells, ``refit=False`` scores
        the perturbed held-out cells with the unperturbed probes. The change comes with a paired DeLong interval
        and p-value (same cells before and after).

        Parameters
        ----------
        genes
            Gene ids or feature names (e.g. symbols): a list (each gene is one perturbation) or ``{name: [genes]}``
            (each entry one perturbation of several genes). A gene found in no perturbed modality is an error.
        perturb_modalities
            Modalities whose features are zeroed (default: every modality measuring the gene).
        modalities
            Modalities whose nodes are probed (default: the perturbed GO-wired ones).
        groupby, targets, reference, groups, restrict, node_types, indices, heldout_size, C, class_weight, min_cells, level, seed, batch_size, device
            As in :meth:`get_importances` (``node_types`` without gene groups).
        refit
            Refit the probes on perturbed cells (default) or reuse the unperturbed ones.
        key_added, save_path
            Where to store / write the table.
        progress_bar
            Draw scvi-tools' progress bars: the unperturbed inference pass, then one bar over the perturbations
            (default as in :meth:`get_importances`).

        Returns
        -------
        One row per perturbation, modality, node and phenotype: ``perturbation``, ``genes``,
        ``perturbed_modalities``, the node columns of :meth:`get_importances`, ``phenotype``, ``reference``,
        ``auroc_before``, ``auroc_after``, ``delta`` (after - before), ``delta_low`` / ``delta_high``, ``pval``
        (two-sided, paired DeLong), ``qval`` (BH across nodes per perturbation and phenotype), ``n_cells_heldout``,
        ``auroc_fit_before`` / ``auroc_fit_after`` (in-sample AUROC on the fitting cells, optimistic: the number the
        original's perturbation compared).
        """
        from scvi_networkvi.interpret import compute_perturbation, write_table

        adata = self._validate_anndata(adata)
        table = compute_perturbation(
            self,
            adata,
            genes=genes,
            groupby=groupby,
            perturb_modalities=perturb_modalities,
            modalities=modalities,
            targets=targets,
            reference=reference,
            groups=groups,
            restrict=restrict,
            node_types=node_types,
            indices=indices,
            refit=refit,
            heldout_size=heldout_size,
            C=C,
            class_weight=class_weight,
            min_cells=min_cells,
            level=level,
            seed=seed,
            batch_size=batch_size,
            device=device,
            progress_bar=progress_bar,
        )
        if save_path is not None:
            write_table(table, save_path)
        if key_added is not None:
            adata.uns[key_added] = table
        return table

    def get_attention_statistics(
        self,
        adata=None,
        *,
        groupby: str | None = None,
        modalities: str | Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
        level: float = 0.95,
        batch_size: int = 256,
        key_added: str | None = "networkvi_attention",
        save_path: str | os.PathLike | None = None,
        progress_bar: bool | None = None,
    ) -> pd.DataFrame:
        """Mean covariate attention of every attending node, overall and per ``groupby`` label, with intervals.

        Needs a model built with ``covariate_attention``. Per node (gene node or GO term: the mean over its
        neurons), covariate (one-hot batch / categorical columns and continuous covariates) and covariate group
        (summed over the group's columns): the mean over cells and a normal interval of that mean. Accumulated
        minibatch by minibatch: memory does not grow with the number of cells.

        Parameters
        ----------
        adata, indices, batch_size
            Cells and minibatch size, as in :meth:`get_importances`.
        groupby
            Optional label column: statistics per label besides the overall ones.
        modalities
            Modalities to report (default every GO-wired one).
        level
            Confidence level of the intervals.
        key_added, save_path
            Where to store / write the table.
        progress_bar
            Draw scvi-tools' progress bar over the minibatches (default as in :meth:`get_importances`).

        Returns
        -------
        ``modality``, ``node_id``, ``node_type``, ``kind``, ``name``, ``level``, ``covariate_group``, ``covariate``
        (a column, or ``"<group> (all)"`` for a group total), ``phenotype`` (``"all"`` or a label), ``mean``, ``low``,
        ``high``, ``n_cells``.
        """
        from scvi_networkvi.interpret import compute_attention_statistics, write_table

        adata = self._validate_anndata(adata)
        table = compute_attention_statistics(
            self,
            adata,
            groupby=groupby,
            modalities=modalities,
            indices=indices,
            level=level,
            batch_size=batch_size,
            progress_bar=progress_bar,
        )
        if save_path is not None:
            write_table(table, save_path)
        if key_added is not None:
            adata.uns[key_added] = table
        return table
