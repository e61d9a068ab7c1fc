"""Integration quality with scib-metrics: NETWORKVI (GO and dense encoder) next to TOTALVI / MULTIVI on real data.

Data: the two NetworkVI tutorial datasets (NeurIPS 2021 bone marrow, 5000 cells each, fetched once through the
resource registry and cached): CITE-seq (``nvi.datasets.tutorial_cite()``: 4000 genes + 134 proteins) and Multiome
(``nvi.datasets.tutorial_multiome()``: 4000 genes + 20001 ATAC peaks). Labels ``cell_type``, batch ``Site`` (4
sites). All cells are used (``--n-cells N``: a seeded random subset of N cells, the same for every model and seed).

Models, each trained on the same cells for the same number of epochs (``--epochs``, early stopping off so that every
model gets the whole budget), one run per seed (``scvi.settings.seed``), each with its own defaults otherwise
(learning rate, batch size, KL warm-up, adversarial terms, train/validation split):

- ``networkvi``: NETWORKVI with the GO encoder, tutorial settings: ``nvi.tl.train(mdata, batch_key="Site",
  go="go-basic", annotations="ensembl2go-tutorial", interactions="k562-contact-domains",
  model_kwargs={"gene_size": 5, "go_size": 2})``;
- ``networkvi-dense``: the same call with ``encoder="dense"`` (scvi-tools encoders, no GO wiring);
- ``peer``: scvi-tools' TOTALVI (CITE-seq) or MULTIVI (Multiome; ``MULTIVI.setup_mudata`` with ``rna_layer`` /
  ``atac_layer`` modalities), defaults, except MULTIVI's learning rate: 4e-3 like TOTALVI and NETWORKVI
  (``--multivi-lr``). MULTIVI's own 1e-4 is meant for its 500-epoch budget with early stopping; at a shared budget of
  tens of epochs it leaves MULTIVI far from trained (CITE-seq + multiome mosaic, 30 epochs: CITE-seq -> multiome
  label transfer 0.30 at 1e-4, 0.71 at 4e-3), which would flatter NETWORKVI;
- ``pca``: the unintegrated reference, 50 principal components of the log-normalised RNA (``normalize_total`` to
  1e4, ``log1p``, all 4000 genes); it is also the pre-integration embedding of the PCR comparison for every model.

Metrics (scib-metrics ``Benchmarker``, embeddings = the models' joint latent posterior means of all cells): bio
conservation = isolated labels, Leiden NMI and ARI (resolution optimised), silhouette label, cLISI; batch correction
= BRAS (the batch-removal adapted silhouette that replaced silhouette batch in the Benchmarker in scib-metrics
0.5.6), iLISI, kBET per label, graph connectivity, PCR comparison; each class is the mean of its metrics, Total = 0.6
bio + 0.4 batch. The scores are NOT min-max scaled across embeddings (``get_results(min_max_scale=False)``; each run
is scored on its own), so numbers are comparable across runs, seeds and invocations. Also recorded per run: wall
time of setup + construction + training + latent (``fit_s``), of the training epochs (``train_s``; ``epoch_s``:
median epoch, validation included), epochs trained, the metrics' wall time (``metrics_s``; the first run of a
process also pays numba / jax compilation, about a minute), and the kNN-15 cell-type accuracy of the latent
(stratified 3-fold CV, context only).

Each finished run is appended to a CSV at once (default ``benchmarks/results/integration.csv``), so partial results
survive; runs already in the CSV (same dataset, model, seed, epochs and number of cells) are skipped, so the full
benchmark can be done in pieces. At the end (or with ``--summarize``, which trains nothing) the CSV is summarised:
mean ± sd across seeds per dataset x model, side by side, the ratio NETWORKVI / peer of the totals, and a markdown
table next to the CSV (``integration.md``).

    pip install -e ".[benchmark]"   # scib-metrics (pulls jax, CPU build)
    python benchmarks/integration.py [--epochs 100] [--seeds 0 1 2] [--datasets cite multiome]
        [--models networkvi networkvi-dense peer pca] [--n-cells N] [--threads 1] [--out CSV]
    python benchmarks/integration.py --summarize [--out CSV]

Training on a GPU machine, scoring here: ``--accelerator cuda --latents-dir DIR --train-only`` trains each run on the
GPU and writes its latent, epoch times and device to ``DIR/<dataset>_<model>_s<seed>_e<epochs>_<n_cells>.npz``
(scib-metrics is not needed there); ``--latents-dir DIR`` without ``--train-only`` then scores every run whose latent
is in DIR instead of training it (the CSV row's ``threads`` says ``cuda`` and its ``versions`` the GPU).

Threads: ``--threads`` (default 1) sets torch, scvi-tools, BLAS/OpenMP and XLA (jax) threads.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import platform
import statistics
import time
import warnings
from datetime import datetime
from pathlib import Path

from _bench_env import _quiet, set_threads, versions, xla_flags  # noqa: F401  (re-exported for sibling scripts)
from _integration_scoring import BATCH, BATCH_KEY, BIO, LABEL_KEY, SCORES, knn_accuracy, scib_scores

logger = logging.getLogger("benchmarks.integration")
RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ("cite", "multiome")
MODELS = ("networkvi", "networkvi-dense", "peer", "pca")
PEERS = {"cite": "TOTALVI", "multiome": "MULTIVI"}
MULTIVI_LR = 4e-3  # set from --multivi-lr
MODALITIES = {
    "cite": {"rna_layer": "rna", "protein_layer": "prot"},
    "multiome": {"rna_layer": "rna", "atac_layer": "atac"},
}
NETWORKVI_SETTINGS = {
    "go": "go-basic",
    "annotations": "ensembl2go-tutorial",
    "interactions": "k562-contact-domains",
    "model_kwargs": {"gene_size": 5, "go_size": 2},
}
KEY = ("dataset", "model", "seed", "epochs", "n_cells", "early_stopping")
COLUMNS = (
    *KEY,
    "epochs_trained",
    "fit_s",
    "train_s",
    "epoch_s",
    "metrics_s",
    "knn15_accuracy",
    "latent_dim",
    *BIO,
    *BATCH,
    *SCORES,
    "threads",
    "versions",
    "finished",
)


def model_label(dataset: str, model: str) -> str:
    """The name a run carries in the CSV: NETWORKVI, NETWORKVI-dense, TOTALVI / MULTIVI, PCA."""
    return {"networkvi": "NETWORKVI", "networkvi-dense": "NETWORKVI-dense", "pca": "PCA"}.get(model) or PEERS[dataset]


def load_dataset(name: str, n_cells: int | None, subsample_seed: int):
    """The tutorial MuData (``cell_type`` and ``Site`` in the global obs), optionally a seeded random subset."""
    import numpy as np

    import scvi_networkvi as nvi

    mdata = nvi.datasets.tutorial_cite() if name == "cite" else nvi.datasets.tutorial_multiome()
    if n_cells is not None and n_cells < mdata.n_obs:
        keep = np.sort(np.random.default_rng(subsample_seed).choice(mdata.n_obs, n_cells, replace=False))
        mdata = mdata[keep].copy()
    for key in (LABEL_KEY, BATCH_KEY):
        mdata.obs[key] = mdata["rna"].obs[key].astype(str).astype("category").to_numpy()
    return mdata


def rna_pca(mdata, n_comps: int = 50):
    """50 principal components of the log-normalised RNA counts (the unintegrated embedding)."""
    import numpy as np
    import scanpy as sc

    rna = mdata["rna"].copy()
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    sc.pp.pca(rna, n_comps=n_comps, svd_solver="arpack", random_state=0, mask_var=None)
    return np.asarray(rna.obsm["X_pca"], dtype=np.float32)


def _epoch_timer():
    """A Lightning callback recording the wall time of each training epoch (its validation included)."""
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self):
            self.seconds: list[float] = []
            self._start = None

        def on_train_epoch_start(self, trainer, pl_module):
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if self._start is not None:
                self.seconds.append(time.perf_counter() - self._start)
            self._start = None

    return EpochTimer()


def peer_train_kwargs(peer_name: str, train: dict) -> dict:
    """``train`` for scvi-tools' ``peer_name`` (TOTALVI / MULTIVI): MULTIVI fixes its early-stopping monitor (its
    reconstruction loss) inside ``train``, so an ELBO criterion reaches it as a Lightning callback instead."""
    from lightning.pytorch.callbacks import EarlyStopping

    train = dict(train)
    monitor = train.pop("early_stopping_monitor", None)
    if peer_name != "MULTIVI" or monitor is None or not train.get("early_stopping"):
        return {**train, **({"early_stopping_monitor": monitor} if monitor else {})}
    stopper = EarlyStopping(monitor=monitor, patience=50, mode="min")  # MULTIVI's own patience
    train.update(early_stopping=False, check_val_every_n_epoch=1, callbacks=[*train.get("callbacks", []), stopper])
    return train


def peer_model(dataset: str, mdata):
    """scvi-tools' peer of ``dataset`` (TOTALVI / MULTIVI) registered on ``mdata`` and built with its defaults, and
    the ``train`` keywords every benchmark gives it (MULTIVI's learning rate, :data:`MULTIVI_LR`)."""
    import scvi

    peer = scvi.model.TOTALVI if dataset == "cite" else scvi.model.MULTIVI
    peer.setup_mudata(mdata, batch_key=BATCH_KEY, modalities={**MODALITIES[dataset], "batch_key": "rna"})
    return peer(mdata), ({"lr": MULTIVI_LR} if peer is scvi.model.MULTIVI else {})


def fit(dataset: str, model: str, mdata, epochs: int, accelerator: str = "cpu", early_stopping: bool = False):
    """Train one model on a copy of ``mdata``: its joint latent (posterior means of all cells), epochs trained and the
    wall times of the training epochs. ``early_stopping``: up to ``epochs``, each model's own early stopping (its
    patience and schedule) on the validation ELBO (its converged budget)."""

    import scvi_networkvi as nvi

    mdata = mdata.copy()  # registration writes into the MuData
    timer = _epoch_timer()
    train = {"early_stopping": early_stopping, "enable_progress_bar": False, "callbacks": [timer]}
    if early_stopping:  # every model on the same criterion, TOTALVI's (MULTIVI's own is its reconstruction loss)
        train["early_stopping_monitor"] = "elbo_validation"
    train.update({"accelerator": "gpu", "devices": 1} if accelerator == "cuda" else {"accelerator": "cpu"})
    if model in ("networkvi", "networkvi-dense"):
        settings = NETWORKVI_SETTINGS if model == "networkvi" else {"model_kwargs": NETWORKVI_SETTINGS["model_kwargs"]}
        trained = nvi.tl.train(
            mdata,
            batch_key=BATCH_KEY,
            modalities=MODALITIES[dataset],
            encoder="go" if model == "networkvi" else "dense",
            max_epochs=epochs,
            train_kwargs=train,
            **settings,
        )
    else:
        trained, extra = peer_model(dataset, mdata)
        trained.train(max_epochs=epochs, **peer_train_kwargs(type(trained).__name__, {**train, **extra}))
    history = getattr(trained, "history", None) or {}
    epochs_trained = len(history["elbo_train"]) if "elbo_train" in history else epochs
    return trained.get_latent_representation(), epochs_trained, timer.seconds


def latent_path(directory: Path, row: dict) -> Path:
    """Where ``--latents-dir`` keeps one run's latent."""
    budget = f"es{row['epochs']}" if str(row.get("early_stopping")) == "True" else f"e{row['epochs']}"
    return directory / f"{row['dataset']}_{row['model']}_s{row['seed']}_{budget}_{row['n_cells']}.npz"


def device_name(accelerator: str) -> str:
    """``cpu`` or the CUDA device's name."""
    if accelerator != "cuda":
        return "cpu"
    import torch

    return f"cuda {torch.cuda.get_device_name(0)}"


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def append_row(path: Path, row: dict, columns: tuple[str, ...] = COLUMNS) -> None:
    """Append one run to the CSV (header written with the first row; one short write, so processes may share it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        if tuple(header) != columns:
            raise SystemExit(f"{path} has other columns than this script writes: use another --out.")
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())


def run_key(row: dict) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in KEY)


def run(args: argparse.Namespace) -> None:
    """Train and score every (dataset, seed, model) not yet in the CSV, appending each run when it finishes."""
    set_threads(args.threads)
    import numpy as np
    import scvi

    _quiet()
    if not args.train_only:
        import scib_metrics

        scib_metrics.settings.verbosity = logging.WARNING  # its own handler; "<label> consists of a single batch"
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*var_names are not unique.*")
    scvi.settings.verbosity = logging.WARNING
    stamp = versions(scoring=not args.train_only)
    done = set() if args.train_only else {run_key(row) for row in read_rows(args.out)}
    for dataset in args.datasets:
        mdata = pca = None
        for seed in args.seeds:
            for model in args.models:
                n_cells = str(args.n_cells) if args.n_cells else "all"
                row = {"dataset": dataset, "model": model_label(dataset, model), "seed": seed}
                row.update(epochs=args.epochs if model != "pca" else 0, n_cells=n_cells)
                row["early_stopping"] = args.early_stopping and model != "pca"
                if run_key(row) in done:
                    logger.info("%s %s seed %d: in %s, skipped", dataset, row["model"], seed, args.out)
                    continue
                if mdata is None:
                    mdata = load_dataset(dataset, args.n_cells, args.subsample_seed)
                    pca = None if args.train_only else rna_pca(mdata)
                    logger.info("%s: %d cells, modalities %s", dataset, mdata.n_obs, list(mdata.mod))
                if model != "pca":
                    logger.info("%s %s seed %d: training %d epochs ...", dataset, row["model"], seed, args.epochs)
                scvi.settings.seed = seed
                start = time.perf_counter()
                saved = latent_path(args.latents_dir, row) if args.latents_dir and model != "pca" else None
                trained_on, threads, stored_fit_s = device_name(args.accelerator), args.threads, None
                if model == "pca":
                    if args.train_only:
                        continue
                    latent, epochs_trained, epoch_s = pca, 0, [0.0]
                elif saved is not None and saved.is_file() and not args.train_only:
                    with np.load(saved) as stored:  # trained elsewhere (--train-only): score it here
                        latent, epoch_s = stored["latent"], [float(v) for v in stored["epoch_s"]]
                        epochs_trained, trained_on = int(stored["epochs_trained"]), str(stored["device"])
                        stored_fit_s = float(stored["fit_s"])
                    threads = args.threads if trained_on == "cpu" else trained_on.split()[0]
                    logger.info(
                        "%s %s seed %d: latent trained on %s read from %s",
                        dataset,
                        row["model"],
                        seed,
                        trained_on,
                        saved,
                    )
                else:
                    latent, epochs_trained, epoch_s = fit(
                        dataset, model, mdata, args.epochs, args.accelerator, args.early_stopping
                    )
                fit_s = time.perf_counter() - start
                if saved is not None and not saved.is_file():
                    saved.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(
                        saved,
                        latent=latent,
                        epoch_s=np.asarray(epoch_s),
                        epochs_trained=epochs_trained,
                        fit_s=fit_s,
                        device=trained_on,
                        versions=stamp,
                    )
                    logger.info(
                        "%s %s seed %d: %d epochs on %s, median %.2f s/epoch, latent in %s",
                        dataset,
                        row["model"],
                        seed,
                        epochs_trained,
                        trained_on,
                        statistics.median(epoch_s),
                        saved,
                    )
                if args.train_only:
                    continue
                if stored_fit_s is not None:
                    fit_s = stored_fit_s
                start = time.perf_counter()
                labels = mdata.obs[LABEL_KEY].astype(str).to_numpy()
                row.update(scib_scores(mdata.obs, latent, pca))
                row.update(
                    epochs_trained=epochs_trained,
                    fit_s=round(fit_s, 2),
                    train_s=round(sum(epoch_s), 2),
                    epoch_s=round(statistics.median(epoch_s), 3),
                    metrics_s=round(time.perf_counter() - start, 2),
                    knn15_accuracy=knn_accuracy(latent, labels, seed),
                    latent_dim=latent.shape[1],
                    threads=threads,
                    versions=stamp if trained_on == "cpu" else f"{stamp} trained-on={trained_on.replace(' ', '_')}",
                    finished=datetime.now().isoformat(timespec="seconds"),
                )
                append_row(args.out, row)
                done.add(run_key(row))
                logger.info(
                    "%s %s seed %d: total %.3f (bio %.3f, batch %.3f), kNN-15 %.3f, fit %.0f s (%.2f s/epoch), "
                    "metrics %.0f s",
                    dataset,
                    row["model"],
                    seed,
                    row["Total"],
                    row["Bio conservation"],
                    row["Batch correction"],
                    row["knn15_accuracy"],
                    row["fit_s"],
                    row["epoch_s"],
                    row["metrics_s"],
                )


def _mean_sd(values) -> str:
    if len(values) == 0:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def summarize(path: Path, markdown: Path) -> None:
    """Mean ± sd across seeds per dataset x model from the CSV, NETWORKVI / peer ratios; also written as markdown."""
    import pandas as pd

    rows = read_rows(path)
    if not rows:
        raise SystemExit(f"No runs in {path}.")
    table = pd.DataFrame(rows)
    numeric = [
        c
        for c in COLUMNS
        if c in table.columns
        and c not in ("dataset", "model", "n_cells", "early_stopping", "threads", "versions", "finished")
    ]
    table[numeric] = table[numeric].apply(pd.to_numeric)
    shown = (*SCORES, "knn15_accuracy", *BIO, *BATCH)
    order = {"NETWORKVI": 0, "NETWORKVI-dense": 1, "TOTALVI": 2, "MULTIVI": 2, "PCA": 3}
    lines = [
        "# Integration benchmark (scib-metrics)",
        "",
        f"`python benchmarks/integration.py` -> `{path.name}`: mean ± sd across seeds; scores unscaled "
        "(no min-max scaling across embeddings); Total = 0.6 bio conservation + 0.4 batch correction; fit s = setup + "
        "construction + training + latent wall time; s/epoch = median training epoch (validation included).",
        "",
    ]
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    table["early_stopping"] = table["early_stopping"].astype(str) == "True"
    trained = table[table["model"] != "PCA"]
    for (dataset, n_cells), group in table.groupby(["dataset", "n_cells"], sort=False):
        here = trained[(trained["dataset"] == dataset) & (trained["n_cells"] == n_cells)]
        budgets = sorted(set(zip(here["epochs"], here["early_stopping"], strict=True)))
        for epochs, stopped in budgets or [(0, False)]:
            same = (group["epochs"] == epochs) & (group["early_stopping"] == stopped)
            part = group[same | (group["epochs"] == 0)]
            out = []
            for model, runs in sorted(part.groupby("model"), key=lambda item: order.get(item[0], 9)):
                entry = {"model": model, "seeds": len(runs)}
                entry.update({c: _mean_sd(runs[c]) for c in shown})
                entry["epochs"] = f"{runs['epochs_trained'].median():.0f}" if model != "PCA" else ""
                entry["fit s"] = f"{runs['fit_s'].mean():.0f}"
                entry["s/epoch"] = f"{runs['epoch_s'].mean():.2f}" if model != "PCA" and "epoch_s" in runs else ""
                entry["metrics s"] = f"{runs['metrics_s'].mean():.0f}"
                where = runs["versions"].str.extract(r"trained-on=cuda_(\S+)", expand=False).fillna("CPU")
                entry["trained on"] = ", ".join(
                    f"{name.replace('_', ' ')} x{n}" for name, n in where.value_counts().items()
                )
                out.append(entry)
            frame = pd.DataFrame(out).set_index("model").rename(columns={"knn15_accuracy": "kNN-15 acc"})
            title = f"{dataset}, {n_cells} cells, " + (
                f"early stopping on the validation ELBO, up to {epochs} epochs" if stopped else f"{epochs} epochs"
            )
            logger.info("\n%s\n%s", title, frame.to_string())
            lines += [f"## {title}", "", _markdown(frame), ""]
            means = part.groupby("model")["Total"].mean()
            peer = PEERS[dataset]
            for name in ("NETWORKVI", "NETWORKVI-dense"):
                if name in means and peer in means:
                    paired = part.pivot_table(index="seed", columns="model", values="Total")[[name, peer]].dropna()
                    ratios = paired[name] / paired[peer]
                    text = (
                        f"Total {name} / {peer}: {means[name] / means[peer]:.3f} (ratio of means; per seed "
                        f"{_mean_sd(ratios)}, {len(ratios)} paired seeds)"
                    )
                    logger.info(text)
                    lines += [f"- {text}"]
            lines += [""]
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text("\n".join(lines))
    logger.info("Markdown summary written to %s", markdown)


def _markdown(frame) -> str:
    header = ["model", *frame.columns]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, values in frame.iterrows():
        out.append("| " + " | ".join([str(model), *(str(v) for v in values)]) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=100, help="training epochs of every model (early stopping off)")
    parser.add_argument(
        "--early-stopping",
        action="store_true",
        help="converged budgets: each model's early stopping on the validation ELBO, up to --epochs",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="scvi.settings.seed of each run")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--n-cells", type=int, default=None, help="seeded random subset of cells (default: all)")
    parser.add_argument(
        "--subsample-seed", type=int, default=0, help="seed of the --n-cells subset (not in the resume key: use --out)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--multivi-lr", type=float, default=4e-3, help="MULTIVI's learning rate (its default: 1e-4)")
    parser.add_argument("--out", type=Path, default=RESULTS / "integration.csv", help="CSV of the runs")
    parser.add_argument("--markdown", type=Path, default=None, help="summary table (default: --out with .md)")
    parser.add_argument("--summarize", action="store_true", help="only summarise the CSV, train nothing")
    parser.add_argument("--accelerator", choices=("cpu", "cuda"), default="cpu", help="where the models train")
    parser.add_argument("--latents-dir", type=Path, default=None, help="write (and reuse) each run's latent here")
    parser.add_argument("--train-only", action="store_true", help="train and write latents; no scoring, no CSV")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # scib-metrics logs to the root logger
    logger.setLevel(logging.INFO)
    if args.epochs < 1 or (args.n_cells is not None and args.n_cells < 100):
        parser.error("--epochs must be >= 1 and --n-cells >= 100.")
    if args.train_only and args.latents_dir is None:
        parser.error("--train-only needs --latents-dir (where the latents go).")
    markdown = args.markdown or args.out.with_suffix(".md")
    global MULTIVI_LR
    MULTIVI_LR = args.multivi_lr
    if not args.summarize:
        logger.info(
            "Machine: %s, %d CPUs, %d thread(s); results in %s",
            platform.machine(),
            os.cpu_count(),
            args.threads,
            args.out,
        )
        run(args)
    if not args.train_only:
        summarize(args.out, markdown)


if __name__ == "__main__":
    main()
