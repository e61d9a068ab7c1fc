"""Write the real-data subsets in ``tests/data/`` that the tests train and check on, from the registry's resources.

Inputs are registry resources of :mod:`scvi_networkvi.resources` (fetched once, sha256-verified, then cached):
``tutorial-cite`` and ``tutorial-multiome`` (NeurIPS 2021 bone marrow, Luecken et al. 2021, GEO GSE194122,
CC-BY-4.0), ``go-basic`` (release 2025-03-16, CC-BY-4.0), ``ensembl2go-tutorial`` (the tutorial's subsampled GAF),
``k562-contact-domains`` (the tutorial's gene_interactions.csv) and the ``networkvi-0.1.0-sdist`` archive (for the
GM12878 loop gene groups, which have no resource of their own).

Derivation (every random choice draws from one ``numpy.random.default_rng(seed)``, default seed 0; batches are the
``sXdY`` suffix of the cell names, site X donor Y):

1. ``bmmc_cite.h5mu``: ``--n-cite`` (600) cells of the tutorial CITE-seq from the batches ``--batches`` (s1d1, s1d3),
   drawn stratified by batch (make_example's largest-remainder allocation), in source order. Modality ``rna``: the
   ``--n-cite-genes`` (1000) most variable genes (variance of log1p(CP10k) over the chosen cells), counts as CSR
   float32, var ``gene_stable_id`` and the tutorial's ``modality``. Modality ``adt``: all 134 ADT counts (CSR float32),
   var ``symbol``, ``gene_stable_id`` (the tutorial's ids; CD3's set literal in the list form the wiring compiler
   reads as two genes; missing for 5 ADTs) and ``symbol_source``. The symbol is the gene symbol of the ADT's (first)
   gene id in the tutorial's RNA var table, else in column 3 of the tutorial GAF, else the ADT name itself.
   obs ``cell_type``, ``batch``, ``Site``, ``DonorID`` in each modality; the global obs has no columns.
2. ``bmmc_multiome.h5mu``: ``--n-multiome`` (500) cells of the tutorial Multiome from the same batches, drawn the
   same way. ``rna`` (integer counts recovered by :func:`scvi_networkvi.datasets.tutorial_multiome`): the
   ``--n-shared-genes`` (100) most variable of the CITE subset's genes that the Multiome has, plus the most variable
   other genes up to ``--n-multiome-genes`` (600); ``atac``: the ``--n-peaks`` (600) peaks open in the most chosen
   cells (ties by source order), 0/1 as in the tutorial, var ``gene_stable_id`` (the peak's gene) and ``modality``.
   obs as in 1. Features keep the source order.
3. ``tutorial_cite_sample.h5ad`` / ``tutorial_multiome_sample.h5ad``: ``--n-sample`` (50) random cells of the two
   tutorial files in their own layout (every gene and protein, the peaks of chromosome 1; the Multiome RNA still
   size-factor scaled; of ``uns['protein_expression']`` only its ``var`` table), for the tests of the loaders'
   conversion, and for the gene ids of the tutorial's features.
4. ``tutorial_interactions.csv``: the contact-domain pairs cut to the tutorial's 4000 genes and 134 proteins the
   way make_example cuts them. GO and GAF need no slice of their own: the embedded example's ``go_slice.obo`` and
   ``annotations.gaf`` already hold every tutorial GAF line of an annotated tutorial gene. The script checks that
   these three files compile to exactly the wirings of the full go-basic, tutorial GAF and contact-domain files for
   the tutorial's features (the settings of make_example and those of the tutorial-figures test).
5. ``loops_gm12878_gene_groups.npy``: the groups of the tutorial's GM12878 loop gene groups (an object array of
   sets, read with ``allow_pickle``) that hold at least 2 of the tutorial CITE-seq genes, in source order, as an
   object array of sorted lists (a pickled set's element order changes from run to run).
6. ``README.md``: what each file holds, provenance and licences, the command and each file's sha256.

    python scripts/make_test_data.py            # writes tests/data/; fails above --max-mb
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
from make_example import (
    check,
    list_form,
    most_variable,
    no_pull,
    normalize_id,
    object_strings,
    sha256,
    stratified_sample,
    verify_slice,
    write_interactions_subset,
)

from scvi_networkvi.datasets import example_resources
from scvi_networkvi.datasets._tutorial import multiome_to_mudata
from scvi_networkvi.resources import fetch
from scvi_networkvi.wiring import parse_feature_gene_ids

logger = logging.getLogger("make_test_data")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "data"
OBS_COLUMNS = ("cell_type", "batch", "Site", "DonorID")
GROUPS_MEMBER = "networkvi-0.1.0/resources/ENCFF041XLP_GM12878_GRCh38_loops_juicertools_gene_groups.npy"
FILES = (
    "bmmc_cite.h5mu",
    "bmmc_multiome.h5mu",
    "tutorial_cite_sample.h5ad",
    "tutorial_multiome_sample.h5ad",
    "tutorial_interactions.csv",
    "loops_gm12878_gene_groups.npy",
)
# The settings of tests/test_wiring.py's tutorial-figures test, checked besides make_example's three.
FIGURE_SETTINGS = {"gene_size": 5, "term_size": 2, "root_size": 63}


def batches_of(obs_names: pd.Index) -> np.ndarray:
    """The ``sXdY`` suffix of the tutorial's cell names (``BARCODE-N-sXdY``): site X, donor Y."""
    return np.asarray(obs_names.str.rsplit("-", n=1).str[1], dtype=object)


