"""The wiring compiler: OBO + GAF(s) + interactions + per-modality feature -> gene ids -> one Wiring per modality."""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scvi_networkvi.resources import ANNOTATION_KINDS, ONTOLOGY_KINDS, cache_dir, resolve, sha256_of

from ._annotations import normalize_gene_id, read_gaf
from ._bioc import bioc_metadata, is_sqlite
from ._config import WiringConfig
from ._interactions import read_interactions
from ._ontology import Ontology, read_obo
from ._reach import propagate_up, term_reach
from ._wiring import WIRING_FORMAT_VERSION, Wiring

logger = logging.getLogger(__name__)

PathOrName = str | os.PathLike
TOP_NODE_ID = "GO:TOPNODE"
UNKNOWN_PREFIX = "UNKNOWN"


# ---- feature -> gene ids ---------------------------------------------------------------------------------------------
def parse_feature_gene_ids(values: Sequence[Any]) -> list[list[str]]:
    """Gene ids of each feature, as lists.

    ``None``/NaN/empty means no id; a list, or a string like ``"['ENSG1', 'ENSG2']"`` or ``"{'ENSG1','ENSG2'}"``,
    gives several genes (e.g. a peak between two genes, an antibody against a complex); a plain string is one id.
    """
    parsed: list[list[str]] = []
    for value in values:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            parsed.append([])
        elif isinstance(value, str):
            text = value.strip()
            if not text or text.lower() in {"nan", "none"}:
                parsed.append([])
            elif text[0] in "[({":  # "['ENSG1', 'ENSG2']", "{'ENSG1','ENSG2'}" (the tutorial's CD3) or a tuple
                try:
                    items = ast.literal_eval(text)
                except (ValueError, SyntaxError) as err:
                    raise ValueError(f"Cannot read the gene id list {value!r}: {err}") from None
                if isinstance(items, set | frozenset):
                    items = sorted(items, key=str)  # set order varies between runs; the wiring must not
                parsed.append(_unique([normalize_gene_id(str(item)) for item in items if str(item).strip()]))
            else:
                parsed.append([normalize_gene_id(text)])
        elif isinstance(value, list | tuple | set | frozenset | np.ndarray):
            items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
            parsed.append(_unique([normalize_gene_id(str(item)) for item in items if str(item).strip()]))
        else:
            raise TypeError(f"A feature's gene id must be a string, a list of strings or missing, got {value!r}.")
    return parsed


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---- the ontology restricted to the configured namespaces and relations ---------------------------------------------
class _Graph:
    """Terms of the selected namespaces, their parent edges and their depth (longest path from a root)."""

    def __init__(self, ontology: Ontology, config: WiringConfig):
        self.ontology = ontology
        n = len(ontology)
        self.in_namespace = np.isin(ontology.namespaces, config.namespaces)
        missing = [rel for rel in config.relations if rel not in ontology.edges and rel != "is_a"]
        if missing:
            logger.info("The OBO has no %s edges.", ", ".join(missing))
        pairs = [ontology.edges[rel] for rel in config.relations if rel in ontology.edges]
        pairs = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), dtype=np.int64)
        keep = self.in_namespace[pairs[0]] & self.in_namespace[pairs[1]]
        pairs = np.unique(pairs[:, keep], axis=1)
        self.child, self.parent = pairs[0], pairs[1]
        self.parents = sp.csr_matrix((np.ones(len(self.child), dtype=bool), (self.child, self.parent)), shape=(n, n))
        has_parent = np.zeros(n, dtype=bool)
        has_parent[self.child] = True
        self.roots = np.flatnonzero(self.in_namespace & ~has_parent)
        self.depth = self._longest_path_depth(n)

    def _longest_path_depth(self, n: int) -> np.ndarray:
        depth = np.full(n, -1, dtype=np.int64)
        depth[self.roots] = 0
        for _ in range(n + 1):  # relaxation converges after (max depth + 1) rounds on a DAG
            candidate = np.where(depth[self.parent] >= 0, depth[self.parent] + 1, -1)
            new = depth.copy()
            np.maximum.at(new, self.child, candidate)
            if np.array_equal(new, depth):
                return depth
            depth = new
        raise ValueError("The ontology has a cycle in the selected relations; use go-basic.obo.")

    def ancestors_closure(self, seed: np.ndarray) -> np.ndarray:
        """Boolean mask of the seed terms and all their ancestors."""
        keep = seed.copy()
        frontier = seed.copy()
        while frontier.any():
            reached = np.zeros_like(keep)
            reached[self.parents[np.flatnonzero(frontier)].indices] = True
            frontier = reached & ~keep
            keep |= reached
        return keep


