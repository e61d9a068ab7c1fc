"""The public resource API (fetch, resolve, list_resources, cache_dir), the packaged registry and its validation."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _resource_helpers import OBO_TEXT, PAYLOAD, make_registry, pinned

import scvi_networkvi as nvi
from scvi_networkvi import resources
from scvi_networkvi.resources import (
    DATA_DIR_ENV,
    Registry,
    ResourceIntegrityError,
    ResourceStore,
    cache_dir,
    default_registry,
)
from scvi_networkvi.resources._registry import KINDS

pytestmark = pytest.mark.usefixtures("resource_env")


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
