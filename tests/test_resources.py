"""Tests of :mod:`scvi_networkvi.resources`: download, verification, cache, offline mode, archives and the API.

Nothing here reaches the real network: every url points at the loopback server of ``conftest.py`` (or at a closed
loopback port), and the cache lives under ``tmp_path``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import urllib3

import scvi_networkvi as nvi
from scvi_networkvi import resources
from scvi_networkvi.resources import (
    DATA_DIR_ENV,
    OFFLINE_ENV,
    Registry,
    ResourceError,
    ResourceIntegrityError,
    ResourceStore,
    cache_dir,
    default_registry,
    offline,
    sha256_of,
)
from scvi_networkvi.resources._registry import KINDS

pytestmark = pytest.mark.usefixtures("resource_env")

REPO_ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = b"".join(f"GENE{i}\tGO:{i:07d}\tIEA\n".encode() for i in range(200))
OBO_TEXT = (
    "format-version: 1.2\ndata-version: releases/2025-03-16\n\n[Term]\nid: GO:0008150\nname: biological_process\n"
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        tables = ("{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in item.items()) + " }" for item in value)
        return "[" + ", ".join(tables) + "]"
    return json.dumps(value)


def make_registry(entries: dict[str, dict]) -> tuple[Registry, str]:
    """Registry (and its TOML text) from ``{name: fields}``; kind, release, licence, description, filename default."""
    blocks = []
    for name, fields in entries.items():
        fields = {
            "kind": "dataset",
            "release": "test-1",
            "licence": "CC0-1.0",
            "description": f"test resource {name}",
            "filename": f"{name}.bin",
            **fields,
        }
        lines = [f"[{json.dumps(name)}]"] + [f"{key} = {_toml_value(value)}" for key, value in fields.items()]
        blocks.append("\n".join(lines))
    text = "\n\n".join(blocks) + "\n"
    return Registry.from_toml(text), text


def pinned(url: str, data: bytes, filename: str, **extra) -> dict:
    """Registry fields of a resource with pinned sha256 and size."""
    return {"url": url, "sha256": _sha(data), "size": len(data), "filename": filename, **extra}


def kept_files(folder: Path) -> list[str]:
    """Files left in a resource folder, the lock file aside."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock")


def stamp_of(path: Path) -> dict:
    return json.loads((path.parent / f".{path.name}.verified.json").read_text())


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


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
# gzip, archives, mirrors
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pin_sha", [True, False], ids=["pinned-sha", "unknown-sha"])
def test_gzip_resource_is_decompressed_once(loopback_server, tmp_path, pin_sha):
    text = "!gaf-version: 2.2\n" + "UniProtKB\tP12345\tGENE1\t\tGO:0008150\n" * 100
    compressed = gzip.compress(text.encode())
    url = loopback_server.serve("/goa_human.gaf.gz", compressed)
    fields = {"kind": "gaf", "url": url, "filename": "goa_human.gaf.gz", "decompress": "gzip"}
    fields["sha256"] = _sha(compressed) if pin_sha else ""
    registry, _ = make_registry({"goa": fields})
    store = ResourceStore(registry, root=tmp_path / "cache")

    path = store.fetch("goa")

    assert path == store.local_path("goa") == tmp_path / "cache" / "goa" / "goa_human.gaf"
    assert path.read_text() == text
    assert (path.parent / "goa_human.gaf.gz").read_bytes() == compressed
    assert loopback_server.count("/goa_human.gaf.gz") == 1

    path.unlink()
    assert not store.is_cached("goa")
    assert store.fetch("goa") == path
    assert path.read_text() == text

    path.write_text("edited by hand\n")
    assert store.fetch("goa").read_text() == text
    assert loopback_server.count("/goa_human.gaf.gz") == 1
    assert kept_files(path.parent) == [
        ".goa_human.gaf.gz.verified.json",
        ".goa_human.gaf.verified.json",
        "goa_human.gaf",
        "goa_human.gaf.gz",
    ]


def test_gzip_resource_that_is_not_gzip_is_rejected_and_not_kept(loopback_server, tmp_path):
    # An unpinned gzip resource (like goa-human) answered with an HTML page must not be recorded as good.
    url = loopback_server.serve("/goa_human.gaf.gz", b"<html>Please log in</html>")
    registry, _ = make_registry(
        {"goa": {"kind": "gaf", "url": url, "sha256": "", "filename": "goa_human.gaf.gz", "decompress": "gzip"}}
    )
    store = ResourceStore(registry, root=tmp_path / "cache")

    with pytest.raises(ResourceIntegrityError, match="gzip"):
        store.fetch("goa")
    assert kept_files(store.folder("goa")) == []

    # Once the server answers with the real file, it is downloaded again and used.
    text = "UniProtKB\tP12345\tGENE1\t\tGO:0008150\n"
    loopback_server.serve("/goa_human.gaf.gz", gzip.compress(text.encode()))
    assert store.fetch("goa").read_text() == text
    assert loopback_server.count("/goa_human.gaf.gz") == 2


