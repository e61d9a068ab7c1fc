"""Helpers of the resource tests: registries written as TOML, pinned entries, payloads, tarballs, cache listings."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from scvi_networkvi.resources import Registry

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