# ---- one modality ----------------------------------------------------------------------------------------------------
def _gene_nodes(feature_ids: list[list[str]], feature_names: Sequence[str] | None):
    """Gene nodes in order of first appearance; every feature without an id gets its own placeholder node."""
    names = [str(n) for n in feature_names] if feature_names is not None else None
    if names is not None and len(set(names)) != len(names):
        names = None  # duplicated names cannot identify a placeholder: fall back to the feature index
    node_of: dict[str, int] = {}
    placeholder: list[bool] = []
    pairs: list[tuple[int, int]] = []
    for feature, genes in enumerate(feature_ids):
        if not genes:
            genes = [f"unmapped:{names[feature] if names is not None else feature}"]
            is_placeholder = True
        else:
            is_placeholder = False
        for gene in genes:
            if gene not in node_of:
                node_of[gene] = len(node_of)
                placeholder.append(is_placeholder)
            pairs.append((feature, node_of[gene]))
    gene_ids = np.array(list(node_of), dtype=str)
    return gene_ids, np.array(placeholder, dtype=bool), np.array(pairs, dtype=np.int64).reshape(-1, 2).T


def _compile_modality(
    modality: str,
    feature_ids: list[list[str]],
    feature_names: Sequence[str] | None,
    graph: _Graph,
    annotations: pd.DataFrame,
    interactions: pd.DataFrame | None,
    config: WiringConfig,
    provenance: dict[str, Any],
) -> Wiring:
    ontology = graph.ontology
    n_terms_all = len(ontology)
    if not feature_ids:
        raise ValueError(f"Modality {modality!r} has no features.")
    gene_ids, gene_placeholder, feature_gene = _gene_nodes(feature_ids, feature_names)
    n_genes = len(gene_ids)
    gene_index = pd.Index(gene_ids)

    # Annotations of this modality's genes, GO ids normalised to primary ids; unknown / obsolete ids are dropped.
    rows = annotations.loc[annotations["gene"].isin(gene_index[~gene_placeholder])]
    term = rows["go_id"].map(ontology.index)
    in_config_ns = rows["namespace"].isin(config.namespaces)
    unknown_id = term.isna()
    dropped_annotations = int((unknown_id & in_config_ns).sum())
    dropped_go_ids = int(rows.loc[unknown_id & in_config_ns, "go_id"].nunique())
    rows, term = rows.loc[~unknown_id], term.loc[~unknown_id].astype(np.int64).to_numpy()
    in_ns = graph.in_namespace[term]
    gene_rows = gene_index.get_indexer(rows["gene"])[in_ns]
    term = term[in_ns]
    annotation = sp.csr_matrix((np.ones(len(term), dtype=np.float32), (gene_rows, term)), shape=(n_genes, n_terms_all))
    annotation.sum_duplicates()
    annotation.data[:] = 1.0
    if annotation.nnz == 0:
        examples = list(gene_ids[~gene_placeholder][:3])
        raise ValueError(
            f"None of the {n_genes} gene ids of modality {modality!r} (e.g. {examples}) has an annotation to a "
            f"{'/'.join(config.namespaces)} term in the given GAF + OBO. The GAF's gene ids look like "
            f"{annotations['gene'].head(3).tolist()}: give the features' ids in the same scheme (usually ENSEMBL "
            "gene ids, e.g. var['gene_stable_id'])."
        )

    annotated_terms = np.asarray(annotation.sum(axis=0)).ravel() > 0
    closure = graph.ancestors_closure(annotated_terms)
    removed = closure & (graph.depth > config.max_depth)
    if config.terms is not None:
        allowed = np.zeros(n_terms_all, dtype=bool)
        unknown_terms = []
        for goid in config.terms:
            idx = ontology.index.get(goid)
            if idx is None or not graph.in_namespace[idx]:
                unknown_terms.append(goid)
            else:
                allowed[idx] = True
        if unknown_terms:
            raise ValueError(
                f"Allow-listed term(s) {unknown_terms[:5]} are not live {'/'.join(config.namespaces)} terms of the "
                "OBO (obsolete, misspelled or of another namespace)."
            )
        removed |= closure & ~graph.ancestors_closure(allowed)
    if config.min_genes is not None or config.max_genes is not None:
        counts = np.asarray((propagate_up(annotation, graph.child, graph.parent, graph.depth) > 0).sum(axis=0))
        counts = counts.ravel()
        if config.min_genes is not None:
            removed |= closure & (counts < config.min_genes)
        if config.max_genes is not None:
            removed |= closure & (counts > config.max_genes)
    removed[graph.roots] = False  # namespace roots stay: they hold the top of the network
    kept = closure & ~removed

    # Removed terms hand their genes and children to their nearest kept ancestors ("bubble up").
    removed_idx = np.flatnonzero(removed)
    nearest: dict[int, set[int]] = {}
    for t in removed_idx[np.argsort(graph.depth[removed_idx], kind="stable")]:
        targets: set[int] = set()
        for p in graph.parents.indices[graph.parents.indptr[t] : graph.parents.indptr[t + 1]]:
            targets.update((int(p),) if kept[p] else nearest.get(int(p), ()))
        nearest[int(t)] = targets
    redirect_rows = list(np.flatnonzero(kept))
    redirect_cols = list(redirect_rows)
    for t, targets in nearest.items():
        redirect_rows.extend([t] * len(targets))
        redirect_cols.extend(targets)
    redirect = sp.csr_matrix(
        (np.ones(len(redirect_rows), np.float32), (redirect_rows, redirect_cols)), shape=(n_terms_all, n_terms_all)
    )
    kept_idx = np.flatnonzero(kept)
    gene_to_kept = (annotation @ redirect)[:, kept_idx].tocoo()
    kept_parents = (graph.parents[kept_idx].astype(np.float32) @ redirect)[:, kept_idx].tocoo()

    # Final term table: kept GO terms, the UNKNOWN chain, a synthetic top node over several roots.
    term_ids = list(ontology.ids[kept_idx])
    term_names = list(ontology.names[kept_idx])
    term_depth = list(graph.depth[kept_idx])
    term_kind = ["go"] * len(kept_idx)
    gene_term = set(zip(gene_to_kept.row.tolist(), gene_to_kept.col.tolist(), strict=True))
    term_term = set(zip(kept_parents.row.tolist(), kept_parents.col.tolist(), strict=True))
    kept_roots = [i for i, t in enumerate(kept_idx) if graph.depth[t] == 0]
    if len(kept_roots) == 1:
        top = kept_roots[0]
        term_kind[top] = "root"
    else:
        top = len(term_ids)
        term_ids.append(TOP_NODE_ID)
        term_names.append(
            "top node (" + ", ".join(sorted({ontology.namespaces[kept_idx[r]] for r in kept_roots})) + ")"
        )
        term_depth.append(-1)
        term_kind.append("root")
        term_term.update((r, top) for r in kept_roots)
    gene_annotated = np.zeros(n_genes, dtype=bool)
    gene_annotated[list({g for g, _ in gene_term})] = True
    unannotated = np.flatnonzero(~gene_annotated)
    n_unknown = min(config.max_unknown_depth, config.max_depth) if len(unannotated) else 0
    if len(unannotated):
        # Chain UNKNOWN{k} -> ... -> UNKNOWN1 -> top; unannotated genes enter at the deepest node.
        unknown = []
        for level in range(1, n_unknown + 1):
            unknown.append(len(term_ids))
            term_ids.append(f"{UNKNOWN_PREFIX}{level}")
            term_names.append(f"genes without {'/'.join(config.namespaces)} annotation (level {level})")
            term_depth.append(level)
            term_kind.append("unknown")
        chain = [*unknown[::-1], top]
        term_term.update(zip(chain[:-1], chain[1:], strict=False))
        entry = chain[0]
        gene_term.update((int(g), entry) for g in unannotated)

    # Sort terms deepest level first (stable by kind, then id) so each level is a contiguous slice.
    kind_rank = {"go": 0, "unknown": 1, "root": 2}
    order = sorted(range(len(term_ids)), key=lambda i: (-term_depth[i], kind_rank[term_kind[i]], term_ids[i]))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    term_ids_arr = np.array(term_ids, dtype=str)[order]
    term_depth_arr = np.array(term_depth, dtype=np.int64)[order]
    term_kind_arr = np.array(term_kind, dtype=str)[order]
    gene_term_arr = _pairs(gene_term, second=position)
    term_term_arr = _pairs(term_term, first=position, second=position)

    root_size = config.root_size or min(128, math.isqrt(len(feature_ids)))
    size_of = {"go": config.term_size, "unknown": config.unknown_size, "root": max(1, root_size)}
    term_size = np.array([size_of[k] for k in term_kind_arr], dtype=np.int64)
    reach = term_reach(gene_term_arr, term_term_arr, term_depth_arr, n_genes)
    term_n_genes = np.diff(reach.indptr).astype(np.int64)

    gene_edges, gene_edge_scores = _gene_edges(gene_index, gene_placeholder, interactions)
    info = {
        **provenance,
        "dropped_annotations": dropped_annotations,
        "dropped_go_ids": dropped_go_ids,
        "removed_terms": int(removed.sum()),
    }
    return Wiring(
        modality=modality,
        n_features=len(feature_ids),
        feature_gene=feature_gene,
        gene_ids=gene_ids,
        gene_annotated=gene_annotated,
        gene_placeholder=gene_placeholder,
        gene_edges=gene_edges,
        gene_edge_scores=gene_edge_scores,
        term_ids=term_ids_arr,
        term_names=np.array(term_names, dtype=str)[order],
        term_depth=term_depth_arr,
        term_kind=term_kind_arr,
        term_size=term_size,
        term_n_genes=term_n_genes,
        gene_term=gene_term_arr,
        term_term=term_term_arr,
        gene_size=config.gene_size,
        info=info,
    )


