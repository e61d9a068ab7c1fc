"""Where the validation ELBO goes after the warm-up: each loss part on the training and on the validation cells.

NETWORKVI's validation ELBO stops improving about when its KL warm-up ends (epoch 50 of 50) and its early stopping
ends training 50 epochs later, where TOTALVI's keeps improving for ~270 epochs (results page, converged budgets). This
script trains one model per (encoder, variant) without early stopping, keeps the module's weights at the ``--epochs``
given, and evaluates, for each kept state, every part of the loss the ELBO sums (each modality's reconstruction loss,
the latent KL, the modality penalty, the protein background KL) per cell, averaged over the training cells and over
the validation cells of the model's own split, in evaluation mode (no dropout), unweighted. A part whose validation
value grows while its training value shrinks is what the model learns only for the cells it trains on.

Settings: those of ``integration.py`` (tutorial data, all cells, batch ``Site``, the GO encoder's tutorial resources
and sizes), with ``integration_ablation.py``'s variants on top (``--variants base wd1e-2``); ``--encoders peer``:
TOTALVI (CITE-seq) / MULTIVI (multiome) with their defaults as ``integration.py`` trains them, for the same
comparison (its loss parts carry scvi-tools' names; run it with ``--variants base``).

    python benchmarks/loss_parts.py [--dataset cite] [--encoders go dense peer] [--variants base] [--epochs 20 50 80 120]
        [--seed 0] [--threads 1] [--out benchmarks/results/loss_parts.csv]
    python benchmarks/loss_parts.py --summarize [--out CSV]
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
from datetime import datetime
from pathlib import Path

import integration as bench  # the sibling scripts (on sys.path): data and threads, and the ablation's variants
import integration_ablation as ablation
import pandas as pd

logger = logging.getLogger("benchmarks.loss_parts")
OUT = bench.RESULTS / "loss_parts.csv"


def train_with_snapshots(dataset: str, encoder: str, variant: str, epochs: list[int], seed: int):
    """One model trained to ``max(epochs)`` without early stopping; the model and its module weights at ``epochs``."""
    import scvi
    from lightning.pytorch.callbacks import Callback

    import scvi_networkvi as nvi

    states: dict[int, dict] = {}

    class KeepWeights(Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if trainer.current_epoch + 1 in epochs:
                states[trainer.current_epoch + 1] = copy.deepcopy(pl_module.module.state_dict())

    scvi.settings.seed = seed
    mdata = bench.load_dataset(dataset, None, 0)
    train = {"early_stopping": False, "enable_progress_bar": False, "accelerator": "cpu", "callbacks": [KeepWeights()]}
    if encoder == "peer":  # TOTALVI / MULTIVI with their defaults, as integration.py trains them
        model, extra = bench.peer_model(dataset, mdata)
        model.train(max_epochs=max(epochs), **train, **extra)
        return model, states
    model = nvi.tl.train(
        mdata,
        max_epochs=max(epochs),
        **ablation.train_arguments(variant, mdata.n_obs, "current", dataset, encoder, train),
    )
    return model, states


def loss_parts(model, indices) -> dict[str, float]:
    """Mean per cell of every reconstruction and KL part of the module's loss over ``indices``, in evaluation mode."""
    import torch

    loader = model._make_data_loader(adata=model.adata, indices=indices, batch_size=512, shuffle=False)
    sums: dict[str, float] = {}
    n_cells = 0
    model.module.eval()
    with torch.no_grad():
        for tensors in loader:
            _, _, loss = model.module(tensors, compute_loss=True)
            parts = {f"reconstruction {k}": v for k, v in loss.reconstruction_loss.items()} | dict(loss.kl_local)
            for name, values in parts.items():
                sums[name] = sums.get(name, 0.0) + float(values.sum())
            n_cells += len(next(iter(loss.reconstruction_loss.values())))
    return {name: value / n_cells for name, value in sums.items()}


def run(args: argparse.Namespace) -> None:
    bench.set_threads(args.threads)
    bench._quiet()
    rows = []
    for encoder in args.encoders:
        for variant in args.variants:
            model, states = train_with_snapshots(args.dataset, encoder, variant, sorted(args.epochs), args.seed)
            for epoch in sorted(states):
                model.module.load_state_dict(states[epoch])
                for split, indices in (("train", model.train_indices), ("validation", model.validation_indices)):
                    for part, value in loss_parts(model, indices).items():
                        rows.append(
                            {
                                "dataset": args.dataset,
                                "encoder": encoder,
                                "variant": variant,
                                "seed": args.seed,
                                "epoch": epoch,
                                "split": split,
                                "part": part,
                                "value": value,
                                "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {args.threads} thread(s)",
                                "finished": datetime.now().isoformat(timespec="seconds"),
                            }
                        )
            logger.info("%s %s seed %d: parts at epochs %s", encoder, variant, args.seed, sorted(states))
            frame = pd.DataFrame(rows)
            if args.out.exists():
                old = pd.read_csv(args.out)
                key = ["dataset", "encoder", "variant", "seed"]
                done = frame[key].drop_duplicates()
                old = old.merge(done, on=key, how="left", indicator=True)
                old = old[old["_merge"] == "left_only"].drop(columns="_merge")
                frame = pd.concat([old, frame], ignore_index=True)
            frame.to_csv(args.out, index=False)
            rows = []


def summarize(out: Path, md: Path) -> None:
    """One table per (dataset, encoder, variant, seed): each part's training / validation mean at each epoch."""
    frame = pd.read_csv(out)
    lines = [
        "# Loss parts on training and validation cells",
        "",
        f"`python benchmarks/loss_parts.py` -> `{out.name}`: per-cell means of each loss part (unweighted, evaluation "
        "mode) over the model's training cells / its validation cells, at each kept epoch; one training without "
        "early stopping per row group. `val / train`: the ratio of the two.",
        "",
    ]
    for (dataset, encoder, variant, seed), group in frame.groupby(["dataset", "encoder", "variant", "seed"]):
        wide = group.pivot_table(index=["part", "epoch"], columns="split", values="value").reset_index()
        wide["val / train"] = wide["validation"] / wide["train"]
        lines += [f"## {dataset}, {encoder} encoder, {variant}, seed {seed}", ""]
        lines.append("| part | epoch | train | validation | val / train |")
        lines.append("|---|---|---|---|---|")
        for row in wide.itertuples(index=False):
            lines.append(f"| {row[0]} | {row[1]} | {row[2]:.2f} | {row[3]:.2f} | {row[4]:.2f} |")
        lines.append("")
    lines.append(f"Machine: {frame['machine'].iloc[0]}; finished {frame['finished'].max()}.")
    md.write_text("\n".join(lines) + "\n")
    logger.info("Markdown summary written to %s", md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=bench.DATASETS, default="cite")
    parser.add_argument("--encoders", nargs="+", choices=("go", "dense", "peer"), default=["go", "dense"])
    parser.add_argument("--variants", nargs="+", default=["base"])
    parser.add_argument("--epochs", type=int, nargs="+", default=[20, 50, 80, 120])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--summarize", action="store_true", help="only summarise the CSV, train nothing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    if not args.summarize:
        if "peer" in args.encoders and args.variants != ["base"]:
            parser.error("--encoders peer trains the peer with its defaults: give --variants base")
        for variant in args.variants:
            ablation.settings(variant, 1000, "current", args.dataset)  # unknown names fail before any training
        run(args)
    summarize(args.out, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
