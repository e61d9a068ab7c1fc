"""Derive the small real CITE-seq example shipped in ``scvi_networkvi/datasets/example/``.

Inputs are the NetworkVI tutorial files, by default the registry resources ``tutorial-cite``, ``go-basic``,
``ensembl2go-tutorial`` and ``k562-contact-domains`` of :mod:`scvi_networkvi.resources` (fetched once,
sha256-verified, cached), or the files of the same names as below in a folder given as the first argument:

``cite_bmmc_5k.h5ad``
    NeurIPS 2021 bone-marrow CITE-seq (Luecken et al. 2021, GEO GSE194122, CC-BY-4.0): 5000 cells x 4000 genes
    of raw counts, 134 ADT counts in ``obsm['protein_expression']`` with their var table in
    ``uns['protein_expression']['var']``.
``go-basic.obo``
    Gene Ontology go-basic, release 2025-03-16 (CC-BY-4.0).
``ensembl2go.gaf``
    The tutorial's gene -> GO annotations (ENSEMBL id in column 2), subsampled to ~82 GO ids: demo only.
``gene_interactions.csv``
    Gene pairs in ENCODE K562 Hi-C contact domains (``index,gene1,gene2,combined_score``).

Derivation (all random choices draw from one ``numpy.random.default_rng(seed)``, default seed 0):

1. Sites: the ``--n-sites`` (default 3) sites with the most cells (ties by name).
2. Cell types: among the cells of those sites, the ``--n-cell-types`` (default 10) most frequent labels that have
   at least ``--min-per-site`` (default 5) cells in every chosen site (ties by name).
3. Cells: ``--n-cells`` (default 2000) cells drawn without replacement, stratified by (cell type, site): each
   stratum gets its proportional share (largest-remainder rounding, ties by stratum name) and its cells are drawn
   with the seeded generator. Cells keep the order of the source file.
4. RNA genes: ALL genes whose ``gene_stable_id`` appears in column 2 of ``ensembl2go.gaf``, plus the most variable
   remaining genes up to ``--n-genes`` (default 1000) in total. Variability = variance over the chosen cells of
   ``log1p(counts / cell total * 1e4)`` (stable sort, ties by source order); genes without any count in the chosen
   cells are never picked. Genes keep the order of the source file.
5. Proteins: all 134, integer counts (dense), ``gene_stable_id`` kept as given (missing for 5 ADTs), except that
   the tutorial's set literal for CD3 (``"{'ENSG00000167286','ENSG00000198851'}"``) is written in the list form that
   :func:`scvi_networkvi.wiring.parse_feature_gene_ids` reads as several genes (``"['ENSG00000167286', ...]"``).
   Names as given, except that the 29 antibodies named like one of the source's 4000 genes get the suffix ``_ADT``
   (``CD4_ADT``; :func:`scvi_networkvi.datasets._tutorial.unique_protein_names`, as ``tutorial_cite()`` names
   them), so that the MuData's ``var_names`` are unique.
6. ``cite_example.h5mu``: MuData with modalities ``rna`` (CSR int32 counts, var index = gene symbols, var
   ``gene_stable_id``) and ``prot``; obs ``cell_type``, ``Site``, ``DonorID``, ``DonorSmoker`` (categoricals without
   unused categories), ``DonorBMI``, ``DonorAge`` in the global obs and in each modality's obs; gzip level 9.
7. ``annotations.gaf``: the ``!`` header lines plus every GAF line whose column-2 id (version suffix stripped) is
   one of the example's gene ids (rna and prot, as parsed by ``parse_feature_gene_ids``), verbatim.
8. ``go_slice.obo``: the header of go-basic.obo, then verbatim ``[Term]`` stanzas of the non-obsolete terms
   annotated in ``annotations.gaf`` (GO ids given as ``alt_id`` resolve to their primary term) and all their
   ancestors through ``is_a`` and every ``relationship`` line (part_of, regulates, ...), then the ``[Typedef]``
   stanzas, all in source order.
9. ``interactions.csv``: the rows of gene_interactions.csv whose gene1 and gene2 are both example gene/protein ids,
   columns ``gene1,gene2,combined_score`` (values verbatim, source order).
10. Check: :func:`scvi_networkvi.wiring.compile_wirings` on the slice files must give exactly the wirings
    (``Wiring.equals``: genes, terms, names, depths, edges) that the full go-basic.obo + ensembl2go.gaf +
    gene_interactions.csv give for the example's rna and prot ids, with the default settings, with
    ``relations=("is_a", "part_of")`` and with all namespaces and relations. The script fails if not.
11. ``README.md``: provenance, licences, the command and the sha256 of each file.

Run it with the oldest supported stack (``.venv311``) so that every supported anndata / mudata can read the file::

    .venv311/bin/python scripts/make_example.py
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import logging
import shlex
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
from _example_slice import (
    check,
    gaf_ids,
    normalize_id,
    verify_slice,
    write_gaf_subset,
    write_interactions_subset,
    write_obo_slice,
)

logger = logging.getLogger("make_example")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "scvi_networkvi" / "datasets" / "example"
# Input file name -> the registry resource with that content.
INPUTS = {
    "cite_bmmc_5k.h5ad": "tutorial-cite",
    "go-basic.obo": "go-basic",
    "ensembl2go.gaf": "ensembl2go-tutorial",
    "gene_interactions.csv": "k562-contact-domains",
}
OBS_COLUMNS = ("cell_type", "Site", "DonorID", "DonorSmoker", "DonorBMI", "DonorAge")
FILES = ("cite_example.h5mu", "go_slice.obo", "annotations.gaf", "interactions.csv")


def sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# ---- cells and genes -------------------------------------------------------------------------------------------------
def choose_sites(obs: pd.DataFrame, n_sites: int) -> list[str]:
    counts = obs["Site"].astype(str).value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return sorted(site for site, _ in ranked[:n_sites])


def choose_cell_types(obs: pd.DataFrame, sites: list[str], n_types: int, min_per_site: int) -> list[str]:
    table = pd.crosstab(obs["cell_type"].astype(str), obs["Site"].astype(str))[sites]
    eligible = table.loc[(table >= min_per_site).all(axis=1)].sum(axis=1)
    ranked = sorted(eligible.items(), key=lambda kv: (-kv[1], kv[0]))
    return [cell_type for cell_type, _ in ranked[:n_types]]


def stratified_sample(strata: pd.Series, n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (sorted) of ``n`` rows drawn proportionally from each stratum (largest remainder)."""
    sizes = strata.value_counts().sort_index()
    n = min(n, int(sizes.sum()))
    exact = sizes.to_numpy() * n / sizes.sum()
    alloc = np.floor(exact).astype(int)
    remainder = exact - alloc
    order = sorted(range(len(sizes)), key=lambda i: (-remainder[i], sizes.index[i]))
    alloc[order[: n - alloc.sum()]] += 1
    chosen = []
    positions = np.arange(len(strata))
    values = strata.to_numpy()
    for stratum, k in zip(sizes.index, alloc, strict=True):
        members = positions[values == stratum]
        chosen.append(rng.choice(members, size=int(k), replace=False))
    return np.sort(np.concatenate(chosen))


