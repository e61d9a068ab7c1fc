"""Resources inside files: gzip resources decompressed once, tarball members, mirrors; all on the loopback server."""

from __future__ import annotations

import gzip

import pytest
from _resource_helpers import _sha, kept_files, make_registry, pinned, stamp_of, tar_gz

from scvi_networkvi.resources import (
    ResourceError,
    ResourceIntegrityError,
    ResourceStore,
)

pytestmark = pytest.mark.usefixtures("resource_env")


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