def _pairs(pairs: set[tuple[int, int]], first: np.ndarray | None = None, second: np.ndarray | None = None):
    arr = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2).T
    if first is not None:
        arr[0] = first[arr[0]]
    if second is not None:
        arr[1] = second[arr[1]]
    order = np.lexsort((arr[0], arr[1]))
    return np.ascontiguousarray(arr[:, order])


def _gene_edges(gene_index: pd.Index, placeholder: np.ndarray, interactions: pd.DataFrame | None):
    n = len(gene_index)
    src, dst, score = [np.arange(n)], [np.arange(n)], [np.ones(n)]
    if interactions is not None and len(interactions):
        a = gene_index.get_indexer(interactions["gene1"])
        b = gene_index.get_indexer(interactions["gene2"])
        ok = (a >= 0) & (b >= 0) & (a != b)
        ok[ok] &= ~placeholder[a[ok]] & ~placeholder[b[ok]]
        src.append(a[ok])
        dst.append(b[ok])
        score.append(interactions["score"].to_numpy()[ok])
    src, dst, score = np.concatenate(src), np.concatenate(dst), np.concatenate(score)
    order = np.lexsort((src, dst))
    return np.stack([src[order], dst[order]]).astype(np.int64), score[order].astype(np.float64)


def _check_releases(annotation_paths: Sequence[os.PathLike], ontology: Ontology) -> None:
    """Warn when org.*.eg.db annotations were built on another GO release than the ontology's (GAFs do not say)."""
    release = ontology.release.removeprefix("releases/")
    for path in annotation_paths:
        if not is_sqlite(path):
            continue
        built_on = bioc_metadata(path).get("GOSOURCEDATE", "")
        if built_on and release and built_on != release:
            logger.warning(
                "The annotations %s were built on GO release %s, the ontology is release %s: annotations to GO ids "
                "the ontology does not have are dropped (counted in each wiring's summary). Pass go= the DAG of the "
                "annotations' release (for org.*.eg.db, 'GO.db') to use them all.",
                os.fspath(path),
                built_on,
                release,
            )


