"""Reference -> query mapping and label transfer: NETWORKVI next to scvi-tools' TOTALVI (scArches), same cells.

Data: the tutorial CITE-seq set (``nvi.datasets.tutorial_cite()``: 5000 bone-marrow cells, ``rna`` 4000 genes +
``prot`` 134 proteins, obs ``cell_type`` with 44 labels, batch ``Site``). Reference = sites 2-4, query = site1 (new
donors, an unseen batch), as in the NetworkVI tutorial and ``docs/notebooks/query_mapping.ipynb``. The query's
``cell_type`` is removed before mapping (it is only used to score). ``--n-cells`` draws a random subsample (seeded
by the run's seed, the same cells for every model of that seed) before the split, for quick runs.

Models, each trained on the reference and then mapped onto the query with ``--query-epochs`` epochs:

- ``networkvi``: ``nvi.tl.train`` with the tutorial's query-mapping settings (go-basic, ``ensembl2go-tutorial``,
  ``k562-contact-domains``, ``gene_size=5, go_size=2, encode_covariates=True, deeply_inject_covariates=True``), then
  ``nvi.tl.map_query(query, model, groupby="cell_type")`` (prepare_query_mudata + load_query_data with frozen
  encoders + training + kNN label transfer), as a user would; the new batch's encoder columns train;
- ``networkvi-zeroshot`` (not run by default): the same with ``encode_covariates=False`` (the package default). The
  encoders never see the batch, so a query model's trainable covariate columns are all in the decoders and the
  query latent (hence the label transfer) is the reference encoder's output, the same after any number of query
  epochs (``load_query_data`` warns about it);
- ``networkvi-centred-all`` (not run by default): ``networkvi`` with every modality's input centred within its batch
  (``batch_centered_input="all"``; the default centres the proteins only);
- ``networkvi-no-penalty`` (not run by default): ``networkvi`` without the modality penalty
  (``modality_penalty=None``; paired cells only, so the product of experts alone joins the two posteriors);
- ``networkvi-anchor-rna`` / ``networkvi-anchor-protein`` (not run by default): ``networkvi`` with the penalty
  anchored on the RNA / protein posterior (``modality_penalty_anchor``: it moves only the other posterior);
- ``networkvi-dropout0.2`` (not run by default): ``networkvi`` with TOTALVI's encoder dropout 0.2 (the package trains
  without dropout on two or more modalities);
- ``networkvi-dense``: ``encoder="dense"`` (scvi-tools encoders, no GO resources) with ``encode_covariates=True``
  like TOTALVI's default;
- ``totalvi``: ``scvi.model.TOTALVI`` with its defaults on the same reference (``setup_mudata`` with ``rna_layer``,
  ``protein_layer``, ``batch_key``, ``modalities``), then scArches: ``TOTALVI.prepare_query_mudata`` +
  ``TOTALVI.load_query_data`` (its default freezing) + ``train(plan_kwargs={"weight_decay": 0.0})`` as in the
  scvi-tools reference-mapping tutorials.

Every model keeps its own training defaults otherwise (early stopping, batch size, adversarial batch mixing,
learning rate); all train on ``--accelerator`` (default ``cpu``). Label transfer is the same for all three: the
classifier of ``nvi.tl.map_query`` (``nvi.tl.transfer_labels``: kNN with k=15 fitted on the reference cells' joint latent from the
reference model, predicting the query cells' latent from the query model), so only the latent space differs.

Reported per run (one CSV row, written as soon as the run finishes; a re-run skips rows already in the CSV):

- accuracy and macro-F1 (scikit-learn, ``zero_division=0``) over all query cells, and over the query cells whose
  true label occurs in the reference (``*_seen``); how many query labels / cells are unseen in the reference;
- median label-transfer confidence (fraction of the 15 neighbours agreeing);
- mixing: mean fraction of reference cells among each query cell's 15 nearest neighbours in the joint latent of
  reference + query cells (``ref_nn_frac``), next to the fraction expected if the two were perfectly mixed
  (``ref_nn_expected`` = reference cells / (all cells - 1));
- wall time of the reference step (registration, construction, training) and of the query step (preparation,
  surgery, training, latents and label transfer), and the epochs trained in each.

    python benchmarks/query_mapping.py [--ref-epochs 100] [--query-epochs 30] [--seeds 0 1 2]
        [--models networkvi networkvi-dense totalvi] [--n-cells N] [--out benchmarks/results/query_mapping.csv]
    python benchmarks/query_mapping.py --summarize [--out CSV]

``--summarize`` (also printed at the end of every benchmark invocation) gives mean ± sd per model and setting, the
NETWORKVI / TOTALVI ratios of mean accuracy and macro-F1, and writes the same as a markdown table next to the CSV
(``--md``; default the CSV's name with ``.md``).
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
import pandas as pd

logger = logging.getLogger("benchmarks.query_mapping")
MODELS = (
    "networkvi",
    "networkvi-centred-all",
    "networkvi-zeroshot",
    "networkvi-no-penalty",
    "networkvi-anchor-rna",
    "networkvi-anchor-protein",
    "networkvi-dropout0.2",
    "networkvi-dense",
    "totalvi",
)
DEFAULT_MODELS = ("networkvi", "networkvi-dense", "totalvi")
RESULTS = Path(__file__).resolve().parent / "results"
KEY = ("model", "seed", "n_cells", "ref_epochs", "query_epochs")
GROUPBY = "cell_type"
QUERY_SITE = "site1"
N_NEIGHBORS = 15
RESOURCES = {"go": "go-basic", "annotations": "ensembl2go-tutorial", "interactions": "k562-contact-domains"}
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
TOTALVI_MODALITIES = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}


def _quiet() -> None:
    """Only warnings from the libraries (Lightning sets its own loggers to INFO when imported)."""
    for name in ("scvi", "scvi_networkvi", "lightning", "lightning.pytorch", "lightning.fabric", "py.warnings"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False


def split(cite, seed: int, n_cells: int | None):
    """Reference (sites 2-4, labelled) and query (site1, labels removed) MuDatas, and the query's true labels."""
    if n_cells is not None and n_cells < cite.n_obs:
        keep = np.sort(np.random.default_rng(seed).choice(cite.n_obs, size=n_cells, replace=False))
        cite = cite[keep].copy()
    is_query = (cite.obs["Site"].astype(str) == QUERY_SITE).to_numpy()
    if is_query.all() or not is_query.any():
        raise SystemExit(f"--n-cells {n_cells} leaves no reference or no query cell.")
    reference = cite[~is_query].copy()
    query = cite[is_query].copy()
    truth = query.obs[GROUPBY].astype(str).to_numpy()
    del query.obs[GROUPBY]  # the query is unlabelled, as in the tutorial
    for mod in query.mod.values():
        if GROUPBY in mod.obs:
            del mod.obs[GROUPBY]
    return reference, query, truth


