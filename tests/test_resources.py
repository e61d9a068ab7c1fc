"""Tests of :mod:`scvi_networkvi.resources`: download, verification, cache, offline mode, archives and the API.

Nothing here reaches the real network: every url points at the loopback server of ``conftest.py`` (or at a closed
loopback port), and the cache lives under ``tmp_path``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import urllib3
from _resource_helpers import PAYLOAD, REPO_ROOT, _sha, kept_files, make_registry, pinned, stamp_of

from scvi_networkvi.resources import (
    OFFLINE_ENV,
    ResourceError,
    ResourceIntegrityError,
    ResourceStore,
    offline,
    sha256_of,
)

pytestmark = pytest.mark.usefixtures("resource_env")


# ----------------------------------------------------------------------------------------------------------------
# Download, verification, cache
# ----------------------------------------------------------------------------------------------------------------
def test_download_is_verified_cached_and_stamped(loopback_server, tmp_path):
    url = loopback_server.serve("/data/table.csv", PAYLOAD)
    registry, _ = make_registry({"table": pinned(url, PAYLOAD, "table.csv")})
    store = ResourceStore(registry, root=tmp_path / "cache")
    assert not store.is_cached("table")

    path = store.fetch("table")

    assert path == tmp_path / "cache" / "table" / "table.csv" == store.local_path("table")
    assert path.read_bytes() == PAYLOAD
    assert sha256_of(path) == _sha(PAYLOAD)
    assert store.is_cached("table")
    assert loopback_server.count("/data/table.csv") == 1
    stamp = stamp_of(path)
    assert stamp == {"sha256": _sha(PAYLOAD), "size": len(PAYLOAD), "mtime_ns": path.stat().st_mtime_ns}
    assert kept_files(path.parent) == [".table.csv.verified.json", "table.csv"]


def test_cache_hit_makes_no_request_even_with_the_server_down(loopback_server, tmp_path):
    url = loopback_server.serve("/table.csv", PAYLOAD)
    registry, _ = make_registry({"table": pinned(url, PAYLOAD, "table.csv")})
    root = tmp_path / "cache"
    first = ResourceStore(registry, root=root).fetch("table")
    assert loopback_server.count("/table.csv") == 1

    assert ResourceStore(registry, root=root).fetch("table") == first
    assert loopback_server.count("/table.csv") == 1

    loopback_server.stop()
    again = ResourceStore(registry, root=root).fetch("table")  # a new session, no server
    assert again == first
    assert again.read_bytes() == PAYLOAD
    assert loopback_server.total == 1


def test_hash_mismatch_is_an_integrity_error_and_nothing_is_kept(loopback_server, tmp_path):
    url = loopback_server.serve("/go.obo", b"a different release of the file\n")
    registry, _ = make_registry({"go-pinned": pinned(url, PAYLOAD, "go.obo", kind="obo")})
    store = ResourceStore(registry, root=tmp_path / "cache")

    with pytest.raises(ResourceIntegrityError) as excinfo:
        store.fetch("go-pinned")

    message = str(excinfo.value)
    assert "'go-pinned'" in message
    assert "not kept" in message
    assert _sha(PAYLOAD) in message
    assert kept_files(store.folder("go-pinned")) == []
    assert not store.is_cached("go-pinned")
    # Nothing poisoned the cache: the next call tries again (and fails again).
    with pytest.raises(ResourceIntegrityError):
        store.fetch("go-pinned")
    assert loopback_server.count("/go.obo") == 2


def test_truncated_download_with_pinned_hash_is_rejected(loopback_server, tmp_path):
    url = loopback_server.serve("/big.bin", PAYLOAD, truncate=True)  # Content-Length = len + 1000, then close
    registry, _ = make_registry({"big": pinned(url, PAYLOAD + b"x" * 1000, "big.bin")})
    store = ResourceStore(registry, root=tmp_path / "cache")

    with pytest.raises(ResourceError, match="'big'"):
        store.fetch("big")

    assert loopback_server.count("/big.bin") == 1
    assert kept_files(store.folder("big")) == []
    assert not store.is_cached("big")


@pytest.mark.skipif(int(urllib3.__version__.split(".")[0]) < 2, reason="urllib3 < 2 does not enforce Content-Length")
def test_truncated_download_with_unknown_hash_is_rejected_not_recorded(loopback_server, tmp_path):
    url = loopback_server.serve("/annotations.gaf", PAYLOAD, truncate=True)
    registry, _ = make_registry({"annotations": {"url": url, "sha256": "", "filename": "annotations.gaf"}})
    store = ResourceStore(registry, root=tmp_path / "cache")

    with pytest.raises(ResourceError) as excinfo:
        store.fetch("annotations")

    assert url in str(excinfo.value)
    assert kept_files(store.folder("annotations")) == []  # in particular no recorded hash of a truncated file


@pytest.mark.parametrize("pin_sha", [True, False], ids=["pinned-sha", "unknown-sha"])
def test_size_mismatch_is_an_integrity_error_and_nothing_is_kept(loopback_server, tmp_path, pin_sha):
    url = loopback_server.serve("/sized.bin", PAYLOAD)
    fields = {"url": url, "sha256": _sha(PAYLOAD) if pin_sha else "", "size": len(PAYLOAD) + 1}
    registry, _ = make_registry({"sized": fields})
    store = ResourceStore(registry, root=tmp_path / "cache")

    with pytest.raises(ResourceIntegrityError) as excinfo:
        store.fetch("sized")

    message = str(excinfo.value)
    assert "'sized'" in message
    assert f"{len(PAYLOAD)} bytes instead of {len(PAYLOAD) + 1}" in message
    assert "not kept" in message
    assert kept_files(store.folder("sized")) == []


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_is_a_resource_error_naming_the_url(loopback_server, tmp_path, status):
    url = loopback_server.serve("/missing.obo", b"", status=status)
    registry, _ = make_registry({"missing": pinned(url, PAYLOAD, "missing.obo")})
    store = ResourceStore(registry, root=tmp_path / "cache")

    with pytest.raises(ResourceError) as excinfo:
        store.fetch("missing")

    assert not isinstance(excinfo.value, ResourceIntegrityError)
    message = str(excinfo.value)
    assert url in message
    assert str(status) in message
    assert str(store.local_path("missing")) in message
    assert loopback_server.count("/missing.obo") == 1
    assert kept_files(store.folder("missing")) == []


def test_malformed_url_is_a_transport_error_not_a_hash_mismatch(tmp_path):
    url = "http://127.0.0.1:99999/bad-port.bin"  # requests raises InvalidURL, which is also a ValueError
    registry, _ = make_registry({"bad-url": pinned(url, PAYLOAD, "bad.bin")})
    store = ResourceStore(registry, root=tmp_path / "cache")

    with pytest.raises(ResourceError) as excinfo:
        store.fetch("bad-url")

    assert not isinstance(excinfo.value, ResourceIntegrityError)
    assert url in str(excinfo.value)
    assert "does not match" not in str(excinfo.value)


# ----------------------------------------------------------------------------------------------------------------
# Server down, offline mode
# ----------------------------------------------------------------------------------------------------------------
def test_server_down_without_cache_says_where_to_place_the_file(refused_url, tmp_path):
    registry, _ = make_registry({"remote": pinned(refused_url, PAYLOAD, "remote.bin")})
    store = ResourceStore(registry, root=tmp_path / "cache")

    with pytest.raises(ResourceError) as excinfo:
        store.fetch("remote")

    assert not isinstance(excinfo.value, ResourceIntegrityError)
    message = str(excinfo.value)
    assert "'remote'" in message
    assert refused_url in message
    assert f"place it at {store.local_path('remote')}" in message
    assert _sha(PAYLOAD) in message
    assert f"{OFFLINE_ENV}=1" in message
    assert kept_files(store.folder("remote")) == []

    # Following the hint works: a file placed by hand is verified and used without the network.
    store.local_path("remote").write_bytes(PAYLOAD)
    path = store.fetch("remote")
    assert path == store.local_path("remote")
    assert path.read_bytes() == PAYLOAD
    assert stamp_of(path)["sha256"] == _sha(PAYLOAD)


def test_server_down_with_cached_copy_returns_it(loopback_server, refused_url, tmp_path):
    url = loopback_server.serve("/remote.bin", PAYLOAD)
    live, _ = make_registry({"remote": pinned(url, PAYLOAD, "remote.bin")})
    root = tmp_path / "cache"
    cached = ResourceStore(live, root=root).fetch("remote")

    # Same resource, now only reachable at a dead address: the verified cached copy is used.
    dead, _ = make_registry({"remote": pinned(refused_url, PAYLOAD, "remote.bin")})
    assert ResourceStore(dead, root=root).fetch("remote") == cached
    assert cached.read_bytes() == PAYLOAD
    assert loopback_server.total == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), (" YES ", True), ("on", True), ("0", False), ("", False), ("no", False)],
)
def test_offline_flag_values(monkeypatch, value, expected):
    monkeypatch.setenv(OFFLINE_ENV, value)
    assert offline() is expected


def test_offline_mode_makes_no_request_and_says_what_to_do(loopback_server, tmp_path, monkeypatch):
    url = loopback_server.serve("/go-basic.obo", PAYLOAD)
    registry, _ = make_registry({"go-basic": pinned(url, PAYLOAD, "go-basic.obo", kind="obo")})
    store = ResourceStore(registry, root=tmp_path / "cache")
    monkeypatch.setenv(OFFLINE_ENV, "1")

    with pytest.raises(ResourceError) as excinfo:
        store.fetch("go-basic")

    assert loopback_server.total == 0
    message = str(excinfo.value)
    assert str(tmp_path / "cache" / "go-basic" / "go-basic.obo") in message
    assert _sha(PAYLOAD) in message
    assert "python -m scvi_networkvi fetch go-basic" in message
    assert url in message
    assert OFFLINE_ENV in message
    assert not store.is_cached("go-basic")

    # Once cached (online), the resource works offline without any request.
    monkeypatch.delenv(OFFLINE_ENV)
    path = store.fetch("go-basic")
    assert loopback_server.total == 1
    monkeypatch.setenv(OFFLINE_ENV, "1")
    assert store.fetch("go-basic") == path
    assert path.read_bytes() == PAYLOAD
    assert loopback_server.total == 1


# ----------------------------------------------------------------------------------------------------------------
# Unknown hashes, corrupted caches
# ----------------------------------------------------------------------------------------------------------------
def test_unknown_sha_is_recorded_then_tampering_is_detected(loopback_server, tmp_path, monkeypatch):
    url = loopback_server.serve("/annotations.gaf", PAYLOAD)
    registry, _ = make_registry({"annotations": {"url": url, "sha256": "", "size": 0, "filename": "annotations.gaf"}})
    assert registry["annotations"].sha256 is None
    assert registry["annotations"].size is None
    store = ResourceStore(registry, root=tmp_path / "cache")

    path = store.fetch("annotations")
    assert path.read_bytes() == PAYLOAD
    assert stamp_of(path)["sha256"] == _sha(PAYLOAD)
    assert store.fetch("annotations") == path
    assert loopback_server.count("/annotations.gaf") == 1

    path.write_bytes(b"GENE0\tGO:0000000\tIEA\n")  # tampered (and shorter)

    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(ResourceError, match="corrupted") as excinfo:
        store.fetch("annotations")
    assert str(path) in str(excinfo.value)
    assert _sha(PAYLOAD) in str(excinfo.value)
    assert loopback_server.count("/annotations.gaf") == 1

    monkeypatch.delenv(OFFLINE_ENV)
    assert store.fetch("annotations") == path
    assert path.read_bytes() == PAYLOAD
    assert stamp_of(path)["sha256"] == _sha(PAYLOAD)
    assert loopback_server.count("/annotations.gaf") == 2


def test_corrupted_cache_with_pinned_sha_is_replaced_online_and_an_error_offline(
    loopback_server, tmp_path, monkeypatch, caplog
):
    url = loopback_server.serve("/go.obo", PAYLOAD)
    registry, _ = make_registry({"go": pinned(url, PAYLOAD, "go.obo", kind="obo")})
    store = ResourceStore(registry, root=tmp_path / "cache")
    path = store.fetch("go")

    # Same size, different bytes; move the mtime so the stamp cannot vouch for the file.
    corrupted = PAYLOAD[::-1]
    assert len(corrupted) == len(PAYLOAD) and corrupted != PAYLOAD
    path.write_bytes(corrupted)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))

    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(ResourceError) as excinfo:
        store.fetch("go")
    message = str(excinfo.value)
    assert "corrupted" in message
    assert str(path) in message
    assert _sha(PAYLOAD) in message and _sha(corrupted) in message
    assert url in message  # where a good copy comes from
    assert loopback_server.count("/go.obo") == 1

    monkeypatch.delenv(OFFLINE_ENV)
    with caplog.at_level(logging.WARNING, logger="scvi_networkvi.resources._store"):
        assert store.fetch("go") == path
    assert path.read_bytes() == PAYLOAD
    assert loopback_server.count("/go.obo") == 2
    assert "Downloading it again" in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# Concurrency
# ----------------------------------------------------------------------------------------------------------------
_CHILD = """
import sys
from scvi_networkvi.resources import Registry, ResourceStore, sha256_of
registry = Registry.from_toml(sys.argv[1])
path = ResourceStore(registry, root=sys.argv[2]).fetch(sys.argv[3])
print(path)
print(sha256_of(path))
"""


def test_concurrent_first_use_from_two_processes(loopback_server, tmp_path):
    body = bytes(range(256)) * 2048  # 512 KiB
    url = loopback_server.serve("/shared.bin", body, delay=0.5)
    _, text = make_registry({"shared": pinned(url, body, "shared.bin")})
    root = tmp_path / "cache"

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, text, str(root), "shared"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]

    reported = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        reported.append(out.split())
    assert reported[0] == reported[1] == [str(root / "shared" / "shared.bin"), _sha(body)]
    path = root / "shared" / "shared.bin"
    assert path.read_bytes() == body
    assert 1 <= loopback_server.count("/shared.bin") <= 2
    assert kept_files(path.parent) == [".shared.bin.verified.json", "shared.bin"]  # no temporary file left