# ---- public entry points ---------------------------------------------------------------------------------------------
def _cache_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def compile_wirings(
    features: Mapping[str, Sequence[Any]],
    *,
    go: PathOrName = "go-basic",
    annotations: PathOrName | Sequence[PathOrName],
    interactions: PathOrName | None = None,
    config: WiringConfig | None = None,
    feature_names: Mapping[str, Sequence[str]] | None = None,
    cache: bool = True,
    **config_kwargs: Any,
) -> dict[str, Wiring]:
    """Compile one :class:`Wiring` per modality, parsing each input file once.

    Parameters
    ----------
    features
        Modality name -> per-feature gene ids (one entry per feature, in column order). An entry may be missing
        (``None``/NaN: the feature becomes its own unannotated gene), one id, or several ids (a list, or a string
        such as ``"['ENSG...', 'ENSG...']"``).
    go
        The GO DAG: registry name (default ``"go-basic"``, release 2025-03-16; ``"GO.db"``, release 2022-07-01) or
        path of an OBO or GO.db SQLite file.
    annotations
        Annotation file(s) keyed by the same gene ids as ``features``: registry name(s) or path(s) of GAF or
        org.*.eg.db SQLite files. An org.*.eg.db file built on another GO release than ``go`` is warned about.
    interactions
        Optional gene–gene table (CSV ``gene1,gene2,combined_score``): registry name or path.
    config
        Compiler settings; keyword arguments (e.g. ``max_depth=3``) override its fields.
    feature_names
        Modality -> feature names, used to name placeholder genes of features without id.
    cache
        Reuse a wiring compiled from identical inputs (content hashes of the files, the ids and the settings) and
        store new ones in ``<cache_dir>/wiring``.

    Returns
    -------
    Modality name -> :class:`Wiring`.
    """
    config = replace(config, **config_kwargs) if config is not None else WiringConfig(**config_kwargs)
    if not features:
        raise ValueError("features must map at least one modality name to its feature gene ids.")
    parsed_ids = {modality: parse_feature_gene_ids(list(ids)) for modality, ids in features.items()}
    for modality, ids in parsed_ids.items():
        if not ids:
            raise ValueError(f"Modality {modality!r} has no features.")
        if not any(ids):
            raise ValueError(
                f"Modality {modality!r} has no gene ids at all (every entry is missing); give its features' gene ids "
                "(e.g. ENSEMBL ids from var['gene_stable_id'])."
            )
    names = dict(feature_names or {})
    for modality, fnames in names.items():
        if modality in parsed_ids and len(fnames) != len(parsed_ids[modality]):
            raise ValueError(f"feature_names[{modality!r}] has {len(fnames)} entries for {len(parsed_ids[modality])}.")

    go_path = resolve(go, kind=ONTOLOGY_KINDS)
    sources = [annotations] if isinstance(annotations, str | os.PathLike) else list(annotations)
    gaf_paths = [resolve(source, kind=ANNOTATION_KINDS) for source in sources]
    inter_path = resolve(interactions, kind="interactions") if interactions is not None else None
    provenance = {
        "wiring_format": WIRING_FORMAT_VERSION,
        "obo_sha256": sha256_of(go_path),
        "gaf_sha256": sorted(sha256_of(p) for p in gaf_paths),
        "interactions_sha256": sha256_of(inter_path) if inter_path is not None else None,
        "config": config.to_dict(),
    }
    folder = cache_dir() / "wiring"
    keys = {
        modality: _cache_key({**provenance, "modality": modality, "ids": ids, "names": names.get(modality)})
        for modality, ids in parsed_ids.items()
    }
    wirings: dict[str, Wiring] = {}
    if cache:
        for modality, key in keys.items():
            path = folder / f"{key}.npz"
            if path.is_file():
                try:
                    wirings[modality] = Wiring.load(path)
                except (OSError, ValueError, KeyError) as err:
                    logger.warning("Ignoring unreadable cached wiring %s (%s).", path, err)
    todo = [m for m in parsed_ids if m not in wirings]
    if todo:
        ontology = read_obo(go_path, with_relationships=config.needs_relationships, sha256=provenance["obo_sha256"])
        provenance["obo_release"] = ontology.release
        _check_releases(gaf_paths, ontology)
        table, _ = read_gaf(
            gaf_paths,
            evidence_exclude=config.evidence_exclude,
            keep_not=config.keep_not,
            id_column=config.annotation_id,
        )
        edges = read_interactions(inter_path, score_cutoff=config.interaction_cutoff) if inter_path else None
        graph = _Graph(ontology, config)
        for modality in todo:
            wiring = _compile_modality(
                modality, parsed_ids[modality], names.get(modality), graph, table, edges, config, provenance
            )
            wirings[modality] = wiring
            if cache:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f"{keys[modality]}.{os.getpid()}.part"
                wiring.save(tmp)
                tmp.replace(folder / f"{keys[modality]}.npz")
    for wiring in wirings.values():
        logger.info("%r", wiring)
    return {modality: wirings[modality] for modality in parsed_ids}


def compile_wiring(
    feature_gene_ids: Sequence[Any],
    *,
    modality: str = "rna",
    go: PathOrName = "go-basic",
    annotations: PathOrName | Sequence[PathOrName],
    interactions: PathOrName | None = None,
    config: WiringConfig | None = None,
    feature_names: Sequence[str] | None = None,
    cache: bool = True,
    **config_kwargs: Any,
) -> Wiring:
    """Compile the :class:`Wiring` of a single modality; see :func:`compile_wirings` for the parameters."""
    return compile_wirings(
        {modality: feature_gene_ids},
        go=go,
        annotations=annotations,
        interactions=interactions,
        config=config,
        feature_names={modality: feature_names} if feature_names is not None else None,
        cache=cache,
        **config_kwargs,
    )[modality]