@pytest.fixture
def sdist(loopback_server):
    """A tar.gz 'sdist' served by the loopback server, with the registry fields of its archive resource."""
    members = {
        "pkg-0.1/docs/tutorial.h5ad": b"HDF5-ish tutorial bytes " * 100,
        "pkg-0.1/resources/loops.csv": b"gene1,gene2,combined_score\nA,B,1.0\nB,C,0.5\n",
    }
    archive = tar_gz(members)
    url = loopback_server.serve("/packages/pkg-0.1.tar.gz", archive)
    return members, {"kind": "archive", **pinned(url, archive, "pkg-0.1.tar.gz")}


def test_archive_member_and_mirror_fallback(loopback_server, tmp_path, sdist):
    members, archive_fields = sdist
    tutorial = members["pkg-0.1/docs/tutorial.h5ad"]
    loops = members["pkg-0.1/resources/loops.csv"]
    moved = loopback_server.serve("/moved/loops.csv", b"", status=404)
    registry, _ = make_registry(
        {
            "pkg-sdist": archive_fields,
            "tutorial": {
                "archive": "pkg-sdist",
                "member": "pkg-0.1/docs/tutorial.h5ad",
                "sha256": _sha(tutorial),
                "size": len(tutorial),
                "filename": "tutorial.h5ad",
            },
            "loops": {
                **pinned(moved, loops, "loops.csv", kind="interactions"),
                "mirrors": [{"archive": "pkg-sdist", "member": "pkg-0.1/resources/loops.csv"}],
            },
        }
    )
    store = ResourceStore(registry, root=tmp_path / "cache")

    path = store.fetch("tutorial")
    assert path == tmp_path / "cache" / "tutorial" / "tutorial.h5ad"
    assert path.read_bytes() == tutorial
    assert store.is_cached("pkg-sdist")
    assert loopback_server.count("/packages/pkg-0.1.tar.gz") == 1

    path = store.fetch("loops")  # primary url 404s -> member of the (already cached) archive
    assert path == tmp_path / "cache" / "loops" / "loops.csv"
    assert path.read_bytes() == loops
    assert stamp_of(path)["sha256"] == _sha(loops)
    assert loopback_server.count("/moved/loops.csv") == 1
    assert loopback_server.count("/packages/pkg-0.1.tar.gz") == 1

    assert store.fetch("loops") == path  # cache hit: neither url asked again
    assert store.fetch("tutorial").read_bytes() == tutorial
    assert loopback_server.total == 2


def test_archive_member_problems_are_reported(loopback_server, tmp_path, sdist):
    _, archive_fields = sdist
    down = loopback_server.serve("/down/loops.csv", b"", status=500)
    registry, _ = make_registry(
        {
            "pkg-sdist": archive_fields,
            "wrong-sha": {
                "archive": "pkg-sdist",
                "member": "pkg-0.1/docs/tutorial.h5ad",
                "sha256": _sha(b"something else"),
                "filename": "tutorial.h5ad",
            },
            "no-member": {
                "url": down,
                "sha256": _sha(b"x"),
                "filename": "loops.csv",
                "mirrors": [{"archive": "pkg-sdist", "member": "pkg-0.1/not/there.csv"}],
            },
        }
    )
    store = ResourceStore(registry, root=tmp_path / "cache")

    with pytest.raises(ResourceIntegrityError) as excinfo:
        store.fetch("wrong-sha")
    assert "'wrong-sha'" in str(excinfo.value) and "not kept" in str(excinfo.value)
    assert kept_files(store.folder("wrong-sha")) == []

    with pytest.raises(ResourceError) as excinfo:
        store.fetch("no-member")
    message = str(excinfo.value)
    assert down in message  # both sources are listed
    assert "pkg-sdist:pkg-0.1/not/there.csv" in message
    assert kept_files(store.folder("no-member")) == []
    assert loopback_server.count("/packages/pkg-0.1.tar.gz") == 1