def most_variable(counts: sp.csr_matrix, candidates: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` candidate columns with the largest variance of log1p(CP10k)."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    norm = sp.csr_matrix(sp.diags(1e4 / np.maximum(totals, 1)) @ counts.astype(np.float64))
    norm.data = np.log1p(norm.data)
    mean = np.asarray(norm.mean(axis=0)).ravel()
    mean_sq = np.asarray(norm.multiply(norm).mean(axis=0)).ravel()
    variance = mean_sq - mean**2
    detected = np.asarray((counts > 0).sum(axis=0)).ravel() > 0
    pool = candidates[detected[candidates]]
    order = np.argsort(-variance[pool], kind="stable")
    return np.sort(pool[order[:n]])


def categorical(series: pd.Series) -> pd.Series:
    values = series.astype(object).where(series.notna(), None)
    values = values.map(lambda v: v if v is None else str(v))
    return pd.Series(pd.Categorical(values), index=series.index, name=series.name)


def clean_obs(obs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=pd.Index(obs.index.astype(str).tolist(), name=None))
    for col in OBS_COLUMNS:
        values = obs[col]
        if col in ("DonorBMI",):
            out[col] = values.to_numpy(dtype=np.float64)
        elif col in ("DonorAge",):
            out[col] = values.to_numpy(dtype=np.int64)
        else:
            out[col] = categorical(values).array
    return out


def list_form(value):
    """``"{'ENSG1','ENSG2'}"`` (the tutorial's CD3) -> ``"['ENSG1', 'ENSG2']"``, the multi-gene form the compiler reads."""
    if isinstance(value, str) and value.strip().startswith("{"):
        return str(sorted(str(item) for item in ast.literal_eval(value.strip())))
    return value


def ids_frame(names: list[str], ids: pd.Series) -> pd.DataFrame:
    frame = pd.DataFrame(index=pd.Index(names, name=None))
    values = [list_form(value) for value in ids.astype(object)]
    frame["gene_stable_id"] = categorical(pd.Series(values, index=frame.index, dtype=object))
    return frame


def build_mudata(cite: ad.AnnData, cells: np.ndarray, genes: np.ndarray) -> md.MuData:
    from scvi_networkvi.datasets._tutorial import unique_protein_names

    obs = clean_obs(cite.obs.iloc[cells])
    counts = sp.csr_matrix(cite.X[cells][:, genes])
    check(np.all(counts.data == np.round(counts.data)) and counts.data.min() >= 0, "RNA X is not integer counts")
    counts = sp.csr_matrix(counts.astype(np.int32))
    counts.sort_indices()
    var = ids_frame(cite.var_names[genes].astype(str).tolist(), cite.var["gene_stable_id"].iloc[genes])
    rna = ad.AnnData(X=counts, obs=obs.copy(), var=var)

    prot_values = np.asarray(cite.obsm["protein_expression"])[cells]
    check(np.all(prot_values == np.round(prot_values)) and prot_values.min() >= 0, "ADT values are not counts")
    prot_var = cite.uns["protein_expression"]["var"]
    check(len(prot_var) == prot_values.shape[1], "protein var table does not match obsm['protein_expression']")
    prot = ad.AnnData(
        X=np.ascontiguousarray(prot_values.astype(np.int32)),
        obs=obs.copy(),
        var=ids_frame(unique_protein_names(prot_var.index, cite.var_names), prot_var["gene_stable_id"]),
    )
    with no_pull():
        mdata = md.MuData({"rna": rna, "prot": prot})
    mdata.obs = obs.copy()
    return mdata


def no_pull():
    """mudata < 0.4 copies modality obs columns, prefixed, into the global obs; 0.4 does not by default."""
    set_options = getattr(md, "set_options", None)
    return set_options(pull_on_update=False) if set_options is not None else contextlib.nullcontext()


@contextlib.contextmanager
def object_strings():
    """Build and write with object-dtype strings (plain ``string-array`` on disk, readable by anndata 0.11).

    pandas >= 3 infers its ``str`` dtype, which anndata 0.11 refuses to write; its ``future.infer_string`` option
    still switches that off (deprecated, removed in pandas 4, where a newer anndata is needed anyway).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pd.get_option("future.infer_string")
            context = pd.option_context("future.infer_string", False)
        except (KeyError, pd.errors.OptionError):
            context = contextlib.nullcontext()
        context.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            context.__exit__(None, None, None)


# ---- GAF, OBO and interactions ---------------------------------------------------------------------------------------


# ---- the check -------------------------------------------------------------------------------------------------------


# ---- README ----------------------------------------------------------------------------------------------------------
README = """\
# Example data of scvi-networkvi

A small, real CITE-seq example for documentation, tests and quick starts. It is **demo data**: the GO annotations
come from the NetworkVI tutorial's subsampled GAF, so the GO wiring covers only a few of the genes' functions.
Load it with `scvi_networkvi.datasets.example()`; `scvi_networkvi.datasets.example_resources()` gives the paths
of the GO slice, the annotations and the interactions for `scvi_networkvi.wiring.compile_wirings`.

## Contents

| file | what |
|---|---|
| `cite_example.h5mu` | MuData: {n_cells} cells; `rna` {n_genes} genes (integer counts, CSR int32; var index gene symbols, var `gene_stable_id` ENSEMBL ids; {n_annotated} genes with an annotation in the tutorial GAF + {n_hvg} most variable others), `prot` {n_prot} ADT proteins (integer counts, dense int32; var index antibody names, `_ADT` appended to the {n_prot_renamed} named like a gene, e.g. `CD4_ADT`, so that the MuData's var_names are unique; var `gene_stable_id`, missing for {n_prot_missing}, the list `"['ENSG00000167286', 'ENSG00000198851']"` for CD3); obs `cell_type` ({n_types} types), `Site` ({sites}), `DonorID`, `DonorSmoker`, `DonorBMI`, `DonorAge` |
| `go_slice.obo` | OBO 1.2: the header of GO go-basic release 2025-03-16 and, verbatim, the {n_terms} non-obsolete `[Term]` stanzas annotated to the example's genes/proteins in `annotations.gaf` plus all their ancestors through `is_a` and `relationship` lines, then the `[Typedef]` stanzas |
| `annotations.gaf` | GAF 2.2: header + the {n_gaf} lines of the tutorial's `ensembl2go.gaf` whose column-2 ENSEMBL id is an example gene or protein |
| `interactions.csv` | `gene1,gene2,combined_score`: the {n_edges} rows of the tutorial's `gene_interactions.csv` (ENCODE K562 Hi-C contact domains, ENCFF173VDJ) between example genes/proteins |

Cell types: {type_list}.

Compiling the wiring on these files gives exactly the wiring (`Wiring.equals`) that the full go-basic.obo +
ensembl2go.gaf + gene_interactions.csv give for the example's features (checked by the script with the default
settings, with `relations=("is_a", "part_of")` and with all namespaces and relations).

## Provenance and licences

- Single-cell data: NeurIPS 2021 multimodal single-cell integration challenge, bone-marrow CITE-seq, Luecken et
  al. 2021 (NeurIPS Datasets and Benchmarks), GEO GSE194122, CC-BY-4.0; as the 5000-cell subset shipped in the
  source distribution of `networkvi==0.1.0` (`neurips2021_cite_bmmc_luecken2021.h5ad`).
- Gene Ontology: go-basic.obo release 2025-03-16 (`data-version: releases/2025-03-16`), The Gene Ontology
  Consortium, CC-BY-4.0 (http://geneontology.org/docs/go-citation-policy/).
- Annotations: `resources/ensembl2go.gaf` of `networkvi==0.1.0` (UniProt-GOA human, GO 2024-06-13, subsampled
  to ~82 GO ids by the NetworkVI authors), CC-BY-4.0.
- Interactions: `gene_interactions.csv` of `networkvi==0.1.0` (ENCODE ENCFF173VDJ K562 contact domains), CC-BY-4.0.

## Regenerate

```
{command}   # inputs: the registry resources tutorial-cite, go-basic, ensembl2go-tutorial, k562-contact-domains
```

Written with {versions}, seed {seed}. The derivation is documented in `scripts/make_example.py`.

## sha256

```
{hashes}
```
"""


def write_readme(out: Path, facts: dict) -> None:
    hashes = "\n".join(f"{sha256(out / name)}  {name}" for name in FILES)
    (out / "README.md").write_text(README.format(hashes=hashes, **facts), encoding="utf-8")


# ---- main ------------------------------------------------------------------------------------------------------------
def regenerate_command(args: argparse.Namespace) -> str:
    """The command line, with the interpreter of the repository's venv and only the non-default options."""
    prefix = Path(sys.prefix)
    python = f"{prefix.name}/bin/python" if prefix.parent == REPO else "python"
    words = [python, "scripts/make_example.py"]
    if args.data_dir is not None:
        words.append(str(args.data_dir))
    defaults = vars(parse_args([]))
    for key, value in vars(args).items():
        if key not in ("data_dir", "verbose") and value != defaults[key]:
            words += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(words)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "data_dir", nargs="?", type=Path, default=None, help="folder with the input files (default: the registry's)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the package data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-cells", type=int, default=2000)
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--n-sites", type=int, default=3)
    parser.add_argument("--n-cell-types", type=int, default=10)
    parser.add_argument("--min-per-site", type=int, default=5)
    parser.add_argument("--max-mb", type=float, default=3.0, help="fail if the data files exceed this size (MB)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("make_example", "scvi_networkvi"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if args.data_dir is None:
        from scvi_networkvi.resources import fetch

        files = {name: fetch(resource) for name, resource in INPUTS.items()}
    else:
        files = {name: args.data_dir.expanduser() / name for name in INPUTS}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    cite = ad.read_h5ad(files["cite_bmmc_5k.h5ad"])
    logger.info("read %s: %d cells x %d genes", files["cite_bmmc_5k.h5ad"], cite.n_obs, cite.n_vars)

    sites = choose_sites(cite.obs, args.n_sites)
    in_sites = cite.obs["Site"].astype(str).isin(sites).to_numpy()
    types = choose_cell_types(cite.obs.loc[in_sites], sites, args.n_cell_types, args.min_per_site)
    pool = np.flatnonzero(in_sites & cite.obs["cell_type"].astype(str).isin(types).to_numpy())
    strata = (cite.obs["cell_type"].astype(str) + " @ " + cite.obs["Site"].astype(str)).iloc[pool]
    cells = pool[stratified_sample(strata.reset_index(drop=True), args.n_cells, rng)]
    logger.info("sites %s, %d cell types, %d of %d eligible cells", sites, len(types), len(cells), len(pool))

    annotated_ids = gaf_ids(files["ensembl2go.gaf"])
    gene_ids = cite.var["gene_stable_id"].astype(str).map(normalize_id).to_numpy()
    annotated = np.flatnonzero(np.isin(gene_ids, list(annotated_ids)))
    check(len(annotated) <= args.n_genes, f"{len(annotated)} annotated genes exceed --n-genes {args.n_genes}")
    others = np.setdiff1d(np.arange(cite.n_vars), annotated)
    counts = sp.csr_matrix(cite.X[cells])
    hvg = most_variable(counts, others, args.n_genes - len(annotated))
    genes = np.sort(np.concatenate([annotated, hvg]))
    logger.info("%d genes: %d annotated in the GAF + %d most variable", len(genes), len(annotated), len(hvg))

    h5mu = out / "cite_example.h5mu"
    h5mu.unlink(missing_ok=True)
    with object_strings():
        mdata = build_mudata(cite, cells, genes)
        with no_pull():
            md.write_h5mu(h5mu, mdata, compression="gzip", compression_opts=9)

    from scvi_networkvi.wiring import parse_feature_gene_ids

    prot_series = mdata["prot"].var["gene_stable_id"]
    example_ids = {
        gene
        for modality in ("rna", "prot")
        for genes in parse_feature_gene_ids(list(mdata[modality].var["gene_stable_id"]))
        for gene in genes
    }
    go_ids = write_gaf_subset(files["ensembl2go.gaf"], out / "annotations.gaf", example_ids)
    n_terms = write_obo_slice(files["go-basic.obo"], out / "go_slice.obo", go_ids)
    n_edges = write_interactions_subset(files["gene_interactions.csv"], out / "interactions.csv", example_ids)
    logger.info("GO slice: %d terms (from %d annotated GO ids); %d interaction rows", n_terms, len(go_ids), n_edges)

    features = {"rna": list(mdata["rna"].var["gene_stable_id"]), "prot": list(mdata["prot"].var["gene_stable_id"])}
    names = {"rna": list(mdata["rna"].var_names), "prot": list(mdata["prot"].var_names)}
    full_files = {
        "go": files["go-basic.obo"],
        "annotations": files["ensembl2go.gaf"],
        "interactions": files["gene_interactions.csv"],
    }
    slice_files = {
        "go": out / "go_slice.obo",
        "annotations": out / "annotations.gaf",
        "interactions": out / "interactions.csv",
    }
    wirings = verify_slice(features, names, full_files, slice_files)

    sizes = {name: (out / name).stat().st_size for name in FILES}
    total = sum(sizes.values())
    check(total <= args.max_mb * 1e6, f"the example files take {total / 1e6:.2f} MB > {args.max_mb} MB")
    n_gaf = sum(1 for line in open(out / "annotations.gaf", encoding="utf-8") if not line.startswith("!"))
    versions = ", ".join(f"{pkg} {version(pkg)}" for pkg in ("anndata", "mudata", "h5py", "pandas", "numpy"))
    command = regenerate_command(args)
    write_readme(
        out,
        {
            "n_cells": mdata.n_obs,
            "n_genes": mdata["rna"].n_vars,
            "n_annotated": len(annotated),
            "n_hvg": len(hvg),
            "n_prot": mdata["prot"].n_vars,
            "n_prot_missing": int(prot_series.isna().sum()),
            "n_prot_renamed": int(mdata["prot"].var_names.str.endswith("_ADT").sum()),
            "n_types": len(types),
            "type_list": ", ".join(f"{t} ({int((mdata.obs['cell_type'] == t).sum())})" for t in types),
            "sites": ", ".join(f"{s} ({int((mdata.obs['Site'] == s).sum())})" for s in sites),
            "n_terms": n_terms,
            "n_gaf": n_gaf,
            "n_edges": n_edges,
            "command": command,
            "versions": versions,
            "seed": args.seed,
        },
    )
    for name, size in sizes.items():
        logger.info("%-18s %9d bytes", name, size)
    logger.info("total %.2f MB (+ README.md)", total / 1e6)
    for label, result in wirings.items():
        for modality, wiring in result.items():
            logger.info("%s / %s: %s", label, modality, wiring.summary()["terms_per_level"])


if __name__ == "__main__":
    main()
