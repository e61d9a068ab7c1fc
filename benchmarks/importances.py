"""GO-node importances on the tutorial CITE-seq model: time after the activation pass, against scikit-learn.

Data and model: the tutorial CITE-seq set (``cite_bmmc_5k.h5ad``), site1 held out as in the tutorial (4129 cells of
sites 2-4), NETWORKVI with the tutorial settings (go-basic, the tutorial GAF and interaction table, ``gene_size=5,
go_size=2, gene_layer="interaction", encode_covariates=True``), trained for ``--epochs`` epochs (the timing does not
depend on how well it is trained).

Measured in one process:

- the activation pass (one inference pass over all cells, every GO node of both modalities captured);
- the probes: all GO nodes x all 44 cell types, one-vs-rest, held-out AUROC with DeLong intervals and BH q-values
  (``get_importances`` minus the activation pass) - target <= 10 s on 2 cores;
- reference 1, the original's method: one scikit-learn ``LogisticRegressionCV`` (liblinear, 3 C values, 3 folds,
  balanced classes, 20 iterations) per node and cell type, fitted sequentially on the same fitting cells; timed on a
  seeded sample of ``--sample`` (node, cell type) pairs and extrapolated to all pairs;
- reference 2: one scikit-learn ``LogisticRegression`` (lbfgs, the same objective as the batched probes) per pair,
  sampled and extrapolated the same way.

    python benchmarks/importances.py [--epochs 3] [--sample 300] [--threads N] [--data-dir DIR]
        [--go OBO --annotations GAF] [--depth L] [--device cuda]

``--go`` / ``--annotations``: another GO release and GAF, e.g. the full human GO of ``get_human_go.sh``
(``~/.cache/nvi-human-go/go-2022-07-01.obo`` and ``ensembl2go-human-2022.gaf``), for the timing with thousands of
GO nodes instead of the tutorial's few dozen; ``--depth``: GO depth ``L`` (``n_layers_encoder``, the tutorial's 2).
``--device cuda``: train and run the activation pass on the GPU and fit the probes there (``get_importances(...,
device="cuda")``); the probe step is then also timed on the CPU in the same run, and the ratio and the largest
AUROC difference between the two tables are printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

logger = logging.getLogger("benchmarks.importances")
DATA = Path.home() / ".cache" / "nvi-tutorial-data"


def tutorial_model(
    data_dir: Path,
    epochs: int,
    go: Path | None = None,
    annotations: Path | None = None,
    depth: int = 2,
    accelerator: str = "cpu",
):
    import anndata
    import scvi

    import scvi_networkvi as nvi
    from scvi_networkvi.datasets._tutorial import cite_to_mudata

    mdata = cite_to_mudata(anndata.read_h5ad(data_dir / "cite_bmmc_5k.h5ad"))
    mdata = mdata[(mdata.obs["Site"] != "site1").to_numpy()].copy()
    mdata.obs["cell_type"] = mdata["rna"].obs["cell_type"].astype("category")
    scvi.settings.seed = 0
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities={"rna_layer": "rna", "protein_layer": "prot"})
    model = nvi.NETWORKVI(
        mdata,
        go=go or data_dir / "go-basic.obo",
        annotations=annotations or data_dir / "ensembl2go.gaf",
        interactions=data_dir / "gene_interactions.csv",
        gene_size=5,
        go_size=2,
        gene_layer="interaction",
        encode_covariates=True,
        n_layers_encoder=depth,
    )
    model.train(max_epochs=epochs, accelerator=accelerator, enable_progress_bar=False)
    return model, mdata


def sklearn_reference(design, activations, sample: int, seed: int) -> dict[str, float]:
    """Seconds per (node, phenotype) pair of sequential scikit-learn fits on a seeded sample of pairs."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    from scvi_networkvi.interpret._importances import modality_cells

    pairs = []
    for role in design.roles:
        acts = activations.modalities[role]
        cells = modality_cells(design, acts)
        table = design.nodes[role]
        for position in range(len(table.frame)):
            for j in range(cells.targets.n_phenotypes):
                pairs.append((acts, cells, table.columns[position], j))
    rng = np.random.default_rng(seed)
    chosen = [pairs[i] for i in rng.choice(len(pairs), size=min(sample, len(pairs)), replace=False)]
    timings = {}
    makers = {
        "LogisticRegressionCV (original)": lambda: LogisticRegressionCV(
            Cs=3, cv=3, solver="liblinear", class_weight="balanced", max_iter=20
        ),
        "LogisticRegression (same objective)": lambda: LogisticRegression(C=1.0, class_weight="balanced"),
    }
    for name, make in makers.items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings at max_iter=20, as in the original
            for acts, cells, columns, j in chosen:
                x = acts.terms[cells.fit_rows][:, columns]
                y = cells.targets.case_fit[j]
                member = y | cells.targets.control_fit[j]
                make().fit(x[member], y[member])
        timings[name] = (time.perf_counter() - start) / len(chosen)
    return {"pairs": len(pairs), "sampled": len(chosen), **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--sample", type=int, default=300, help="(node, cell type) pairs timed with scikit-learn")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--go", type=Path, default=None, help="OBO file (default: the tutorial's go-basic)")
    parser.add_argument("--annotations", type=Path, default=None, help="GAF (default: the tutorial's subsampled GAF)")
    parser.add_argument("--depth", type=int, default=2, help="GO depth (n_layers_encoder)")
    parser.add_argument("--device", default="cpu", help="where the model runs and the probes are fitted (cpu, cuda)")
    args = parser.parse_args()
    if (args.go is None) != (args.annotations is None):
        parser.error("--go and --annotations go together (a GAF is read against the GO release it was made for).")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from scvi_networkvi.interpret import ImportanceSettings, categorical_labels
    from scvi_networkvi.interpret._importances import design_probes, importance_table
    from scvi_networkvi.interpret._logistic import probe_device

    device = probe_device(args.device)  # fail on an unusable device before training
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    model, mdata = tutorial_model(args.data_dir, args.epochs, args.go, args.annotations, args.depth, accelerator)
    start = time.perf_counter()
    activations = model.get_activations(mdata)
    t_capture = time.perf_counter() - start

    def probe_step(on: torch.device):
        """design + probes (``get_importances`` minus the activation pass) on ``on``; table and seconds."""
        if on.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        design = design_probes(
            activations,
            categorical_labels(mdata, "cell_type"),
            ImportanceSettings(seed=0, device=on),
            feature_names={role: model.adata[acts.modality].var_names for role, acts in activations.modalities.items()},
        )
        table = importance_table(design, activations)
        if on.type == "cuda":
            torch.cuda.synchronize()
        return design, table, time.perf_counter() - start

    if device.type == "cuda":
        probe_step(device)  # warm-up: CUDA context, cuSOLVER / cuBLAS handles
    design, table, t_probes = probe_step(device)
    if device.type != "cpu":
        _, cpu_table, t_cpu = probe_step(torch.device("cpu"))
        logger.info(
            "probes on %s: %.2f s, on the CPU (%d threads): %.2f s, CPU / %s = %.2fx; largest AUROC difference %.1e",
            device,
            t_probes,
            torch.get_num_threads(),
            t_cpu,
            device,
            t_cpu / t_probes,
            float((table["auroc"] - cpu_table["auroc"]).abs().max()),
        )
    reference = sklearn_reference(design, activations, args.sample, seed=0)
    n_pairs = len(table)
    logger.info(
        "machine: %s, %s, %d CPUs, torch threads %d, python %s",
        platform.machine(),
        platform.processor() or platform.platform(),
        os.cpu_count(),
        torch.get_num_threads(),
        platform.python_version(),
    )
    logger.info(
        "GO: %s, annotations: %s, depth %d, GO terms %s",
        args.go or "tutorial go-basic",
        args.annotations or "tutorial GAF",
        args.depth,
        {role: int(w.n_terms) for role, w in model.wirings_.items()},
    )
    logger.info(
        "cells %d, GO nodes x phenotypes %d (table rows), phenotypes %d",
        mdata.n_obs,
        n_pairs,
        table["phenotype"].nunique(),
    )
    logger.info("activation pass: %.2f s", t_capture)
    logger.info("probes on %s (all GO nodes x all cell types, after the activation pass): %.2f s", device, t_probes)
    for name in ("LogisticRegressionCV (original)", "LogisticRegression (same objective)"):
        per_pair = reference[name]
        total = per_pair * reference["pairs"]
        logger.info(
            "scikit-learn %s, sequential: %.2f ms per pair (%d sampled) -> %.1f s for all %d pairs; speed-up %.1fx",
            name,
            1e3 * per_pair,
            reference["sampled"],
            total,
            reference["pairs"],
            total / t_probes,
        )
    go = table[table["kind"] == "go"]
    logger.info(
        "held-out AUROC: median %.3f; in-sample: median %.3f (the original reports in-sample)",
        go["auroc"].median(),
        go["auroc_fit"].median(),
    )


if __name__ == "__main__":
    main()