def test_registry_validation():
    with pytest.raises(ValueError, match="kind must be one of"):
        Registry.from_toml('[x]\nkind = "movie"\nurl = "http://127.0.0.1/x"\nfilename = "x"\n')
    with pytest.raises(ValueError, match="needs a url, an archive"):
        Registry.from_toml('[x]\nkind = "obo"\nfilename = "x"\n')
    with pytest.raises(ValueError, match="unknown archive resource 'nowhere'"):
        Registry.from_toml('[x]\nkind = "obo"\narchive = "nowhere"\nmember = "a"\nfilename = "x"\n')
    registry, _ = make_registry({"x": {"url": "http://127.0.0.1/x"}})
    with pytest.raises(KeyError, match="Known resources: x"):
        registry["y"]


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


# ----------------------------------------------------------------------------------------------------------------
# Public API: fetch, resolve, list, cache_dir
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture
def served_registry(loopback_server, use_registry):
    """Install a two-resource registry (an obo and a gaf) served by the loopback server as the package default."""
    obo = OBO_TEXT.encode()
    registry, _ = make_registry(
        {
            "go-test": pinned(loopback_server.serve("/go-test.obo", obo), obo, "go-test.obo", kind="obo"),
            "ann-test": pinned(loopback_server.serve("/ann-test.gaf", PAYLOAD), PAYLOAD, "ann-test.gaf", kind="gaf"),
        }
    )
    return use_registry(registry)


def test_public_fetch_uses_the_data_dir(served_registry, loopback_server, resource_env):
    path = resources.fetch("go-test")
    assert path == resource_env / "go-test" / "go-test.obo"
    assert path.read_text() == OBO_TEXT
    assert resources.fetch("go-test") == path
    assert loopback_server.count("/go-test.obo") == 1

    fetched = resources.fetch_many(["go-test", "ann-test"], progressbar=False)
    assert fetched == {"go-test": path, "ann-test": resource_env / "ann-test" / "ann-test.gaf"}
    assert fetched["ann-test"].read_bytes() == PAYLOAD
    with pytest.raises(KeyError, match="nope"):
        resources.fetch_many(["go-test", "nope"])
    with pytest.raises(KeyError, match="go-test"):
        resources.fetch("nope")


def test_resolve(served_registry, loopback_server, resource_env, tmp_path):
    path = resources.resolve("go-test", kind="obo")
    assert path == resource_env / "go-test" / "go-test.obo"
    assert path.read_text() == OBO_TEXT
    assert resources.resolve("go-test") == path
    assert loopback_server.count("/go-test.obo") == 1

    local = tmp_path / "my-ontology.obo"
    local.write_text(OBO_TEXT)
    assert resources.resolve(str(local)) == local
    assert resources.resolve(local, kind="obo") == local

    with pytest.raises(FileNotFoundError) as excinfo:
        resources.resolve("no-such-resource")
    message = str(excinfo.value)
    assert "'no-such-resource'" in message and "go-test" in message and "ann-test" in message

    with pytest.raises(FileNotFoundError) as excinfo:
        resources.resolve("no-such-resource", kind="gaf")
    assert "ann-test" in str(excinfo.value) and "go-test" not in str(excinfo.value)

    with pytest.raises(ValueError, match="'gaf' resource") as excinfo:
        resources.resolve("ann-test", kind="obo")
    assert "'obo'" in str(excinfo.value)
    assert loopback_server.count("/ann-test.gaf") == 0  # the wrong kind is refused before any download


def test_list_packaged_registry(resource_env):
    table = resources.list_resources()

    assert isinstance(table, pd.DataFrame)
    assert table.index.name == "name"
    assert table.index.is_unique
    assert {"kind", "release", "sha256", "size", "url", "licence", "description", "cached", "path"} <= set(
        table.columns
    )
    assert list(table.index) == list(default_registry())

    go = table.loc["go-basic"]
    assert go["kind"] == "obo"
    assert go["sha256"] == "6413fb27a2f2d80bf564b65b860989f2350da2feb637c6762923d93085dbdcac"
    assert go["size"] == 31321250
    assert go["url"].startswith("https://") and "2025-03-16" in go["url"]
    assert go["path"] == str(resource_env / "go-basic" / "go-basic.obo")

    assert not table["cached"].any()
    for name, row in table.iterrows():
        assert row["url"], name
        assert row["licence"], name
        assert row["description"], name
        assert row["kind"] in KINDS, name
        assert row["path"].startswith(str(resource_env)), name
    for res in default_registry().values():
        assert res.url.startswith("https://") or (res.archive and res.member) or "==" in (res.package or ""), res.name
        assert res.licence and res.description and res.release, res.name
        if res.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", res.sha256), res.name
        assert res.size is None or res.size > 0, res.name
    assert default_registry()["goa-human"].sha256 is None  # "" in the TOML means: record on first download

    # The cached column reflects the cache folder; nvi.resources.list is the same function.
    cached = resource_env / "go-basic" / "go-basic.obo"
    cached.parent.mkdir(parents=True)
    cached.write_text(OBO_TEXT)
    assert resources.list is resources.list_resources
    listed = nvi.resources.list()
    assert bool(listed.loc["go-basic", "cached"])
    assert not listed.drop(index="go-basic")["cached"].any()
    pd.testing.assert_frame_equal(listed.drop(columns="cached"), table.drop(columns="cached"))


