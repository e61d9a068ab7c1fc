"""Per-cell outputs of NETWORKVI: latents, RNA expression, protein foreground, accessibility, region and size factors.

:class:`NetworkVIOutputsMixin` is the one class the model inherits for them; it brings the differential tests
(``_differential``) and the shared decoding helpers (``_decoding``) with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from mudata import MuData
from scvi import REGISTRY_KEYS

from ._decoding import BatchSpec, Indices, _is_real
from ._differential import NetworkVIDifferentialMixin

#: Cells per minibatch of :meth:`NetworkVIOutputsMixin.get_latent_representation` (and so ``nvi.tl.embed``) when the
#: caller passes none. The GO encoder's kernels loop over the minibatch's cells once per output row and input chunk:
#: 128-cell minibatches (scvi-tools' default) cost more loop set-up per cell; 256 took the latent of the package
#: defaults (4000 genes, 5000 cells, one CPU thread) from 0.65 to 0.49 s, 512 gave no further gain. The gene-node
#: activations of a 256-cell minibatch take 16 MiB at 4000 genes, 64 MiB at 16000. The latent is the same as with
#: 128 (each cell is computed on its own; bitwise on the measured CPU, tested within float32 rounding).
INFERENCE_BATCH_SIZE = 256


class NetworkVIOutputsMixin(NetworkVIDifferentialMixin):
    """Outputs of NETWORKVI.

    The joint or one modality's latent (:meth:`get_latent_representation`), the decoded RNA expression
    (:meth:`get_normalized_expression`); methods for models with proteins (:meth:`get_protein_foreground_probability`), with ATAC
    (:meth:`get_accessibility_estimates`, :meth:`get_region_factors`, :meth:`differential_accessibility`), with RNA
    (:meth:`differential_expression`), and the library size factors of RNA and ATAC
    (:meth:`get_library_size_factors`).
    """

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        give_mean: bool = True,
        mc_samples: int = 5000,
        batch_size: int | None = None,
        return_dist: bool = False,
        dataloader=None,
        modality: str = "joint",
    ) -> np.ndarray:
        """Joint latent (``modality="joint"``) or one modality's posterior mean (by role or modality name).

        ``batch_size``: cells per minibatch; ``None``: :data:`INFERENCE_BATCH_SIZE` (256), not
        ``scvi.settings.batch_size``. Other arguments as scvi-tools' ``get_latent_representation``.
        """
        batch_size = INFERENCE_BATCH_SIZE if batch_size is None else batch_size
        if modality == "joint":
            return super().get_latent_representation(
                adata=adata,
                indices=indices,
                give_mean=give_mean,
                mc_samples=mc_samples,
                batch_size=batch_size,
                return_dist=return_dist,
            )
        role = self.role_of(modality)
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        means = []
        for tensors in loader:
            outputs = self.module.inference(**self.module._get_inference_input(tensors))
            means.append(outputs[f"qz_m_{role}"].cpu())
        return torch.cat(means).numpy()

    @torch.inference_mode()
    def get_normalized_expression(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        gene_list: Sequence[str] | None = None,
        transform_batch: str | int | None = None,
        library_size: float | Literal["latent"] = 1.0,
        batch_size: int | None = None,
        return_numpy: bool = False,
    ) -> pd.DataFrame | np.ndarray:
        """Decoded RNA expression (``px_scale`` x ``library_size``), cells x genes, from the posterior mean.

        ``transform_batch`` changes only the decoder's batch (the encoder sees each cell's own batch).
        """
        rna = self._modality("rna")
        adata = self._validate_anndata(adata)
        batch_code = self._batch_code(transform_batch)
        genes = np.asarray(rna.var_names)
        columns = np.arange(len(genes)) if gene_list is None else _positions(genes, gene_list, "gene_list")
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        out = []
        for tensors in loader:
            inference = self.module.inference(**self.module._get_inference_input(tensors))
            gen_input = self.module._get_generative_input(tensors, inference, transform_batch=batch_code)
            gen = self.module.generative(**gen_input, use_z_mean=True)
            values = gen["px_rate"] if library_size == "latent" else gen["px_scale"] * library_size
            out.append(values[:, columns].cpu())
        result = torch.cat(out).numpy()
        if return_numpy:
            return result
        obs_names = adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]
        return pd.DataFrame(result, index=obs_names, columns=genes[columns])

    def _batch_code(self, transform_batch: str | int | None) -> int | None:
        if transform_batch is None:
            return None
        categories = list(self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping)
        if transform_batch not in categories:
            raise ValueError(f"transform_batch {transform_batch!r} is not a registered batch; batches: {categories}.")
        return categories.index(transform_batch)

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


# ---- module helpers ------------------------------------------------------------------------------------------------
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