def _epochs(model) -> int | None:
    history = getattr(model, "history_", None) or {}
    return len(history["elbo_train"]) if "elbo_train" in history else None


def fit_reference(name: str, reference, epochs: int):
    """Register, build and train one reference model; the model."""
    import scvi

    import scvi_networkvi as nvi

    if name.startswith("networkvi") and name != "networkvi-dense":
        covariates = name != "networkvi-zeroshot"
        settings = {"encode_covariates": covariates, "deeply_inject_covariates": covariates}
        if name == "networkvi-centred-all":
            settings["batch_centered_input"] = "all"
        if name == "networkvi-no-penalty":
            settings["modality_penalty"] = None
        if name.startswith("networkvi-anchor-"):
            settings["modality_penalty_anchor"] = name.removeprefix("networkvi-anchor-")
        if name == "networkvi-dropout0.2":  # TOTALVI's encoder dropout (the converged budget's candidate)
            settings["dropout_rate"] = 0.2
        return nvi.tl.train(
            reference,
            batch_key="Site",
            **RESOURCES,
            max_epochs=epochs,
            model_kwargs={"gene_size": 5, "go_size": 2, **settings},
            train_kwargs=TRAIN,
        )
    if name == "networkvi-dense":
        return nvi.tl.train(
            reference,
            batch_key="Site",
            encoder="dense",
            max_epochs=epochs,
            model_kwargs={"encode_covariates": True},
            train_kwargs=TRAIN,
        )
    scvi.model.TOTALVI.setup_mudata(reference, batch_key="Site", modalities=TOTALVI_MODALITIES)
    model = scvi.model.TOTALVI(reference)
    model.train(max_epochs=epochs, **TRAIN)
    return model


def map_query(name: str, query, model, epochs: int):
    """Map the query onto a trained reference; the query model, the query latent and the transferred labels."""
    import scvi

    import scvi_networkvi as nvi

    labels = model.adata.obs[GROUPBY].astype("category")
    if name.startswith("networkvi"):
        query_model = nvi.tl.map_query(
            query, model, max_epochs=epochs, groupby=GROUPBY, n_neighbors=N_NEIGHBORS, train_kwargs=TRAIN
        )
        latent = np.asarray(query.obsm["X_networkvi"])
        predicted = np.asarray(query.obs[f"{GROUPBY}_predicted"].astype(str))
        confidence = query.obs[f"{GROUPBY}_confidence"].to_numpy()
    else:
        scvi.model.TOTALVI.prepare_query_mudata(query, model)
        query_model = scvi.model.TOTALVI.load_query_data(query, model)
        query_model.train(max_epochs=epochs, plan_kwargs={"weight_decay": 0.0}, **TRAIN)
        latent = np.asarray(query_model.get_latent_representation())
        reference_latent = np.asarray(model.get_latent_representation())
        transferred, confidence = nvi.tl.transfer_labels(reference_latent, labels, latent, n_neighbors=N_NEIGHBORS)
        predicted = np.asarray(transferred.astype(str))
    return query_model, latent, predicted, np.asarray(confidence), labels