def test_list_uses_the_installed_registry(served_registry, resource_env):
    table = resources.list_resources()
    assert list(table.index) == ["go-test", "ann-test"]
    assert table.loc["ann-test", "kind"] == "gaf"
    assert table.loc["go-test", "url"].startswith("http://127.0.0.1:")


def test_cache_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "a"))
    store = ResourceStore()
    assert cache_dir() == tmp_path / "a"
    assert store.root == tmp_path / "a"
    assert store.local_path("go-basic") == tmp_path / "a" / "go-basic" / "go-basic.obo"

    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "b"))  # read at every call
    assert cache_dir() == tmp_path / "b"
    assert store.root == tmp_path / "b"
    assert ResourceStore(root=tmp_path / "explicit").root == tmp_path / "explicit"

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(DATA_DIR_ENV, "~/nvi-data")
    assert cache_dir() == tmp_path / "home" / "nvi-data"

    monkeypatch.delenv(DATA_DIR_ENV)
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert cache_dir() == tmp_path / "xdg" / "scvi_networkvi"
    else:
        assert cache_dir().name == "scvi_networkvi"


def test_package_resource_is_fetched_with_pip_by_name_and_version(resource_env, monkeypatch):
    """A resource that lives on the package index is fetched by its pinned requirement, checked against its sha256."""
    import subprocess

    from scvi_networkvi.resources import ResourceIntegrityError
    from scvi_networkvi.resources._registry import Registry
    from scvi_networkvi.resources._store import ResourceStore as Store

    body = b"an sdist"
    registry = Registry.from_toml(
        f"""
        [pkg]
        kind = "archive"
        release = "1.0"
        package = "somepkg==1.0"
        sha256 = "{hashlib.sha256(body).hexdigest()}"
        filename = "somepkg-1.0.tar.gz"
        """
    )
    calls = []

    def fake_pip(command, **kwargs):
        calls.append(command)
        dest = Path(command[command.index("--dest") + 1])
        (dest / "somepkg-1.0.tar.gz").write_bytes(served)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_pip)
    served = body
    path = Store(registry).fetch("pkg")
    assert path.read_bytes() == body
    assert calls[0][1:4] == ["-m", "pip", "download"] and calls[0][-1] == "somepkg==1.0"
    assert "--no-binary" in calls[0] and not any("://" in part for part in calls[0])
    Store(registry).fetch("pkg")
    assert len(calls) == 1  # cached

    served = b"another file"
    other = resource_env / "other"
    with pytest.raises(ResourceIntegrityError, match="not the registry's"):
        Store(registry, root=other).fetch("pkg")
    assert not (other / "pkg" / "somepkg-1.0.tar.gz").exists()
    with pytest.raises(ValueError, match="must pin a version"):
        Registry.from_toml('[p]\nkind = "archive"\npackage = "somepkg"\nfilename = "f"\n')


def test_archive_member_found_by_its_file_name_when_the_folder_moved(loopback_server, tmp_path):
    data = b"SQLite format 3\x00 pretend"
    archive = tar_gz({"org.Xx.eg.db/extdata/org.Xx.eg.sqlite": data, "org.Xx.eg.db/DESCRIPTION": b"Package: x\n"})
    url = loopback_server.serve("/org.Xx.eg.db.tar.gz", archive)
    registry, _ = make_registry(
        {
            "source": {"kind": "archive", **pinned(url, archive, "org.Xx.eg.db.tar.gz")},
            "orgdb": {
                "kind": "orgdb",
                "archive": "source",
                "member": "org.Xx.eg.db/inst/extdata/org.Xx.eg.sqlite",  # the registered layout; the archive differs
                "sha256": _sha(data),
                "filename": "org.Xx.eg.sqlite",
            },
            "missing": {"archive": "source", "member": "org.Xx.eg.db/inst/extdata/other.sqlite", "filename": "o"},
        }
    )
    store = ResourceStore(registry, root=tmp_path / "cache")
    assert store.fetch("orgdb").read_bytes() == data
    with pytest.raises(ResourceError, match="not found in the archive"):
        store.fetch("missing")
