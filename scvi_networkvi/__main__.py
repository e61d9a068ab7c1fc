"""Command line: ``python -m scvi_networkvi {demo,fetch,list}``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

logger = logging.getLogger("scvi_networkvi")


def _demo(args: argparse.Namespace) -> int:
    from scvi_networkvi._demo import run_demo

    run_demo(args.out, epochs=args.epochs, top=args.top, stream=sys.stdout, progress=not args.quiet)
    return 0


def demo_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``networkvi-demo`` script: ``python -m scvi_networkvi demo``."""
    return main(["demo", *(sys.argv[1:] if argv is None else argv)])


def _fetch(args: argparse.Namespace) -> int:
    from scvi_networkvi.resources import default_registry, fetch_many

    names = args.names or default_registry().defaults()
    for name, path in fetch_many(names, progressbar=not args.quiet).items():
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
    demo = sub.add_parser(
        "demo",
        help="the full workflow on the embedded example, offline: train, embed, UMAP, importances, a perturbation",
    )
    demo.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    demo.add_argument("--out", default="networkvi-demo", help="folder for the figures (default ./networkvi-demo)")
    demo.add_argument("--top", type=int, default=3, help="GO terms listed per cell type")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    fetch = sub.add_parser("fetch", help="download resources into the cache (for air-gapped clusters)")
    fetch.add_argument(
        "names",
        nargs="*",
        help="registry names, see `list` (none: the default GO annotations of each species and the GO release they use)",
    )
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
