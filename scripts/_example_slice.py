"""The GO slice of the embedded example: the GAF, OBO and interaction rows of the example's genes, and its check."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger("make_example")

_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*G\d+)\.\d+$")


def normalize_id(gene_id: str) -> str:
    gene_id = gene_id.strip()
    match = _ENSEMBL_VERSION.match(gene_id)
    return match.group(1) if match else gene_id


def check(condition: bool, message: str) -> None:
    """A check that survives ``python -O``."""
    if not condition:
        raise AssertionError(message)


def gaf_ids(path: Path) -> set[str]:
    ids = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("!") or not line.strip():
                continue
            ids.add(normalize_id(line.split("\t")[1]))
    return ids


def write_gaf_subset(src: Path, dst: Path, ids: set[str]) -> set[str]:
    """Copy the header and the lines of ``ids``; return the GO ids they annotate."""
    go_ids = set()
    with open(src, encoding="utf-8", newline="") as fin, open(dst, "w", encoding="utf-8", newline="") as fout:
        for line in fin:
            if line.startswith("!"):
                fout.write(line)
                continue
            fields = line.split("\t")
            if len(fields) > 4 and normalize_id(fields[1]) in ids:
                fout.write(line)
                go_ids.add(fields[4].strip())
    return go_ids


def split_obo(path: Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Header lines and (stanza type, lines) of an OBO file, lines verbatim with their newlines."""
    header: list[str] = []
    stanzas: list[tuple[str, list[str]]] = []
    with open(path, encoding="utf-8", newline="") as fh:
        for line in fh:
            if line.startswith("["):
                stanzas.append((line.strip(), [line]))
            elif stanzas:
                stanzas[-1][1].append(line)
            else:
                header.append(line)
    return header, stanzas


def _tag_values(lines: list[str], tag: str) -> list[str]:
    prefix = f"{tag}:"
    return [line[len(prefix) :].split("!")[0].strip() for line in lines if line.startswith(prefix)]


def write_obo_slice(src: Path, dst: Path, seed_ids: set[str]) -> int:
    header, stanzas = split_obo(src)
    terms: dict[str, list[str]] = {}
    alias: dict[str, str] = {}
    parents: dict[str, set[str]] = {}
    for kind, lines in stanzas:
        if kind != "[Term]":
            continue
        (term_id,) = _tag_values(lines, "id")
        if _tag_values(lines, "is_obsolete") == ["true"]:
            continue
        terms[term_id] = lines
        for alt in _tag_values(lines, "alt_id"):
            alias[alt] = term_id
        ups = set(_tag_values(lines, "is_a"))
        ups.update(value.split()[1] for value in _tag_values(lines, "relationship"))
        parents[term_id] = ups
    seeds = {alias.get(goid, goid) for goid in seed_ids} & set(terms)
    missing = sorted(goid for goid in seed_ids if alias.get(goid, goid) not in terms)
    if missing:
        logger.info(
            "%d annotated GO id(s) are obsolete or unknown in the OBO (dropped, as the compiler does).", len(missing)
        )
    keep = set(seeds)
    frontier = list(seeds)
    while frontier:
        term = frontier.pop()
        for parent in parents[term]:
            check(parent in terms, f"{term} refers to {parent}, which is not a live term of {src}")
            if parent not in keep:
                keep.add(parent)
                frontier.append(parent)
    with open(dst, "w", encoding="utf-8", newline="") as fh:
        fh.writelines(header)
        for kind, lines in stanzas:
            if kind == "[Term]":
                (term_id,) = _tag_values(lines, "id")
                if term_id in keep and lines is terms.get(term_id):
                    fh.writelines(lines)
            elif kind == "[Typedef]":
                fh.writelines(lines)
    return len(keep)


def write_interactions_subset(src: Path, dst: Path, ids: set[str]) -> int:
    table = pd.read_csv(src, dtype=str, keep_default_na=False)
    gene1 = table["gene1"].map(normalize_id)
    gene2 = table["gene2"].map(normalize_id)
    subset = table.loc[gene1.isin(ids) & gene2.isin(ids), ["gene1", "gene2", "combined_score"]]
    subset.to_csv(dst, index=False, lineterminator="\n")
    return len(subset)


def verify_slice(
    features: dict[str, list],
    names: dict[str, list[str]],
    full_files: dict[str, Path],
    slice_files: dict[str, Path],
    extra: dict[str, dict] | None = None,
) -> dict:
    """Check that the slice files compile to exactly the wirings of the full files (``go``, ``annotations`` and
    ``interactions`` paths) with three settings and the ``extra`` ones (label -> compile_wirings keyword arguments)."""
    from scvi_networkvi.wiring import compile_wirings

    settings = {
        "default": {},
        "is_a+part_of": {"relations": ("is_a", "part_of")},
        "all namespaces and relations": {
            "namespaces": ("biological_process", "molecular_function", "cellular_component"),
            "relations": ("is_a", "part_of", "regulates", "negatively_regulates", "positively_regulates"),
            "max_depth": 4,
        },
        **(extra or {}),
    }
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get("SCVI_NETWORKVI_DATA_DIR")
        os.environ["SCVI_NETWORKVI_DATA_DIR"] = cache
        try:
            for label, kwargs in settings.items():
                common = {"feature_names": names, "cache": False, **kwargs}
                full = compile_wirings(features, **full_files, **common)
                sliced = compile_wirings(features, **slice_files, **common)
                for modality in features:
                    a, b = full[modality], sliced[modality]
                    check(
                        a.equals(b)
                        and np.array_equal(a.term_ids, b.term_ids)
                        and np.array_equal(a.term_names, b.term_names)
                        and np.array_equal(a.gene_edges, b.gene_edges)
                        and np.array_equal(a.gene_edge_scores, b.gene_edge_scores),
                        f"The GO slice does not reproduce the full-resource wiring of {modality!r} ({label}):\n"
                        f"  full:  {a!r}\n  slice: {b!r}",
                    )
                    logger.info("slice == full (%s): %r", label, b)
                results[label] = sliced
        finally:
            if previous is None:
                os.environ.pop("SCVI_NETWORKVI_DATA_DIR", None)
            else:
                os.environ["SCVI_NETWORKVI_DATA_DIR"] = previous
    return results