def score(truth: np.ndarray, predicted: np.ndarray, reference_labels: pd.Series) -> dict:
    """Accuracy and macro-F1 over all query cells and over those whose label the reference has."""
    from sklearn.metrics import accuracy_score, f1_score

    known = set(reference_labels.dropna().astype(str))
    seen = np.isin(truth, list(known))
    out = {
        "accuracy": accuracy_score(truth, predicted),
        "macro_f1": f1_score(truth, predicted, average="macro", zero_division=0),
        "accuracy_seen": accuracy_score(truth[seen], predicted[seen]) if seen.any() else np.nan,
        "macro_f1_seen": f1_score(truth[seen], predicted[seen], average="macro", zero_division=0)
        if seen.any()
        else np.nan,
        "n_query_labels": len(set(truth)),
        "n_unseen_labels": len(set(truth) - known),
        "n_unseen_cells": int((~seen).sum()),
    }
    return out


def mixing(reference_latent: np.ndarray, query_latent: np.ndarray) -> tuple[float, float]:
    """Mean fraction of reference cells among each query cell's neighbours, and its value under perfect mixing."""
    from sklearn.neighbors import NearestNeighbors

    joint = np.concatenate([reference_latent, query_latent])
    is_ref = np.arange(len(joint)) < len(reference_latent)
    k = min(N_NEIGHBORS, len(joint) - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(joint).kneighbors(query_latent)
    frac = is_ref[idx[:, 1:]].mean()  # the first neighbour is the cell itself
    return float(frac), len(reference_latent) / (len(joint) - 1)


def run_one(name: str, seed: int, cite, args: argparse.Namespace) -> dict:
    """Reference training, query mapping and scores of one model and seed."""
    import scvi
    import torch

    reference, query, truth = split(cite, seed, args.n_cells)
    scvi.settings.seed = seed
    start = time.perf_counter()
    model = fit_reference(name, reference, args.ref_epochs)
    ref_s = time.perf_counter() - start
    start = time.perf_counter()
    query_model, latent, predicted, confidence, labels = map_query(name, query, model, args.query_epochs)
    query_s = time.perf_counter() - start
    reference_latent = np.asarray(model.get_latent_representation())
    ref_nn_frac, ref_nn_expected = mixing(reference_latent, latent)
    row = {
        "model": name,
        "seed": seed,
        "n_cells": min(args.n_cells or cite.n_obs, cite.n_obs),
        "ref_epochs": args.ref_epochs,
        "query_epochs": args.query_epochs,
        "n_ref": reference.n_obs,
        "n_query": query.n_obs,
        **score(truth, predicted, labels),
        "median_confidence": float(np.median(confidence)),
        "ref_nn_frac": ref_nn_frac,
        "ref_nn_expected": ref_nn_expected,
        "ref_s": ref_s,
        "query_s": query_s,
        "ref_epochs_trained": _epochs(model),
        "query_epochs_trained": _epochs(query_model),
        "threads": args.threads,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs"
        + (f", cuda {torch.cuda.get_device_name(0)}" if TRAIN["accelerator"] == "gpu" else ""),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    return row


def _done(out: Path) -> set[tuple]:
    if not out.is_file():
        return set()
    table = pd.read_csv(out)
    return {tuple(r) for r in table[list(KEY)].astype(str).itertuples(index=False)}


def _append(out: Path, row: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row]).to_csv(out, mode="a", header=not out.is_file(), index=False)


def _mean_sd(values: pd.Series, digits: int = 3) -> str:
    if len(values) > 1:
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"
    return f"{values.mean():.{digits}f}"


def summarize(out: Path, md: Path) -> None:
    """Mean ± sd per model and setting, NETWORKVI / TOTALVI ratios; printed and written as markdown."""
    if not out.is_file():
        raise SystemExit(f"No results in {out}: run the benchmark first.")
    table = pd.read_csv(out)
    lines = [f"# Query mapping (site1 onto sites 2-4): `{out.name}`", ""]
    for (n_cells, ref_epochs, query_epochs), group in table.groupby(["n_cells", "ref_epochs", "query_epochs"]):
        first = group.iloc[0]
        lines += [
            f"## {n_cells} cells ({first['n_ref']} reference, {first['n_query']} query), "
            f"{ref_epochs} reference / {query_epochs} query epochs",
            "",
            f"Query labels: {first['n_query_labels']}, of which {first['n_unseen_labels']} not in the reference "
            f"({first['n_unseen_cells']} cells, first seed). Mean ± sd over seeds; `seen`: query cells whose label the "
            "reference has. `ref nn`: fraction of reference cells among the query cells' 15 neighbours in the joint "
            f"latent (perfect mixing: {first['ref_nn_expected']:.2f}).",
            "",
            "| model | seeds | accuracy | macro-F1 | accuracy (seen) | macro-F1 (seen) | median conf. | ref nn "
            "| reference s | query s | epochs ref / query |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        means = {}
        for model in [m for m in MODELS if m in set(group["model"])]:
            rows = group[group["model"] == model]
            means[model] = rows[["accuracy", "macro_f1", "accuracy_seen", "macro_f1_seen"]].mean()
            epochs = f"{rows['ref_epochs_trained'].median():.0f} / {rows['query_epochs_trained'].median():.0f}"
            lines.append(
                f"| {model.upper()} | {', '.join(str(s) for s in sorted(rows['seed']))} "
                f"| {_mean_sd(rows['accuracy'])} | {_mean_sd(rows['macro_f1'])} "
                f"| {_mean_sd(rows['accuracy_seen'])} | {_mean_sd(rows['macro_f1_seen'])} "
                f"| {_mean_sd(rows['median_confidence'], 2)} | {_mean_sd(rows['ref_nn_frac'], 2)} "
                f"| {_mean_sd(rows['ref_s'], 1)} | {_mean_sd(rows['query_s'], 1)} | {epochs} |"
            )
        lines.append("")
        if "totalvi" in means:
            for model in [m for m in means if m != "totalvi"]:
                ratio = means[model] / means["totalvi"]
                lines.append(
                    f"- {model.upper()} / TOTALVI (ratio of means): macro-F1 {ratio['macro_f1']:.2f}, "
                    f"accuracy {ratio['accuracy']:.2f}; seen labels: macro-F1 {ratio['macro_f1_seen']:.2f}, "
                    f"accuracy {ratio['accuracy_seen']:.2f}"
                )
            lines.append("")
    machine = ", ".join(sorted(set(table["machine"].astype(str))))
    lines.append(f"Machine: {machine}; torch threads: {', '.join(str(t) for t in sorted(set(table['threads'])))}.")
    text = "\n".join(lines) + "\n"
    logger.info("\n%s", text)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    logger.info("Wrote %s", md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref-epochs", type=int, default=100, help="reference training epochs")
    parser.add_argument("--query-epochs", type=int, default=30, help="query training epochs (the tutorial's 30)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(DEFAULT_MODELS))
    parser.add_argument("--n-cells", type=int, default=None, help="random subsample of the 5000 cells (quick runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu", help="where every model trains")
    parser.add_argument("--out", type=Path, default=RESULTS / "query_mapping.csv", help="CSV, appended and resumed")
    parser.add_argument("--md", type=Path, default=None, help="markdown summary (default: --out with .md)")
    parser.add_argument("--summarize", action="store_true", help="only summarize --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _quiet()
    md = args.md or args.out.with_suffix(".md")
    if args.summarize:
        summarize(args.out, md)
        return

    warnings.filterwarnings("ignore")
    import scvi
    import torch

    import scvi_networkvi as nvi

    _quiet()
    scvi.settings.verbosity = logging.WARNING
    torch.set_num_threads(args.threads)
    TRAIN["accelerator"] = args.accelerator
    cite = nvi.datasets.tutorial_cite()
    done = _done(args.out)
    n_cells = min(args.n_cells or cite.n_obs, cite.n_obs)
    for seed in args.seeds:
        for name in args.models:
            key = tuple(str(v) for v in (name, seed, n_cells, args.ref_epochs, args.query_epochs))
            if key in done:
                logger.info("%s seed %d: already in %s, skipped", name, seed, args.out)
                continue
            logger.info(
                "%s seed %d: %d reference / %d query epochs ...", name, seed, args.ref_epochs, args.query_epochs
            )
            row = run_one(name, seed, cite, args)
            _append(args.out, row)
            logger.info(
                "%s seed %d: accuracy %.3f, macro-F1 %.3f (seen labels: %.3f, %.3f); reference %.1f s, query %.1f s",
                name,
                seed,
                row["accuracy"],
                row["macro_f1"],
                row["accuracy_seen"],
                row["macro_f1_seen"],
                row["ref_s"],
                row["query_s"],
            )
    summarize(args.out, md)


if __name__ == "__main__":
    main()
