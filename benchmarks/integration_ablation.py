"""Integration ablation: which setting keeps NETWORKVI's batch correction below TOTALVI's / MULTIVI's.

Each variant is NETWORKVI trained through ``nvi.tl.train`` on the tutorial data of ``integration.py`` (same cells,
labels, batches, epochs, scib-metrics scoring and PCA reference), with one or more settings changed. A variant name
is one of ``CHANGES`` or several joined by ``+`` (``adv1+bs256``: both changes at once), so a walk from one
configuration to the other is a list of names. ``totalvi`` / ``multivi`` (scvi-tools' models with their defaults,
MULTIVI at learning rate 4e-3 as in ``integration.py``) and ``pca`` are the references of the same run.

Every change is a keyword of ``NETWORKVI`` or of its ``train`` (see ``CHANGES``); the encoder (``dense`` or ``go``,
the GO encoder with the tutorial resources of ``integration.py``) is chosen with ``--encoder``. The name ``base``
is the encoder with the settings of the checkout being measured (``--base-settings legacy`` pins the settings of
the release before this ablation, ``2026-12-04`` those of the first round of fixes, ``2026-12-05`` those of the
second, per dataset, ``2026-12-05b`` those of the third, per dataset and encoder, ``2026-12-05c`` / ``2026-12-05f``
those before the GO heads on multiome / the per-batch input scales on CITE-seq, so that a walk can be re-run after
the defaults change).

Rows (one per dataset, encoder, variant, seed) are appended to the CSV at once (default
``benchmarks/results/integration_ablation.csv``; runs already there are skipped); ``--summarize`` writes the
markdown table next to it: mean ± sd across seeds and the difference of each variant's mean to ``base``.

    python benchmarks/integration_ablation.py --variants base adv1 totalvi [--encoder dense] [--dataset cite]
        [--seeds 0] [--epochs 50] [--threads 1] [--out CSV]
    python benchmarks/integration_ablation.py --early-stopping --epochs 400 ...   # converged budgets, own CSV
    python benchmarks/integration_ablation.py --summarize [--out CSV]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import integration as bench  # the sibling script (on sys.path): data, PCA, scoring, threads

logger = logging.getLogger("benchmarks.integration_ablation")
OUT = bench.RESULTS / "integration_ablation.csv"
OUT_CONVERGED = bench.RESULTS / "integration_ablation_converged.csv"  # --early-stopping: rows apart from fixed budgets
REFERENCES = ("totalvi", "multivi", "pca")

#: What each change sets: (model keyword arguments, train keyword arguments, plan keyword arguments). A callable
#: value is called with the number of cells. The first group moves NETWORKVI's training towards TOTALVI's.
CHANGES: dict[str, tuple[dict, dict, dict]] = {
    "base": ({}, {}, {}),
    # the adversarial batch classifier's weight: scvi-tools' "auto" is 1 - KL weight, so it fades out with the warm-up
    "adv1": ({}, {}, {"scale_adversarial_loss": 1.0}),
    "adv-auto": ({}, {}, {"scale_adversarial_loss": "auto"}),
    "adv2": ({}, {}, {"scale_adversarial_loss": 2.0}),
    # no batch classifier at all: TOTALVI trains without one when every batch has the whole antibody panel
    "no-adv": ({}, {"adversarial_mixing": False}, {}),
    # TOTALVI's KL warm-up: 0.75 x n_cells steps (about 200 epochs at batch 256 on 5000 cells)
    "kl-totalvi": ({}, {"n_epochs_kl_warmup": None, "n_steps_kl_warmup": lambda n: int(0.75 * n)}, {}),
    "kl-50": ({}, {"n_epochs_kl_warmup": 50, "n_steps_kl_warmup": None}, {}),
    # TOTALVI's learning-rate schedule: x0.6 after 30 epochs without a better validation ELBO
    "plateau": ({}, {}, {"reduce_lr_on_plateau": True}),
    "bs256": ({}, {"batch_size": 256}, {}),
    "bs128": ({}, {"batch_size": 128}, {}),
    "latent20": ({"n_latent": 20}, {}, {}),
    "latent10": ({"n_latent": 10}, {}, {}),
    "hidden256": ({"n_hidden": 256}, {}, {}),
    "wd0": ({}, {"weight_decay": 1e-6}, {"optimizer": "Adam"}),
    # ten times the AdamW weight decay: the encoders memorise the training cells past the warm-up (the modality
    # penalty on validation cells grows while it shrinks on training cells)
    "wd1e-2": ({}, {"weight_decay": 1e-2}, {}),
    # a paired cell is placed by one of its modalities alone in training with this probability (the reconstruction
    # still asks for all), so each modality's posterior learns to predict the others
    "mdrop0.25": ({"modality_dropout": 0.25}, {}, {}),
    "poe": ({"modality_mixing": "poe"}, {}, {}),
    "mean": ({"modality_mixing": "mean"}, {}, {}),
    "no-penalty": ({"modality_penalty": None}, {}, {}),
    # the penalty moves the protein posterior towards the RNA one only (the GO default on RNA + ATAC mosaics)
    "anchor-rna": ({"modality_penalty_anchor": "rna"}, {}, {}),
    "anchor-protein": ({"modality_penalty_anchor": "protein"}, {}, {}),
    "prior-empirical": ({"empirical_protein_background_prior": True}, {}, {}),
    "prior-random": ({"empirical_protein_background_prior": False}, {}, {}),
    "encode-cov": ({"encode_covariates": True}, {}, {}),
    "deep-cov": ({"deeply_inject_covariates": True}, {}, {}),
    "dec1": ({"n_layers_decoder": 1}, {}, {}),
    "adv-mod": ({}, {}, {"adversarial_modalities": True}),
    "center-prot": ({"batch_centered_input": ("protein",)}, {}, {}),
    "center-all": ({"batch_centered_input": "all"}, {}, {}),
    "center-none": ({"batch_centered_input": ()}, {}, {}),
    # each batch's centred inputs also rescaled to the pooled within-batch spread (ComBat's scale step)
    "scale-batch": ({"batch_scaled_input": True}, {}, {}),
    "no-dropout": ({"dropout_rate": 0.0}, {}, {}),
    # TOTALVI's encoder dropout: does a regularised encoder keep improving at long budgets?
    "dropout-0.2": ({"dropout_rate": 0.2}, {}, {}),
    # the package's own sizes instead of the benchmark's tutorial ones (gene_size=5, go_size=2)
    "sizes-default": ({"gene_size": 4, "go_size": 6}, {}, {}),
    # the GO encoder's own structure: wider UNKNOWN nodes (the path of the genes without annotation), wider GO terms
    "unknown64": ({"unknown_size": 64}, {}, {}),
    "term12": ({"go_size": 12}, {}, {}),
    # one / two neurons per ATAC gene node instead of the shared gene_size (most genes read one or two peaks)
    "atac-gene1": ({"wiring_by_modality": {"atac": {"gene_size": 1}}}, {}, {}),
    "atac-gene2": ({"wiring_by_modality": {"atac": {"gene_size": 2}}}, {}, {}),
    # scvi-tools' dense ATAC encoder next to the GO-wired RNA one (the GO default on mosaics with RNA and ATAC since
    # 2026-12-07b; paired multiome keeps its GO-wired ATAC encoder)
    "atac-dense": ({"dense_modalities": ("atac",)}, {}, {}),
    # training without the gradient-spike guard (train(gradient_spike_factor=None)), as before 2026-12-06
    "no-guard": ({}, {"gradient_spike_factor": None}, {}),
    "head-levels": ({"head_input": "levels"}, {}, {}),
    # twice the learning rate: the GO encoder learned more slowly than the dense one (multiome ablation)
    "lr8e-3": ({}, {"lr": 8e-3}, {}),
    # what `go=None, annotations=None` give: the species' full annotations and their GO release from the registry
    # (the interaction table stays the benchmark's); RESOURCE_KEYS go to nvi.tl.train as resources, not model kwargs
    "annotations-default": ({"go": None, "annotations": None}, {}, {}),
    # TOTALVI's decoder dropout (0.2) on the RNA and protein decoders, set by a callback before training (the package
    # has no such option; the protein decoder's own is 0.1, the RNA decoder's 0)
    "dec-dropout0.2": ({}, {"callbacks": lambda n: [decoder_dropout(0.2)]}, {}),
}


def decoder_dropout(rate: float):
    """A Lightning callback that makes the RNA and protein decoders drop ``rate`` of their hidden units in training.

    scvi-tools' ``FCLayers`` keep a dropout slot (index 4) in every layer, empty when built without dropout; filling the
    RNA decoder's hidden ones and raising the protein decoder's own rate changes no parameter.
    """
    import torch
    from lightning.pytorch.callbacks import Callback

    class DecoderDropout(Callback):
        def on_fit_start(self, trainer, pl_module) -> None:
            module = pl_module.module
            if hasattr(module, "rna_decoder"):  # scVI's decoder: the hidden layers, built without dropout
                for layer in module.rna_decoder.px_decoder.fc_layers:
                    layer[4] = torch.nn.Dropout(p=rate)
            if hasattr(module, "protein_decoder"):  # its hidden layers drop 0.1; its output layers none
                for dropout in [m for m in module.protein_decoder.modules() if isinstance(m, torch.nn.Dropout)]:
                    dropout.p = rate

    return DecoderDropout()


#: Model-argument names of ``CHANGES`` that are resources of ``nvi.tl.train`` rather than model keywords.
RESOURCE_KEYS = ("go", "annotations", "interactions")

#: NETWORKVI's settings before this ablation (the release measured on the results page until 2026-12), for
#: ``--base-settings legacy``.
LEGACY = (
    {
        "n_latent": 10,
        "modality_mixing": "mean",
        "empirical_protein_background_prior": False,
        "batch_centered_input": (),
        "dropout_rate": 0.1,
    },
    {"batch_size": 128, "n_epochs_kl_warmup": 50, "n_steps_kl_warmup": None},
    {"scale_adversarial_loss": "auto"},
)

#: The defaults of 2026-12-04 on paired CITE-seq (product of experts, protein input centred, dropout 0.1, fading
#: adversary), for ``--base-settings 2026-12-04``; the variants measured on top of them led to today's defaults.
DEC04 = (
    {"modality_mixing": "poe", "batch_centered_input": ("protein",), "dropout_rate": 0.1},
    {"adversarial_scale": "auto"},
    {},
)
#: The defaults of 2026-12-05: paired CITE-seq centred everywhere, without dropout, adversary at weight 1; RNA + ATAC
#: still uncentred, dropout 0.1, fading adversary (mixing: the checkout's rule, equal weights for RNA + ATAC).
DEC05 = {
    "cite": ({"batch_centered_input": "all", "dropout_rate": 0.0}, {"adversarial_scale": 1.0}, {}),
    "multiome": ({"batch_centered_input": (), "dropout_rate": 0.1}, {"adversarial_scale": "auto"}, {}),
}
#: The defaults of 2026-12-05b (third round): no dropout for two or more modalities; on paired RNA + ATAC the GO
#: encoder also centres every input and keeps the adversary at weight 1, the dense encoder neither.
DEC05B = {
    "cite": ({**DEC05["cite"][0], "head_input": "root"}, *DEC05["cite"][1:]),
    "multiome/go": (
        {"batch_centered_input": "all", "dropout_rate": 0.0, "head_input": "root"},
        {"adversarial_scale": 1.0},
        {},
    ),
    "multiome/dense": ({"batch_centered_input": (), "dropout_rate": 0.0}, {"adversarial_scale": "auto"}, {}),
}
#: The defaults of 2026-12-05c: those of 2026-12-05b, and the GO encoder's posterior heads read every GO level on
#: paired RNA + ATAC (``head_input="levels"``).
DEC05C = {
    "cite": DEC05B["cite"],
    "multiome/go": ({**DEC05B["multiome/go"][0], "head_input": "levels"}, *DEC05B["multiome/go"][1:]),
    "multiome/dense": DEC05B["multiome/dense"],
}
#: The defaults of 2026-12-05f (those of 2026-12-05c): paired CITE-seq without the per-batch input scales that
#: became its default afterwards; ``--base-settings 2026-12-05f --variants scale-batch`` is today's CITE-seq default.
DEC05F = {
    "cite": ({**DEC05C["cite"][0], "batch_scaled_input": False}, *DEC05C["cite"][1:]),
    "multiome/go": DEC05C["multiome/go"],
    "multiome/dense": DEC05C["multiome/dense"],
}
#: Settings by name; a name maps to one (model, train, plan) triple, or to one per dataset or "dataset/encoder".
PINNED = {
    "legacy": LEGACY,
    "2026-12-04": DEC04,
    "2026-12-05": DEC05,
    "2026-12-05b": DEC05B,
    "2026-12-05c": DEC05C,
    "2026-12-05f": DEC05F,
}

KEY = ("dataset", "encoder", "base_settings", "variant", "seed", "epochs", "n_cells")
COLUMNS = (
    *KEY,
    "epochs_trained",
    "fit_s",
    "epoch_s",
    "knn15_accuracy",
    "latent_dim",
    *bench.BIO,
    *bench.BATCH,
    *bench.SCORES,
    "threads",
    "versions",
    "finished",
)


def settings(
    variant: str, n_cells: int, base_settings: str, dataset: str = "cite", encoder: str = "go"
) -> tuple[dict, dict, dict]:
    """Model, train and plan keyword arguments of a variant (changes applied left to right)."""
    pinned = ({}, {}, {}) if base_settings == "current" else PINNED[base_settings]
    if isinstance(pinned, dict):
        pinned = pinned.get(f"{dataset}/{encoder}") or pinned[dataset]
    model, train, plan = tuple(dict(d) for d in pinned)
    if base_settings != "current" and dataset == "multiome" and encoder == "go":
        model.setdefault("wiring_by_modality", {})  # every pinned setting predates the one-neuron ATAC gene nodes
    for name in variant.split("+"):
        if name not in CHANGES:
            raise SystemExit(f"unknown change {name!r} in variant {variant!r}; changes: {', '.join(CHANGES)}")
        for target, change in zip((model, train, plan), CHANGES[name], strict=True):
            target.update({k: v(n_cells) if callable(v) else v for k, v in change.items()})
    return model, train, plan


def train_arguments(
    variant: str, n_cells: int, base_settings: str, dataset: str, encoder: str, train: dict
) -> dict[str, Any]:
    """``nvi.tl.train``'s keyword arguments (but the data and the epochs) for a variant on top of ``train``."""
    model_kwargs, train_kwargs, plan_kwargs = settings(variant, n_cells, base_settings, dataset, encoder)
    model_kwargs = {**bench.NETWORKVI_SETTINGS["model_kwargs"], **model_kwargs}
    resources = {k: v for k, v in bench.NETWORKVI_SETTINGS.items() if k != "model_kwargs"}
    resources.update({k: model_kwargs.pop(k) for k in RESOURCE_KEYS if k in model_kwargs})
    extra = train_kwargs.pop("callbacks", [])
    train = {**train, **train_kwargs, "callbacks": [*train.get("callbacks", []), *extra]}
    if plan_kwargs:
        train["plan_kwargs"] = plan_kwargs
    return {
        "batch_key": bench.BATCH_KEY,
        "modalities": bench.MODALITIES[dataset],
        "encoder": encoder,
        "model_kwargs": model_kwargs,
        "train_kwargs": train,
        **(resources if encoder == "go" else {}),
    }


