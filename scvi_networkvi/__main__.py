"""Command line: ``python -m scvi_networkvi {demo,fetch,list}``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

logger = logging.getLogger("scvi_networkvi")


def _demo(args: argparse.Namespace) -> int:
    from scvi_networkvi.datasets import example, example_resources
    from scvi_networkvi.wiring import compile_wirings

    mdata = example()
    paths = example_resources()
    features = {mod: mdata[mod].var["gene_stable_id"].tolist() for mod in mdata.mod}
    wirings = compile_wirings(
        features,
        go=paths["go"],
        annotations=paths["annotations"],
        interactions=paths["interactions"],
        feature_names={mod: mdata[mod].var_names.tolist() for mod in mdata.mod},
        max_depth=args.depth,
        gene_size=5,
        term_size=2,
    )
    out = sys.stdout
    out.write(f"Embedded example: {mdata.n_obs} cells; " + ", ".join(f"{m}: {mdata[m].n_vars}" for m in mdata.mod))
    out.write("\n")
    for wiring in wirings.values():
        out.write(f"\n{wiring!r}\n")
        out.write(wiring.summary_frame().to_string() + "\n")
        frame = wiring.term_frame()
        top = frame[frame["kind"] == "go"].sort_values("n_genes", ascending=False).head(args.top)
        out.write(f"Largest GO terms of {wiring.modality!r}:\n{top[['name', 'depth', 'n_genes']].to_string()}\n")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from scvi_networkvi.resources import fetch_many

    for name, path in fetch_many(args.names, progressbar=not args.quiet).items():
        sys.stdout.write(f"{name}\t{path}\n")
    return 0


def _list(args: argparse.Namespace) -> int:
    from scvi_networkvi.resources import list_resources

    table = list_resources()[["kind", "release", "cached", "description"]]
    sys.stdout.write(table.to_string(max_colwidth=90) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m scvi_networkvi`` and the ``networkvi`` script."""
    parser = argparse.ArgumentParser(prog="python -m scvi_networkvi", description="scvi-networkvi command line")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level)")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="compile the GO wiring of the embedded example and print its summary")
    demo.add_argument("--depth", type=int, default=2, help="deepest GO level kept (n_layers_encoder)")
    demo.add_argument("--top", type=int, default=8, help="how many GO terms to list per modality")
    demo.set_defaults(func=_demo)
    fetch = sub.add_parser("fetch", help="download resources into the cache (for air-gapped clusters)")
    fetch.add_argument("names", nargs="+", help="registry names, see `list`")
    fetch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(func=_fetch)
    listing = sub.add_parser("list", help="list the registered resources and whether they are cached")
    listing.set_defaults(func=_list)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        sys.stderr.write(f"error: {message}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
