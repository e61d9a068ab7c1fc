"""Wiring compile time: full go-basic + full human GAF, cold (empty cache) and from cache.

Reference run in the same process: reading the same two files with goatools' own readers (GODag + GafReader),
which is what the original NetworkVI does before any wiring work (it parses the OBO once per encoder on top).

    python benchmarks/wiring_compile.py [--obo PATH] [--gaf PATH] [--repeats 3]

Defaults: the files of ``get_tutorial_data.sh`` (go-basic 2025-03-16) and ``get_human_go.sh`` (392k annotations).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from scvi_networkvi.wiring import compile_wiring

logger = logging.getLogger("benchmarks.wiring_compile")
HOME = Path.home() / ".cache"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obo", type=Path, default=HOME / "nvi-tutorial-data" / "go-basic.obo")
    parser.add_argument("--gaf", type=Path, default=HOME / "nvi-human-go" / "ensembl2go-human-2022.gaf")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("scvi_networkvi").setLevel(logging.WARNING)
    for path in (args.obo, args.gaf):
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run get_tutorial_data.sh and get_human_go.sh first.")

    genes = pd.read_csv(args.gaf, sep="\t", comment="!", header=None, usecols=[1], dtype=str)[1].unique()
    settings = {"tutorial depth 2": {"max_depth": 2}, "no depth cut": {"max_depth": 30}}
    rows = []
    for label, config in settings.items():
        cold, cached = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                os.environ["SCVI_NETWORKVI_DATA_DIR"] = cache
                cold.append(_timed(lambda c=config: compile_wiring(genes, go=args.obo, annotations=args.gaf, **c)))
                cached.append(_timed(lambda c=config: compile_wiring(genes, go=args.obo, annotations=args.gaf, **c)))
        wiring = compile_wiring(genes, go=args.obo, annotations=args.gaf, cache=False, **config)
        rows.append(
            {
                "setting": label,
                "genes": wiring.n_genes,
                "terms": wiring.n_terms,
                "cold_s": statistics.median(cold),
                "cached_s": statistics.median(cached),
            }
        )

    from goatools.anno.gaf_reader import GafReader
    from goatools.obo_parser import GODag

    def goatools_read():
        with contextlib.redirect_stdout(io.StringIO()):
            GODag(str(args.obo), prt=None)
            GafReader(str(args.gaf), prt=None).get_id2gos(namespace="BP", prt=None)

    reference = statistics.median(_timed(goatools_read) for _ in range(max(1, args.repeats - 1)))
    table = pd.DataFrame(rows).set_index("setting")
    table["goatools_read_s / cold_s"] = reference / table["cold_s"]
    pd.set_option("display.width", 160)
    logger.info("Inputs: %s (%s), %s (%d genes)", args.obo.name, args.obo.stat().st_size, args.gaf.name, len(genes))
    logger.info("Reference (goatools GODag + GafReader, reading only): %.2f s", reference)
    logger.info("\n%s", table.round(3).to_string())
    logger.info("Targets: cold <= 3 s, cached <= 0.3 s.")


if __name__ == "__main__":
    main()
