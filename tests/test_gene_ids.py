"""Gene ids detected, not configured: the id type and species read from ``var_names`` or a var column, matched to the
annotations, logged, kept with the model; clear errors for mixed, unmatched and unknown ids; antibody names of a
protein panel mapped to gene symbols."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scvi

import scvi_networkvi as nvi
from scvi_networkvi.wiring import (
    ANTIBODY_ALIASES,
    antibody_to_symbols,
    classify_gene_id,
    detect_gene_ids,
    normalize_antibody_name,
)

EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"]}
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
MODEL = {"gene_size": 2, "go_size": 2, "n_hidden": 16, "n_latent": 4}
MODS = {"rna": "rna", "protein": "prot"}
DATA = Path(__file__).parent / "data"


pytestmark = pytest.mark.usefixtures("offline_session_cache")


def scanpy_layout(n_cells: int = 120, protein_ids: bool = True) -> md.MuData:
    """The example as scanpy writes 10x data: symbols as var_names, ENSEMBL ids in var['gene_ids']."""
    full = nvi.datasets.example()
    rna = full["rna"][:n_cells].copy()
    rna.var = rna.var.rename(columns={"gene_stable_id": "gene_ids"})
    prot = full["prot"][:n_cells].copy()
    if not protein_ids:
        prot.var = prot.var.drop(columns="gene_stable_id")
    mdata = md.MuData({"rna": rna, "prot": prot})
    mdata.obs["Site"] = rna.obs["Site"].astype(str).astype("category")
    return mdata


def snapshot(mdata: md.MuData) -> dict:
    state = {"uns": sorted(mdata.uns), "obs": list(mdata.obs.columns)}
    for name, adata in mdata.mod.items():
        state[name] = (list(adata.obs.columns), sorted(adata.uns), list(adata.var_names), list(adata.var.columns))
    return state


def tables(mdata: md.MuData, roles=MODS) -> dict:
    return {mod: (role, mdata[mod].var_names, mdata[mod].var) for role, mod in roles.items()}


def example_keys() -> set[str]:
    return set(nvi.wiring.annotation_keys(EXAMPLE["annotations"]))


# ---- recognising ids -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ENSG00000141510", ("ensembl", "human")),
        ("ENSG00000141510.15", ("ensembl", "human")),
        ("ENSMUSG00000000001.4", ("ensembl", "mouse")),
        ("ENSRNOG00000000001", ("ensembl", None)),
        ("7157", ("entrez", None)),
        ("TP53", ("symbol", "human")),
        ("HLA-DRA", ("symbol", "human")),
        ("C1orf112", ("symbol", "human")),
        ("Trp53", ("symbol", "mouse")),
        ("mt-Co1", ("symbol", "mouse")),
        ("1110008P14Rik", ("symbol", "mouse")),
        ("chr1-633515-634474", (None, None)),
        ("chr1:100-200", (None, None)),
        ("Gene Expression", (None, None)),
    ],
)
def test_classify_gene_id(value, expected):
    assert classify_gene_id(value) == expected


@pytest.mark.parametrize(
    ("name", "normalized", "symbols"),
    [
        ("CD3_TotalSeqB", "CD3", ["CD3E", "CD3D"]),
        ("CD45RA-TotalA", "CD45RA", ["PTPRC"]),
        ("CD45RO", "CD45RO", ["PTPRC"]),
        ("CD45", "CD45", ["PTPRC"]),
        ("HLA-DR_ADT", "HLA-DR", ["HLA-DRA"]),
        ("CD4 (RPA-T4)", "CD4", ["CD4"]),
        ("ADT_CD19", "CD19", ["CD19"]),
        ("CD8.ADT", "CD8", ["CD8A"]),
        ("anti-human CD14", "CD14", ["CD14"]),
        ("CD16_TotalSeqC", "CD16", ["FCGR3A"]),
        ("CD11c", "CD11c", ["ITGAX"]),
        ("CD3_UCHT1", "CD3_UCHT1", ["CD3E", "CD3D"]),  # a clone after an underscore
        ("Mouse_IgG1_isotype", "Mouse_IgG1_isotype", []),  # a control: no gene
    ],
)
def test_antibody_names_map_to_gene_symbols(name, normalized, symbols):
    assert normalize_antibody_name(name) == normalized
    assert antibody_to_symbols(name) == symbols


def test_antibody_names_are_verified_when_symbols_are_known_and_mouse_aliases_only_where_known():
    assert antibody_to_symbols("TCR", known={"CD4"}) == []  # not a gene symbol of the data or annotations
    assert antibody_to_symbols("CD4_ADT", known={"CD4"}) == ["CD4"]
    assert antibody_to_symbols("CD45RA", known=set()) == ["PTPRC"]  # curated aliases need no check
    assert antibody_to_symbols("CD45RA", species="mouse", known={"Ptprc"}) == ["Ptprc"]
    assert antibody_to_symbols("CD16", species="mouse", known={"Ptprc"}) == []  # mouse Fcgr3: not assumed
    assert antibody_to_symbols("HLA-DR", species="mouse", known={"Ptprc"}) == []


def test_alias_table_agrees_with_the_tutorial_ids_of_the_bone_marrow_panel():
    adt = md.read_h5mu(DATA / "bmmc_cite.h5mu")["adt"].var
    from_ids = adt.loc[adt["symbol_source"] != "ADT name", "symbol"]
    checked = 0
    for name, symbol in from_ids.items():
        aliases = ANTIBODY_ALIASES.get(name.upper())
        if aliases is not None:
            assert symbol == aliases[-1] if name == "CD3" else symbol in aliases, name
            checked += 1
    assert checked >= 60


# ---- detection -------------------------------------------------------------------------------------------------------
def test_symbols_as_var_names_and_ensembl_in_gene_ids_are_detected():
    mdata = scanpy_layout()
    found = detect_gene_ids(tables(mdata), keys=example_keys())
    rna, prot = found.chosen["rna"], found.chosen["prot"]
    assert (rna.source, rna.id_type, rna.species) == ("gene_ids", "ensembl", "human")
    assert rna.matched == pytest.approx(0.571)
    assert prot.source == "gene_stable_id"
    assert found.species == "human"
    assert "'rna' from var['gene_ids'] (ENSEMBL, human; 100% of 1000 features" in found.summary()
    # without annotations: the most recognisable source, the earlier on a tie
    assert detect_gene_ids(tables(mdata), strict=False).chosen["rna"].source == "var_names"


def test_versioned_ensembl_ids_are_stripped():
    mdata = scanpy_layout()
    mdata["rna"].var["gene_ids"] = mdata["rna"].var["gene_ids"].astype(str) + ".15"
    found = detect_gene_ids(tables(mdata), keys=example_keys())
    assert found.chosen["rna"].source == "gene_ids"
    assert found.chosen["rna"].ids[0][0].startswith("ENSG") and "." not in found.chosen["rna"].ids[0][0]
    assert found.chosen["rna"].matched == pytest.approx(0.571)


def mouse_mdata(n_genes: int = 40) -> md.MuData:
    rng = np.random.default_rng(0)
    ids = [f"ENSMUSG{i:011d}.{i % 3 + 1}" for i in range(1, n_genes + 1)]
    symbols = [f"Gene{i}" for i in range(1, n_genes + 1)]
    rna = ad.AnnData(
        rng.poisson(2.0, (60, n_genes)).astype(np.float32),
        var=pd.DataFrame({"gene_ids": ids}, index=symbols),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(60)]),
    )
    return md.MuData({"rna": rna})


def test_mouse_ensembl_ids_are_detected_and_matched(tmp_path):
    mdata = mouse_mdata()
    gaf = tmp_path / "mouse.gaf"
    lines = ["!gaf-version: 2.2"]
    for i in range(1, 21):
        gene = f"ENSMUSG{i:011d}"
        lines.append(
            f"TEST\t{gene}\tGene{i}\tinvolved_in\tGO:0000003\tPMID:1\tIDA\t\tP\t\t\tgene\ttaxon:10090\t2025\tTEST"
        )
    gaf.write_text("\n".join(lines) + "\n")
    keys = set(nvi.wiring.annotation_keys(gaf))
    found = detect_gene_ids(tables(mdata, {"rna": "rna"}), keys=keys)
    assert (found.chosen["rna"].source, found.chosen["rna"].species, found.species) == ("gene_ids", "mouse", "mouse")
    assert found.chosen["rna"].matched == pytest.approx(0.5)
    # mouse ids against human annotations: too few matches, in the words of the caller
    with pytest.raises(ValueError, match=r"Fewer than 20% .* modality 'rna'.*ENSEMBL ids \(human\).*nvi.tl.train"):
        detect_gene_ids(tables(mdata, {"rna": "rna"}), keys=example_keys(), caller="nvi.tl.train")


def test_sparse_annotations_of_the_same_id_type_are_accepted():
    mdata = md.read_h5mu(DATA / "bmmc_multiome.h5mu")
    found = detect_gene_ids(tables(mdata, {"rna": "rna", "atac": "atac"}), keys=example_keys())
    assert found.chosen["atac"].matched < 0.2
    assert found.sparse == ["rna", "atac"]


# ---- errors: before anything changes, in the caller's words ------------------------------------------------------------
def mixed_species(mdata: md.MuData) -> md.MuData:
    ids = mdata["rna"].var["gene_ids"].astype(str).to_numpy().copy()
    ids[::3] = [f"ENSMUSG{i:011d}" for i in range(len(ids[::3]))]
    mdata["rna"].var["gene_ids"] = ids
    return mdata


def unknown_ids(mdata: md.MuData) -> md.MuData:
    mdata["rna"].var_names = [f"chr1-{i * 1000}-{i * 1000 + 500}" for i in range(mdata["rna"].n_vars)]
    mdata["rna"].var = mdata["rna"].var.drop(columns="gene_ids")
    return mdata


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (mixed_species, {}, r"both human and mouse gene ids in var\['gene_ids'\].*species='human'.*nvi.tl.train"),
        (unknown_ids, {}, r"no gene ids of a known type.*'rna'.*chr1-0-500.*gene_id_key=.*nvi.tl.train"),
        (lambda m: m, {"gene_id_key": {"rna": "var_names"}}, r"Fewer than 20%.*'rna'.*gene_id_key=.*nvi.tl.train"),
        (lambda m: m, {"species": "rat"}, "species must be"),
        (lambda m: m, {"gene_id_key": "gene_symbols"}, r"no var\['gene_symbols'\].*gene_id_key="),
    ],
    ids=["mixed-species", "unknown-type", "unmatched", "bad-species", "missing-column"],
)
def test_train_errors_name_what_was_found_and_leave_mdata_unchanged(change, kwargs, message):
    mdata = change(scanpy_layout())
    before = snapshot(mdata)
    with pytest.raises(ValueError, match=message):
        nvi.tl.train(mdata, batch_key="Site", **GO_KW, max_epochs=1, **kwargs, model_kwargs=MODEL, train_kwargs=TRAIN)
    assert snapshot(mdata) == before


def test_species_override_keeps_one_species(caplog):
    mdata = mixed_species(scanpy_layout())
    found = detect_gene_ids(tables(mdata), keys=example_keys(), species="human")
    rna = found.chosen["rna"]
    assert rna.species == "human" and found.species == "human"
    assert not any(gene.startswith("ENSMUSG") for feature in rna.ids for gene in feature)
    assert sum(not feature for feature in rna.ids) == len(rna.ids[::3])  # the mouse ids are dropped


def test_gene_id_key_overrides_detection(tmp_path):
    mdata = scanpy_layout()
    # annotations keyed by symbols: the symbol var_names win on their own, and gene_id_key can force them
    table = pd.read_csv(EXAMPLE["annotations"], sep="\t", comment="!", header=None, dtype=str)
    symbol_of = dict(zip(mdata["rna"].var["gene_ids"].astype(str), mdata["rna"].var_names, strict=True))
    table[1] = table[1].map(lambda gene: symbol_of.get(gene, gene))
    gaf = tmp_path / "symbols.gaf"
    table.to_csv(gaf, sep="\t", header=False, index=False)
    keys = set(nvi.wiring.annotation_keys(gaf))
    assert detect_gene_ids(tables(mdata, {"rna": "rna"}), keys=keys).chosen["rna"].source == "var_names"
    with pytest.raises(ValueError, match=r"Fewer than 20%.*in the given column"):
        detect_gene_ids(tables(mdata, {"rna": "rna"}), keys=keys, gene_id_key="gene_ids")


def test_protein_panel_without_ids_maps_antibody_names_through_the_rna_symbols():
    mdata = scanpy_layout(protein_ids=False)
    found = detect_gene_ids(tables(mdata), keys=example_keys())
    prot = found.chosen["prot"]
    assert (prot.source, prot.id_type, prot.species) == ("var_names", "antibody", "human")
    names = list(mdata["prot"].var_names)
    rna = dict(zip(mdata["rna"].var_names, mdata["rna"].var["gene_ids"].astype(str), strict=True))
    assert prot.ids[names.index("CD45RA")] == ["PTPRC"]  # an alias; PTPRC is no RNA feature: no ENSEMBL id
    via_rna = [n for n in names if n.upper() in ANTIBODY_ALIASES and ANTIBODY_ALIASES[n.upper()][0] in rna]
    assert via_rna  # an alias, then the ENSEMBL id of that symbol in the RNA var
    assert prot.ids[names.index(via_rna[0])][0] == rna[ANTIBODY_ALIASES[via_rna[0].upper()][0]]
    assert "TCR" in prot.unmapped and "CD45RA" not in prot.unmapped
    assert prot.matched >= 0.2


# ---- the model: one INFO line, the choice kept, saved and loaded -----------------------------------------------------
def test_detected_ids_train_are_logged_kept_and_survive_save_load(tmp_path, caplog):
    scvi.settings.seed = 0
    mdata = scanpy_layout(protein_ids=False)
    with (
        caplog.at_level(logging.INFO, logger="scvi_networkvi"),
        pytest.warns(UserWarning, match="antibody names"),
        pytest.warns(UserWarning, match="43 of the 134 features of modality 'prot' .* have no usable gene id"),
    ):
        model = nvi.tl.train(mdata, batch_key="Site", **GO_KW, max_epochs=1, model_kwargs=MODEL, train_kwargs=TRAIN)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Gene ids:")]
    assert len(lines) == 1
    assert "'rna' from var['gene_ids'] (ENSEMBL, human" in lines[0] and "'prot' from var_names (antibody" in lines[0]
    assert model.gene_ids_["rna"]["source"] == "gene_ids"
    assert model.gene_ids_["protein"] == {
        **model.gene_ids_["protein"],
        "source": "var_names",
        "id_type": "antibody",
        "species": "human",
    }
    assert mdata.uns["networkvi"]["train"]["params"].get("gene_id_key") is None  # detected, not configured
    model.save(tmp_path / "model", overwrite=True)
    loaded = nvi.NETWORKVI.load(str(tmp_path / "model"), adata=mdata)
    assert loaded.gene_ids_ == model.gene_ids_
    ids = loaded.feature_gene_ids()
    assert ids["rna"][0] == [str(mdata["rna"].var["gene_ids"].iloc[0])]
    query = scanpy_layout(protein_ids=False)
    query.obs["Site"] = "site9"
    for mod in query.mod:
        query[mod].obs["Site"] = "site9"
    with pytest.warns(UserWarning, match="encode_covariates"):
        mapped = nvi.NETWORKVI.load_query_data(query, str(tmp_path / "model"))
    assert mapped.gene_ids_ == model.gene_ids_
