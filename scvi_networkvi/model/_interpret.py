"""NETWORKVI methods for interpretation over :mod:`scvi_networkvi.interpret`.

The model-side steps (checking the data, reading labels, looking up modality roles, finding a perturbation's
features, the inference passes in ``_capture.py``) happen here; ``interpret`` computes on the activations, labels,
attention weights and :class:`~scvi_networkvi.interpret.ImportanceSettings`, and never sees the model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mudata import MuData

from ._capture import TensorTransform, attention_pass, capture_taps, wired_roles, zeroing
from ._perturbation import resolve_perturbations

if TYPE_CHECKING:
    from scvi_networkvi.interpret import Activations, ImportanceSettings

logger = logging.getLogger(__name__)


class NetworkVIInterpretMixin:
    """GO-term, gene and gene-group importances, in-silico perturbation and covariate-attention statistics."""

    def get_activations(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        *,
        modalities: str | Sequence[str] | None = None,
        genes: bool = False,
        batch_size: int = 256,
        progress_bar: bool | None = False,
    ) -> Activations:
        """Run the model once over the cells and keep every GO term's (and optionally gene node's) activations.

        Forward hooks on the encoders' parameter-free taps copy each minibatch's activations to CPU; they are removed
        before returning, the module's training flag and torch's random state are restored, and nothing on the model
        changes (later training and inference are unaffected).

        Parameters
        ----------
        adata, indices
            Cells (default: the model's registered MuData, all cells).
        modalities
            Roles or MuData names; default every GO-wired modality.
        genes
            Also keep the gene-node activations (``cells x n_genes * gene_size`` floats: large for big data).
        batch_size
            Cells per minibatch.
        progress_bar
            Draw scvi-tools' progress bar over the minibatches (``None``: while ``scvi.settings.verbosity`` is INFO
            or lower).

        Returns
        -------
        :class:`~scvi_networkvi.interpret.Activations`, the input of
        :func:`~scvi_networkvi.interpret.probe_importances`.
        """
        from scvi_networkvi.interpret import show_progress

        roles = self._interpretable_roles(modalities)
        adata = self._validate_anndata(adata)
        return self._capture_activations(
            adata, indices, roles, genes=genes, batch_size=batch_size, progress=show_progress(progress_bar)
        )

    def _interpretable_roles(self, modalities: str | Sequence[str] | None) -> list[str]:
        """Roles for a user's ``modalities`` (roles or MuData names; ``None``: every GO-wired modality)."""
        wired = wired_roles(self.module)
        if not wired:
            raise ValueError(
                "The model has no GO-wired encoder (it was built with encoder='dense'): node importances need "
                "NETWORKVI(..., encoder='go')."
            )
        if modalities is None:
            return wired
        wanted = [modalities] if isinstance(modalities, str) else list(modalities)
        roles = []
        for name in wanted:
            role = self.role_of(name)  # raises with the valid names for an unknown one
            if role not in wired:
                raise ValueError(f"Modality {name!r} has a dense encoder: it has no GO or gene nodes. Wired: {wired}.")
            roles.append(role)
        return list(dict.fromkeys(roles))

    def _capture_activations(
        self,
        adata: MuData,
        indices: Sequence[int] | None,
        roles: Sequence[str],
        *,
        genes: bool,
        batch_size: int,
        transform: TensorTransform | None = None,
        progress: bool = False,
    ) -> Activations:
        """:meth:`get_activations` on checked data and resolved roles (``transform``: applied to each minibatch)."""
        from scvi_networkvi.interpret import Activations, ModalityActivations

        if genes:
            missing = [r for r in roles if self.module.encoders[r].gene_tap is None]
            if missing:
                raise ValueError(f"Modalities {missing} were built with gene_layer='none': they have no gene nodes.")
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        cells, stacked = capture_taps(self.module, loader, roles, genes=genes, transform=transform, progress=progress)
        obs_names = adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]
        out = {}
        for role in roles:
            wiring = self.wirings_[role]
            slices = self.module.encoders[role].go_network.level_slices
            levels = [
                _or_zeros(stacked[(role, f"level{i}")], len(cells[role]), stop - start)
                for i, (start, stop) in enumerate(slices)
            ]
            terms = np.concatenate(levels, axis=1)
            gene_acts = (
                _or_zeros(stacked[(role, "genes")], len(cells[role]), wiring.n_genes * wiring.gene_size)
                if genes
                else None
            )
            if terms.shape[1] != int(wiring.term_size.sum()):  # guards the tap <-> wiring correspondence
                raise RuntimeError(
                    f"Captured {terms.shape[1]} term neurons for {role}, the wiring has {wiring.term_size.sum()}."
                )
            out[role] = ModalityActivations(role, self.modality_name(role), wiring, cells[role], terms, gene_acts)
        logger.info("Captured activations of %d cells for %s.", len(obs_names), ", ".join(roles))
        return Activations(pd.Index(obs_names), out)

    def get_importances(
        self,
        adata=None,
        *,
        groupby: str,
        settings: ImportanceSettings | None = None,
        modalities: str | Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
        key_added: str | None = "networkvi_importances",
        save_path: str | os.PathLike | None = None,
        progress_bar: bool | None = None,
        **options: Any,
    ) -> pd.DataFrame:
        """How well each GO term (gene, gene group) tells a phenotype apart: held-out AUROC of a probe on its neurons.

        One inference pass (eval mode, forward hooks, nothing on the model changes) captures every node's
        activations. The cells are split once, stratified by ``groupby`` and seeded (``seed``, default 0, not the
        training seed: models trained with different seeds are probed on the same cells and random gene sets); for
        every node and phenotype an L2 logistic regression (``C``, balanced classes, neurons standardised on the
        fitting cells) is fitted on the fitting split and scored on the held-out split. All probes of a width are
        fitted together (batched Newton).
        By default (``null_sets=100``) each GO term's own genes, and 100 random gene sets of its size, are summarised
        and probed alike; the GO terms are ranked by how much their genes beat the random ones (``specificity``),
        not by their AUROC, which is high for any broad term once the latent separates the phenotypes.

        Parameters
        ----------
        adata
            MuData set up like the model's (default: the registered one).
        groupby
            Categorical ``obs`` column with the labels (``"mod:col"`` for a modality's column).
        settings
            The run's options, :class:`~scvi_networkvi.interpret.ImportanceSettings` (phenotypes: ``targets``,
            ``reference``, ``groups``; cells: ``restrict``, ``cells_with``; nodes: ``node_types``, ``gene_groups``;
            probes: ``heldout_size``, ``C``, ``class_weight``, ``min_cells``, ``level``, ``seed``, ``device``,
            ``null_sets``; the order: ``rank_by``, ``rank_min_genes``; ``batch_size``). Default: its defaults.
        modalities
            GO-wired modalities to probe (roles or MuData names; default all).
        indices
            Cells of ``adata`` to use (default all).
        key_added
            Store the table in ``adata.uns[key_added]`` (``None``: do not store).
        save_path
            Also write the table to ``.parquet`` or ``.csv``.
        progress_bar
            Draw scvi-tools' progress bars (``scvi.settings.progress_bar_style``) over the inference pass, the probes
            and the random gene sets. Default: while ``scvi.settings.verbosity`` is INFO or lower (scvi-tools'
            default); ``scvi.settings.verbosity = logging.WARNING`` or ``False`` hides them.
        **options
            Any :class:`~scvi_networkvi.interpret.ImportanceSettings` field as a keyword (``targets=...``,
            ``C=0.5``...): it replaces that field of ``settings``. Another keyword is a TypeError; a bad value raises
            before the inference pass.

        Returns
        -------
        One row per modality, node and phenotype: ``modality``, ``node_id``, ``node_type``, ``kind`` (``go``,
        ``root``, ``unknown``, ``gene``, ``gene_group``), ``name``, ``level``, ``n_genes``, ``width``, ``phenotype``,
        ``reference``, ``auroc`` (held-out, the number to read), ``auroc_low`` / ``auroc_high`` (DeLong interval),
        ``pval`` (one-sided DeLong test of AUROC > 0.5), ``qval`` (Benjamini–Hochberg across the nodes of a
        phenotype), ``rank`` (among the GO terms of a phenotype and modality, 1 = best, structural nodes unranked; by
        default by ``specificity``, terms of fewer than ``rank_min_genes`` genes after the others; by ``auroc`` with
        ``rank_by="auroc"`` or ``null_sets=0``), ``specificity`` (``auroc_set - auroc_null``: how much better the
        term's own genes separate the phenotype than random genes of the same number, the headline number),
        ``auroc_null`` (mean held-out AUROC of the term's random gene sets; NaN with ``null_sets=0`` and for other
        nodes), ``pval_null`` (share of random sets
        scoring at least the term's AUROC, ``(1 + count) / (1 + null_sets)``: small when the term beats gene sets of
        its size and width), ``auroc_set`` (held-out AUROC of the term's own genes summarised like the random sets),
        ``pval_set`` (share of random sets scoring at least ``auroc_set``: small when the term's genes separate the
        phenotype better than random genes of the same number; one test per term and phenotype, so correct for
        multiple testing across terms and raise ``null_sets`` for finer p-values), ``auroc_null_sd`` (standard deviation
        of the random sets' AUROCs), ``auroc_fit`` (in-sample,
        optimistic), ``n_cells_fit``, ``n_cells_heldout``, ``n_cases_heldout``.
        """
        from scvi_networkvi.interpret import (
            ImportanceSettings,
            categorical_labels,
            probe_importances,
            restrict_mask,
            show_progress,
            write_table,
        )

        settings = ImportanceSettings.merge(settings, options, function="get_importances")
        adata = self._validate_anndata(adata)
        labels = categorical_labels(adata, groupby)  # a bad groupby fails before the inference pass
        cells_with = [self.role_of(name) for name in settings.cells_with or []]
        progress = show_progress(progress_bar)
        roles = self._interpretable_roles(modalities)
        activations = self._capture_activations(
            adata,
            indices,
            roles,
            genes=settings.needs_gene_activations,
            batch_size=settings.batch_size,
            progress=progress,
        )
        selected = restrict_mask(adata, settings.restrict, activations.obs_names)
        for name, role in zip(settings.cells_with or [], cells_with, strict=True):
            if role not in activations.modalities:
                raise ValueError(f"cells_with names {name!r}, whose activations were not captured.")
            has = np.zeros(len(activations.obs_names), dtype=bool)
            has[activations.modalities[role].cells] = True
            selected &= has
        feature_names = {
            role: np.asarray(self.adata[acts.modality].var_names) for role, acts in activations.modalities.items()
        }
        table = probe_importances(
            activations, labels, settings, feature_names=feature_names, selected=selected, progress=progress
        )
        table.attrs["networkvi"] = {"groupby": groupby, **table.attrs["networkvi"]}
        if save_path is not None:
            write_table(table, save_path)
        if key_added is not None:
            adata.uns[key_added] = table
        return table

    def get_perturbation_importances(
        self,
        adata=None,
        *,
        genes: Sequence[str] | Mapping[str, Sequence[str]],
        groupby: str,
        settings: ImportanceSettings | None = None,
        perturb_modalities: Sequence[str] | None = None,
        modalities: str | Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
        refit: bool = True,
        key_added: str | None = "networkvi_perturbation",
        save_path: str | os.PathLike | None = None,
        progress_bar: bool | None = None,
        **options: Any,
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
        groupby, adata, indices
            As in :meth:`get_importances`.
        settings, **options
            :class:`~scvi_networkvi.interpret.ImportanceSettings` and keywords replacing its fields, as in
            :meth:`get_importances`, except ``cells_with``, ``gene_groups`` and ``null_sets`` (and ``node_types``
            without gene groups).
        perturb_modalities
            Modalities whose features are zeroed (default: every modality measuring the gene).
        modalities
            Modalities whose nodes are probed (default: the perturbed GO-wired ones).
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
        from scvi_networkvi.interpret import (
            PERTURBATION_SETTINGS,
            ImportanceSettings,
            Perturbation,
            categorical_labels,
            compute_perturbation,
            restrict_mask,
            show_progress,
            write_table,
        )

        settings = ImportanceSettings.merge(
            settings, options, function="get_perturbation_importances", accepted=PERTURBATION_SETTINGS
        )
        adata = self._validate_anndata(adata)
        labels = categorical_labels(adata, groupby)
        perturbations = resolve_perturbations(self, genes, perturb_modalities)
        if modalities is None:  # probe the wired modalities whose features some perturbation changes
            touched = {role for p in perturbations.values() for role in p.features}
            roles = [r for r in self._interpretable_roles(None) if r in touched]
            if not roles:
                raise ValueError(
                    "No perturbed modality has a GO-wired encoder: its nodes cannot change. Perturb a wired modality."
                )
        else:
            roles = self._interpretable_roles(modalities)
        genes_too = "gene" in settings.node_types
        progress = show_progress(progress_bar)
        base = self._capture_activations(
            adata, indices, roles, genes=genes_too, batch_size=settings.batch_size, progress=progress
        )

        def perturbed(perturbation: Perturbation) -> Activations:
            # the inner passes draw no bar: compute_perturbation draws one over the perturbations
            transform = zeroing(perturbation.features)
            return self._capture_activations(
                adata, indices, roles, genes=genes_too, batch_size=settings.batch_size, transform=transform
            )

        table = compute_perturbation(
            base,
            perturbed,
            perturbations,
            labels,
            settings,
            feature_names={role: np.asarray(self.adata[self.modality_name(role)].var_names) for role in roles},
            selected=restrict_mask(adata, settings.restrict, base.obs_names),
            refit=refit,
            progress=progress,
        )
        table.attrs["networkvi"] = {"groupby": groupby, **table.attrs["networkvi"]}
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
        adata, indices
            Cells, as in :meth:`get_importances`.
        batch_size
            Cells per inference minibatch.
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
        from scvi_networkvi.interpret import (
            AttentionStatistics,
            attention_layers,
            categorical_labels,
            show_progress,
            write_table,
        )

        roles = self._interpretable_roles(modalities)
        layers = {
            role: attention_layers(
                self.module.encoders[role],
                self.wirings_[role],
                np.asarray(self.adata[self.modality_name(role)].var_names),
            )
            for role in roles
        }
        layers = {role: found for role, found in layers.items() if found}
        if not layers:
            raise ValueError(
                "The model has no covariate attention: build it with covariate_attention='genes', 'go' or 'all' "
                "(and encode_covariates=True)."
            )
        adata = self._validate_anndata(adata)
        obs_names = adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]
        if groupby is not None:
            labels = categorical_labels(adata, groupby).reindex(obs_names)
            codes, label_names = labels.cat.codes.to_numpy(), [str(c) for c in labels.cat.categories]
        else:
            codes, label_names = np.full(len(obs_names), -1), []
        statistics = AttentionStatistics(layers, self.covariate_names(), label_names)
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        attention_pass(self.module, loader, statistics, codes, progress=show_progress(progress_bar))
        table = statistics.table({role: self.modality_name(role) for role in layers}, level)
        if save_path is not None:
            write_table(table, save_path)
        if key_added is not None:
            adata.uns[key_added] = table
        return table


def _or_zeros(stacked: np.ndarray | None, n_cells: int, width: int) -> np.ndarray:
    """A tap's captured activations, or zeros where no minibatch had a cell with the modality."""
    return np.zeros((n_cells, width), dtype=np.float32) if stacked is None else stacked
