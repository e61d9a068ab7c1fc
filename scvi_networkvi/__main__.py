"""Command line: ``python -m scvi_networkvi {demo,fetch,list}``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import MutableMapping, Sequence

logger = logging.getLogger("scvi_networkvi")


def openmp_threads_sleep(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Let torch's OpenMP threads sleep while they wait, unless the user chose a policy; whether it was set.

    libgomp's threads spin (about 300,000 times) after every parallel operation before they sleep. On a machine whose
    cores are busy with other work that spinning takes the cores from the thread with the next operation: training
    at two threads on a 2-core VM busy with other work ran 6-20x slower than with ``OMP_WAIT_POLICY=PASSIVE``, TOTALVI
    as NETWORKVI (benchmarks/results/contention_2026-12-06.md). Read when torch is imported, so the command line sets
    it for its own process before anything imports torch; the library leaves a user's process as it is.
    """
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def _demo(args: argparse.Namespace) -> int:
    from scvi_networkvi._demo import run_demo

    # Bars redraw with carriage returns: in a log file or a pipe they are noise, so only on a terminal.
    progress = not args.quiet and sys.stderr.isatty()
    run_demo(args.out, epochs=args.epochs, top=args.top, stream=sys.stdout, progress=progress)
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
    demo.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars (none when stderr is not a terminal)"
    )
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
    if "torch" not in sys.modules:  # too late once torch (and its OpenMP runtime) is loaded
        openmp_threads_sleep()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        sys.stderr.write(f"error: {message}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