def fit_variant(
    dataset: str, encoder: str, variant: str, mdata, epochs: int, base_settings: str, early_stopping: bool = False
):
    """Train one variant (or a reference model) on a copy of ``mdata``: latent, epochs trained, epoch seconds.

    ``early_stopping``: up to ``epochs``, each model's own early stopping on the validation ELBO (converged budget).
    """

    import scvi_networkvi as nvi

    mdata = mdata.copy()
    timer = bench._epoch_timer()
    train = {"early_stopping": early_stopping, "enable_progress_bar": False, "callbacks": [timer], "accelerator": "cpu"}
    if early_stopping:  # the same criterion for every model, TOTALVI's (MULTIVI's own is its reconstruction loss)
        train["early_stopping_monitor"] = "elbo_validation"
    if variant in ("totalvi", "multivi"):
        if variant != bench.PEERS[dataset].lower():
            raise SystemExit(f"--variants {variant}: the peer of --dataset {dataset} is {bench.PEERS[dataset].lower()}")
        trained, extra = bench.peer_model(dataset, mdata)
        trained.train(max_epochs=epochs, **bench.peer_train_kwargs(type(trained).__name__, {**train, **extra}))
    else:
        trained = nvi.tl.train(
            mdata, max_epochs=epochs, **train_arguments(variant, mdata.n_obs, base_settings, dataset, encoder, train)
        )
    history = getattr(trained, "history", None) or {}
    epochs_trained = len(history["elbo_train"]) if "elbo_train" in history else epochs
    return trained.get_latent_representation(), epochs_trained, timer.seconds


