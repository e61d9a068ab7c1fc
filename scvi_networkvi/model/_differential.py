"""Differential expression (RNA) and differential accessibility (ATAC) of NETWORKVI.

Both run scvi-tools' differential machinery (:func:`scvi.model.base._de_core._de_core` and
:class:`~scvi.model.base.DifferentialComputation`), the same that scVI, totalVI, PeakVI and MultiVI use, on values
decoded by the shared helpers of ``_decoding``. The mixin also relies on what
:class:`~scvi_networkvi.model.NETWORKVI` provides (``adata_manager``, ``get_anndata_manager``, ``_validate_anndata``,
``modality_name``, ``modality_roles``, ``_batch_code``, ``get_latent_representation``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Literal

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.model._utils import scatac_raw_counts_properties, scrna_raw_counts_properties
from scvi.model.base._de_core import _de_core
from scvi.utils import de_dsp

from scvi_networkvi.module import DATA_KEYS, MASK_KEY

from ._decoding import DecodingMixin, _is_real

#: Temporary ``mdata.obs`` column holding the groups of a DE/DA call whose ``groupby`` lives in a modality's obs.
_GROUPS_KEY = "_networkvi_de_groups"


class NetworkVIDifferentialMixin(DecodingMixin):
    """Differential expression of RNA (:meth:`differential_expression`) and accessibility of ATAC regions.

    :meth:`differential_accessibility` reports PeakVI's columns; both validate the request before any decoding.
    """

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
