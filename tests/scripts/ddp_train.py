"""Train NETWORKVI with Lightning DDP on 2 CPU processes (run by tests/test_ddp.py in a subprocess).

Usage: python ddp_train.py OUT.npy
"""

import json
import os
import sys

import numpy as np
import scvi

import scvi_networkvi as nvi


def main(out: str) -> None:
    scvi.settings.seed = 0
    mdata = nvi.datasets.example()[:400].copy()
    modalities = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=modalities)
    resources = nvi.datasets.example_resources()
    model = nvi.NETWORKVI(mdata, go=resources["go"], annotations=resources["annotations"], gene_size=5, go_size=2)
    model.train(
        max_epochs=2,
        accelerator="cpu",
        devices=2,
        strategy="ddp_find_unused_parameters_true",
        enable_progress_bar=False,
        early_stopping=False,
    )
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        np.save(out, model.get_latent_representation())
        with open(out + ".json", "w") as fh:
            json.dump({"world_size": model.trainer.world_size, "epochs": len(model.history["elbo_train"])}, fh)


if __name__ == "__main__":
    main(sys.argv[1])
