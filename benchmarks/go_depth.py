"""Which GO depth for real analyses? Kept terms, parameters, time and interpretability at depths 2-4.

For each ``--depths`` entry, ``benchmarks/interpretability.py --parts top gap size --depth D`` trains NETWORKVI on the
tutorial CITE-seq cells (5000, batch ``Site``) with the full human annotations (registry ``org.Hs.eg.db`` with
``GO.db``, Bioconductor 3.16, GO 2022-07-01), ``gene_size=5, go_size=2``, and computes the importances with the
size-matched reference and gene-set test (``null_sets``), writing its tables to ``--runs-dir/dD``. This script then
collects per depth: GO terms kept (per modality, per level), trainable parameters, training and importance seconds,
the expected-term check (a term with one of the cell type's keywords in the top 5; fixed lists in
``interpretability.py``), the median gene count of the top-10 terms and the share of the top-10 terms whose own gene
set beats random sets of its size (``pval_set <= 0.05``), into ``go_depth.md`` in ``--out-dir``.

Usage::

    python benchmarks/go_depth.py [--depths 2 3 4] [--epochs 50] [--seed 0] [--null-sets 100] [--threads 1]
        [--runs-dir benchmarks/results/go_depth] [--out-dir benchmarks/results] [--summarize-only]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
from _portable import portable_command  # the sibling script (on sys.path)

logger = logging.getLogger("benchmarks.go_depth")
HERE = Path(__file__).resolve().parent

_RUNS = re.compile(
    r"GO depth (?P<depth>\d+), (?P<parameters>[\d,]+) parameters, GO terms per level (?P<rna>\{[^}]*\}) \(rna\) / "
    r"(?P<protein>\{[^}]*\}) \(protein\), train (?P<train>\d+) s, importances (?P<imp>\d+) s"
)
_SIZE_ROWS = {
    "top-10 by auroc: fraction with pval_set <= 0.05": "top-10 passing the gene-set test",
    "top-10 by auroc: median n_genes (mean over cell types)": "top-10 median genes",
    "fraction pval_set <= 0.05": "all terms passing the gene-set test",
}


def run_depth(args: argparse.Namespace, depth: int) -> None:
    out = args.runs_dir / f"d{depth}"
    command = [sys.executable, str(HERE / "interpretability.py"), "--parts", "top", "gap", "size"]
    command += ["--epochs", str(args.epochs), "--seeds", str(args.seed), "--null-sets", str(args.null_sets)]
    command += ["--depth", str(depth), "--threads", str(args.threads), "--out-dir", str(out)]
    logger.info("depth %d: %s", depth, " ".join(command))
    subprocess.run(command, check=True)


def _terms(levels: str) -> int:
    return sum(int(v) for v in re.findall(r":\s*(\d+)", levels)) - 1  # minus the root


def summarize_depth(folder: Path) -> dict:
    """One row of the depth table from an interpretability run's tables."""
    size_md = (folder / "interpretability_size.md").read_text()
    runs = _RUNS.search(size_md)
    if runs is None:
        raise SystemExit(f"{folder}: no run line with the GO depth; re-run interpretability.py with --depth.")
    row = {
        "depth": int(runs["depth"]),
        "GO terms rna / protein": f"{_terms(runs['rna'])} / {_terms(runs['protein'])}",
        "terms per level (rna)": runs["rna"],
        "parameters": int(runs["parameters"].replace(",", "")),
        "train s": int(runs["train"]),
        "importances s": int(runs["imp"]),
    }
    table = pd.read_csv(folder / "interpretability_top_terms.csv")
    for modality, sub in table.groupby("modality"):
        per_type = sub.groupby("cell_type")["keyword_hit"].any()
        row[f"keyword in top 5 ({modality})"] = f"{int(per_type.sum())}/{len(per_type)}"
    statistics = {}
    for line in size_md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] in _SIZE_ROWS and len(cells) >= 4:
            statistics[cells[0]] = cells[1:]
    header = next(line for line in size_md.splitlines() if line.startswith("| statistic"))
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    for statistic, label in _SIZE_ROWS.items():
        for column, value in zip(columns, statistics.get(statistic, []), strict=False):
            modality = column.split(", ")[-1]
            if modality in ("rna", "prot"):
                row[f"{label} ({modality})"] = value
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--null-sets", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs-dir", type=Path, default=HERE / "results" / "go_depth")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    parser.add_argument("--summarize-only", action="store_true", help="only collect existing runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if not args.summarize_only:
        for depth in args.depths:
            run_depth(args, depth)
    rows = [summarize_depth(args.runs_dir / f"d{depth}") for depth in args.depths]
    frame = pd.DataFrame(rows).set_index("depth").T
    shown = portable_command(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--summarize-only")
    text = (
        "# GO depth with the full human annotations\n\n"
        f"Generated by `python benchmarks/go_depth.py {shown}` on {datetime.date.today().isoformat()}, "
        f"{platform.machine()} ({os.cpu_count()} cores, shared with other jobs), Python {platform.python_version()}; "
        "one seed per depth. Each column is one `benchmarks/interpretability.py --depth D` run (tutorial CITE-seq, "
        f"5000 cells, `org.Hs.eg.db` + `GO.db`, `gene_size=5, go_size=2`, {args.epochs} epochs, CPU, "
        f"`null_sets={args.null_sets}`); the gene-set test is `pval_set <= 0.05`, the keyword check the fixed lists "
        "of `interpretability.py`. Times include the machine's contention and compare depths only roughly.\n\n"
        + frame.to_markdown()
        + "\n"
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "go_depth.md").write_text(text)
    logger.info("wrote %s\n%s", args.out_dir / "go_depth.md", frame.to_string())


if __name__ == "__main__":
    main()