def run(args: argparse.Namespace) -> None:
    bench.set_threads(args.threads)
    import scib_metrics
    import scvi

    bench._quiet()
    scib_metrics.settings.verbosity = logging.WARNING
    warnings.filterwarnings("ignore", category=FutureWarning)
    scvi.settings.verbosity = logging.WARNING
    stamp = bench.versions()
    done = {tuple(str(r[k]) for k in KEY) for r in bench.read_rows(args.out)}
    mdata = bench.load_dataset(args.dataset, args.n_cells, 0)
    pca = bench.rna_pca(mdata)
    labels = mdata.obs[bench.LABEL_KEY].astype(str).to_numpy()
    for seed in args.seeds:
        for variant in args.variants:
            reference = variant in REFERENCES
            row = {
                "dataset": args.dataset,
                "encoder": "-" if reference else args.encoder,
                "base_settings": "-" if reference else args.base_settings,
                "variant": variant,
                "seed": seed,
                "epochs": 0 if variant == "pca" else args.epochs,
                "n_cells": args.n_cells or "all",
            }
            if tuple(str(row[k]) for k in KEY) in done:
                logger.info("%s seed %d: in %s, skipped", variant, seed, args.out)
                continue
            scvi.settings.seed = seed
            start = time.perf_counter()
            if variant == "pca":
                latent, epochs_trained, epoch_s = pca, 0, [0.0]
            else:
                latent, epochs_trained, epoch_s = fit_variant(
                    args.dataset, args.encoder, variant, mdata, args.epochs, args.base_settings, args.early_stopping
                )
            fit_s = time.perf_counter() - start
            row.update(bench.scib_scores(mdata.obs, latent, pca))
            row.update(
                epochs_trained=epochs_trained,
                fit_s=round(fit_s, 1),
                epoch_s=round(statistics.median(epoch_s), 3),
                knn15_accuracy=round(bench.knn_accuracy(latent, labels, seed), 4),
                latent_dim=latent.shape[1],
                threads=args.threads,
                versions=stamp,
                finished=datetime.now().isoformat(timespec="seconds"),
            )
            bench.append_row(args.out, row, COLUMNS)
            done.add(tuple(str(row[k]) for k in KEY))
            logger.info(
                "%s %s seed %d: total %.3f (bio %.3f, batch %.3f), fit %.0f s",
                args.encoder,
                variant,
                seed,
                row["Total"],
                row["Bio conservation"],
                row["Batch correction"],
                fit_s,
            )


