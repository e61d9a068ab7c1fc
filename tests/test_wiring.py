"""The wiring compiler on hand-made OBO/GAF cases (one rule each) and on the real tutorial resources."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from scvi_networkvi import datasets as nvi_datasets
from scvi_networkvi.wiring import (
    Wiring,
    WiringConfig,
    _ontology,
    compile_wiring,
    compile_wirings,
    parse_feature_gene_ids,
    read_gaf,
)

DATA = Path(__file__).parent / "data"
OBO, GAF, INTERACTIONS = DATA / "tiny.obo", DATA / "tiny.gaf", DATA / "tiny_interactions.csv"
GENES = ["g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10"]
ROOT, A, B, C, D, E, F, G, H = (
    "GO:0008150",
    "GO:0000001",
    "GO:0000002",
    "GO:0000003",
    "GO:0000004",
    "GO:0000005",
    "GO:0000006",
    "GO:0000007",
    "GO:0000009",
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SCVI_NETWORKVI_OFFLINE", raising=False)


def tiny(genes=GENES, **kwargs) -> Wiring:
    kwargs.setdefault("cache", False)
    return compile_wiring(genes, go=OBO, annotations=GAF, **kwargs)


def terms_of_gene(w: Wiring, gene: str) -> set[str]:
    g = list(w.gene_ids).index(gene)
    return {str(w.term_ids[t]) for t in w.gene_term[1][w.gene_term[0] == g]}


def parents_of(w: Wiring, term: str) -> set[str]:
    t = list(w.term_ids).index(term)
    return {str(w.term_ids[p]) for p in w.term_term[1][w.term_term[0] == t]}


# ---- the rules, one by one ---------------------------------------------------------------------------------------
def test_depth_cut_bubbles_genes_up_to_nearest_kept_ancestors():
    w = tiny()
    assert {d: sl.stop - sl.start for d, sl in w.levels} == {2: 4, 1: 4, 0: 1}  # C D H UNKNOWN2 | A B G UNKNOWN1
    assert set(w.term_ids[w.term_kind == "go"]) == {A, B, C, D, H, G}
    assert terms_of_gene(w, "g1") == {C}
    assert terms_of_gene(w, "g2") == {C}  # E (depth 3) is cut: its gene moves to C
    assert terms_of_gene(w, "g3") == {C, B}  # F (depth 4) -> E (cut) -> C, and F -> B
    assert terms_of_gene(w, "g8") == {D}
    assert parents_of(w, D) == {A, B}
    assert parents_of(w, A) == parents_of(w, B) == {ROOT}
    assert w.term_ids[w.root_index] == ROOT and w.term_kind[w.root_index] == "root"
    assert np.all(w.term_depth[w.term_term[0]] > w.term_depth[w.term_term[1]])


def test_unannotated_genes_take_a_correctly_wired_unknown_chain():
    w = tiny()
    # g4: obsolete id; g6: NOT-qualified (and MF, not in BP); g7: ND evidence; g9: id absent from the OBO.
    assert set(w.gene_ids[~w.gene_annotated]) == {"g4", "g6", "g7", "g9"}
    for gene in ("g4", "g6", "g7", "g9"):
        assert terms_of_gene(w, gene) == {"UNKNOWN2"}
    assert parents_of(w, "UNKNOWN2") == {"UNKNOWN1"}
    assert parents_of(w, "UNKNOWN1") == {ROOT}  # the original linked the deepest UNKNOWN to the top instead
    assert w.term_size[list(w.term_ids).index("UNKNOWN1")] == 12
    assert w.info["dropped_go_ids"] == 2 and w.info["dropped_annotations"] == 2


def test_no_unknown_nodes_when_every_gene_is_annotated():
    w = tiny(["g1", "g2", "g8"])
    assert "unknown" not in set(w.term_kind)
    assert w.gene_annotated.all()


def test_shallow_cuts():
    w1 = tiny(max_depth=1)
    assert set(w1.term_ids) == {A, B, G, ROOT, "UNKNOWN1"}
    assert terms_of_gene(w1, "g3") == {A, B}
    assert terms_of_gene(w1, "g5") == {B}  # alt id GO:0000010 -> H (depth 2) -> B
    w0 = tiny(max_depth=0)
    assert list(w0.term_ids) == [ROOT]
    assert terms_of_gene(w0, "g4") == {ROOT}  # no room for an UNKNOWN chain: straight to the top


def test_deep_graph_keeps_level_skipping_edges():
    w = tiny(max_depth=10)
    assert {d for d, _ in w.levels} == {4, 3, 2, 1, 0}
    assert parents_of(w, F) == {E, B}  # F (depth 4) feeds B (depth 1) directly: levels can be skipped
    assert terms_of_gene(w, "g3") == {F}
    assert terms_of_gene(w, "g4") == {"UNKNOWN4"}  # chain length min(4, max_depth)


def test_alt_ids_resolve_to_primary_terms():
    assert terms_of_gene(tiny(), "g5") == {H}


def test_part_of_relation_changes_depth_and_ancestry():
    isa = tiny()
    assert parents_of(isa, G) == {ROOT}
    with_part_of = tiny(relations=("is_a", "part_of"), max_depth=3)
    assert parents_of(with_part_of, G) == {ROOT, C}
    assert with_part_of.term_depth[list(with_part_of.term_ids).index(G)] == 3


def test_several_namespaces_share_a_synthetic_top_node():
    w = tiny(namespaces=("biological_process", "molecular_function"))
    assert w.term_ids[w.root_index] == "GO:TOPNODE" and w.term_depth[w.root_index] == -1
    assert parents_of(w, ROOT) == {"GO:TOPNODE"} and parents_of(w, "GO:0003674") == {"GO:TOPNODE"}
    assert terms_of_gene(w, "g6") == {"GO:0000020"}  # its MF annotation now counts


def test_min_and_max_genes_per_term():
    w = tiny(min_genes=2)
    assert D not in w.term_ids and H not in w.term_ids and G not in w.term_ids
    assert terms_of_gene(w, "g8") == {A, B}  # D had one gene: removed, its gene moves to D's parents
    assert terms_of_gene(w, "g10") == {ROOT}
    w = tiny(max_genes=3)
    assert A not in w.term_ids  # A collects g1, g2, g3, g8 through C and D
    assert parents_of(w, C) == {ROOT}  # C's parent A is removed: C reattaches to A's parent


def test_term_allow_list_keeps_terms_and_ancestors_only():
    w = tiny(terms=(C,))
    assert set(w.term_ids[w.term_kind == "go"]) == {A, C}
    assert terms_of_gene(w, "g8") == {A, ROOT}  # D -> A (kept) and D -> B (removed) -> root
    with pytest.raises(ValueError, match="GO:1234567"):
        tiny(terms=("GO:1234567",))


def test_neuron_sizes():
    w = tiny(gene_size=5, term_size=2, root_size=7, unknown_size=3)
    assert w.gene_size == 5
    assert set(w.term_size[w.term_kind == "go"]) == {2}
    assert w.term_size[w.root_index] == 7
    assert set(w.term_size[w.term_kind == "unknown"]) == {3}
    assert tiny(root_size=None).term_size[-1] == 3  # min(128, isqrt(10 features))


def test_term_gene_counts_include_descendants():
    w = tiny()
    counts = dict(zip(w.term_ids, w.term_n_genes, strict=True))
    assert counts[C] == 3 and counts[D] == 1 and counts[A] == 4
    assert counts[ROOT] == len(GENES)


def test_term_gene_sets_include_descendants_and_match_the_counts():
    w = tiny()
    reach = w.term_genes()
    assert reach.shape == (w.n_genes, w.n_terms)
    np.testing.assert_array_equal(np.diff(reach.indptr), w.term_n_genes)

    def genes_of(term: str) -> set[str]:
        return {str(g) for g in w.gene_ids[reach[:, list(w.term_ids).index(term)].indices]}

    assert genes_of(C) == {"g1", "g2", "g3"}  # g1 direct; g2 through E; g3 through F -> E
    assert genes_of(A) == {"g1", "g2", "g3", "g8"}  # C's genes and D's
    assert genes_of(ROOT) == set(GENES)


def test_feature_to_gene_blocks():
    ids = ["g1", "['g2', 'g3']", None, float("nan"), "g1", ["g5", "g8"], "g8"]
    w = tiny(ids, feature_names=[f"f{i}" for i in range(7)])
    assert w.n_features == 7
    assert list(w.gene_ids) == ["g1", "g2", "g3", "unmapped:f2", "unmapped:f3", "g5", "g8"]
    pairs = set(zip(w.feature_gene[0].tolist(), w.feature_gene[1].tolist(), strict=True))
    assert pairs == {(0, 0), (1, 1), (1, 2), (2, 3), (3, 4), (4, 0), (5, 5), (5, 6), (6, 6)}
    assert w.gene_placeholder.tolist() == [False, False, False, True, True, False, False]
    assert not w.gene_annotated[3] and not w.gene_annotated[4]  # each missing id stays its own gene


def test_parse_feature_gene_ids():
    assert parse_feature_gene_ids(["ENSG00000141510.17", " a ", "", "nan", None, ("x", "x", "y")]) == [
        ["ENSG00000141510"],
        ["a"],
        [],
        [],
        [],
        ["x", "y"],
    ]
    assert parse_feature_gene_ids(["{'ENSG2','ENSG1'}", {"b", "a"}]) == [["ENSG1", "ENSG2"], ["a", "b"]]
    with pytest.raises(TypeError):
        parse_feature_gene_ids([3])
    with pytest.raises(ValueError, match="gene id list"):
        parse_feature_gene_ids(["[unclosed"])


def test_gene_gene_edges_with_self_loops_and_cutoff():
    w = tiny(interactions=INTERACTIONS)
    names = w.gene_ids
    edges = {(names[s], names[t]): sc for s, t, sc in zip(*w.gene_edges, w.gene_edge_scores, strict=True)}
    assert all((g, g) in edges for g in GENES)
    assert edges[("g1", "g2")] == pytest.approx(0.95)  # duplicates keep their highest score
    assert ("g2", "g1") in edges and ("g3", "g5") in edges
    assert len(edges) == len(GENES) + 3  # g1->g99 is dropped (no such gene), g8->g8 merges with the self loop
    cut = tiny(interactions=INTERACTIONS, interaction_cutoff=0.5)
    assert cut.gene_edges.shape[1] == len(GENES) + 2


# ---- bad input ---------------------------------------------------------------------------------------------------
def test_annotations_can_be_keyed_by_gene_symbol():
    w = tiny(["G1", "G3", "G8"], annotation_id="db_object_symbol")  # the fixture GAF has upper-case symbols
    assert terms_of_gene(w, "G1") == {C} and terms_of_gene(w, "G3") == {C, B}
    with pytest.raises(ValueError, match="annotation_id"):
        WiringConfig(annotation_id="symbol")


def test_ids_that_match_nothing_raise_a_clear_error():
    with pytest.raises(ValueError, match="ENSEMBL"):
        tiny(["CD3E", "MS4A1"])


def test_empty_or_idless_modalities_raise():
    with pytest.raises(ValueError, match="no features"):
        tiny([])
    with pytest.raises(ValueError, match="no gene ids at all"):
        tiny([None, None])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespaces", ("cellular_process",)),
        ("relations", ("has_part",)),
        ("max_depth", -1),
        ("gene_size", 0),
        ("root_size", 0),
        ("min_genes", 5),
    ],
)
def test_invalid_config_is_rejected(field, value):
    kwargs = {field: value}
    if field == "min_genes":
        kwargs["max_genes"] = 2
    with pytest.raises(ValueError):
        WiringConfig(**kwargs)


def test_corrupted_resource_files_raise(tmp_path):
    empty = tmp_path / "empty.obo"
    empty.write_text("format-version: 1.2\n")
    with pytest.raises(ValueError, match="no GO terms"):
        compile_wiring(GENES, go=empty, annotations=GAF, cache=False)
    not_gaf = tmp_path / "not.gaf"
    not_gaf.write_text("a\tb\tc\td\tnot-a-go-id\tf\tg\th\ti\n")
    with pytest.raises(ValueError, match="not a GAF"):
        compile_wiring(GENES, go=OBO, annotations=not_gaf, cache=False)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("source,target\ng1,g2\n")
    with pytest.raises(ValueError, match="gene1"):
        compile_wiring(GENES, go=OBO, annotations=GAF, interactions=bad_csv, cache=False)
    with pytest.raises(FileNotFoundError, match="neither a registered resource"):
        compile_wiring(GENES, go=tmp_path / "missing.obo", annotations=GAF, cache=False)


# ---- immutability, serialisation, caching --------------------------------------------------------------------------
def test_wiring_is_immutable():
    w = tiny()
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.gene_size = 3
    with pytest.raises(ValueError):
        w.term_size[0] = 100


def test_wiring_round_trips_through_plain_arrays_and_npz(tmp_path):
    w = tiny(interactions=INTERACTIONS)
    data = w.to_dict()
    assert all(isinstance(v, np.ndarray | int | str | dict) for v in data.values())
    assert Wiring.from_dict(data).equals(w)
    w.save(tmp_path / "w.npz")
    loaded = Wiring.load(tmp_path / "w.npz")
    assert loaded.equals(w) and loaded.info == w.info
    assert not tiny(max_depth=1).equals(w)


def test_wiring_rejects_inconsistent_arrays():
    data = tiny().to_dict()
    data["gene_term"] = data["gene_term"].copy()
    data["gene_term"][1, 0] = 10_000
    with pytest.raises(ValueError, match="out of range"):
        Wiring.from_dict(data)


def test_cache_by_content_hash(tmp_path, monkeypatch):
    calls = []
    real_parse = _ontology._parse_with_goatools
    monkeypatch.setattr(_ontology, "_parse_with_goatools", lambda *a: calls.append(1) or real_parse(*a))
    first = compile_wiring(GENES, go=OBO, annotations=GAF)
    second = compile_wiring(GENES, go=OBO, annotations=GAF)
    assert second.equals(first) and len(calls) == 1
    assert not compile_wiring(GENES, go=OBO, annotations=GAF, max_depth=1).equals(first)
    # A changed file (same name) changes the key: the cached wiring is not reused.
    gaf_copy = tmp_path / "tiny.gaf"
    gaf_copy.write_text(GAF.read_text().replace("GO:0000004\tPMID:1\tIMP", "GO:0000003\tPMID:1\tIMP"))
    changed = compile_wiring(GENES, go=OBO, annotations=gaf_copy)
    assert terms_of_gene(changed, "g8") == {C}


def test_each_file_is_parsed_once_for_several_modalities(monkeypatch):
    calls = []
    real_parse = _ontology._parse_with_goatools
    monkeypatch.setattr(_ontology, "_parse_with_goatools", lambda *a: calls.append(1) or real_parse(*a))
    wirings = compile_wirings(
        {"rna": GENES, "prot": ["g1", "g8", None], "atac": ["['g2', 'g3']", "g5"]},
        go=OBO,
        annotations=[GAF],
        interactions=INTERACTIONS,
    )
    assert list(wirings) == ["rna", "prot", "atac"] and len(calls) == 1
    assert wirings["prot"].n_genes == 3 and wirings["atac"].n_genes == 3
    assert set(wirings["atac"].term_ids) < set(wirings["rna"].term_ids)  # each modality keeps its own terms


# ---- real data: the tutorial resources ---------------------------------------------------------------------------
def tutorial_inputs(source: str, registry_file) -> tuple[Path, dict[str, Path]]:
    """The tutorial CITE-seq file (its features) and the GO, GAF and interaction files: the slices of the embedded
    example and tests/data, which compile to the same wirings as the full files (checked by make_test_data.py),
    or the full registry resources."""
    if source == "slices":
        example = nvi_datasets.example_resources()
        files = {"go": example["go"], "annotations": example["annotations"]}
        return DATA / "tutorial_cite_sample.h5ad", {**files, "interactions": DATA / "tutorial_interactions.csv"}
    names = {"go": "go-basic", "annotations": "ensembl2go-tutorial", "interactions": "k562-contact-domains"}
    return registry_file("tutorial-cite"), {key: registry_file(name) for key, name in names.items()}


@pytest.mark.parametrize("source", ["slices", pytest.param("registry", marks=pytest.mark.slow)])
def test_tutorial_cite_seq_reproduces_the_original_go_tutorial_figures(source, registry_file):
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    cite, files = tutorial_inputs(source, registry_file)
    adata = anndata.read_h5ad(cite, backed="r")
    protein_var = pd.DataFrame(adata.uns["protein_expression"]["var"])
    wirings = compile_wirings(
        {"rna": adata.var["gene_stable_id"].tolist(), "prot": protein_var["gene_stable_id"].tolist()},
        **files,
        gene_size=5,
        term_size=2,
        root_size=63,
    )
    rna, prot = wirings["rna"], wirings["prot"]
    # networkvi_behaviour.md section 4.10 (GO tutorial log of the original, same data, GO release 2025-03-16).
    assert {d: sl.stop - sl.start for d, sl in rna.levels} == {2: 15, 1: 9, 0: 1}  # incl. UNKNOWN2 / UNKNOWN1
    assert rna.n_genes == 4000 and int((~rna.gene_annotated).sum()) == 3431
    assert rna.gene_edges.shape[1] == 7342  # interaction pairs incl. self loops
    depth = rna.term_depth[rna.gene_term[1]]
    assert int((depth == 2).sum()) == 4565  # genes -> level 2 block pairs, UNKNOWN2 included
    assert int((depth == 1).sum()) == 297  # genes -> level 1
    child_level = rna.term_depth[rna.term_term[0]]
    parent_level = rna.term_depth[rna.term_term[1]]
    assert int(((child_level == 2) & (parent_level == 1)).sum()) == 18
    assert int(((child_level == 1) & (parent_level == 0)).sum()) == 9  # 8 + UNKNOWN1 (a dead end originally)
    assert int(((child_level == 2) & (parent_level == 0)).sum()) == 0  # the original's UNKNOWN2 mis-link is gone
    assert rna.term_size[rna.root_index] == 63 and rna.n_genes * rna.gene_size == 20_000
    # Proteins: 13 level-2 and 8 level-1 terms as in the original. Genes: the original had 128 (127 ids, its CD3
    # complex "{'ENSG...167286','ENSG...198851'}" read as one bogus id, and one pseudo-gene for the 5 missing ids)
    # and 154 edges; here CD3 feeds both its genes and each missing id is its own node: 128 + 5 genes, and the
    # second CD3 gene brings 2 interaction edges besides its self loop.
    assert {d: sl.stop - sl.start for d, sl in prot.levels} == {2: 13, 1: 8, 0: 1}
    assert prot.n_genes == 133 and int(prot.gene_placeholder.sum()) == 5
    assert prot.gene_edges.shape[1] == 154 - 128 + 133 + 2


@pytest.mark.slow
def test_full_human_annotations_against_2025_obo_drops_and_counts_obsolete_ids(registry_file):
    annotations = registry_file("org.Hs.eg.db")  # Bioconductor 3.16, built on GO 2022-07-01
    genes = read_gaf(annotations)[0]["gene"]
    genes = genes[genes.str.startswith("ENSG")].unique()
    w = compile_wiring(genes, go=registry_file("go-basic"), annotations=annotations, max_depth=30, cache=False)
    assert w.info["dropped_go_ids"] == 729  # 2022 BP ids that the 2025 OBO lacks or marks obsolete
    assert w.n_terms > 10_000 and w.gene_annotated.mean() > 0.85
