"""Mosaic ablation: why NETWORKVI mixes the two datasets of the CITE-seq + multiome mosaic less than MULTIVI.

The mosaic, the models' settings and the metrics are those of ``mosaic.py --cross`` (``--n-cells`` CITE-seq cells
with RNA + protein and as many multiome cells with RNA + ATAC, on their shared genes, batch key = dataset of origin;
learning rate 4e-3 for every model). Each variant is NETWORKVI (``--encoder dense`` or ``go``, the GO encoder with the
tutorial resources of ``mosaic.py``) with one or more settings changed: a name of ``CHANGES`` or several joined by
``+``, applied left to right (``legacy+mean+adv1``: the settings before this ablation, then both changes). ``base``
is the checkout's defaults, ``legacy`` the defaults before this ablation; ``multivi`` is scvi-tools' MULTIVI
(defaults, zero-padded modalities) trained in the same run.

Besides ``mosaic.py``'s metrics (``transfer_cross_acc`` / ``_f1``, ``knn_cv``, ``silhouette_label``, dataset
``mixing``) each row has ``mixing_rna``: the dataset mixing of the RNA encoder's own posterior means (MULTIVI:
``modality="expression"``), which tells whether the datasets are apart already in the one modality they share or
only in the joint latent.

``--fraction F``: the other kind of mosaic, one dataset with a fraction ``F`` of its cells paired (``mosaic.py
--datasets DATASET --fractions F``: ``--n-cells`` random cells of ``--dataset``, the unpaired ones split into RNA-only
and ATAC- / protein-only halves, batch key ``Site``); the metrics are ``mosaic.py``'s for it (``transfer_rna_*`` and
``transfer_other_*`` from the paired cells, ``mixing`` of the three groups, ``knn_cv``, ``silhouette_label``), the
rows go to ``results/mosaic_fraction_ablation.csv``.

Rows (one per encoder, variant, seed) are appended to the CSV as runs finish (default
``benchmarks/results/mosaic_ablation.csv``; runs already there are skipped); ``--summarize`` writes the markdown
table next to it (mean ± sd across seeds).

    python benchmarks/mosaic_ablation.py --variants legacy legacy+mean multivi [--encoder dense] [--seeds 0]
        [--epochs 50] [--n-cells 2000] [--threads 1] [--out CSV]
    python benchmarks/mosaic_ablation.py --fraction 0.2 [--dataset multiome] --variants base multivi [--encoder go]
    python benchmarks/mosaic_ablation.py --summarize [--fraction 0.2] [--out CSV]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import mosaic as bench  # the sibling script (on sys.path): data, training, metrics
import numpy as np
import pandas as pd

logger = logging.getLogger("benchmarks.mosaic_ablation")
OUT = Path(__file__).parent / "results" / "mosaic_ablation.csv"
OUT_FRACTION = Path(__file__).parent / "results" / "mosaic_fraction_ablation.csv"
REFERENCES = ("multivi",)


def _wired_atac(**fields) -> tuple[dict, dict, dict]:
    """A change that wires the ATAC encoder (``dense_modalities=()``) with these ATAC wiring fields."""
    return {"wiring_by_modality": {"atac": fields}, "dense_modalities": ()}, {}, {}


#: What each change sets: (model keyword arguments, train keyword arguments, plan keyword arguments).
CHANGES: dict[str, tuple[dict, dict, dict]] = {
    "base": ({}, {}, {}),
    # the defaults before this ablation (2026-12-04): mixing by the rule for paired data (poe with proteins), the
    # protein input centred, dropout 0.1, scvi-tools' fading adversary; the single changes below were measured on top
    # of it ("legacy+mean"). "legacy+adv1" is the mosaic default of 2026-12-05, "legacy+adv1+center-all+no-dropout"
    # the one since 2026-12-05b (third round).
    "legacy": (
        {
            "modality_mixing": None,
            "batch_centered_input": ("protein",),
            "dropout_rate": 0.1,
            "modality_penalty_anchor": None,
        },
        {"adversarial_scale": "auto"},
        {},
    ),
    # MULTIVI's modality mixing: equal weights over the modalities a cell has (NETWORKVI's default with proteins: poe)
    "mean": ({"modality_mixing": "mean"}, {}, {}),
    "poe": ({"modality_mixing": "poe"}, {}, {}),
    # MULTIVI's adversary weight: 1 throughout (scvi-tools' "auto" is 1 - KL weight, it fades with the warm-up)
    "adv1": ({}, {}, {"scale_adversarial_loss": 1.0}),
    "adv-auto": ({}, {}, {"scale_adversarial_loss": "auto"}),
    # MULTIVI adds its modality penalty at full weight from the first step (the GO default on RNA + ATAC mosaics since
    # 2026-12-06c); pen-warmup: along the KL warm-up, the default before (the stored multiome-fraction GO rows made
    # before carry it)
    "pen-full": ({"modality_penalty_warmup": False}, {}, {}),
    "pen-warmup": ({"modality_penalty_warmup": True}, {}, {}),
    "no-penalty": ({"modality_penalty": None}, {}, {}),
    # the modality penalty 5x the KL weight: each modality's posterior pulled towards the cell's other ones
    "pen5": ({"modality_penalty_scale": 5.0}, {}, {}),
    # the penalty moves the protein and ATAC posteriors towards the RNA one, not the RNA posterior towards them
    # (in the fraction mosaic: the ATAC posterior of the paired cells)
    "anchor-rna": ({"modality_penalty_anchor": "rna"}, {}, {}),
    # a paired cell is placed by one of its modalities alone in training with this probability (the reconstruction
    # still asks for all), so each modality's posterior learns to predict the others
    "mdrop0.25": ({"modality_dropout": 0.25}, {}, {}),
    # the symmetric penalty (the GO encoder's mosaic default until 2026-12-05d, with proteins again since 2026-12-07f)
    "anchor-none": ({"modality_penalty_anchor": None}, {}, {}),
    # the other way round: the RNA posterior pulled towards the ATAC (or protein) one, which the penalty leaves alone
    "anchor-atac": ({"modality_penalty_anchor": "atac"}, {}, {}),
    # the penalty as the distance of the posterior means only (the original's "MMD"): no pull on the variances
    "pen-mmd": ({"modality_penalty": "mmd"}, {}, {}),
    # the modality penalty 2x the KL weight (between the default and pen5)
    "pen2": ({"modality_penalty_scale": 2.0}, {}, {}),
    # every encoder's input centred within the cell's dataset (the default with proteins since 2026-12-05b)
    "center-all": ({"batch_centered_input": "all"}, {}, {}),
    "center-rna": ({"batch_centered_input": ("rna", "protein")}, {}, {}),
    "center-prot": ({"batch_centered_input": ("protein",)}, {}, {}),
    # the encoders without dropout (the default for two or more modalities since 2026-12-05b)
    "no-dropout": ({"dropout_rate": 0.0}, {}, {}),
    "encode-cov": ({"encode_covariates": True}, {}, {}),
    # the RNA library size learned by an encoder, as MULTIVI does, instead of the observed one
    "lib-learned": ({"use_observed_lib_size": False}, {}, {}),
    # the encoders read raw counts, without log1p or depth normalisation, as MULTIVI's RNA encoder does (and the
    # original's encoders); centred inputs are refused with it, so only for uncentred data types
    "raw-input": ({"log_variational": False, "depth_normalized_input": ()}, {}, {}),
    # the centred inputs also rescaled per batch to the pooled within-batch spread (the GO default on paired CITE-seq)
    "scale-batch": ({"batch_scaled_input": True}, {}, {}),
    "scale-none": ({"batch_scaled_input": False}, {}, {}),  # the default with proteins until 2026-12-07f
    # the ATAC (or the RNA and ATAC) encoders read each cell's counts scaled to one total before log1p: depth does
    # not enter them (the GO encoder's default on RNA + ATAC mosaics since 2026-12-06c); depth-none: raw counts, the
    # default before (the stored multiome-fraction GO rows made before carry it)
    "depth-atac": ({"depth_normalized_input": ("atac",)}, {}, {}),
    "depth-rna": ({"depth_normalized_input": ("rna",)}, {}, {}),
    "depth-all": ({"depth_normalized_input": ("rna", "atac")}, {}, {}),
    "depth-none": ({"depth_normalized_input": ()}, {}, {}),
    # the batch classifier also reads each modality's own posterior mean
    "adv-mod": ({}, {}, {"adversarial_modalities": True}),
    # the GO encoder at the package's own sizes (what nvi.tl.train gives) instead of the tutorial's gene_size=5, go_size=2
    "sizes-default": ({"gene_size": 4, "go_size": 6}, {}, {}),
    # the GO encoder's posterior heads read every GO level, not only the root
    "head-levels": ({"head_input": "levels"}, {}, {}),
    # the UNKNOWN chain (the path of the genes and peaks without GO annotation) 64 neurons wide instead of 12
    "unknown64": ({"unknown_size": 64}, {}, {}),
    # what `go=None, annotations=None` give: the species' full annotations and their GO release from the registry
    "annotations-default": ({"go": None, "annotations": None}, {}, {}),
    # GO terms 10 neurons wide instead of the package's 6 (after sizes-default): more room above the gene nodes
    "go10": ({"go_size": 10}, {}, {}),
    # one / two neurons per ATAC gene node instead of the shared gene_size (most genes read one or two peaks)
    "atac-gene1": _wired_atac(gene_size=1),
    "atac-gene2": _wired_atac(gene_size=2),
    # a smaller learning rate than the 4e-3 every model gets here (MULTIVI's own default is 1e-4)
    "lr1e-3": ({}, {"lr": 1e-3}, {}),
    "lr1e-4": ({}, {"lr": 1e-4}, {}),
    # the UNKNOWN chain 64 wide for the ATAC peaks only (half the tutorial's peaks lie next to a gene without GO terms)
    "atac-unknown64": _wired_atac(unknown_size=64),
    "atac-unknown128": _wired_atac(unknown_size=128),
    # ATAC GO terms 2 neurons wide instead of the shared 6 (every wider ATAC encoder has lost on ATAC-only cells); the
    # RNA + ATAC mosaic default on 2026-12-07, and still the default width of a GO-wired ATAC encoder there. The
    # atac-* wiring variants wire the ATAC encoder (dense_modalities=()), as every GO model did before 2026-12-07b.
    "atac-go2": _wired_atac(go_size=2),
    # narrower still: one neuron per ATAC GO term
    "atac-go1": _wired_atac(go_size=1),
    "atac-go2-unknown64": _wired_atac(go_size=2, unknown_size=64),
    # scvi-tools' dense ATAC encoder next to the GO-wired RNA one (the RNA + ATAC mosaic default since 2026-12-07b),
    # and every modality GO-wired (the default before)
    "atac-dense": ({"dense_modalities": ("atac",)}, {}, {}),
    "atac-wired": ({"dense_modalities": ()}, {}, {}),
    # every modality at the shared wiring fields (the RNA + ATAC mosaic default until 2026-12-07: ATAC GO terms 6 wide)
    "atac-shared": ({"wiring_by_modality": {}, "dense_modalities": ()}, {}, {}),
    # regularising the encoders: dropout 0.1 (MULTIVI's) instead of none, AdamW's weight decay 1e-2 instead of 1e-3
    "dropout0.1": ({"dropout_rate": 0.1}, {}, {}),
    "wd1e-2": ({}, {"weight_decay": 1e-2}, {}),
    # the latent width: MULTIVI's rule (the square root of the hidden width: 11 on the tutorial multiome) and wider
    "latent-sqrt": ({"n_latent": "sqrt"}, {}, {}),
    "latent16": ({"n_latent": 16}, {}, {}),
    "latent13": ({"n_latent": 13}, {}, {}),
    # 10 dimensions, the width on RNA + ATAC mosaics until 2026-12-07h (the stored multiome-fraction GO rows made
    # before carry it in their names)
    "latent10": ({"n_latent": 10}, {}, {}),
    # GO depth 3 instead of the package's 2: four times the terms, each with fewer genes
    "depth3": ({"n_layers_encoder": 3}, {}, {}),
    # training without the gradient-spike guard (train(gradient_spike_factor=None)), as before 2026-12-06
    "no-guard": ({}, {"gradient_spike_factor": None}, {}),
}

KEY = ("encoder", "variant", "seed", "epochs", "n_cells")
METRICS = ("transfer_cross_acc", "transfer_cross_f1", "knn_cv", "silhouette_label", "mixing", "mixing_rna")
#: NETWORKVI only: how the modality experts meet (see ``expert_summary``).
EXPERT_METRICS = ("mixing_other", "rna_share_cite", "rna_share_multiome")
KEY_FRACTION = ("dataset", "fraction", *KEY)
METRICS_FRACTION = (
    "transfer_rna_acc",
    "transfer_other_acc",
    "transfer_rna_f1",
    "transfer_other_f1",
    "mixing",
    "knn_cv",
    "silhouette_label",
)


def settings(variant: str) -> tuple[dict, dict, dict]:
    """Model, train and plan keyword arguments of a variant (changes applied left to right)."""
    model, train, plan = {}, {}, {}
    for name in variant.split("+"):
        if name not in CHANGES:
            raise SystemExit(f"unknown change {name!r} in variant {variant!r}; changes: {', '.join(CHANGES)}")
        for target, change in zip((model, train, plan), CHANGES[name], strict=True):
            target.update(change)
    return model, train, plan


def fit(
    encoder: str, variant: str, mosaic, padded, epochs: int, batch_key: str = "dataset", rna_latent: bool = True
) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
    """Train one variant (or MULTIVI): the joint latent, (``rna_latent``) the RNA encoder's posterior means and
    (NETWORKVI on the cross mosaic) :func:`expert_summary`."""
    import scvi

    train = {"accelerator": "cpu", "enable_progress_bar": False, "lr": 4e-3}
    if variant == "multivi":
        layers = {"rna": "rna_layer", "prot": "protein_layer", "atac": "atac_layer"}
        modalities = {layers[name]: name for name in padded.mod}
        scvi.model.MULTIVI.setup_mudata(
            padded,
            batch_key=batch_key,
            modalities={**modalities, "batch_key": "rna"} if batch_key != "dataset" else modalities,
        )
        model = scvi.model.MULTIVI(padded)
        model.train(max_epochs=epochs, early_stopping=False, **train)
        rna = model.get_latent_representation(modality="expression") if rna_latent else None
        return model.get_latent_representation(), rna, {}
    model_kwargs, train_kwargs, plan_kwargs = settings(variant)
    train.update(train_kwargs)
    if plan_kwargs:
        train["plan_kwargs"] = plan_kwargs
    name = "networkvi-dense" if encoder == "dense" else "networkvi"
    model = bench.train_networkvi(name, mosaic, batch_key, epochs, train, model_kwargs)
    rna = model.get_latent_representation(modality="rna") if rna_latent else None
    experts = expert_summary(model, np.asarray(mosaic.obs["dataset"])) if rna_latent else {}
    return model.get_latent_representation(), rna, experts


def expert_summary(model, dataset: np.ndarray) -> dict[str, float]:
    """How the modality posteriors meet in the joint latent of the cross mosaic (NETWORKVI).

    ``mixing_other``: dataset mixing of each cell's second-modality posterior mean (protein for the CITE-seq cells,
    ATAC for the multiome ones); low when those two experts place the datasets apart. ``rna_share_<dataset>``: the
    RNA expert's share of the joint precision (product of experts, prior included), mean over cells and dimensions.
    """
    import torch

    means, variances, masks = [], [], []
    model.module.eval()
    with torch.no_grad():
        for tensors in model._make_data_loader(adata=model.adata, batch_size=512):
            out = model.module.inference(**model.module._get_inference_input(tensors))
            means.append(out["means"])
            variances.append(out["variances"])
            masks.append(out["masks"])
    means, variances, masks = (torch.cat(x).numpy() for x in (means, variances, masks))
    rna = model.module.modalities.index("rna")
    present = masks.copy()
    present[:, rna] = 0
    other = (means * present[..., None]).sum(1)  # each cell has exactly one modality besides RNA here
    precision = masks[..., None] / variances
    share = (precision[:, rna] / (1.0 + precision.sum(1))).mean(1)
    return {
        "mixing_other": bench.mixing_score(other, dataset),
        "rna_share_cite": float(share[dataset == "CITE-seq"].mean()),
        "rna_share_multiome": float(share[dataset != "CITE-seq"].mean()),
    }


def done_runs(path: Path, key: Sequence[str]) -> set[str]:
    """The runs already in the CSV at ``path``, as ``|``-joined key values (empty without a CSV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return set(pd.read_csv(path)[list(key)].astype(str).agg("|".join, axis=1)) if path.is_file() else set()


def append_row(path: Path, row: dict, shown: Sequence[str]) -> None:
    """Add the machine and time to ``row``, append it to the CSV at ``path`` and log its ``shown`` columns."""
    import torch

    row.update(threads=torch.get_num_threads(), machine=platform.machine(), cpus=os.cpu_count())
    row["finished"] = datetime.now().isoformat(timespec="seconds")
    frame = pd.DataFrame([row])
    frame.to_csv(path, mode="a", header=not path.is_file(), index=False)
    logger.info("%s", frame[list(shown)].round(3).to_string(index=False))


def run_fraction(args: argparse.Namespace) -> None:
    """``--fraction``: every (variant, seed) on the paired-fraction mosaic not yet in the CSV: train, score, append."""
    import scvi
    import torch

    torch.set_num_threads(args.threads)
    scvi.settings.verbosity = logging.WARNING
    done = done_runs(args.out, KEY_FRACTION)
    mdata = bench.load_paired(args.dataset, args.n_cells, seed=0)
    labels = mdata.obs["cell_type"].astype(str).to_numpy()
    other = bench.OTHER[args.dataset]
    for seed in args.seeds:
        groups = bench.split_groups(mdata.n_obs, args.fraction, seed)
        for variant in args.variants:
            encoder = "-" if variant in REFERENCES else args.encoder
            key = (args.dataset, args.fraction, encoder, variant, seed, args.epochs, mdata.n_obs)
            if "|".join(map(str, key)) in done:
                logger.info("%s: in %s, skipped", key, args.out)
                continue
            logger.info("%s encoder, %s, seed %d ...", encoder, variant, seed)
            scvi.settings.seed = seed
            start = time.perf_counter()
            mosaic = bench.mosaic_mudata(mdata, other, groups)
            padded = bench.padded_mudata(mdata, other, groups)
            latent, _, _ = fit(args.encoder, variant, mosaic, padded, args.epochs, batch_key="Site", rna_latent=False)
            order = padded.obs_names if variant in REFERENCES else mosaic.obs_names
            latent = pd.DataFrame(latent, index=order).loc[mdata.obs_names].to_numpy()
            row = dict(zip(KEY_FRACTION, key, strict=True))
            row["train_s"] = round(time.perf_counter() - start, 1)
            row.update(bench.evaluate(latent, labels, groups))
            append_row(args.out, row, [*KEY_FRACTION, *METRICS_FRACTION, "train_s"])


def run(args: argparse.Namespace) -> None:
    """Every (variant, seed) not yet in the CSV: train, score, append a row."""
    import scvi
    import torch

    torch.set_num_threads(args.threads)
    scvi.settings.verbosity = logging.WARNING
    done = done_runs(args.out, KEY)
    for seed in args.seeds:
        for variant in args.variants:
            encoder = "-" if variant in REFERENCES else args.encoder
            key = (encoder, variant, seed, args.epochs, args.n_cells)
            if "|".join(map(str, key)) in done:
                logger.info("%s: in %s, skipped", key, args.out)
                continue
            mosaic, padded, labels, dataset = bench.cross_mosaic(args.n_cells)
            logger.info("%s encoder, %s, seed %d ...", encoder, variant, seed)
            scvi.settings.seed = seed
            start = time.perf_counter()
            latent, rna_latent, experts = fit(args.encoder, variant, mosaic, padded, args.epochs)
            row = dict(zip(KEY, key, strict=True))
            row["train_s"] = round(time.perf_counter() - start, 1)
            row.update(bench.evaluate_cross(latent, labels, dataset))
            row["mixing_rna"] = bench.mixing_score(rna_latent, np.asarray(dataset))
            row.update(experts)
            append_row(args.out, row, [*KEY, *METRICS, "train_s"])


def summarize(path: Path, fraction: bool = False) -> pd.DataFrame:
    """Mean ± sd across seeds per (encoder, variant, epochs, cells); printed and written as ``<csv stem>.md``."""
    frame = pd.read_csv(path)
    by = ["dataset", "fraction"] if fraction else []
    metrics = [*(METRICS_FRACTION if fraction else METRICS), "train_s"]
    metrics += [m for m in EXPERT_METRICS if m in frame and not fraction]
    grouped = frame.groupby([*by, "n_cells", "epochs", "encoder", "variant"], sort=False)
    mean, sd = grouped[metrics].mean(), grouped[metrics].std()
    table = mean.copy().astype(object)
    for column in mean:
        table[column] = [
            f"{m:.3f}" if np.isnan(s) else f"{m:.3f} ± {s:.3f}" for m, s in zip(mean[column], sd[column], strict=True)
        ]
    table["seeds"] = grouped.size()
    table = table.reset_index()
    logger.info("\n%s", table.to_string(index=False))
    if fraction:
        header = (
            "# Mosaic ablation: one dataset with a fraction of its cells paired\n\n"
            f"`python benchmarks/mosaic_ablation.py --fraction F` -> `{path.name}`: mean ± sd across seeds (a value "
            "without ± is one seed). `transfer_rna` / `transfer_other`: kNN-15 from the paired cells to the RNA-only "
            "and the ATAC- or protein-only cells; `mixing`: of the three groups (1 = as mixed as random). Command "
            "lines: `benchmarks/README.md`, section 'Mosaic ablation'.\n\n"
        )
        path.with_suffix(".md").write_text(header + table.to_markdown(index=False) + "\n")
        return table
    header = (
        "# Mosaic ablation: CITE-seq + multiome, dataset mixing\n\n"
        f"`python benchmarks/mosaic_ablation.py` -> `{path.name}`: mean ± sd across seeds (a value without ± is one "
        "seed). `mixing`: dataset mixing of the joint latent (1 = as mixed as random, 0 = apart); `mixing_rna`: the "
        "same for the RNA encoder's posterior means alone. Command lines: `benchmarks/README.md`, section "
        "'Mosaic ablation'.\n\n"
    )
    path.with_suffix(".md").write_text(header + table.to_markdown(index=False) + "\n")
    return table


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["base", "multivi"])
    parser.add_argument("--encoder", choices=("dense", "go"), default="dense")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--n-cells", type=int, default=2000)
    parser.add_argument("--fraction", type=float, default=None, help="the paired-fraction mosaic of --dataset")
    parser.add_argument("--dataset", choices=sorted(bench.OTHER), default="multiome", help="with --fraction")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="CSV (default results/mosaic_ablation.csv, or mosaic_fraction_ablation.csv with --fraction)",
    )
    parser.add_argument("--summarize", action="store_true", help="only summarise the CSV, train nothing")
    args = parser.parse_args()
    if args.out is None:
        args.out = OUT if args.fraction is None else OUT_FRACTION
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("scvi", "scvi_networkvi", "lightning", "lightning.pytorch", "lightning.fabric", "py.warnings"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    warnings.filterwarnings("ignore", category=UserWarning)
    if not args.summarize:
        for variant in args.variants:
            if variant not in REFERENCES:
                settings(variant)  # unknown names fail before any training
        run(args) if args.fraction is None else run_fraction(args)
    summarize(args.out, fraction=args.fraction is not None)


if __name__ == "__main__":
    main()
