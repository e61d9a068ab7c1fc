"""Per-modality outputs of NETWORKVI: protein foreground, accessibility, library factors, DE and DA.

The mixin relies on what :class:`~scvi_networkvi.model.NETWORKVI` provides (``module``, ``adata_manager``,
``_validate_anndata``, ``_make_data_loader``, ``modality_name``, ``_batch_code``) and on scvi-tools' differential
machinery (:func:`scvi.model.base._de_core._de_core` and :class:`~scvi.model.base.DifferentialComputation`), the
same that scVI, totalVI, PeakVI and MultiVI use.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.model._utils import scatac_raw_counts_properties, scrna_raw_counts_properties
from scvi.model.base._de_core import _de_core
from scvi.utils import de_dsp

from scvi_networkvi.module import DATA_KEYS, MASK_KEY

#: Temporary ``mdata.obs`` column holding the groups of a DE/DA call whose ``groupby`` lives in a modality's obs.
_GROUPS_KEY = "_networkvi_de_groups"

Indices = Sequence[int] | np.ndarray | None
BatchSpec = str | int | Sequence[str | int] | None


class NetworkVIOutputsMixin:
    """Outputs of NETWORKVI beyond the latent space and the RNA expression.

    Methods for models with proteins (:meth:`get_protein_foreground_probability`), with ATAC
    (:meth:`get_accessibility_estimates`, :meth:`get_region_factors`, :meth:`differential_accessibility`), with RNA
    (:meth:`differential_expression`), and the library size factors of RNA and ATAC
    (:meth:`get_library_size_factors`).
    """

    # ---- helpers ---------------------------------------------------------------------------------------------------
    def _output_feature_names(self, role: str) -> np.ndarray:
        """Names of a role's features as registered (the order the module uses)."""
        self.modality_name(role)  # a clear error if the model lacks the modality
        state = self.adata_manager.get_state_registry(DATA_KEYS[role])
        return np.asarray(state.column_names)

    def _output_batch_codes(self, transform_batch: BatchSpec) -> list[int | None]:
        """Batch codes of ``transform_batch`` (one value or a list), validated."""
        if transform_batch is None or isinstance(transform_batch, str | numbers.Integral):
            return [self._batch_code(transform_batch)]
        batches = list(transform_batch)
        if not batches:
            raise ValueError("transform_batch is an empty list; give batch names or None (each cell's own batch).")
        return [self._batch_code(b) for b in batches]

    def _decode_minibatches(
        self,
        adata: MuData,
        indices: Indices,
        batch_codes: list[int | None],
        use_z_mean: bool,
        batch_size: int | None,
        extract: Callable[[dict[str, Any], dict[str, Any]], torch.Tensor],
    ) -> Iterator[np.ndarray]:
        """Per minibatch: ``extract(inference, generative)`` averaged over the decoder batches ``batch_codes``.

        The encoders run once per minibatch (each cell with its own batch); only the decoders see ``batch_codes``.
        Call inside :func:`torch.inference_mode`.
        """
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        for tensors in loader:
            inference = self.module.inference(**self.module._get_inference_input(tensors))
            total = None
            for code in batch_codes:
                gen_input = self.module._get_generative_input(tensors, inference, transform_batch=code)
                values = extract(inference, self.module.generative(**gen_input, use_z_mean=use_z_mean))
                total = values if total is None else total + values
            yield (total / len(batch_codes)).cpu().numpy()

    def _output_obs_names(self, adata: MuData, indices: Indices) -> pd.Index:
        return adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]

    def _sigmoid_region_factors(self) -> torch.Tensor:
        self.modality_name("atac")
        factors = getattr(self.module, "region_factors", None)
        if factors is None:
            raise RuntimeError("This model was built with region_factors=False: it has no region factors.")
        return torch.sigmoid(factors.detach())

    # ---- proteins --------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def get_protein_foreground_probability(
        self,
        adata: MuData | None = None,
        indices: Indices = None,
        transform_batch: BatchSpec = None,
        protein_list: Sequence[str] | None = None,
        batch_size: int | None = None,
        use_z_mean: bool = True,
        return_numpy: bool = False,
    ) -> pd.DataFrame | np.ndarray:
        r"""Probability that each protein's counts come from the foreground (not the background) component.

        The protein decoder (totalVI's) models counts as a mixture of a background and a foreground negative binomial
        with mixing logits :math:`\pi`; the foreground probability is :math:`1 - \sigma(\pi)`.

        Parameters
        ----------
        adata
            MuData registered with :meth:`setup_mudata`; ``None``: the model's.
        indices
            Cells of ``adata`` to use; ``None``: all.
        transform_batch
            Batch the decoder is conditioned on: ``None`` (each cell's own batch), a registered batch name, or a
            list of them (the probabilities are averaged over these batches).
        protein_list
            Proteins to return (names of the protein modality's features), in this order; ``None``: all.
        batch_size
            Minibatch size; ``None``: ``scvi.settings.batch_size``.
        use_z_mean
            Decode the posterior mean of the latent (``True``) or one posterior sample per cell.
        return_numpy
            Return an array instead of a DataFrame.

        Returns
        -------
        Cells x proteins: a DataFrame indexed by cell names with the protein names as columns, or an array.
        """
        names = self._output_feature_names("protein")
        columns = _positions(names, protein_list, "protein_list")
        codes = self._output_batch_codes(transform_batch)
        adata = self._validate_anndata(adata)

        def extract(inference, generative):
            return 1.0 - torch.sigmoid(generative["py_"]["mixing"][..., columns])

        result = np.concatenate(list(self._decode_minibatches(adata, indices, codes, use_z_mean, batch_size, extract)))
        if return_numpy:
            return result
        return pd.DataFrame(result, index=self._output_obs_names(adata, indices), columns=names[columns])

    # ---- accessibility ---------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def get_accessibility_estimates(
        self,
        adata: MuData | None = None,
        indices: Indices = None,
        region_list: Sequence[str] | None = None,
        transform_batch: BatchSpec = None,
        use_z_mean: bool = True,
        threshold: float | None = None,
        normalize_cells: bool = False,
        normalize_regions: bool = False,
        batch_size: int | None = None,
        return_numpy: bool = False,
    ) -> pd.DataFrame | np.ndarray | sp.csr_matrix:
        """Imputed accessibility: for each cell and region, the probability that the region is accessible.

        These are the PeakVI decoder's probabilities ``p``, corrected for the cell's sequencing depth and the region's
        bias; ``normalize_cells`` / ``normalize_regions`` multiply those factors back in (the likelihood's
        probability is ``p`` x depth factor x region factor).

        Parameters
        ----------
        adata
            MuData registered with :meth:`setup_mudata`; ``None``: the model's.
        indices
            Cells of ``adata`` to use; ``None``: all.
        region_list
            Regions to return (names of the ATAC modality's features), in this order; ``None``: all.
        transform_batch
            Batch the decoder is conditioned on: ``None`` (each cell's own batch), a registered batch name, or a
            list of them (averaged).
        use_z_mean
            Decode the posterior mean of the latent (``True``) or one posterior sample per cell.
        threshold
            A number in [0, 1]: values below it are set to 0 and the result is sparse (a
            :class:`~scipy.sparse.csr_matrix` with ``return_numpy=True``, else a DataFrame with sparse columns).
            Recommended for large data.
        normalize_cells
            Multiply by each cell's depth factor (see :meth:`get_library_size_factors`): closer to the observed data,
            without the depth correction.
        normalize_regions
            Multiply by the region factors (see :meth:`get_region_factors`): without the region-bias correction.
        batch_size
            Minibatch size; ``None``: ``scvi.settings.batch_size``.
        return_numpy
            Return an array (or CSR matrix) instead of a DataFrame.

        Returns
        -------
        Cells x regions, values in [0, 1]: a DataFrame indexed by cell names with the region names as columns, or an
        array / CSR matrix.
        """
        names = self._output_feature_names("atac")
        columns = _positions(names, region_list, "region_list")
        codes = self._output_batch_codes(transform_batch)
        if threshold is not None:
            _check_threshold(threshold)
        region_factors = self._sigmoid_region_factors()[columns] if normalize_regions else None
        adata = self._validate_anndata(adata)

        def extract(inference, generative):
            p = generative["p"][..., columns]
            if normalize_cells:
                p = p * inference["atac_depth"]
            if region_factors is not None:
                p = p * region_factors.to(p.device)
            return p

        blocks = self._decode_minibatches(adata, indices, codes, use_z_mean, batch_size, extract)
        obs_names = self._output_obs_names(adata, indices)
        if threshold is None:
            result = np.concatenate(list(blocks))
            return result if return_numpy else pd.DataFrame(result, index=obs_names, columns=names[columns])
        sparse = sp.vstack([sp.csr_matrix(np.where(block < threshold, 0, block)) for block in blocks], format="csr")
        if return_numpy:
            return sparse
        return pd.DataFrame.sparse.from_spmatrix(sparse, index=obs_names, columns=names[columns])

    @torch.inference_mode()
    def get_region_factors(self) -> np.ndarray:
        """Learned per-region accessibility factors (sigmoid of the parameters), shape ``(n_regions,)``.

        Returns
        -------
        The factors, in (0, 1), in the order of the ATAC modality's features.

        Raises
        ------
        ValueError
            The model has no ATAC modality.
        RuntimeError
            The model was built with ``region_factors=False``.
        """
        return self._sigmoid_region_factors().cpu().numpy()

    # ---- library sizes ---------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def get_library_size_factors(
        self,
        adata: MuData | None = None,
        indices: Indices = None,
        batch_size: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-cell library size factors the decoders use, for RNA and ATAC.

        Parameters
        ----------
        adata
            MuData registered with :meth:`setup_mudata`; ``None``: the model's.
        indices
            Cells of ``adata`` to use; ``None``: all.
        batch_size
            Minibatch size; ``None``: ``scvi.settings.batch_size``.

        Returns
        -------
        A dict with, for the modalities the model has, arrays of shape ``(n_cells,)``:

        ``"rna"``
            The **natural log** of the RNA library size (the observed total counts, or the registered size factor),
            as the RNA decoder uses it: expected counts are ``exp(library) * px_scale``.
        ``"atac"``
            The ATAC depth factor in (0, 1) the encoder estimates for each cell (PeakVI's ``d``): the probability of
            observing a region is ``p * depth * region factor``.
        """
        roles = [role for role in ("rna", "atac") if role in self.modality_roles]
        if not roles:
            raise ValueError(f"Library size factors exist for RNA and ATAC; the model has only {self.modality_roles}.")
        keys = {"rna": "library", "atac": "atac_depth"}
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        out: dict[str, list[np.ndarray]] = {role: [] for role in roles}
        for tensors in loader:
            inference = self.module.inference(**self.module._get_inference_input(tensors))
            for role in roles:
                out[role].append(inference[keys[role]].reshape(-1).cpu().numpy())
        return {role: np.concatenate(values) for role, values in out.items()}

    # ---- differential expression / accessibility ------------------------------------------------------------------
    @torch.inference_mode()
    def _differential_samples(
        self,
        adata: MuData,
        indices: Sequence[int] | np.ndarray,
        transform_batch: str | None = None,
        n_samples_overall: int | None = None,
        batch_size: int | None = None,
        *,
        role: str,
    ) -> np.ndarray:
        """Model function for :class:`~scvi.model.base.DifferentialComputation`.

        ``n_samples_overall`` cells are drawn with replacement from ``indices`` (as PeakVI does), each decoded from
        one posterior sample of its latent (not the posterior mean: DE integrates over the posterior) with the decoder
        conditioned on ``transform_batch`` (a batch name, or ``None`` for each cell's own batch). ``role="rna"``
        gives the normalized expression ``px_scale`` (as :meth:`get_normalized_expression` with ``library_size=1``),
        ``role="atac"`` the accessibility (as :meth:`get_accessibility_estimates`).
        """
        key = {"rna": "px_scale", "atac": "p"}[role]
        codes = [self._batch_code(transform_batch)]
        indices = np.asarray(indices)
        if n_samples_overall is not None:
            indices = np.random.choice(indices, n_samples_overall)
        blocks = self._decode_minibatches(adata, indices, codes, False, batch_size, lambda inference, gen: gen[key])
        return np.concatenate(list(blocks))

    def _prepare_differential(
        self,
        role: str,
        adata: MuData | None,
        groupby: str | None,
        group1: str | Iterable[str] | None,
        group2: str | None,
        idx1,
        idx2,
        mode: str,
        delta: float | None,
        batch_correction: bool,
        batchid1: Iterable[str] | None,
        batchid2: Iterable[str] | None,
        fdr_target: float,
    ) -> tuple[MuData, list | None, np.ndarray | None]:
        """Validate a DE/DA request before any work; return the MuData, group1 and the groups' values (or None)."""
        self.modality_name(role)
        if mode not in ("vanilla", "change"):
            raise ValueError(f"mode must be 'vanilla' or 'change', got {mode!r}.")
        if delta is not None and not (_is_real(delta) and delta > 0):
            raise ValueError(f"delta must be a positive number (or None to estimate it), got {delta!r}.")
        if not (_is_real(fdr_target) and 0 < fdr_target < 1):
            raise ValueError(f"fdr_target must be in (0, 1), got {fdr_target!r}.")
        batches = list(self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping)
        for name, ids in (("batchid1", batchid1), ("batchid2", batchid2)):
            if ids is None:
                continue
            if not batch_correction:
                raise ValueError(f"{name} is used only with batch_correction=True.")
            unknown = [b for b in ([ids] if isinstance(ids, str) else list(ids)) if b not in batches]
            if unknown:
                raise ValueError(f"{name} has batches the model does not know: {unknown}; batches: {batches}.")
        adata = self._validate_anndata(adata)
        if idx1 is not None:
            for name, idx in (("idx1", idx1), ("idx2", idx2)):
                _check_cell_selection(idx, adata.n_obs, name)
            return adata, None, None
        if idx2 is not None:
            raise ValueError("idx2 needs idx1 (the first group of cells).")
        if groupby is None:
            raise ValueError("Give groupby (an obs column with the groups) or idx1 (the cells of the first group).")
        values = _obs_column(adata, groupby, self._registered_modality_names())
        observed = sorted(pd.unique(values[pd.notna(values)]), key=str)
        present = set(observed)
        if group2 is not None and group2 not in present:
            raise ValueError(f"group2 {group2!r} is not in {groupby!r}; groups: {_preview(observed)}.")
        if group1 is None:
            group1 = [g for g in observed if g != group2]
            if not group1:
                raise ValueError(f"{groupby!r} has a single group ({_preview(observed)}): nothing to compare.")
        else:
            group1 = [group1] if isinstance(group1, str) or not isinstance(group1, Iterable) else list(group1)
            missing = [g for g in group1 if g not in present]
            if missing or not group1:
                raise ValueError(f"group1 {missing or group1} not in {groupby!r}; groups: {_preview(observed)}.")
            if group2 is not None and group2 in group1:
                raise ValueError(f"group2 {group2!r} is also in group1: compare a group with other cells.")
        if group2 is None and len(observed) < 2:
            raise ValueError(f"{groupby!r} has a single group ({_preview(observed)}): nothing to compare.")
        return adata, group1, values

    def _registered_modality_names(self) -> list[str]:
        return [self.modality_name(role) for role in self.modality_roles]

    def _count_stats_fn(self, adata: MuData, role: str, stats_fn: Callable) -> Callable:
        """``stats_fn`` (scvi-tools' raw-count statistics) on the role's registered counts, as ``_de_core`` calls it.

        scvi-tools' functions read ``adata_manager.get_from_registry(...)`` and cache a per-cell scaling in
        ``adata_manager.adata.obs``; they get a view serving the role's counts (at the MuData's cells) and a scratch
        ``obs``, so the user's MuData is left untouched. Cells that lack the modality (mosaic data) are left out.
        """
        manager = self.get_anndata_manager(adata, required=True)
        counts = manager.get_from_registry(DATA_KEYS[role])
        present = None
        if MASK_KEY in manager.data_registry:
            mods = list(manager.get_state_registry(MASK_KEY)["modalities"])
            present = np.asarray(manager.get_from_registry(MASK_KEY))[:, mods.index(self.modality_name(role))] > 0
        view = _CountsView(counts, adata.n_obs)

        def all_stats_fn(_manager, cell_idx1, cell_idx2):
            if present is not None:
                cell_idx1, cell_idx2 = cell_idx1 & present, cell_idx2 & present
            return stats_fn(view, cell_idx1, cell_idx2)

        return all_stats_fn

    def _run_de_core(self, adata, values, groupby, **kwargs) -> pd.DataFrame:
        """``_de_core`` on the model's MuData, with the groups put in a temporary ``mdata.obs`` column if needed."""
        manager = self.get_anndata_manager(adata, required=True)
        if values is None or groupby in adata.obs.columns:
            return _de_core(manager, groupby=groupby, **kwargs)
        with _temporary_obs_column(adata, _GROUPS_KEY, values):
            return _de_core(manager, groupby=_GROUPS_KEY, **kwargs)

    @de_dsp.dedent
    def differential_expression(
        self,
        adata: MuData | None = None,
        groupby: str | None = None,
        group1: str | Iterable[str] | None = None,
        group2: str | None = None,
        idx1: Sequence[int] | Sequence[bool] | str | None = None,
        idx2: Sequence[int] | Sequence[bool] | str | None = None,
        mode: Literal["vanilla", "change"] = "change",
        delta: float | None = 0.25,
        batch_size: int | None = None,
        all_stats: bool = True,
        batch_correction: bool = False,
        batchid1: Iterable[str] | None = None,
        batchid2: Iterable[str] | None = None,
        fdr_target: float = 0.05,
        silent: bool = False,
        filter_outlier_cells: bool = False,
        **kwargs,
    ) -> pd.DataFrame:
        r"""Differential expression of the RNA modality, scVI style.

        ``'vanilla'`` mode :cite:p:`Lopez18` or ``'change'`` mode :cite:p:`Boyeau19` on the decoded normalized
        expression, with scvi-tools' :class:`~scvi.model.base.DifferentialComputation`. Each group is represented
        by cells drawn from it, each decoded from one sample of its latent posterior.

        Parameters
        ----------
        adata
            MuData registered with :meth:`setup_mudata`; ``None``: the model's.
        groupby
            Column with the groups: a column of ``mdata.obs``, ``"modality:column"`` (a modality's obs), or a column
            of a registered modality's obs (searched in the order RNA, protein, ATAC).
        %(de_group1)s
        %(de_group2)s
        idx1
            Alternative to ``groupby``: the cells of the first group as a boolean mask over the MuData's cells, their
            positions, or a :meth:`pandas.DataFrame.query` string on ``mdata.obs``. Overrides ``group1`` and
            ``group2``.
        idx2
            The cells of the second group, as ``idx1``; ``None``: all cells not in ``idx1``.
        %(de_mode)s
        %(de_delta)s
        %(de_batch_size)s
        all_stats
            Add statistics of the raw RNA counts of both groups (means, fractions of non-zero, normalized means).
        %(de_batch_correction)s
        %(de_batchid1)s
        %(de_batchid2)s
        %(de_fdr_target)s
        %(de_silent)s
        filter_outlier_cells
            Drop cells that are outliers in the latent space of their group
            (:meth:`~scvi.model.base.DifferentialComputation.filter_outlier_cells`).
        **kwargs
            Passed to :meth:`~scvi.model.base.DifferentialComputation.get_bayes_factors` (e.g.
            ``n_samples_overall``, ``pseudocounts``).

        Returns
        -------
        DataFrame indexed by gene names, sorted by ``proba_de`` (``'change'``) or ``bayes_factor`` (``'vanilla'``),
        with scvi-tools' columns (``proba_de``, ``bayes_factor``, ``scale1``, ``scale2``, ``lfc_mean``, ...,
        ``is_de_fdr_<fdr_target>``, ``comparison``, ``group1``, ``group2``). ``lfc_*`` > 0: higher in group 1.
        """
        adata, group1, values = self._prepare_differential(
            "rna",
            adata,
            groupby,
            group1,
            group2,
            idx1,
            idx2,
            mode,
            delta,
            batch_correction,
            batchid1,
            batchid2,
            fdr_target,
        )
        return self._run_de_core(
            adata,
            values,
            groupby,
            model_fn=partial(self._differential_samples, role="rna", batch_size=batch_size),
            representation_fn=self.get_latent_representation if filter_outlier_cells else None,
            group1=group1,
            group2=group2,
            idx1=idx1,
            idx2=idx2,
            all_stats=all_stats,
            all_stats_fn=self._count_stats_fn(adata, "rna", scrna_raw_counts_properties),
            col_names=self._output_feature_names("rna"),
            mode=mode,
            batchid1=batchid1,
            batchid2=batchid2,
            delta=delta,
            batch_correction=batch_correction,
            fdr=fdr_target,
            silent=silent,
            **kwargs,
        )

    @de_dsp.dedent
    def differential_accessibility(
        self,
        adata: MuData | None = None,
        groupby: str | None = None,
        group1: str | Iterable[str] | None = None,
        group2: str | None = None,
        idx1: Sequence[int] | Sequence[bool] | str | None = None,
        idx2: Sequence[int] | Sequence[bool] | str | None = None,
        mode: Literal["vanilla", "change"] = "change",
        delta: float | None = 0.05,
        batch_size: int | None = None,
        all_stats: bool = True,
        batch_correction: bool = False,
        batchid1: Iterable[str] | None = None,
        batchid2: Iterable[str] | None = None,
        fdr_target: float = 0.05,
        silent: bool = False,
        **kwargs,
    ) -> pd.DataFrame:
        r"""Differential accessibility of the ATAC regions, PeakVI style.

        The effect is the difference of accessibility :math:`a - b` between the two groups (probabilities, see
        :meth:`get_accessibility_estimates`); in ``'change'`` mode a region is differentially accessible when
        :math:`|a - b| \geq \delta`, with scvi-tools' :class:`~scvi.model.base.DifferentialComputation`.

        Parameters
        ----------
        adata
            MuData registered with :meth:`setup_mudata`; ``None``: the model's.
        groupby
            Column with the groups: a column of ``mdata.obs``, ``"modality:column"`` (a modality's obs), or a column
            of a registered modality's obs (searched in the order RNA, protein, ATAC).
        %(de_group1)s
        %(de_group2)s
        idx1
            Alternative to ``groupby``: the cells of the first group as a boolean mask over the MuData's cells, their
            positions, or a :meth:`pandas.DataFrame.query` string on ``mdata.obs``. Overrides ``group1`` and
            ``group2``.
        idx2
            The cells of the second group, as ``idx1``; ``None``: all cells not in ``idx1``.
        %(de_mode)s
        delta
            Smallest difference of accessibility probability that counts as differential (``'change'`` mode).
        %(de_batch_size)s
        all_stats
            Add the observed fractions of cells with counts in each region (``emp_*`` columns; NaN without).
        %(de_batch_correction)s
        %(de_batchid1)s
        %(de_batchid2)s
        %(de_fdr_target)s
        %(de_silent)s
        **kwargs
            Passed to :meth:`~scvi.model.base.DifferentialComputation.get_bayes_factors` (e.g.
            ``n_samples_overall``).

        Returns
        -------
        DataFrame indexed by region names, sorted by ``prob_da`` (``'change'``) or ``bayes_factor`` (``'vanilla'``):

        prob_da
            Probability that the region is differentially accessible (``'vanilla'``: that it is more accessible in
            group 1).
        is_da_fdr
            Whether the region passes the posterior expected FDR control at ``fdr_target`` (``'change'`` mode; None
            in ``'vanilla'`` mode).
        bayes_factor
            Log Bayes factor.
        effect_size
            Estimated accessibility in group 1 minus group 2 (``est_prob1 - est_prob2``; note PeakVI reports the
            opposite sign).
        emp_effect
            Observed effect: ``emp_prob1 - emp_prob2``.
        est_prob1, est_prob2
            Estimated accessibility probability in group 1 and 2.
        emp_prob1, emp_prob2
            Fraction of cells of group 1 and 2 with counts in the region.

        With ``groupby``, also ``comparison``, ``group1`` and ``group2``.
        """
        adata, group1, values = self._prepare_differential(
            "atac",
            adata,
            groupby,
            group1,
            group2,
            idx1,
            idx2,
            mode,
            delta,
            batch_correction,
            batchid1,
            batchid2,
            fdr_target,
        )
        bayes_kwargs = {
            "change_fn": _difference,
            "test_mode": "two",  # P(a - b >= delta) + P(a - b < -delta) = P(|a - b| >= delta)
            "pseudocounts": 0.0,  # unused by the difference; a value keeps scvi from estimating it on RNA counts
            **kwargs,
        }
        result = self._run_de_core(
            adata,
            values,
            groupby,
            model_fn=partial(self._differential_samples, role="atac", batch_size=batch_size),
            representation_fn=None,
            group1=group1,
            group2=group2,
            idx1=idx1,
            idx2=idx2,
            all_stats=all_stats,
            all_stats_fn=self._count_stats_fn(adata, "atac", scatac_raw_counts_properties),
            col_names=self._output_feature_names("atac"),
            mode=mode,
            batchid1=batchid1,
            batchid2=batchid2,
            delta=delta,
            batch_correction=batch_correction,
            fdr=fdr_target,
            silent=silent,
            **bayes_kwargs,
        )
        missing = pd.Series(np.nan, index=result.index)
        emp1, emp2 = result.get("emp_mean1", missing), result.get("emp_mean2", missing)
        out = pd.DataFrame(
            {
                "prob_da": result["proba_de"] if mode == "change" else result["proba_m1"],
                "is_da_fdr": result[f"is_de_fdr_{fdr_target}"] if mode == "change" else None,
                "bayes_factor": result["bayes_factor"],
                "effect_size": result["scale1"] - result["scale2"],
                "emp_effect": emp1 - emp2,
                "est_prob1": result["scale1"],
                "est_prob2": result["scale2"],
                "emp_prob1": emp1,
                "emp_prob2": emp2,
            },
            index=result.index,
        )
        for column in ("comparison", "group1", "group2"):
            if column in result:
                out[column] = result[column]
        return out


# ---- module helpers ------------------------------------------------------------------------------------------------
class _CountsView:
    """The two things scvi-tools' raw-count statistics read from an AnnDataManager: the counts and a scratch obs."""

    def __init__(self, counts, n_obs: int):
        self._counts = counts
        self.adata = _ScratchObs(pd.DataFrame(index=pd.RangeIndex(n_obs)))

    def get_from_registry(self, registry_key: str):
        return self._counts


class _ScratchObs:
    def __init__(self, obs: pd.DataFrame):
        self.obs = obs


def _difference(a: np.ndarray, b: np.ndarray, pseudocounts: float) -> np.ndarray:
    """PeakVI's effect: difference of accessibility (``get_bayes_factors`` passes three arguments)."""
    return a - b


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))


