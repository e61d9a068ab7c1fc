"""numba's kernel cache with a read-only installed package (site-packages owned by another user).

Each test runs a copy of the package in a fresh interpreter whose writes under the copy fail (and, for the second
test, under the home and user cache folders too): the tests run as root here, where file modes stop no write, so the
interpreter fails them itself by wrapping the write entry points of ``os`` and ``io`` (what numba's cache locators
use to find a writable folder). A real read-only bind mount gave the same outcome (see ``nn/_numba_cache.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "scvi_networkvi"

# Runs in the child: argv[1] a folder (colon-separated list) where writes fail, then the code to run.
_READ_ONLY = textwrap.dedent(
    """
    import builtins, errno, io, os, sys
    BLOCKED = [os.path.realpath(p) for p in sys.argv[1].split(":")]

    def blocked(path):
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False
        real = os.path.realpath(os.fsdecode(path))
        return any(real == b or real.startswith(b + os.sep) for b in BLOCKED)

    def refuse(path):
        raise PermissionError(errno.EROFS, "Read-only file system", os.fsdecode(path))

    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def wrap_open(original):
        def opener(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+") and blocked(file):
                refuse(file)
            return original(file, mode, *args, **kwargs)
        return opener

    def wrap_os_open(original):
        def opener(path, flags, *args, **kwargs):
            if flags & WRITE and blocked(path):
                refuse(path)
            return original(path, flags, *args, **kwargs)
        return opener

    def wrap_path(original, n=1):
        def call(*args, **kwargs):
            for path in args[:n]:
                if blocked(path):
                    refuse(path)
            return original(*args, **kwargs)
        return call

    builtins.open = io.open = wrap_open(io.open)
    os.open = wrap_os_open(os.open)
    os.mkdir, os.rmdir, os.remove, os.unlink = (wrap_path(f) for f in (os.mkdir, os.rmdir, os.remove, os.unlink))
    os.replace, os.rename = wrap_path(os.replace, 2), wrap_path(os.rename, 2)
    os.utime, os.chmod = wrap_path(os.utime), wrap_path(os.chmod)
    del sys.argv[1]
    exec(compile(sys.argv[1], "<test>", "exec"))
    """
)

# Import the package's kernels and run a cached njit function and a cached cfunc on torch's team.
_KERNELS = textwrap.dedent(
    """
    import warnings
    warnings.simplefilter("error")  # no warning of any kind
    import numba, torch
    from scvi_networkvi.nn import _keep_mask, _numba_cache, _torch_threads
    torch.set_num_threads(2)
    small = _keep_mask.keep_mask((1000,), 0.25)  # serial: the njit kernel
    large = _keep_mask.keep_mask((1 << 19,), 0.25)  # torch's team where reachable: the cfunc worker
    assert 0.2 < 1 - small.mean() < 0.3 and 0.24 < 1 - large.mean() < 0.26
    print("CACHE_DIR", numba.config.CACHE_DIR or "")
    print("HITS", len(_keep_mask._draw.stats.cache_hits))
    """
)


def _copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    shutil.copytree(PACKAGE, root / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def _run(root: Path, blocked: list[Path], env: dict[str, str]) -> dict[str, str]:
    """Run :data:`_KERNELS` on the copy in ``root`` with writes under ``blocked`` failing; its printed values."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_"))}
    clean.update(PYTHONPATH=os.fspath(root), PYTHONDONTWRITEBYTECODE="1", **env)
    command = [sys.executable, "-c", _READ_ONLY, ":".join(map(os.fspath, blocked)), _KERNELS]
    done = subprocess.run(command, env=clean, cwd=root, capture_output=True, text=True, timeout=600)  # not the checkout
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stderr, done.stderr[-3000:]
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("CACHE_DIR", "HITS")))


def _cache_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.nbi"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_read_only_package_caches_its_kernels_in_the_user_cache_folder(tmp_path):
    root = _copy_package(tmp_path)
    cache_home = tmp_path / "xdg-cache"
    env = {"HOME": os.fspath(tmp_path / "home"), "XDG_CACHE_HOME": os.fspath(cache_home)}
    first = _run(root, [root], env)
    assert first["CACHE_DIR"].strip() == ""  # numba found its own folder: nothing of ours was needed
    assert not _cache_files(root)  # nothing written into the package
    cached = _cache_files(cache_home / "numba")
    assert any(p.name.startswith("_keep_mask._draw-") for p in cached), cached
    second = _run(root, [root], env)  # a new process loads the kernels from there
    assert int(second["HITS"]) >= 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_no_writable_cache_folder_falls_back_to_a_private_temporary_folder(tmp_path):
    root = _copy_package(tmp_path)
    home, temporary = tmp_path / "home", tmp_path / "tmp"
    temporary.mkdir()
    env = {"HOME": os.fspath(home), "XDG_CACHE_HOME": os.fspath(home / ".cache"), "TMPDIR": os.fspath(temporary)}
    first = _run(root, [root, home], env)  # numba alone: "cannot cache function ...: no locator available"
    folder = Path(first["CACHE_DIR"].strip())
    assert folder.parent == temporary and folder.name.startswith("numba-cache-")
    assert (folder.stat().st_mode & 0o077) == 0  # private: numba loads pickled code from it
    assert not _cache_files(root) and not home.exists()
    assert _cache_files(folder)  # the next process loads them, as from any cache folder (first test)
