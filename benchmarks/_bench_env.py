"""The run environment of the benchmarks: thread limits (torch, BLAS/OpenMP, XLA), quiet loggers, versions."""

from __future__ import annotations

import logging
import os
import sys


def versions(scoring: bool = True) -> str:
    import numpy as np
    import scvi
    import torch

    found = {"python": sys.version.split()[0], "torch": torch.__version__, "scvi-tools": scvi.__version__}
    if scoring:
        import jax
        import scib_metrics

        found.update({"scib-metrics": scib_metrics.__version__, "jax": jax.__version__})
    found["numpy"] = np.__version__
    return " ".join(f"{k}={v}" for k, v in found.items())


def xla_flags(existing: str, threads: int) -> str:
    """``XLA_FLAGS`` for ``threads``: the user's flags, plus single-threaded Eigen for one thread.

    XLA reads only ``--name=value`` tokens and aborts on anything else, so nothing without the ``--`` prefix may be
    added (an ``intra_op_parallelism_threads=N`` token made scoring abort with two threads); XLA's CPU client has no
    flag for its thread count, which with more than one thread stays its own.
    """
    flags = existing.split()
    if threads == 1 and not any(f.startswith("--xla_cpu_multi_thread_eigen") for f in flags):
        flags.append("--xla_cpu_multi_thread_eigen=false")
    return " ".join(flags)


def set_threads(threads: int) -> None:
    """Thread limits for BLAS/OpenMP and XLA (set before numpy and jax are imported), torch and scvi-tools."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["XLA_FLAGS"] = xla_flags(os.environ.get("XLA_FLAGS", ""), threads)
    import scvi
    import torch

    torch.set_num_threads(threads)
    scvi.settings.num_threads = threads


def _quiet() -> None:
    """Only warnings from the libraries (Lightning sets its own loggers to INFO when imported)."""
    for name in (
        "scvi",
        "scvi_networkvi",
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "py.warnings",
        "jax",
        "scib_metrics",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
