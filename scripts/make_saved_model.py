"""Save a small NETWORKVI with the code checked out, for the test that later releases still load it.

The model: 240 cells of the embedded example (80 per site, the first of each site in order), the GO encoder with the
example's resources, default settings otherwise, 2 epochs on the CPU at seed 0. Written to ``OUT`` (default
``tests/data/saved_model_<version>/``): the scvi-tools save folder (no AnnData) and ``expected.npz`` with the cells'
names and the joint latent this code gives them, which ``tests/test_saved_models.py`` compares after loading.

    python scripts/make_saved_model.py [OUT]
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import mudata as md
import numpy as np
import scvi

import scvi_networkvi as nvi

CELLS_PER_SITE = 80
MODALITIES = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}


def subset() -> md.MuData:
    """The saved model's cells (the same selection in every release)."""
    full = nvi.datasets.example()
    sites = full["rna"].obs["Site"].astype(str).to_numpy()
    keep = np.sort(np.concatenate([np.flatnonzero(sites == s)[:CELLS_PER_SITE] for s in sorted(set(sites))]))
    mdata = md.MuData({mod: full[mod][keep].copy() for mod in full.mod})
    for mod in mdata.mod:
        mdata[mod].obs["Site"] = mdata[mod].obs["Site"].astype(str)
    return mdata


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(__file__).resolve().parents[1]
    out = (
        Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else root / "tests" / "data" / f"saved_model_{nvi.__version__}"
    )
    scvi.settings.seed = 0
    mdata = subset()
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MODALITIES)
    # the resources by their path relative to the checkout, so that the saved model names no folder of this machine
    res = {k: os.path.relpath(v, root) for k, v in nvi.datasets.example_resources().items()}
    os.chdir(root)
    model = nvi.NETWORKVI(mdata, go=res["go"], annotations=res["annotations"], interactions=res["interactions"])
    model.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False)
    if out.exists():
        shutil.rmtree(out)
    model.save(str(out), save_anndata=False)
    np.savez_compressed(
        out / "expected.npz",
        obs_names=np.asarray(mdata.obs_names, dtype=str),
        latent=model.get_latent_representation(),
        version=nvi.__version__,
    )
    logging.info("Saved %s (%s) to %s", type(model).__name__, nvi.__version__, out)


if __name__ == "__main__":
    main()
