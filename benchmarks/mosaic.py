"""Mosaic integration: NETWORKVI next to scvi-tools' MULTIVI at paired fractions 1.0, 0.6 and 0.2.

Data: the tutorial CITE-seq set (RNA + protein) and the tutorial multiome set (RNA + ATAC), 5000 bone-marrow cells
each (``get_tutorial_data.sh``; read through ``nvi.datasets``). For a paired fraction ``f`` a seeded random ``f`` of
the cells keep both modalities; the rest are split in two halves, one keeping only its RNA and one keeping only its
protein / ATAC profile (as in the NetworkVI and MultiVI papers). NETWORKVI gets a MuData whose modalities hold only
the cells measured there; MULTIVI gets the same cells with the missing rows as zeros (its own convention).

Models, same cells and epoch budget, batch key ``Site``, learning rate 4e-3 for all (``--lr``; NETWORKVI's and
TOTALVI's default; MULTIVI's own 1e-4 is meant for its 500-epoch budget and left it far from trained at tens of
epochs: CITE-seq + multiome mosaic, 30 epochs, label transfer 0.30 at 1e-4 vs 0.71 at 4e-3):
``networkvi`` (GO encoder, tutorial settings: go-basic, the tutorial GAF and interaction table, ``gene_size=5,
go_size=2``; ``--go-settings default``: the package's default GO and annotations, the full ones of the species, and
its node sizes, with the tutorial's interaction table, as the mosaic ablation's ``annotations-default+sizes-default``),
``networkvi-dense`` (``encoder="dense"``) and ``multivi`` (``scvi.model.MULTIVI`` defaults).

Metrics on the joint latent (posterior means of all cells), labels ``cell_type``:

- ``knn_cv``: 3-fold cross-validated kNN-15 cell-type accuracy over all cells (bio conservation);
- ``silhouette_label``: silhouette of the cell types, rescaled to ``(s + 1) / 2`` as scib does (bio conservation);
- ``transfer_<group>``: accuracy and macro-F1 of a kNN-15 classifier trained on the paired cells and applied to the
  RNA-only and the protein/ATAC-only cells (only labels that the paired cells have): can a cell seen through one
  modality be placed next to fully measured cells of its type;
- ``mixing``: modality-group mixing. For each cell, the fraction of its 15 nearest neighbours from another group
  (paired, RNA-only, other-only) divided by that fraction expected under random mixing; averaged over cells.
  1 = the groups are as mixed as the data allow, 0 = each group on its own.

``--cross``: the other mosaic, two datasets that share only RNA (the tutorial's mosaic): ``--n-cells`` (default
2000) random CITE-seq cells (RNA + protein) and as many multiome cells (RNA + ATAC) on their shared genes, batch key
= dataset of origin (as in the NetworkVI and MULTIVI mosaic tutorials); MULTIVI gets all three modalities padded
with zeros. Metrics: ``knn_cv`` and ``silhouette_label`` as above, ``mixing`` of the two datasets, and
``transfer_cross_acc`` / ``transfer_cross_f1``: a kNN-15 classifier trained on the CITE-seq cells predicts the
multiome cells' types, on the labels both datasets use. Written to ``results/mosaic_cross.csv``.

Rows are appended to a CSV as runs finish (``--out``; runs already there are skipped, so a long run can be done in
pieces); ``--summarize`` prints mean and sd over seeds and writes a markdown table next to the CSV.

    python benchmarks/mosaic.py [--datasets cite multiome] [--fractions 1.0 0.6 0.2] [--models ...]
                                [--seeds 0] [--epochs 50] [--n-cells N] [--threads N] [--out CSV]
    python benchmarks/mosaic.py --cross [--models ...] [--seeds 0] [--epochs 50] [--n-cells 2000]
    python benchmarks/mosaic.py --summarize [--cross] [--out CSV]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger("benchmarks.mosaic")
OUT = Path(__file__).parent / "results" / "mosaic.csv"
OUT_CROSS = Path(__file__).parent / "results" / "mosaic_cross.csv"
OTHER = {"cite": "prot", "multiome": "atac"}
MODELS = ("networkvi", "networkvi-dense", "multivi")
KEYS = ["dataset", "fraction", "model", "seed", "epochs"]


def load_paired(dataset: str, n_cells: int | None, seed: int):
    """The tutorial MuData (``rna`` + ``prot`` or ``atac``), optionally a seeded random subset of cells."""
    import scvi_networkvi as nvi

    mdata = nvi.datasets.tutorial_cite() if dataset == "cite" else nvi.datasets.tutorial_multiome()
    if n_cells and n_cells < mdata.n_obs:
        rng = np.random.default_rng(seed)
        mdata = mdata[np.sort(rng.choice(mdata.n_obs, n_cells, replace=False))].copy()
    return mdata


def split_groups(n_obs: int, fraction: float, seed: int) -> np.ndarray:
    """Per cell ``"paired"``, ``"rna"`` (RNA only) or ``"other"`` (protein / ATAC only), seeded."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_obs)
    n_paired = round(fraction * n_obs)
    groups = np.full(n_obs, "paired", dtype=object)
    unpaired = order[n_paired:]
    groups[unpaired[: len(unpaired) // 2]] = "rna"
    groups[unpaired[len(unpaired) // 2 :]] = "other"
    return groups


def mosaic_mudata(mdata, other: str, groups: np.ndarray):
    """A MuData whose ``rna`` holds the paired and RNA-only cells and ``other`` the paired and other-only cells."""
    import mudata as md

    obs = mdata.obs[["cell_type", "Site"]].copy()
    obs["group"] = groups
    rna = mdata["rna"][groups != "other"].copy()
    oth = mdata[other][groups != "rna"].copy()
    mosaic = md.MuData({"rna": rna, other: oth})
    mosaic = mosaic[obs.index].copy()  # global cell order as in the paired data
    for column in obs:
        mosaic.obs[column] = obs[column].to_numpy()
    return mosaic


def padded_mudata(mdata, other: str, groups: np.ndarray):
    """All cells in both modalities, the missing rows set to zero (MULTIVI's convention for a missing modality)."""
    import scipy.sparse as sp

    padded = mdata.copy()
    for name, absent in (("rna", groups == "other"), (other, groups == "rna")):
        x = sp.csr_matrix(padded[name].X, dtype=np.float32)
        x = sp.diags((~absent).astype(np.float32)) @ x
        x.eliminate_zeros()
        padded[name].X = x
    padded.obs["group"] = groups
    return padded


def train_networkvi(
    name: str, mosaic, batch_key: str, epochs: int, train_kwargs: dict, model_kwargs: dict | None = None
):
    """NETWORKVI with the tutorial settings (GO or dense encoder by ``name``) trained on a mosaic MuData.

    ``model_kwargs`` are added to (and override) the tutorial's ``gene_size=5, go_size=2`` (the ablations' changes);
    its ``go`` / ``annotations`` / ``interactions`` entries replace the tutorial's resources (``None``: the package's
    default, e.g. the species' full annotations).
    """
    import scvi_networkvi as nvi

    model_kwargs = dict(model_kwargs or {})
    resources = {"go": "go-basic", "annotations": "ensembl2go-tutorial", "interactions": "k562-contact-domains"}
    resources.update({key: model_kwargs.pop(key) for key in list(resources) if key in model_kwargs})
    return nvi.tl.train(
        mosaic,
        batch_key=batch_key,
        **resources,
        encoder="dense" if name == "networkvi-dense" else "go",
        max_epochs=epochs,
        model_kwargs={"gene_size": 5, "go_size": 2, **model_kwargs},
        train_kwargs=train_kwargs,
    )


def default_go_settings() -> dict:
    """``--go-settings default``: the package's GO, annotations and node sizes over the tutorial's (``train_networkvi``)."""
    from scvi_networkvi.wiring import WiringConfig

    sizes = WiringConfig()
    return {"go": None, "annotations": None, "gene_size": sizes.gene_size, "go_size": sizes.term_size}


def train_model(name: str, dataset: str, mdata, groups: np.ndarray, args: argparse.Namespace):
    """Train one model on the mosaic built from ``mdata``; the joint latent of all cells and the training time."""
    import scvi

    other = OTHER[dataset]
    train_kwargs = {"accelerator": args.accelerator, "enable_progress_bar": False}
    if args.lr is not None:
        train_kwargs["lr"] = args.lr
    start = time.perf_counter()
    if name.startswith("networkvi"):
        mosaic = mosaic_mudata(mdata, other, groups)
        go_settings = default_go_settings() if args.go_settings == "default" and name == "networkvi" else None
        model = train_networkvi(name, mosaic, "Site", args.epochs, train_kwargs, go_settings)
        latent = model.get_latent_representation()
        order = mosaic.obs_names
    else:
        padded = padded_mudata(mdata, other, groups)
        layer_key = "protein_layer" if other == "prot" else "atac_layer"
        scvi.model.MULTIVI.setup_mudata(
            padded, batch_key="Site", modalities={"rna_layer": "rna", layer_key: other, "batch_key": "rna"}
        )
        model = scvi.model.MULTIVI(padded)
        model.train(max_epochs=args.epochs, early_stopping=False, **train_kwargs)
        latent = model.get_latent_representation()
        order = padded.obs_names
    seconds = time.perf_counter() - start
    latent = pd.DataFrame(latent, index=order).loc[mdata.obs_names].to_numpy()
    return latent, seconds


def _machine(accelerator: str) -> str:
    """The CPU architecture, or the GPU's name where the models trained on one."""
    if accelerator == "gpu":
        import torch

        return f"cuda {torch.cuda.get_device_name(0)}"
    return platform.machine()


def mixing_score(latent: np.ndarray, groups: np.ndarray, k: int = 15) -> float:
    """Mean over cells of (fraction of k neighbours from another group) / (that fraction under random mixing)."""
    from sklearn.neighbors import NearestNeighbors

    if len(set(groups)) < 2:
        return float("nan")
    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(latent).kneighbors(latent, return_distance=False)[:, 1:]
    observed = (groups[neighbours] != groups[:, None]).mean(1)
    sizes = pd.Series(groups).value_counts()
    expected = 1.0 - (sizes.loc[groups].to_numpy() - 1) / (len(groups) - 1)
    return float(np.mean(observed / expected))


def knn_cv_accuracy(latent: np.ndarray, labels: np.ndarray) -> float:
    """3-fold stratified cross-validated kNN-15 cell-type accuracy (labels with fewer than 3 cells left out)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    counts = pd.Series(labels).value_counts()
    frequent = np.isin(labels, counts.index[counts >= 3])  # stratified 3-fold CV needs 3 cells per label
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    return float(cross_val_score(KNeighborsClassifier(15), latent[frequent], labels[frequent], cv=folds).mean())


def evaluate(latent: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Bio conservation, paired-to-unpaired label transfer and group mixing (see the module docstring)."""
    from sklearn.metrics import f1_score, silhouette_score
    from sklearn.neighbors import KNeighborsClassifier

    result = {
        "knn_cv": knn_cv_accuracy(latent, labels),
        "silhouette_label": float((silhouette_score(latent, labels) + 1) / 2),
        "mixing": mixing_score(latent, groups),
    }
    paired = groups == "paired"
    for group in ("rna", "other"):
        target = (groups == group) & np.isin(labels, np.unique(labels[paired]))
        if target.sum() == 0 or paired.sum() < 15:
            result[f"transfer_{group}_acc"] = result[f"transfer_{group}_f1"] = float("nan")
            continue
        predicted = KNeighborsClassifier(15).fit(latent[paired], labels[paired]).predict(latent[target])
        result[f"transfer_{group}_acc"] = float(np.mean(predicted == labels[target]))
        result[f"transfer_{group}_f1"] = float(f1_score(labels[target], predicted, average="macro"))
    return result


def run(args: argparse.Namespace) -> None:
    """Every (dataset, fraction, model, seed) not yet in the CSV: train, evaluate, append a row."""
    import scvi
    import torch

    done = set()
    if args.out.is_file():
        previous = pd.read_csv(args.out)
        done = set(previous[KEYS].astype(str).agg("|".join, axis=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    scvi.settings.verbosity = logging.WARNING
    for dataset in args.datasets:
        mdata = load_paired(dataset, args.n_cells, seed=0)
        labels = mdata.obs["cell_type"].astype(str).to_numpy()
        for fraction in args.fractions:
            for seed in args.seeds:
                groups = split_groups(mdata.n_obs, fraction, seed)
                for name in args.models:
                    key = "|".join(map(str, (dataset, fraction, name, seed, args.epochs)))
                    if key in done:
                        logger.info("skip %s (already in %s)", key, args.out)
                        continue
                    logger.info("%s: paired fraction %.1f, %s, seed %d ...", dataset, fraction, name, seed)
                    scvi.settings.seed = seed
                    latent, seconds = train_model(name, dataset, mdata, groups, args)
                    row = dict(zip(KEYS, (dataset, fraction, name, seed, args.epochs), strict=True))
                    row.update(n_cells=mdata.n_obs, train_s=round(seconds, 1), **evaluate(latent, labels, groups))
                    row.update(threads=torch.get_num_threads(), machine=_machine(args.accelerator), cpus=os.cpu_count())
                    frame = pd.DataFrame([row])
                    frame.to_csv(args.out, mode="a", header=not args.out.is_file(), index=False)
                    logger.info("%s", frame.drop(columns=["machine", "cpus"]).round(3).to_string(index=False))


def cross_mosaic(n_cells: int, seed: int = 0):
    """CITE-seq and multiome cells on their shared genes: the MuData with absent cells, the zero-padded one, labels."""
    import anndata
    import mudata as md
    import scipy.sparse as sp

    import scvi_networkvi as nvi

    rng = np.random.default_rng(seed)
    cite, multiome = nvi.datasets.tutorial_cite(), nvi.datasets.tutorial_multiome()
    cite = cite[np.sort(rng.choice(cite.n_obs, min(n_cells, cite.n_obs), replace=False))].copy()
    multiome = multiome[np.sort(rng.choice(multiome.n_obs, min(n_cells, multiome.n_obs), replace=False))].copy()
    shared = cite["rna"].var_names.intersection(multiome["rna"].var_names)
    rna = anndata.concat([cite["rna"][:, shared], multiome["rna"][:, shared]], index_unique="-")
    rna.var = cite["rna"].var.loc[shared].copy()
    prot, atac = cite["prot"].copy(), multiome["atac"].copy()
    prot.obs_names, atac.obs_names = prot.obs_names + "-0", atac.obs_names + "-1"
    dataset = np.where(rna.obs_names.str.endswith("-0"), "CITE-seq", "multiome")
    labels = rna.obs["cell_type"].astype(str).to_numpy()
    mosaic = md.MuData({"rna": rna.copy(), "prot": prot, "atac": atac})
    mosaic = mosaic[rna.obs_names].copy()
    mosaic.obs["dataset"], mosaic.obs["cell_type"] = dataset, labels

    def pad(adata):
        rows = rna.obs_names.get_indexer(adata.obs_names)
        place = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, np.arange(len(rows)))), (rna.n_obs, len(rows)))
        return anndata.AnnData(place @ sp.csr_matrix(adata.X, dtype=np.float32), obs=rna.obs[[]], var=adata.var)

    padded = md.MuData({"rna": rna.copy(), "prot": pad(prot), "atac": pad(atac)})
    padded.obs["dataset"], padded.obs["cell_type"] = dataset, labels
    return mosaic, padded, labels, dataset


def evaluate_cross(latent: np.ndarray, labels: np.ndarray, dataset: np.ndarray) -> dict[str, float]:
    """The cross mosaic's metrics: ``knn_cv``, ``silhouette_label``, dataset ``mixing``, ``transfer_cross_*``."""
    from sklearn.metrics import f1_score
    from sklearn.neighbors import KNeighborsClassifier

    row = evaluate(latent, labels, np.where(dataset == "CITE-seq", "paired", "rna"))
    for column in ("transfer_rna_acc", "transfer_rna_f1", "transfer_other_acc", "transfer_other_f1"):
        row.pop(column)
    source = dataset == "CITE-seq"
    common = np.isin(labels, np.intersect1d(labels[source], labels[~source]))
    classifier = KNeighborsClassifier(15).fit(latent[source & common], labels[source & common])
    predicted = classifier.predict(latent[~source & common])
    row["transfer_cross_acc"] = float(np.mean(predicted == labels[~source & common]))
    row["transfer_cross_f1"] = float(f1_score(labels[~source & common], predicted, average="macro"))
    return row


def run_cross(args: argparse.Namespace) -> None:
    """The CITE-seq + multiome mosaic for each model and seed not yet in the CSV: train, evaluate, append a row."""
    import scvi
    import torch

    keys = ["model", "seed", "epochs", "n_cells"]
    done = set()
    if args.out.is_file():
        done = set(pd.read_csv(args.out)[keys].astype(str).agg("|".join, axis=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    n_cells = args.n_cells or 2000
    train_kwargs = {"accelerator": args.accelerator, "enable_progress_bar": False}
    if args.lr is not None:
        train_kwargs["lr"] = args.lr
    for seed in args.seeds:
        for name in args.models:
            key = "|".join(map(str, (name, seed, args.epochs, n_cells)))
            if key in done:
                logger.info("skip %s (already in %s)", key, args.out)
                continue
            mosaic, padded, labels, dataset = cross_mosaic(n_cells)
            logger.info("CITE-seq + multiome mosaic (%d cells), %s, seed %d ...", mosaic.n_obs, name, seed)
            scvi.settings.seed = seed
            start = time.perf_counter()
            if name.startswith("networkvi"):
                model = train_networkvi(name, mosaic, "dataset", args.epochs, train_kwargs)
            else:
                scvi.model.MULTIVI.setup_mudata(
                    padded,
                    batch_key="dataset",
                    modalities={"rna_layer": "rna", "protein_layer": "prot", "atac_layer": "atac"},
                )
                model = scvi.model.MULTIVI(padded)
                model.train(max_epochs=args.epochs, early_stopping=False, **train_kwargs)
            seconds = time.perf_counter() - start
            latent = model.get_latent_representation()
            row = {"model": name, "seed": seed, "epochs": args.epochs, "n_cells": n_cells, "train_s": round(seconds, 1)}
            row.update(evaluate_cross(latent, labels, dataset))
            row.update(threads=torch.get_num_threads(), machine=_machine(args.accelerator), cpus=os.cpu_count())
            frame = pd.DataFrame([row])
            frame.to_csv(args.out, mode="a", header=not args.out.is_file(), index=False)
            logger.info("%s", frame.drop(columns=["machine", "cpus"]).round(3).to_string(index=False))


def summarize_cross(path: Path) -> pd.DataFrame:
    """Mean and sd over seeds per model for the CITE-seq + multiome mosaic; printed and written as ``.md``."""
    frame = pd.read_csv(path)
    metrics = ["transfer_cross_acc", "transfer_cross_f1", "knn_cv", "silhouette_label", "mixing", "train_s"]
    grouped = frame.groupby(["n_cells", "epochs", "model"])
    mean, sd = grouped[metrics].mean(), grouped[metrics].std()
    table = mean.copy().astype(object)
    for column in metrics:
        table[column] = [
            f"{m:.3f}" if np.isnan(s) else f"{m:.3f} ± {s:.3f}" for m, s in zip(mean[column], sd[column], strict=True)
        ]
    table["seeds"] = grouped.size()
    table = table.reset_index()
    logger.info("\n%s", table.to_string(index=False))
    path.with_suffix(".md").write_text(table.to_markdown(index=False) + "\n")
    return table


def summarize(path: Path) -> pd.DataFrame:
    """Mean and sd over seeds per dataset, fraction and model; printed and written as ``<csv stem>.md``."""
    frame = pd.read_csv(path)
    metrics = ["knn_cv", "silhouette_label", "transfer_rna_acc", "transfer_other_acc", "transfer_other_f1", "mixing"]
    grouped = frame.groupby(["dataset", "fraction", "model"])
    mean, sd = grouped[metrics + ["train_s"]].mean(), grouped[metrics + ["train_s"]].std()
    table = mean.copy().astype(object)
    for column in mean:
        table[column] = [
            "-" if np.isnan(m) else (f"{m:.3f}" if np.isnan(s) else f"{m:.3f} ± {s:.3f}")
            for m, s in zip(mean[column], sd[column], strict=True)
        ]
    table["seeds"] = grouped.size()
    table = table.reset_index().sort_values(["dataset", "fraction", "model"], ascending=[True, False, True])
    logger.info("\n%s", table.to_string(index=False))
    path.with_suffix(".md").write_text(table.to_markdown(index=False) + "\n")
    return table


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(OTHER), default=["cite", "multiome"])
    parser.add_argument("--fractions", nargs="+", type=float, default=[1.0, 0.6, 0.2])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--lr", type=float, default=4e-3, help="learning rate of every model")
    parser.add_argument("--n-cells", type=int, default=None, help="random subset of cells (quick runs)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu", help="where the models train")
    parser.add_argument(
        "--go-settings",
        choices=("tutorial", "default"),
        default="tutorial",
        help="the GO encoder's resources and node sizes: the tutorial's or the package's defaults (fractions only)",
    )
    parser.add_argument("--cross", action="store_true", help="the CITE-seq + multiome mosaic instead of fractions")
    parser.add_argument("--out", type=Path, default=None, help="CSV (default results/mosaic.csv or mosaic_cross.csv)")
    parser.add_argument("--summarize", action="store_true", help="only summarise the CSV")
    args = parser.parse_args(argv)
    if args.cross and args.go_settings != "tutorial":
        parser.error(
            "--go-settings applies to the paired fractions; the cross mosaic's settings are mosaic_ablation.py's"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("scvi", "scvi_networkvi", "lightning", "lightning.pytorch", "lightning.fabric", "py.warnings"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("lightning.pytorch", "lightning.fabric"):  # Lightning adds its own handlers: no double lines
        logging.getLogger(name).propagate = False
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.out is None:
        args.out = OUT_CROSS if args.cross else OUT
    if not args.summarize:
        logger.info("Python %s on %s, %d CPUs", sys.version.split()[0], platform.machine(), os.cpu_count())
        (run_cross if args.cross else run)(args)
    (summarize_cross if args.cross else summarize)(args.out)


if __name__ == "__main__":
    main()
