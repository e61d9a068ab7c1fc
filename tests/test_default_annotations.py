"""Full GO annotations by default: Bioconductor org.*.eg.db / GO.db files, registered, fetched, read and used.

The packaged registry names Bioconductor 3.16's org.Hs.eg.db, org.Mm.eg.db and GO.db; here entries of the same names
(``$SCVI_NETWORKVI_REGISTRY``) point at toy files of the same schema served by the loopback server, so the whole
path — detection of the species, choice of the default, download, extraction, reading, wiring, training — runs
without the network.
"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import tarfile
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest

import scvi_networkvi as nvi
from scvi_networkvi.resources import REGISTRY_ENV, default_registry
from scvi_networkvi.wiring import read_gaf, read_obo
from scvi_networkvi.wiring._bioc import read_godb, read_orgdb

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


# ---- toy Bioconductor files: the tables of org.*.eg.db and GO.db 3.16 the package reads, same names -----------
#: (go_id, name, ontology, [(parent, relation)]): a small BP tree under the root plus one MF term.
TERMS = [
    ("GO:0008150", "biological_process", "BP", []),
    ("GO:0002376", "immune system process", "BP", [("GO:0008150", "isa")]),
    ("GO:0009987", "cellular process", "BP", [("GO:0008150", "isa")]),
    ("GO:0045321", "leukocyte activation", "BP", [("GO:0002376", "isa"), ("GO:0009987", "isa")]),
    ("GO:0042110", "T cell activation", "BP", [("GO:0045321", "isa")]),
    ("GO:0042113", "B cell activation", "BP", [("GO:0045321", "isa")]),
    ("GO:0050863", "regulation of T cell activation", "BP", [("GO:0008150", "isa"), ("GO:0042110", "regulates")]),
    ("GO:0003674", "molecular_function", "MF", []),
    ("GO:0005488", "binding", "MF", [("GO:0003674", "isa")]),
]
#: Secondary ids (alt_id) of live terms.
ALT_IDS = {"GO:0042110": ["GO:0099999"]}
OBSOLETE = [("GO:0000005", "obsolete ribosomal chaperone activity", "MF")]


def godb(path: Path, release: str = "2022-07-01") -> Path:
    """A GO.db SQLite file with :data:`TERMS`."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE metadata (name VARCHAR(80) PRIMARY KEY, value VARCHAR(255));
        CREATE TABLE go_term (_id INTEGER PRIMARY KEY, go_id CHAR(10) NOT NULL UNIQUE, term VARCHAR(255) NOT NULL,
                              ontology VARCHAR(9) NOT NULL, definition TEXT NULL);
        CREATE TABLE go_obsolete (go_id CHAR(10) PRIMARY KEY, term VARCHAR(255) NOT NULL, ontology VARCHAR(9) NOT NULL,
                                  definition TEXT NULL);
        CREATE TABLE go_synonym (_id INTEGER NOT NULL, synonym VARCHAR(255) NOT NULL, secondary CHAR(10) NULL,
                                 like_go_id SMALLINT);
        CREATE TABLE go_bp_parents (_id INTEGER NOT NULL, _parent_id INTEGER NOT NULL, relationship_type VARCHAR(7));
        CREATE TABLE go_mf_parents (_id INTEGER NOT NULL, _parent_id INTEGER NOT NULL, relationship_type VARCHAR(7));
        CREATE TABLE go_cc_parents (_id INTEGER NOT NULL, _parent_id INTEGER NOT NULL, relationship_type VARCHAR(7));
        """
    )
    db.executemany("INSERT INTO metadata VALUES (?, ?)", [("GOSOURCEDATE", release), ("DBSCHEMA", "GO_DB")])
    # Bioconductor's internal ids are not in GO id order: number the terms backwards to catch order assumptions.
    internal = {goid: 100 - i for i, (goid, *_rest) in enumerate(TERMS)}
    internal["all"] = 1
    db.execute("INSERT INTO go_term VALUES (1, 'all', 'all', 'universal', NULL)")
    for goid, name, ontology, parents in TERMS:
        db.execute("INSERT INTO go_term VALUES (?, ?, ?, ?, ?)", (internal[goid], goid, name, ontology, f"def {name}"))
        for parent, relation in parents:
            table = f"go_{ontology.lower()}_parents"
            db.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (internal[goid], internal[parent], relation))
        db.execute("INSERT INTO go_synonym VALUES (?, ?, NULL, 0)", (internal[goid], f"{name} synonym"))
        for alt in ALT_IDS.get(goid, []):
            db.execute("INSERT INTO go_synonym VALUES (?, ?, ?, 1)", (internal[goid], alt, alt))
    for goid, name, ontology in OBSOLETE:
        db.execute("INSERT INTO go_obsolete VALUES (?, ?, ?, 'OBSOLETE.')", (goid, name, ontology))
    db.commit()
    db.close()
    return path


def obo_text(release: str = "2022-07-01") -> str:
    """The same ontology as an OBO file (the reference the GO.db reader is checked against)."""
    names = {"BP": "biological_process", "MF": "molecular_function", "CC": "cellular_component"}
    words = {"regulates": "regulates"}
    lines = ["format-version: 1.2", f"data-version: releases/{release}", ""]
    for goid, name, ontology, parents in TERMS:
        lines += ["[Term]", f"id: {goid}", f"name: {name}", f"namespace: {names[ontology]}"]
        lines += [f"alt_id: {alt}" for alt in ALT_IDS.get(goid, [])]
        lines += [f"is_a: {p}" for p, r in parents if r == "isa"]
        lines += [f"relationship: {words[r]} {p}" for p, r in parents if r != "isa"]
        lines.append("")
    for goid, name, ontology in OBSOLETE:
        lines += ["[Term]", f"id: {goid}", f"name: {name}", f"namespace: {names[ontology]}", "is_obsolete: true", ""]
    return "\n".join(lines)


#: Genes of the toy organism databases: (entrez, symbol, aliases, ensembl ids, [(go_id, evidence, ontology)]).
HUMAN_GENES = [
    ("916", "CD3E", ["T3E", "TCRE"], ["ENSG00000198851"], [("GO:0042110", "IDA", "BP"), ("GO:0005488", "IPI", "MF")]),
    ("917", "CD3G", ["T3G"], ["ENSG00000160654"], [("GO:0042110", "IMP", "BP")]),
    ("930", "CD19", ["B4"], ["ENSG00000177455"], [("GO:0042113", "IDA", "BP")]),
    ("931", "MS4A1", ["CD20", "B1"], ["ENSG00000156738"], [("GO:0042113", "IEA", "BP")]),
    # "B1" is an alias of two genes: ambiguous, so it keys nothing; "CD19" as an alias of another gene is dropped.
    ("932", "MS4A3", ["B1", "CD19"], ["ENSG00000149516"], [("GO:0002376", "TAS", "BP")]),
    ("925", "CD8A", ["CD8"], ["ENSG00000153563"], [("GO:0050863", "IDA", "BP"), ("GO:0009987", "ND", "BP")]),
    ("3558", "IL2", ["TCGF"], ["ENSG00000109471"], [("GO:0050863", "IDA", "BP"), ("GO:0042110", "IDA", "BP")]),
    ("7124", "TNF", ["TNFA"], ["ENSG00000232810", "ENSG00000228321"], [("GO:0045321", "IEA", "BP")]),
]
MOUSE_GENES = [
    ("12501", "Cd3e", ["T3e"], ["ENSMUSG00000032093"], [("GO:0042110", "IDA", "BP")]),
    ("12502", "Cd3g", ["T3g"], ["ENSMUSG00000002033"], [("GO:0042110", "IMP", "BP")]),
    ("12478", "Cd19", ["B4"], ["ENSMUSG00000030724"], [("GO:0042113", "IDA", "BP")]),
    ("12482", "Ms4a1", ["Cd20"], ["ENSMUSG00000024673"], [("GO:0042113", "IEA", "BP")]),
    ("12525", "Cd8a", ["Ly-2"], ["ENSMUSG00000053977"], [("GO:0050863", "IDA", "BP")]),
    ("16183", "Il2", ["Il-2"], ["ENSMUSG00000027720"], [("GO:0042110", "IDA", "BP")]),
]


def orgdb(path: Path, genes: list = HUMAN_GENES, *, organism: str = "Homo sapiens", go_release="2022-07-01") -> Path:
    """An org.*.eg.db SQLite file with ``genes``."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE metadata (name VARCHAR(80) PRIMARY KEY, value VARCHAR(255));
        CREATE TABLE genes (_id INTEGER PRIMARY KEY, gene_id VARCHAR(10) NOT NULL UNIQUE);
        CREATE TABLE gene_info (_id INTEGER NOT NULL UNIQUE, gene_name VARCHAR(255) NOT NULL,
                                symbol VARCHAR(80) NOT NULL);
        CREATE TABLE alias (_id INTEGER NOT NULL, alias_symbol VARCHAR(80) NOT NULL);
        CREATE TABLE ensembl (_id INTEGER NOT NULL, ensembl_id VARCHAR(20) NOT NULL);
        CREATE TABLE go_bp (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
        CREATE TABLE go_mf (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
        CREATE TABLE go_cc (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
        CREATE VIEW go AS SELECT _id, go_id, evidence, 'BP' AS 'ontology' FROM go_bp
            UNION SELECT _id, go_id, evidence, 'CC' FROM go_cc UNION SELECT _id, go_id, evidence, 'MF' FROM go_mf;
        """
    )
    db.executemany(
        "INSERT INTO metadata VALUES (?, ?)",
        [("ORGANISM", organism), ("GOSOURCEDATE", go_release), ("DBSCHEMA", "HUMAN_DB")],
    )
    for internal, (entrez, symbol, aliases, ensembl, go_rows) in enumerate(genes, start=1):
        db.execute("INSERT INTO genes VALUES (?, ?)", (internal, entrez))
        db.execute("INSERT INTO gene_info VALUES (?, ?, ?)", (internal, f"{symbol} gene", symbol))
        for alias in [symbol, *aliases]:  # Bioconductor lists the official symbol among the aliases too
            db.execute("INSERT INTO alias VALUES (?, ?)", (internal, alias))
        for gene in ensembl:
            db.execute("INSERT INTO ensembl VALUES (?, ?)", (internal, gene))
        for goid, evidence, ontology in go_rows:
            db.execute(f"INSERT INTO go_{ontology.lower()} VALUES (?, ?, ?)", (internal, goid, evidence))
    db.commit()
    db.close()
    return path


def source_tarball(package: str, member: str, data: bytes) -> bytes:
    """A Bioconductor source package tarball holding ``data`` at ``<package>/inst/extdata/<member>``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in (
            (f"{package}/DESCRIPTION", f"Package: {package}\n".encode()),
            (f"{package}/inst/extdata/{member}", data),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _toml(name: str, fields: dict) -> str:
    return f"[{json.dumps(name)}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())


@pytest.fixture
def bioc_registry(loopback_server, resource_env, tmp_path, monkeypatch):
    """Registry entries org.Hs.eg.db / org.Mm.eg.db / GO.db (and their source archives) served on loopback."""
    files = {
        "org.Hs.eg.db": ("org.Hs.eg.sqlite", orgdb(tmp_path / "hs.sqlite")),
        "org.Mm.eg.db": ("org.Mm.eg.sqlite", orgdb(tmp_path / "mm.sqlite", MOUSE_GENES, organism="Mus musculus")),
        "GO.db": ("GO.sqlite", godb(tmp_path / "go.sqlite")),
    }
    blocks = []
    for name, (member, path) in files.items():
        url = loopback_server.serve(f"/{name}.tar.gz", source_tarball(name, member, path.read_bytes()))
        archive = f"{name}-source"
        blocks.append(_toml(archive, {"kind": "archive", "url": url, "filename": f"{name}.tar.gz"}))
        fields = {"archive": archive, "member": f"{name}/inst/extdata/{member}", "filename": member}
        if name == "GO.db":
            fields.update(kind="godb", release="2022-07-01")
        else:
            fields.update(kind="orgdb", release="test", ontology="GO.db")
            fields["species"] = "human" if "Hs" in name else "mouse"
        blocks.append(_toml(name, fields))
    extra = tmp_path / "registry.toml"
    extra.write_text("\n".join(blocks))
    monkeypatch.setenv(REGISTRY_ENV, str(extra))
    return loopback_server


def _annotated(model) -> int:
    summary = model.wirings_["rna"].summary()
    return summary["genes"] - summary["unannotated_genes"]


def _mudata(var_names, *, var=None, n_cells=60, seed=0) -> md.MuData:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(3.0, size=(n_cells, len(var_names))).astype(np.float32)
    rna = ad.AnnData(counts, var=pd.DataFrame(var or {}, index=list(var_names)))
    rna.obs_names = [f"cell{i}" for i in range(n_cells)]
    rna.obs["batch"] = pd.Categorical(np.where(np.arange(n_cells) % 2, "a", "b"))
    return md.MuData({"rna": rna})


HUMAN_SYMBOLS = [g[1] for g in HUMAN_GENES] + ["NOTAGENE1", "NOTAGENE2"]


# ---- readers -----------------------------------------------------------------------------------------------------------
def test_godb_reader_gives_what_goatools_reads_from_the_same_ontology_as_obo(tmp_path, resource_env):
    from_sqlite = read_obo(godb(tmp_path / "GO.sqlite"), cache=False)
    obo = tmp_path / "go.obo"
    obo.write_text(obo_text())
    from_obo = read_obo(obo, cache=False, with_relationships=True)
    assert from_sqlite.ids.tolist() == from_obo.ids.tolist()  # obsolete terms and the "all" root left out
    assert from_sqlite.names.tolist() == from_obo.names.tolist()
    assert from_sqlite.namespaces.tolist() == from_obo.namespaces.tolist()
    assert from_sqlite.release == from_obo.release == "releases/2022-07-01"
    for relation in ("is_a", "regulates"):
        assert sorted(map(tuple, from_sqlite.edges[relation].T)) == sorted(map(tuple, from_obo.edges[relation].T))
    assert from_sqlite.index["GO:0099999"] == from_sqlite.index["GO:0042110"]  # secondary id -> primary term


def test_orgdb_reader_keys_every_annotation_by_each_id_of_its_gene(tmp_path):
    table = read_orgdb(orgdb(tmp_path / "hs.sqlite"))
    by_key = table.groupby("gene")["go_id"].apply(set)
    cd3e = {"GO:0042110", "GO:0005488"}
    for key in ("916", "CD3E", "T3E", "TCRE", "ENSG00000198851"):
        assert by_key[key] == cd3e
    assert by_key["ENSG00000232810"] == by_key["ENSG00000228321"] == {"GO:0045321"}  # two ENSEMBL ids, one gene
    assert "B1" not in by_key  # alias of two genes: ambiguous
    assert by_key["CD19"] == {"GO:0042113"}  # the official symbol wins over another gene's alias
    assert "GO:0009987" not in by_key["CD8A"]  # ND evidence dropped
    assert set(table["namespace"]) == {"biological_process", "molecular_function"}
    everything = read_orgdb(tmp_path / "hs.sqlite", evidence_exclude=())
    assert "GO:0009987" in set(everything.loc[everything["gene"] == "CD8A", "go_id"])


def test_read_gaf_reads_orgdb_files_and_rejects_other_sqlite(tmp_path):
    table, hashes = read_gaf([orgdb(tmp_path / "hs.sqlite")])
    assert {"CD3E", "916"} <= set(table["gene"]) and len(hashes) == 1
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE something (x INTEGER)")
    with pytest.raises(ValueError, match="org.*eg.db annotation file.*no table"):
        read_gaf(other)
    with pytest.raises(ValueError, match="not a GO.db file"):
        read_godb(other)


# ---- registry -------------------------------------------------------------------------------------------------------------
def test_packaged_registry_has_dated_full_annotations_for_human_and_mouse_with_their_go_release():
    registry = default_registry()
    for species, name in (("human", "org.Hs.eg.db"), ("mouse", "org.Mm.eg.db")):
        resource = registry.default_annotations(species)
        assert resource.name == name and resource.kind == "orgdb" and resource.ontology == "GO.db"
        assert "3.16" in registry[resource.archive].url and registry[resource.archive].kind == "archive"
    assert registry["GO.db"].kind == "godb" and registry["GO.db"].release == "2022-07-01"
    assert len(registry["org.Hs.eg.db"].sha256) == 64 and len(registry["GO.db"].sha256) == 64


def test_registry_file_from_the_environment_adds_and_replaces_entries(tmp_path, monkeypatch):
    extra = tmp_path / "mirror.toml"
    extra.write_text(_toml("go-basic", {"kind": "obo", "url": "http://127.0.0.1:9/go.obo", "filename": "go.obo"}))
    monkeypatch.setenv(REGISTRY_ENV, str(extra))
    registry = default_registry()
    assert registry["go-basic"].url == "http://127.0.0.1:9/go.obo" and "org.Hs.eg.db" in registry
    extra.with_name("bad.toml").write_text("[broken")
    monkeypatch.setenv(REGISTRY_ENV, str(extra.with_name("bad.toml")))
    with pytest.raises(ValueError, match="not valid TOML"):
        default_registry()


# ---- defaults in the workflow -------------------------------------------------------------------------------------------
def test_train_on_human_symbols_uses_the_full_human_annotations_without_arguments(bioc_registry, caplog):
    mdata = _mudata([*HUMAN_SYMBOLS[:-3], "T3G", *HUMAN_SYMBOLS[-2:]])  # CD3G given by its alias symbol
    with caplog.at_level(logging.INFO, logger="scvi_networkvi"):
        model = nvi.tl.train(mdata, batch_key="batch", max_epochs=1, train_kwargs={"enable_progress_bar": False})
    params = model.init_params_["non_kwargs"]
    assert params["annotations"] == "org.Hs.eg.db" and params["go"] == "GO.db"
    assert mdata.uns["networkvi"]["train"]["params"]["annotations"] == "org.Hs.eg.db"
    assert "org.Hs.eg.db" in caplog.text and "human" in caplog.text
    assert _annotated(model) == len(HUMAN_GENES)  # the alias-named gene is annotated too
    assert bioc_registry.count("/org.Mm.eg.db.tar.gz") == 0


def test_mouse_ensembl_ids_train_with_the_mouse_annotations(bioc_registry):
    ids = [g[3][0] for g in MOUSE_GENES] + ["ENSMUSG00000000001"]
    mdata = _mudata(ids)
    model = nvi.tl.train(mdata, batch_key="batch", max_epochs=1, train_kwargs={"enable_progress_bar": False})
    assert model.init_params_["non_kwargs"]["annotations"] == "org.Mm.eg.db"
    assert model.gene_ids_["rna"]["species"] == "mouse"
    assert _annotated(model) == len(MOUSE_GENES)


def test_model_constructor_uses_the_defaults_and_a_given_go_is_kept(bioc_registry, tmp_path):
    mdata = _mudata(HUMAN_SYMBOLS)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities={"rna_layer": "rna", "batch_key": "rna"})
    obo = tmp_path / "go.obo"
    obo.write_text(obo_text())
    model = nvi.NETWORKVI(mdata, go=str(obo))
    params = model.init_params_["non_kwargs"]
    assert params["annotations"] == "org.Hs.eg.db" and params["go"] == str(obo)


def test_ids_that_do_not_tell_the_species_are_an_error_naming_species(bioc_registry):
    mdata = _mudata([g[0] for g in HUMAN_GENES])  # Entrez ids only
    before = mdata.copy()
    with pytest.raises(ValueError, match="species='human' or species='mouse' to nvi.tl.train"):
        nvi.tl.train(mdata, batch_key="batch", max_epochs=1)
    assert bioc_registry.total == 0 and list(mdata.uns) == list(before.uns)
    model = nvi.tl.train(
        mdata, batch_key="batch", species="human", max_epochs=1, train_kwargs={"enable_progress_bar": False}
    )
    assert _annotated(model) == len(HUMAN_GENES)


def test_annotations_of_another_go_release_are_warned_about(bioc_registry, tmp_path, caplog):
    obo = tmp_path / "go.obo"
    obo.write_text(obo_text(release="2025-03-16"))
    mdata = _mudata(HUMAN_SYMBOLS)
    with caplog.at_level(logging.WARNING, logger="scvi_networkvi"):
        nvi.tl.train(mdata, batch_key="batch", go=str(obo), max_epochs=1, train_kwargs={"enable_progress_bar": False})
    assert "built on GO release 2022-07-01, the ontology is release 2025-03-16" in caplog.text


def test_coverage_is_reported_per_modality_and_low_coverage_is_warned(bioc_registry, caplog):
    names = [g[1] for g in HUMAN_GENES] + [f"FAKEGENE{i}" for i in range(30)]  # 8 of 38 annotated (21 %)
    mdata = _mudata(names)
    with caplog.at_level(logging.INFO, logger="scvi_networkvi"), pytest.warns(UserWarning, match="Only 8 of the 38"):
        nvi.tl.train(mdata, batch_key="batch", max_epochs=1, train_kwargs={"enable_progress_bar": False})
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Coverage of modality 'rna'"))
    assert "8 of 38 features annotated (21%), 38 with a usable gene id (100%)" in line
    assert "GO release 2022-07-01" in line and "org.Hs.eg.db (test)" in line


def test_features_without_usable_ids_are_warned_about(bioc_registry):
    ids = [g[3][0] for g in HUMAN_GENES] + [None, None]  # 2 of 10 features without an id
    mdata = _mudata([f"feature{i}" for i in range(10)], var={"gene_ids": ids})
    with pytest.warns(UserWarning, match="2 of the 10 features of modality 'rna' \\(20%\\) have no usable gene id"):
        nvi.tl.train(mdata, batch_key="batch", max_epochs=1, train_kwargs={"enable_progress_bar": False})
