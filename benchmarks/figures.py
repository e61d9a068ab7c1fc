"""Figures of the results page (``docs/benchmarks.md``), drawn from the result tables in ``benchmarks/results/``.

Each benchmark script writes its rows to a CSV there; this script reads those CSVs (it trains nothing) and draws one
SVG per question into ``docs/_static/benchmarks/``:

- ``integration.svg``: scib-metrics bio conservation, batch correction and total per model on paired CITE-seq and
  multiome (``integration.py``), mean and the single seeds;
- ``query_mapping.svg``: label-transfer accuracy and macro-F1 from sites 2-4 to site 1 (``query_mapping.py``);
- ``mosaic.svg``: label transfer to RNA-only cells over the paired fraction, CITE-seq and multiome (``mosaic.py
  --go-settings default``: the GO encoder with the package's default resources and sizes);
- ``scaling.svg``: training cells/s over cells (``scaling.py --axes cells``, one CPU thread) and the throughput ratio
  NETWORKVI / TOTALVI over the GO wiring's size on one CPU thread and on a GPU (``scaling.py --axes go``).

    python benchmarks/figures.py [--results DIR] [--out DIR]

Re-run after a benchmark has added rows; the docs build only includes the SVGs, so it needs neither the data nor
this script.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FuncFormatter

logger = logging.getLogger("figures")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "_static" / "benchmarks"

# The docs' content column is about 7 inches (670 px) wide on a desktop screen: a figure drawn wider is shrunk to fit
# it, and its small print with it. Two-panel figures are drawn at that width, one-panel ones narrower.
COLUMN_WIDTH = 7.0

# One colour per model across every figure; the peers share one (TOTALVI on CITE-seq, MULTIVI on multiome).
COLOURS = {"NETWORKVI": "#1b9e77", "NETWORKVI-dense": "#7570b3", "peer": "#d95f02", "PCA": "#999999"}
PEERS = {"TOTALVI", "MULTIVI"}
# scripts spell the models in lower case in some tables
MODEL_NAMES = {
    "networkvi": "NETWORKVI",
    "networkvi-dense": "NETWORKVI-dense",
    "totalvi": "TOTALVI",
    "multivi": "MULTIVI",
}


def read(results: Path, name: str, made_by: str) -> pd.DataFrame:
    """Read ``results/name``, or stop with the benchmark command that makes it."""
    path = results / name
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `{made_by}` first (or pass --results DIR).")
    frame = pd.read_csv(path)
    if frame.empty:
        raise SystemExit(f"{path} has no rows: run `{made_by}` first.")
    if "model" in frame:
        frame["model"] = frame["model"].map(lambda name: MODEL_NAMES.get(name, name))
    return frame


def colour(model: str) -> str:
    return COLOURS["peer"] if model in PEERS else COLOURS.get(model, "#444444")


def _bars(ax, frame: pd.DataFrame, models: list[str], metrics: list[str]) -> dict:
    """Grouped bars (one group per metric, one bar per model): seed mean, with the seeds as dots."""
    width = 0.8 / len(models)
    means = {}
    for i, model in enumerate(models):
        rows = frame[frame["model"] == model]
        for j, metric in enumerate(metrics):
            values = rows[metric].dropna().to_numpy(float)
            x = j + (i - (len(models) - 1) / 2) * width
            means[(model, metric)] = float(values.mean())
            ax.bar(x, values.mean(), width * 0.9, color=colour(model), label=model if j == 0 else None)
            ax.plot([x] * len(values), values, "o", color="black", markersize=2.5)
    ax.set_xticks(range(len(metrics)), [metric.replace(" ", "\n") for metric in metrics])  # two-word names fit
    ax.grid(axis="y", alpha=0.3)
    return means


def integration(results: Path, out: Path) -> dict:
    """scib-metrics of the paired integration runs; returns the plotted seed means by (dataset, model, metric)."""
    frame = read(results, "integration.csv", "python benchmarks/integration.py --datasets cite multiome")
    metrics = ["Bio conservation", "Batch correction", "Total"]
    datasets = [d for d in ("cite", "multiome") if d in set(frame["dataset"])]
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(COLUMN_WIDTH / 2 * len(datasets), 3.4), squeeze=False, sharey=True
    )
    plotted = {}
    for ax, dataset in zip(axes[0], datasets, strict=True):
        rows = frame[frame["dataset"] == dataset]
        order = ["NETWORKVI", "NETWORKVI-dense", *sorted(PEERS & set(rows["model"])), "PCA"]
        models = [m for m in order if m in set(rows["model"])]
        means = _bars(ax, rows, models, metrics)
        plotted.update({(dataset, *key): value for key, value in means.items()})
        ax.set_title({"cite": "paired CITE-seq", "multiome": "paired multiome"}[dataset])
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("scib-metrics score (3 seeds)")
    _save(fig, out / "integration.svg")
    return plotted


def query_mapping(results: Path, out: Path) -> dict:
    """Label transfer from the reference sites to site 1; returns the seed means by (model, metric)."""
    frame = read(results, "query_mapping.csv", "python benchmarks/query_mapping.py")
    models = [m for m in ("NETWORKVI", "NETWORKVI-dense", "TOTALVI") if m in set(frame["model"])]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    plotted = _bars(ax, frame, models, ["accuracy", "macro_f1"])
    ax.set_xticks([0, 1], ["accuracy", "macro-F1"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("query (site 1) label transfer")
    ax.set_title("query mapping, sites 2-4 -> site 1 (TOTALVI: scArches)")
    ax.legend(fontsize=7)
    _save(fig, out / "query_mapping.svg")
    return plotted


#: The rows ``mosaic.svg`` draws: both datasets (multiome on 2000 cells) with the GO encoder's package defaults.
MOSAIC_COMMAND = (
    "python benchmarks/mosaic.py --datasets cite --fractions 0.2 0.6 --seeds 0 1 2 --go-settings default "
    "--out benchmarks/results/mosaic_defaults.csv, then the same with --datasets multiome --n-cells 2000"
)


def mosaic(results: Path, out: Path) -> dict:
    """Label transfer to the RNA-only cells over the paired fraction; returns the means by (dataset, fraction, model)."""
    frame = read(results, "mosaic_defaults.csv", MOSAIC_COMMAND)
    datasets = [d for d in ("cite", "multiome") if d in set(frame["dataset"])]
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(COLUMN_WIDTH / 2 * len(datasets), 3.2), squeeze=False, sharey=True
    )
    plotted = {}
    for ax, dataset in zip(axes[0], datasets, strict=True):
        rows = frame[frame["dataset"] == dataset]
        for model, group in rows.groupby("model", sort=True):
            stats = group.groupby("fraction")["transfer_rna_acc"].agg(["mean", "min", "max"])
            plotted.update({(dataset, float(f), model): float(m) for f, m in stats["mean"].items()})
            ax.errorbar(
                stats.index,
                stats["mean"],
                yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
                marker="o",
                capsize=3,
                color=colour(model),
                label=model,
            )
        ax.set_title({"cite": "CITE-seq mosaic", "multiome": "multiome mosaic (2000 cells)"}[dataset])
        ax.set_xlabel("fraction of cells paired")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("label transfer to RNA-only cells\n(accuracy, 3 seeds: mean and range)")
    _save(fig, out / "mosaic.svg")
    return plotted


def scaling(results: Path, out: Path) -> dict:
    """Cells/s over cells (CPU) and the NETWORKVI / TOTALVI ratio over GO size (CPU and GPU where measured)."""
    cells = read(results, "scaling_cells.csv", "python benchmarks/scaling.py --axes cells")
    go_tables = {"1 CPU thread": read(results, "scaling_go.csv", "python benchmarks/scaling.py --axes go")}
    if (results / "scaling_go_cuda.csv").is_file():
        gpu = read(results, "scaling_go_cuda.csv", "bash benchmarks/gpu.sh")
        go_tables[f"GPU ({str(gpu['device'].iloc[0]).removeprefix('NVIDIA ')})"] = gpu
    fig, (left, right) = plt.subplots(1, 2, figsize=(COLUMN_WIDTH, 3.4))
    plotted = {}
    for model, group in cells.groupby("model", sort=True):
        group = group.sort_values("n_cells")
        plotted.update(
            {("cells", model, int(n)): float(v) for n, v in zip(group["n_cells"], group["cells_per_s"], strict=True)}
        )
        left.plot(group["n_cells"], group["cells_per_s"], marker="o", color=colour(model), label=model)
    left.set_xscale("log")
    _label(left, "cells (resampled tutorial CITE-seq)", "training cells/s, 1 CPU thread", "growth over cells")
    for (where, table), marker in zip(go_tables.items(), ("o", "s"), strict=False):
        reference = table.loc[table["model"] == "TOTALVI", "cells_per_s"]
        if reference.empty:
            raise SystemExit(f"no TOTALVI row in the GO-axis table for {where}: re-run scaling.py --axes go")
        for gaf, group in table[table["model"] == "NETWORKVI"].groupby("gaf", sort=True):
            group = group.sort_values("gene_term_rna")
            ratio = group["cells_per_s"] / float(reference.iloc[0])
            plotted.update({("go", where, gaf, int(d)): float(r) for d, r in zip(group["depth"], ratio, strict=True)})
            line = right.plot(group["gene_term_rna"], ratio, marker=marker, label=f"{gaf} GAF, {where}")[0]
            for depth, x, y in zip(group["depth"], group["gene_term_rna"], ratio, strict=True):
                right.annotate(
                    f"d{depth}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7, color=line.get_color()
                )
    right.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    right.set_xlim(left=0)
    right.xaxis.set_major_formatter(
        FuncFormatter(lambda value, _: f"{value / 1000:g}k" if value else "0")
    )  # 10k, not 10000
    _label(
        right, "gene-term links of the RNA GO network", "cells/s NETWORKVI / TOTALVI", "growth over GO size (d = depth)"
    )
    _save(fig, out / "scaling.svg")
    return plotted


def _label(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_ylim(bottom=0)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # a fixed hash salt and no date: re-drawing unchanged tables gives the same file
    fig.savefig(path, metadata={"Date": None}, format="svg")
    plt.close(fig)
    logger.info("wrote %s", path)


FIGURES = {"integration": integration, "query_mapping": query_mapping, "mosaic": mosaic, "scaling": scaling}


def draw(results: Path = RESULTS, out: Path = OUT, names: list[str] | None = None) -> dict[str, dict]:
    """Draw the figures ``names`` (default all) from ``results`` into ``out``; returns what each one plotted."""
    matplotlib.rcParams["svg.hashsalt"] = "scvi-networkvi"
    return {name: FIGURES[name](results, out) for name in names or FIGURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), help="draw only these figures")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    draw(args.results, args.out, args.only)


if __name__ == "__main__":
    main()