def summarize(path: Path, markdown: Path, converged: bool = False) -> None:
    """Mean ± sd per (dataset, encoder, base settings, variant) and the difference to that group's ``base``.

    ``converged``: the rows were trained with ``--early-stopping`` (their epochs are the limit, not the budget).
    """
    import pandas as pd

    table = pd.DataFrame(bench.read_rows(path))
    if table.empty:
        raise SystemExit(f"No runs in {path}.")
    shown = ("Total", "Bio conservation", "Batch correction", "knn15_accuracy", *bench.BIO, *bench.BATCH)
    table[list(shown)] = table[list(shown)].apply(pd.to_numeric)
    lines = [
        "# Integration ablation (scib-metrics)",
        "",
        f"`python benchmarks/integration_ablation.py` -> `{path.name}`: mean ± sd across seeds, unscaled scib-metrics "
        "scores as in `integration.md`; Δ = difference of the variant's mean Total / batch correction to `base` of "
        "the same encoder and settings. References (TOTALVI, MULTIVI, PCA) trained in the same runs.",
        "",
    ]
    for (dataset, epochs, n_cells), group in table.groupby(["dataset", "epochs", "n_cells"], sort=False):
        if epochs == "0":
            continue
        part = pd.concat([group, table[(table["dataset"] == dataset) & (table["variant"] == "pca")]])
        budget = f"early stopping on the validation ELBO, up to {epochs} epochs" if converged else f"{epochs} epochs"
        lines += [f"## {dataset}, {n_cells} cells, {budget}", ""]
        header = ["encoder", "settings", "variant", "seeds", "epochs trained"]
        header += [s.replace("knn15_accuracy", "kNN-15") for s in shown]
        header += ["Δ Total", "Δ batch"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for (encoder, base_settings), runs in part.groupby(["encoder", "base_settings"], sort=False):
            base = runs[runs["variant"] == "base"]
            order = list(dict.fromkeys(runs["variant"]))
            for variant in order:
                sub = runs[runs["variant"] == variant]
                cells = [encoder, base_settings, variant, str(len(sub)), ", ".join(map(str, sub["epochs_trained"]))]
                cells += [bench._mean_sd(sub[c]) for c in shown]
                if len(base) and variant != "base" and encoder != "-":
                    cells += [
                        f"{sub['Total'].mean() - base['Total'].mean():+.3f}",
                        f"{sub['Batch correction'].mean() - base['Batch correction'].mean():+.3f}",
                    ]
                else:
                    cells += ["", ""]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    markdown.write_text("\n".join(lines))
    logger.info("Markdown summary written to %s", markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["base", "totalvi", "pca"])
    parser.add_argument("--encoder", choices=("dense", "go"), default="dense")
    parser.add_argument("--base-settings", choices=("current", *PINNED), default="current")
    parser.add_argument("--dataset", choices=bench.DATASETS, default="cite")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument(
        "--early-stopping",
        action="store_true",
        help="converged budgets: each model's early stopping on the validation ELBO, up to --epochs (default --out: "
        "results/integration_ablation_converged.csv)",
    )
    parser.add_argument("--n-cells", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--summarize", action="store_true", help="only summarise the CSV, train nothing")
    args = parser.parse_args()
    if args.out is None:
        args.out = OUT_CONVERGED if args.early_stopping else OUT
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    if not args.summarize:
        logger.info("Machine: %s, %d CPUs, %d thread(s)", platform.machine(), os.cpu_count(), args.threads)
        for variant in args.variants:
            if variant not in REFERENCES:
                settings(variant, 1000, args.base_settings, args.dataset)  # unknown names fail before any training
        run(args)
    summarize(args.out, args.out.with_suffix(".md"), converged=args.early_stopping)


if __name__ == "__main__":
    main()