def choose_cells(obs_names: pd.Index, batches: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    batch = pd.Series(batches_of(obs_names))
    pool = np.flatnonzero(batch.isin(batches).to_numpy())
    check(len(pool) >= n, f"batches {batches} have {len(pool)} cells, fewer than {n}")
    return pool[stratified_sample(batch.iloc[pool].reset_index(drop=True), n, rng)]


def test_obs(obs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=pd.Index(obs.index.astype(str).tolist()))
    out["cell_type"] = pd.Categorical(obs["cell_type"].astype(str))
    out["batch"] = pd.Categorical(batches_of(obs.index).astype(str))
    out["Site"] = pd.Categorical(obs["Site"].astype(str))
    out["DonorID"] = pd.Categorical(obs["DonorID"].astype(str))
    return out


def str_var(frame: pd.DataFrame) -> pd.DataFrame:
    """Plain string columns (categoricals would keep the source's unused categories), index as strings."""
    out = pd.DataFrame(index=pd.Index(frame.index.astype(str).tolist()))
    for column in frame.columns:
        values = frame[column].astype(object)
        out[column] = values.where(values.notna(), None).map(lambda v: v if v is None else str(v)).to_numpy()
    return out


def float_csr(matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    check(out.nnz == 0 or (out.data.min() >= 0 and np.all(out.data == np.round(out.data))), "not counts")
    return out


def write_mudata(path: Path, mods: dict[str, ad.AnnData]) -> md.MuData:
    path.unlink(missing_ok=True)
    with no_pull():
        mdata = md.MuData(mods)
        mdata.obs = pd.DataFrame(index=mdata.obs_names)
        md.write_h5mu(path, mdata, compression="gzip", compression_opts=9)
    return mdata


# ---- CITE-seq --------------------------------------------------------------------------------------------------------
def adt_symbols(prot_ids: list, names: list[str], rna_var: pd.DataFrame, gaf: Path) -> tuple[list[str], list[str]]:
    """Gene symbol of each ADT's first gene id (tutorial RNA var, else GAF column 3, else the ADT name)."""
    by_id = {
        normalize_id(str(gid)): str(sym) for sym, gid in zip(rna_var.index, rna_var["gene_stable_id"], strict=True)
    }
    from_gaf: dict[str, str] = {}
    with open(gaf, encoding="utf-8") as fh:
        for line in fh:
            fields = line.split("\t")
            if not line.startswith("!") and len(fields) > 2:
                from_gaf.setdefault(normalize_id(fields[1]), fields[2])
    symbols, sources = [], []
    for genes, name in zip(parse_feature_gene_ids(prot_ids), names, strict=True):
        first = normalize_id(genes[0]) if genes else None
        if first in by_id:
            symbols.append(by_id[first]), sources.append("tutorial RNA var")
        elif first in from_gaf:
            symbols.append(from_gaf[first]), sources.append("tutorial GAF")
        else:
            symbols.append(name), sources.append("ADT name")
    return symbols, sources


def make_cite(cite: ad.AnnData, cells: np.ndarray, n_genes: int, gaf: Path, out: Path) -> md.MuData:
    obs = test_obs(cite.obs.iloc[cells])
    counts = sp.csr_matrix(cite.X[cells])
    genes = most_variable(counts, np.arange(cite.n_vars), n_genes)
    check(len(genes) == n_genes, f"only {len(genes)} genes are detected in the chosen cells")
    rna = ad.AnnData(X=float_csr(counts[:, genes]), obs=obs.copy(), var=str_var(cite.var.iloc[genes]))

    prot_var = pd.DataFrame(cite.uns["protein_expression"]["var"])
    names = prot_var.index.astype(str).tolist()
    ids = [list_form(v) if isinstance(v, str) else None for v in prot_var["gene_stable_id"].astype(object)]
    symbols, sources = adt_symbols(ids, names, cite.var, gaf)
    adt_var = pd.DataFrame({"symbol": symbols, "gene_stable_id": ids, "symbol_source": sources}, index=names)
    values = np.asarray(cite.obsm["protein_expression"])[cells]
    adt = ad.AnnData(X=float_csr(values), obs=obs.copy(), var=str_var(adt_var))
    return write_mudata(out / "bmmc_cite.h5mu", {"rna": rna, "adt": adt})


# ---- Multiome --------------------------------------------------------------------------------------------------------
def make_multiome(raw: ad.AnnData, cells: np.ndarray, cite_ids: set[str], args, out: Path) -> md.MuData:
    """``raw``: the tutorial AnnData (genes and peaks side by side); RNA counts via the package's conversion."""
    converted = multiome_to_mudata(raw[cells].copy())
    rna_all, atac_all = converted["rna"], converted["atac"]
    counts = sp.csr_matrix(rna_all.X)
    ids = rna_all.var["gene_stable_id"].astype(str).map(normalize_id).to_numpy()
    in_cite = np.flatnonzero(np.isin(ids, list(cite_ids)))
    shared = most_variable(counts, in_cite, args.n_shared_genes)
    check(len(shared) == args.n_shared_genes, f"only {len(shared)} CITE genes are detected in the Multiome cells")
    others = most_variable(
        counts, np.setdiff1d(np.arange(rna_all.n_vars), in_cite), args.n_multiome_genes - len(shared)
    )
    genes = np.sort(np.concatenate([shared, others]))

    peaks_x = sp.csr_matrix(atac_all.X)
    open_cells = np.asarray((peaks_x > 0).sum(axis=0)).ravel()
    peaks = np.sort(np.argsort(-open_cells, kind="stable")[: args.n_peaks])

    obs = test_obs(raw.obs.iloc[cells])
    modality = raw.var["modality"].astype(str)
    rna_var = str_var(rna_all.var.iloc[genes]).assign(modality=modality.loc[rna_all.var_names[genes]].to_numpy())
    atac_var = str_var(atac_all.var.iloc[peaks]).assign(modality=modality.loc[atac_all.var_names[peaks]].to_numpy())
    rna = ad.AnnData(X=float_csr(counts[:, genes]), obs=obs.copy(), var=rna_var)
    atac = ad.AnnData(X=float_csr(peaks_x[:, peaks]), obs=obs.copy(), var=atac_var)
    return write_mudata(out / "bmmc_multiome.h5mu", {"rna": rna, "atac": atac})


# ---- samples in the tutorial's own layout ----------------------------------------------------------------------------
def write_sample(adata: ad.AnnData, n: int, rng: np.random.Generator, path: Path) -> ad.AnnData:
    """``n`` random cells in the source layout; the Multiome keeps its genes and the peaks of chromosome 1 only, the
    CITE-seq's ``uns['protein_expression']`` only its ``var`` table (its ``obs`` describes all 83k challenge cells)."""
    cells = np.sort(rng.choice(adata.n_obs, size=n, replace=False))
    features = np.ones(adata.n_vars, dtype=bool)
    if "modality" in adata.var and (adata.var["modality"].astype(str) == "Peaks").any():
        peaks = (adata.var["modality"].astype(str) == "Peaks").to_numpy()
        features = ~peaks | adata.var_names.str.startswith("chr1-")
    sample = adata[cells][:, features].copy()
    if "protein_expression" in sample.uns:
        sample.uns["protein_expression"] = {"var": pd.DataFrame(sample.uns["protein_expression"]["var"])}
    for column in sample.obs.columns:
        if isinstance(sample.obs[column].dtype, pd.CategoricalDtype):
            sample.obs[column] = sample.obs[column].cat.remove_unused_categories()
    path.unlink(missing_ok=True)
    sample.write_h5ad(path, compression="gzip", compression_opts=9)
    return sample


# ---- gene groups -----------------------------------------------------------------------------------------------------
def write_gene_groups(archive: Path, genes: set[str], dst: Path) -> tuple[int, int]:
    with tarfile.open(archive) as tar, tempfile.TemporaryDirectory() as tmp:
        tar.extract(GROUPS_MEMBER, tmp, filter="data")
        groups = np.load(Path(tmp) / GROUPS_MEMBER, allow_pickle=True)
    # Sorted lists, not the source's sets: a pickled set's order follows the string hash, which changes per run.
    kept = [sorted(group) for group in groups.tolist() if len({normalize_id(str(g)) for g in group} & genes) >= 2]
    array = np.empty(len(kept), dtype=object)
    array[:] = kept
    np.save(dst, array, allow_pickle=True)
    return len(groups), len(kept)


# ---- README ----------------------------------------------------------------------------------------------------------
README = """\
# Test data

Small subsets of real public data for the test suite, written by `scripts/make_test_data.py` from the project's
registry resources (`python -m scvi_networkvi list`). Every choice is seeded; the derivation is documented in the
script. Not shipped in the wheel.

| file | what |
|---|---|
| `bmmc_cite.h5mu` | NeurIPS 2021 bone-marrow CITE-seq, {cite_cells} cells of batches {cite_batches} (tutorial `tutorial-cite`). `rna`: {cite_genes} most variable genes (raw counts, CSR float32; var `gene_stable_id` ENSEMBL, `modality`); `adt`: {n_adt} ADT proteins (raw counts, CSR float32; var `symbol`, `gene_stable_id` (missing for {adt_missing}; CD3 as the list of its two genes), `symbol_source`); obs `cell_type` ({cite_types} types, largest {cite_major}), `batch`, `Site`, `DonorID` |
| `bmmc_multiome.h5mu` | the same study's 10x Multiome, {mo_cells} cells of batches {mo_batches} (`tutorial-multiome`). `rna`: {mo_genes} genes ({mo_shared} of them also in `bmmc_cite.h5mu`; integer counts recovered from the tutorial's scaled values); `atac`: the {mo_peaks} peaks open in most cells (0/1; var `gene_stable_id` = the peak's gene); obs as above ({mo_types} cell types) |
| `tutorial_cite_sample.h5ad` | {n_sample} random cells of `tutorial-cite` in its own layout (all 4000 genes, 134 proteins in `obsm`, their var table in `uns`) |
| `tutorial_multiome_sample.h5ad` | {n_sample} random cells of `tutorial-multiome` in its own layout (4000 scaled genes + the {n_chr1} peaks on chromosome 1) |
| `tutorial_interactions.csv` | the {slice_edges} rows of `k562-contact-domains` between the tutorial's genes/proteins (`gene1,gene2,combined_score`) |
| `loops_gm12878_gene_groups.npy` | {groups_kept} of the {groups_all} GM12878 loop gene groups of the `networkvi-0.1.0-sdist` archive (those with >= 2 tutorial CITE-seq genes; object array of sorted lists, read with `allow_pickle`) |
| `tiny.*`, `saved_model_*` | hand-written toy GO/GAF/interactions; a saved model (`scripts/make_saved_model.py`) |

With the embedded example's `go_slice.obo` and `annotations.gaf` (which hold every annotation of a tutorial gene),
`tutorial_interactions.csv` compiles to exactly the wirings of the full go-basic, tutorial GAF and contact-domain
files for the tutorial's 4000 genes and 134 proteins (checked by the script).

## Provenance and licences

- Single-cell data: NeurIPS 2021 multimodal single-cell integration challenge, bone marrow, Luecken et al. 2021
  (NeurIPS Datasets and Benchmarks), GEO GSE194122, CC-BY-4.0; the 5000-cell subsets of the `networkvi==0.1.0`
  source distribution. Batch = the `sXdY` suffix of the cell names (site X, donor Y).
- Gene Ontology go-basic release 2025-03-16, The Gene Ontology Consortium, CC-BY-4.0.
- Annotations: the NetworkVI tutorial's `ensembl2go.gaf` (UniProt-GOA human, subsampled to ~82 GO ids), CC-BY-4.0.
- Interactions: ENCODE ENCFF173VDJ K562 contact domains (CC-BY-4.0); gene groups: ENCODE ENCFF041XLP GM12878 loops
  (ENCODE data use policy, unrestricted); both as prepared by the NetworkVI authors.

## Regenerate

```
{command}
```

Written with {versions}, seed {seed}.

## sha256

```
{hashes}
```
"""


def regenerate_command(args: argparse.Namespace) -> str:
    prefix = Path(sys.prefix)
    python = f"{prefix.name}/bin/python" if prefix.parent == REPO else "python"
    words = [python, "scripts/make_test_data.py"]
    defaults = vars(parse_args([]))
    for key, value in vars(args).items():
        if key != "verbose" and value != defaults[key]:
            words += [f"--{key.replace('_', '-')}", ",".join(value) if isinstance(value, list) else str(value)]
    return shlex.join(words)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default tests/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batches", type=lambda s: s.split(","), default=["s1d1", "s1d3"])
    parser.add_argument("--n-cite", type=int, default=600)
    parser.add_argument("--n-cite-genes", type=int, default=1000)
    parser.add_argument("--n-multiome", type=int, default=500)
    parser.add_argument("--n-multiome-genes", type=int, default=600)
    parser.add_argument("--n-shared-genes", type=int, default=100)
    parser.add_argument("--n-peaks", type=int, default=600)
    parser.add_argument("--n-sample", type=int, default=50)
    parser.add_argument("--max-mb", type=float, default=6.0, help="fail if the files exceed this size (MB)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("make_test_data", "make_example", "scvi_networkvi"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    files = {name: fetch(name) for name in ("go-basic", "ensembl2go-tutorial", "k562-contact-domains")}

    with object_strings():
        cite = ad.read_h5ad(fetch("tutorial-cite"))
        cite_cells = choose_cells(cite.obs_names, args.batches, args.n_cite, rng)
        cite_md = make_cite(cite, cite_cells, args.n_cite_genes, files["ensembl2go-tutorial"], out)
        cite_ids = set(cite_md["rna"].var["gene_stable_id"].map(normalize_id))

        multiome = ad.read_h5ad(fetch("tutorial-multiome"))
        mo_cells = choose_cells(multiome.obs_names, args.batches, args.n_multiome, rng)
        mo_md = make_multiome(multiome, mo_cells, cite_ids, args, out)

        cite_sample = write_sample(cite, args.n_sample, rng, out / "tutorial_cite_sample.h5ad")
        mo_sample = write_sample(multiome, args.n_sample, rng, out / "tutorial_multiome_sample.h5ad")
    logger.info("CITE-seq %s, Multiome %s", cite_md, mo_md)

    prot_var = pd.DataFrame(cite_sample.uns["protein_expression"]["var"])
    features = {"rna": list(cite_sample.var["gene_stable_id"]), "prot": list(prot_var["gene_stable_id"])}
    names = {"rna": list(cite_sample.var_names), "prot": list(prot_var.index.astype(str))}
    tutorial_ids = {gene for ids in features.values() for genes in parse_feature_gene_ids(ids) for gene in genes}
    example = example_resources()
    sliced = {"go": example["go"], "annotations": example["annotations"]}
    sliced["interactions"] = out / "tutorial_interactions.csv"
    full = {"go": files["go-basic"], "annotations": files["ensembl2go-tutorial"]}
    full["interactions"] = files["k562-contact-domains"]
    n_edges = write_interactions_subset(full["interactions"], sliced["interactions"], tutorial_ids)
    verify_slice(features, names, full, sliced, extra={"tutorial figures": FIGURE_SETTINGS})

    rna_ids = {normalize_id(str(g)) for g in cite_sample.var["gene_stable_id"]}
    groups_all, groups_kept = write_gene_groups(fetch("networkvi-0.1.0-sdist"), rna_ids, out / FILES[-1])

    sizes = {name: (out / name).stat().st_size for name in FILES}
    total = sum(sizes.values())
    for name, size in sizes.items():
        logger.info("%-32s %9d bytes", name, size)
    check(total <= args.max_mb * 1e6, f"the test data take {total / 1e6:.2f} MB > {args.max_mb} MB")
    cite_types = cite_md["rna"].obs["cell_type"].value_counts()
    versions = ", ".join(f"{pkg} {version(pkg)}" for pkg in ("anndata", "mudata", "h5py", "pandas", "numpy"))
    facts = {
        "cite_cells": cite_md.n_obs,
        "cite_batches": ", ".join(
            f"{b} ({n})" for b, n in cite_md["rna"].obs["batch"].value_counts().sort_index().items()
        ),
        "cite_genes": cite_md["rna"].n_vars,
        "n_adt": cite_md["adt"].n_vars,
        "adt_missing": int(cite_md["adt"].var["gene_stable_id"].isna().sum()),
        "cite_types": len(cite_types),
        "cite_major": f"{cite_types.index[0]} {cite_types.iloc[0] / cite_md.n_obs:.0%}",
        "mo_cells": mo_md.n_obs,
        "mo_batches": ", ".join(f"{b} ({n})" for b, n in mo_md["rna"].obs["batch"].value_counts().sort_index().items()),
        "mo_genes": mo_md["rna"].n_vars,
        "mo_shared": int(mo_md["rna"].var_names.isin(cite_md["rna"].var_names).sum()),
        "mo_peaks": mo_md["atac"].n_vars,
        "mo_types": mo_md["rna"].obs["cell_type"].nunique(),
        "n_sample": args.n_sample,
        "n_chr1": int((mo_sample.var["modality"].astype(str) == "Peaks").sum()),
        "slice_edges": n_edges,
        "groups_kept": groups_kept,
        "groups_all": groups_all,
        "command": regenerate_command(args),
        "versions": versions,
        "seed": args.seed,
        "hashes": "\n".join(f"{sha256(out / name)}  {name}" for name in FILES),
    }
    (out / "README.md").write_text(README.format(**facts), encoding="utf-8")
    logger.info("total %.2f MB (+ README.md)", total / 1e6)


if __name__ == "__main__":
    main()