def _check_threshold(threshold: Any) -> None:
    if not (_is_real(threshold) and 0 <= threshold <= 1):
        raise ValueError(f"threshold must be a number in [0, 1] (or None for a dense result), got {threshold!r}.")


def _positions(names: np.ndarray, wanted: Sequence[str] | None, what: str) -> np.ndarray:
    """Positions of ``wanted`` among ``names`` (all when ``None``), with a clear error for unknown names."""
    if wanted is None:
        return np.arange(len(names))
    if isinstance(wanted, str):
        raise ValueError(f"{what} must be a list of names, got the string {wanted!r}.")
    wanted = list(wanted)
    pos = pd.Index(names).get_indexer(wanted)
    if (pos < 0).any():
        missing = [w for w, p in zip(wanted, pos, strict=True) if p < 0]
        raise ValueError(f"{what} has {len(missing)} names the model does not know, e.g. {missing[:5]}.")
    return pos


def _preview(values: Sequence, n: int = 10) -> str:
    values = list(values)
    return ", ".join(map(repr, values[:n])) + (f", ... ({len(values)} in all)" if len(values) > n else "")


def _obs_column(mdata: MuData, groupby: str, modalities: list[str]) -> np.ndarray:
    """Values of ``groupby`` at the MuData's cells (NaN where a modality lacks a cell)."""
    if not isinstance(groupby, str):
        raise ValueError(f"groupby must be a column name, got {groupby!r}.")
    if groupby in mdata.obs.columns:
        return mdata.obs[groupby].to_numpy()
    mod, _, column = groupby.partition(":")
    if column and mod in mdata.mod and column in mdata[mod].obs.columns:
        source = mdata[mod].obs[column]
    else:
        holders = [m for m in modalities if groupby in mdata[m].obs.columns]
        if not holders:
            columns = list(mdata.obs.columns) + [f"{m}:{c}" for m in modalities for c in mdata[m].obs.columns]
            raise ValueError(
                f"groupby {groupby!r} is not a column of mdata.obs nor of the obs of modalities {modalities}; "
                f"columns: {_preview([c for c in columns if not c.startswith('_')], 20)}."
            )
        source = mdata[holders[0]].obs[groupby]
    return source.reindex(mdata.obs_names).to_numpy()


def _check_cell_selection(idx, n_obs: int, name: str) -> None:
    """Reject an empty or out-of-range cell selection (a query string is checked by pandas)."""
    if idx is None or isinstance(idx, str):
        return
    array = np.asarray(idx).ravel()
    if array.dtype == bool:
        if array.shape[0] != n_obs:
            raise ValueError(f"{name} is a boolean mask of length {array.shape[0]}, but there are {n_obs} cells.")
        if not array.any():
            raise ValueError(f"{name} selects no cells.")
        return
    if array.size == 0:
        raise ValueError(f"{name} selects no cells.")
    if array.dtype.kind not in "iu" or array.min() < -n_obs or array.max() >= n_obs:
        raise ValueError(f"{name} must be a boolean mask or integer positions in [0, {n_obs}), got {idx!r}.")


@contextmanager
def _temporary_obs_column(mdata: MuData, key: str, values: np.ndarray) -> Iterator[None]:
    if key in mdata.obs.columns:
        raise RuntimeError(f"mdata.obs already has a column {key!r}; remove it.")
    mdata.obs[key] = values
    try:
        yield
    finally:
        if key in mdata.obs.columns:
            del mdata.obs[key]
