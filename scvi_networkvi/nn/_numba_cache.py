"""Where numba keeps the compiled kernels of this package (``cache=True``), when the package folder is read-only.

numba writes a cached function's machine code next to its source file (``__pycache__``); where that folder is not
writable (a package installed by another user, a read-only image), it uses the user-wide cache folder instead
(``$XDG_CACHE_HOME/numba``, by default ``~/.cache/numba``), and ``NUMBA_CACHE_DIR`` overrides both. So an installed
package needs no write access to its own folder. Checked with a copy of the package on a read-only bind mount:
the kernels compiled once, their cache landed in ``~/.cache/numba/nn_<hash>/`` and the next process loaded it,
without a warning.

Where neither folder is writable and ``NUMBA_CACHE_DIR`` is not set (a container user without a home folder),
numba raises ``RuntimeError: cannot cache function ...: no locator available`` while decorating, i.e. importing
:mod:`scvi_networkvi.nn` failed. :func:`ensure_cache_location` then points numba's cache at a private folder in the
temporary directory, as ``NUMBA_CACHE_DIR`` would: the kernels compile once per machine instead of failing.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile

import numba

logger = logging.getLogger(__name__)


def _probe() -> int:  # pragma: no cover - decorated, never called
    return 0


def can_cache() -> bool:
    """Whether numba finds a writable cache folder for a ``cache=True`` function of this folder (nothing compiles)."""
    try:
        numba.njit(cache=True)(_probe)
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        return False
    return True


def _private_folder(path: str) -> bool:
    """Create ``path`` (mode 700) unless it exists; whether it is a folder only this user can write.

    numba loads pickled machine code from its cache, so a folder another user could write is never used.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return False
    owner = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return stat.S_ISDIR(info.st_mode) and owner and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def ensure_cache_location() -> str | None:
    """Make ``cache=True`` work in this folder; returns the fallback cache folder when one was needed, else ``None``.

    Called before this package's first cached kernel is decorated (:mod:`._torch_threads`). Does nothing where numba
    finds a cache folder itself (the package's ``__pycache__``, the user-wide folder or ``NUMBA_CACHE_DIR``); else sets
    ``numba.config.CACHE_DIR`` (what ``NUMBA_CACHE_DIR`` sets) to ``<tmp>/numba-cache-<uid>`` for this process, or to
    a fresh private temporary folder when that one belongs to someone else.
    """
    if can_cache():
        return None
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    folder = os.path.join(tempfile.gettempdir(), f"numba-cache-{uid}")
    if not _private_folder(folder):
        folder = tempfile.mkdtemp(prefix="numba-cache-")
    numba.config.CACHE_DIR = folder
    if not can_cache():  # pragma: no cover - the temporary folder is not writable either
        raise RuntimeError(
            f"numba cannot write its cache anywhere (package folder, user cache folder, {folder}): set "
            "NUMBA_CACHE_DIR to a writable folder."
        )
    logger.info("No writable numba cache folder: the compiled kernels are cached in %s.", folder)
    return folder
