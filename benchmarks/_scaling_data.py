"""The cell sets of ``scaling.py``: the tutorial's training cells resampled with Poisson noise, written as ``.h5mu``."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

logger = logging.getLogger("benchmarks.scaling")


def load_training_cells(data_dir: Path):
    """The tutorial CITE-seq MuData without site1 (the tutorial's query site).

    Parameters
    ----------
    data_dir
        Folder with ``cite_bmmc_5k.h5ad``.

    Returns
    -------
    MuData with ``rna`` (CSR counts) and ``prot`` (dense counts), obs ``cell_type`` and ``Site``.
    """
    import anndata

    try:
        from scvi_networkvi.datasets import cite_to_mudata
    except ImportError:  # not re-exported in every version
        from scvi_networkvi.datasets._tutorial import cite_to_mudata

    mdata = cite_to_mudata(anndata.read_h5ad(data_dir / "cite_bmmc_5k.h5ad"))
    return mdata[(mdata.obs["Site"] != "site1").to_numpy()].copy()


def make_dataset(source, n_cells: int, seed: int, *, noise: bool, replace: bool):
    """Draw ``n_cells`` cells of ``source``; optionally add count noise that keeps the mean and the zero pattern.

    Parameters
    ----------
    source
        MuData with ``rna`` (CSR counts) and ``prot`` (dense counts).
    n_cells
        Cells in the result.
    seed
        Seed; the generator is ``numpy.random.default_rng([seed, n_cells])``.
    noise
        Replace every non-zero count ``x`` by ``1 + Poisson(x - 1)`` (same mean, same zero pattern, integers).
    replace
        Draw with replacement (needed when ``n_cells`` exceeds the source).

    Returns
    -------
    MuData with modalities ``rna`` and ``prot`` and obs ``cell_type``, ``Site``; cells named ``c0``, ``c1``, ...
    """
    import anndata
    import mudata
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng([seed, n_cells])
    index = rng.choice(source.n_obs, size=n_cells, replace=replace)
    if not replace:
        index = np.sort(index)
    obs = source.obs[["cell_type", "Site"]].iloc[index].copy()
    for column in obs:  # categories of cells not drawn (site1) would count as batches
        obs[column] = obs[column].astype(str).astype("category")
    obs.index = [f"c{i}" for i in range(n_cells)]
    rna = sp.csr_matrix(source["rna"].X)[index]
    prot = np.asarray(source["prot"].X)[index]
    if noise:
        rna.data = _shifted_poisson(rng, rna.data)
        prot = _shifted_poisson(rng, prot)
    rna = sp.csr_matrix(rna, dtype=np.float32)
    mods = {
        "rna": anndata.AnnData(X=rna, obs=obs.copy(), var=source["rna"].var.copy()),
        "prot": anndata.AnnData(X=np.ascontiguousarray(prot, dtype=np.float32), obs=obs.copy(), var=source["prot"].var),
    }
    mdata = mudata.MuData(mods)
    mdata.obs = obs.copy()
    return mdata


def _shifted_poisson(rng, counts):
    """``1 + Poisson(x - 1)`` for every non-zero count ``x``, zeros kept; float32 like the source."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    out = np.zeros_like(counts)
    nonzero = counts > 0
    out[nonzero] = 1.0 + rng.poisson(counts[nonzero] - 1.0)
    return out.astype(np.float32)


def ensure_dataset(path: Path, source_fn, n_cells: int, seed: int, *, noise: bool, replace: bool) -> Path:
    """Write the data set of :func:`make_dataset` to ``path`` unless it is there.

    Parameters
    ----------
    path
        ``.h5mu`` file.
    source_fn
        Callable returning the source MuData (called only when the file has to be made).
    n_cells, seed, noise, replace
        See :func:`make_dataset`.

    Returns
    -------
    ``path``.
    """
    if path.is_file():
        return path
    start = time.perf_counter()
    mdata = make_dataset(source_fn(), n_cells, seed, noise=noise, replace=replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.part")
    mdata.write(tmp)
    tmp.replace(path)
    logger.info(
        "Wrote %s: %d cells, %d RNA non-zeros (%.0f per cell), %.1f s",
        path.name,
        mdata.n_obs,
        mdata["rna"].X.nnz,
        mdata["rna"].X.nnz / mdata.n_obs,
        time.perf_counter() - start,
    )
    return path
