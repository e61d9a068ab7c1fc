"""``nvi.pl``: importance and perturbation heatmaps, the GO graph around a term (matplotlib, Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scvi

import scvi_networkvi as nvi
from scvi_networkvi.pl._utils import shorten

EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False, "lr": 3e-3}


pytestmark = pytest.mark.usefixtures("offline_session_cache")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def analysed():
    scvi.settings.seed = 0
    mdata = nvi.datasets.example()
    model = nvi.tl.train(
        mdata,
        batch_key="Site",
        **GO_KW,
        max_epochs=3,
        model_kwargs={"gene_size": 5, "go_size": 2},
        train_kwargs=TRAIN,
    )
    types = list(mdata.obs["cell_type"].cat.categories)[:4]
    nvi.tl.importances(mdata, model, groupby="cell_type", targets=types, seed=0)
    genes = [str(g) for g in mdata["rna"].var_names[np.flatnonzero(model.wirings_["rna"].gene_annotated)[:2]]]
    nvi.tl.perturb(mdata, model, genes=genes, groupby="cell_type", targets=types[:2], modalities="rna", seed=0)
    return mdata, model, types, genes


def labels_of(ax) -> list:
    return [t for t in ax.texts if t.get_gid() == "go_term_label"]


def tick_texts(labels) -> list[str]:
    return [label.get_text() for label in labels]


# ---- importances ---------------------------------------------------------------------------------------------------
def heatmap_cells(ax, go: pd.DataFrame, types: list[str], column: str) -> tuple[list[str], np.ndarray]:
    """The full names of the heatmap's rows and the table's ``column`` at each of its cells."""
    names = go.drop_duplicates("node_id").set_index("name")
    rows = tick_texts(ax.get_yticklabels())
    assert set(rows) <= {shorten(n) for n in names.index}
    rows = [next(n for n in names.index if shorten(n) == r) for r in rows]
    by_cell = go.set_index(["name", "phenotype"])
    return rows, np.array([[by_cell.loc[(r, t), column] for t in types] for r in rows])


def stars_of(ax) -> set[tuple[int, int]]:
    stars = [c for c in ax.collections if c.get_gid() == "significance"]
    return {(int(y), int(x)) for x, y in stars[0].get_offsets()} if stars else set()


def test_importance_heatmap_cells_and_labels(analysed):
    """Default: the specificity of the terms the table ranks best, stars on the gene-set test."""
    mdata, _, types, _ = analysed
    table = mdata.uns["networkvi_importances"]
    ax = nvi.pl.importances(mdata, top=6, modality="rna", show=False)
    assert tick_texts(ax.get_xticklabels()) == types and len(ax.get_yticklabels()) == 6
    go = table[(table["modality"] == "rna") & (table["kind"] == "go")]
    rows, expected = heatmap_cells(ax, go, types, "specificity")
    image = ax.get_images()[0]
    assert image.get_array().shape == (6, len(types)) and image.norm.vmin == 0.0
    np.testing.assert_allclose(image.get_array(), expected)
    # every phenotype's best-ranked term makes it into the plot (top >= number of phenotypes)
    for phenotype in types:
        assert go[go["phenotype"] == phenotype].sort_values("rank")["name"].iloc[0] in rows
    _, qvals = heatmap_cells(ax, go, types, "qval_set")
    assert stars_of(ax) == {tuple(ix) for ix in np.argwhere(qvals < 0.05)}


def test_importance_heatmap_of_aurocs_stars_the_q_values(analysed):
    """``value="auroc", mark="qval"``: the held-out AUROCs with a star on each significant probe, nowhere else."""
    mdata, _, types, _ = analysed
    table = mdata.uns["networkvi_importances"]
    ax = nvi.pl.importances(mdata, top=6, modality="rna", value="auroc", mark="qval", show=False)
    go = table[(table["modality"] == "rna") & (table["kind"] == "go")]
    _, expected = heatmap_cells(ax, go, types, "auroc")
    np.testing.assert_allclose(ax.get_images()[0].get_array(), expected)
    _, qvals = heatmap_cells(ax, go, types, "qval")
    assert stars_of(ax) == {tuple(ix) for ix in np.argwhere(qvals < 0.05)} and (qvals < 0.05).sum() > 0
    # a table without the random gene sets shows AUROCs and stars q-values by default
    plain = table.assign(**dict.fromkeys(("specificity", "pval_set", "qval_set", "auroc_set", "auroc_null"), np.nan))
    default = nvi.pl.importances(plain, top=6, modality="rna", show=False)
    assert default.get_images()[0].norm.vmin == 0.5 and stars_of(default)
    with pytest.raises(ValueError, match="null_sets=100"):
        nvi.pl.importances(plain, mark="pval_set", show=False)


def test_importance_heatmap_options(analysed, tmp_path):
    mdata, _, types, _ = analysed
    table = mdata.uns["networkvi_importances"]
    both = nvi.pl.importances(mdata, top=None, show=False)
    assert isinstance(both, list) and len(both) == 2  # one facet per modality, RNA and protein rows not mixed
    for facet, mod in zip(both, ["rna", "prot"], strict=True):
        go = table[(table["kind"] == "go") & (table["modality"] == mod)]
        assert facet.get_title(loc="left") == f"{mod}: GO terms"
        assert set(tick_texts(facet.get_yticklabels())) == {shorten(n) for n in go["name"].unique()}
    with pytest.raises(ValueError, match="pick one with modality="):
        nvi.pl.importances(mdata, ax=plt.subplots()[1], show=False)
    chosen = [types[2], types[0]]
    ax = nvi.pl.importances(mdata, phenotypes=chosen, modality="prot", top=3, show=False, save=tmp_path / "imp.png")
    assert tick_texts(ax.get_xticklabels()) == chosen
    assert (tmp_path / "imp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig, given = plt.subplots()
    assert nvi.pl.importances(table, modality="rna", ax=given, show=False) is given  # a table works as well


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "absent"}, "run nvi.tl.importances"),
        ({"phenotypes": ["Alien"]}, "not in the table"),
        ({"modality": "atac"}, "not in the table"),
        ({"top": 0}, "top must be"),
        ({"key": "networkvi_perturbation", "value": "auroc"}, "lacks columns"),
        ({"mark": "name"}, "numeric column"),
        ({"mark": "absent"}, "lacks columns"),
    ],
)
def test_importance_heatmap_errors(analysed, kwargs, message):
    mdata = analysed[0]
    with pytest.raises(ValueError, match=message):
        nvi.pl.importances(mdata, show=False, **kwargs)


def test_importance_heatmap_stars_the_gene_set_test(analysed):
    """``mark="pval_set"`` stars the cells whose term's own genes beat the random gene sets, nowhere else."""
    mdata, model, types, _ = analysed
    table = nvi.tl.importances(
        mdata, model, groupby="cell_type", targets=types[:2], modalities="rna", null_sets=9, seed=0, key_added=None
    )
    ax = nvi.pl.importances(table, top=None, mark="pval_set", alpha=0.15, show=False)
    go = table[table["kind"] == "go"]
    rows = [next(n for n in go["name"].unique() if shorten(n) == r) for r in tick_texts(ax.get_yticklabels())]
    by_cell = go.set_index(["name", "phenotype"])
    pvals = np.array([[by_cell.loc[(r, t), "pval_set"] for t in types[:2]] for r in rows])
    assert ((pvals < 0.15).any()) and not (pvals < 0.15).all()  # 9 sets: p = 0.1 possible, and not for all terms
    stars = [c for c in ax.collections if c.get_gid() == "significance"]
    assert {(int(y), int(x)) for x, y in stars[0].get_offsets()} == {tuple(ix) for ix in np.argwhere(pvals < 0.15)}
    assert ax.figure.legends[0].get_texts()[0].get_text() == "gene-set p < 0.15"


# ---- perturbation --------------------------------------------------------------------------------------------------
def test_perturbation_heatmap_is_centred(analysed):
    mdata, _, types, genes = analysed
    table = mdata.uns["networkvi_perturbation"]
    ax = nvi.pl.perturbation(mdata, perturbations=genes[0], top=5, show=False)
    image = ax.get_images()[0]
    assert image.norm.vmin == -image.norm.vmax > -np.inf and image.get_cmap().name == "RdBu_r"
    assert tick_texts(ax.get_xticklabels()) == types[:2] and genes[0] in ax.get_title()
    rows = tick_texts(ax.get_yticklabels())
    one = table[(table["perturbation"] == genes[0]) & (table["kind"] == "go")].set_index(["name", "phenotype"])
    expected = np.array([[one.loc[(r, t), "delta"] for t in types[:2]] for r in rows])
    np.testing.assert_allclose(image.get_array(), expected)
    assert image.norm.vmax == pytest.approx(np.abs(expected).max())
    # the rows are the terms with the largest changes
    largest = one["delta"].abs().groupby(level="name").max().sort_values(ascending=False)
    assert largest.iloc[0] == pytest.approx(np.abs(expected).max()) and largest.index[0] in rows
    both = nvi.pl.perturbation(mdata, top=4, limit=0.2, show=False)
    columns = tick_texts(both.get_xticklabels())
    assert columns == [f"{g} | {t}" for g in genes for t in types[:2]]
    assert both.get_images()[0].norm.vmax == 0.2
    with pytest.raises(ValueError, match="not in the table"):
        nvi.pl.perturbation(mdata, perturbations=["NOPE"], show=False)


# ---- GO graph ------------------------------------------------------------------------------------------------------
def _middle_term(wiring) -> int:
    """A depth-1 GO term with children in the wiring."""
    child, parent = wiring.term_term
    for t in np.flatnonzero((wiring.term_depth == 1) & (wiring.term_kind == "go")):
        if (parent == t).any():
            return int(t)
    raise AssertionError("the example wiring has no depth-1 term with children")


def test_go_graph_draws_ancestors_and_children_level_by_level(analysed, tmp_path):
    _, model, _, _ = analysed
    wiring = model.wirings_["rna"]
    term = _middle_term(wiring)
    child, parent = wiring.term_term
    ancestors, frontier = set(), {term}
    while frontier:
        frontier = set(parent[np.isin(child, list(frontier))].tolist()) - ancestors
        ancestors |= frontier
    expected = {term, *ancestors, *child[parent == term].tolist()}
    assert ancestors and len(expected) > len(ancestors) + 1
    ax = nvi.pl.go_graph(model, str(wiring.term_ids[term]), context=False, show=False, save=tmp_path / "graph.png")
    points = next(c for c in ax.collections if c.get_gid() == "go_terms")
    xy = points.get_offsets()
    assert len(xy) == len(expected)
    texts = [t.get_text().replace("\n", " ") for t in labels_of(ax)]
    assert sorted(texts) == sorted(str(wiring.term_names[i]) for i in expected)
    # level by level: the root on top, the deepest terms at the bottom
    depth_of = {str(wiring.term_names[i]): int(wiring.term_depth[i]) for i in expected}
    for text in labels_of(ax):
        assert text.get_position()[1] + 0.22 == pytest.approx(-depth_of[text.get_text().replace("\n", " ")])
    assert (tmp_path / "graph.png").read_bytes()[:4] == b"\x89PNG"
    by_name = nvi.pl.go_graph(model, str(wiring.term_names[term]), modality="rna", context=False, show=False)
    assert len(next(c for c in by_name.collections if c.get_gid() == "go_terms").get_offsets()) == len(expected)


def test_go_graph_coloured_by_importance(analysed):
    mdata, model, types, _ = analysed
    table = mdata.uns["networkvi_importances"]
    wiring = model.wirings_["protein"]
    ax = nvi.pl.go_graph(model, types[0], modality="prot", importances=mdata, context=False, show=False)
    ranked = table[(table["modality"] == "prot") & (table["phenotype"] == types[0]) & table["rank"].notna()]
    best = ranked.sort_values("rank")["node_id"].iloc[0]
    assert ax.get_title().startswith(best)
    points = next(c for c in ax.collections if c.get_gid() == "go_terms")
    values = np.ma.filled(points.get_array(), np.nan)
    names = [t.get_text().replace("\n", " ") for t in labels_of(ax)]
    rows = table[(table["modality"] == "prot") & (table["phenotype"] == types[0])].set_index("name")["auroc"]
    np.testing.assert_allclose(values, rows.reindex(names).to_numpy())
    term = str(wiring.term_ids[_middle_term(wiring)])
    with pytest.raises(ValueError, match="several phenotypes"):
        nvi.pl.go_graph(model, term, modality="protein", importances=table, show=False)
    ax = nvi.pl.go_graph(model, term, modality="protein", importances=table, phenotype=types[1], show=False)
    assert ax.figure.axes[-1].get_ylabel() == f"held-out AUROC\n{types[1]} vs rest"


def test_go_graph_errors(analysed):
    mdata, model, _, _ = analysed
    with pytest.raises(ValueError, match="neither a GO id"):
        nvi.pl.go_graph(model, "GO:9999999", show=False)
    with pytest.raises(ValueError, match="modality must be"):
        nvi.pl.go_graph(model, "GO:0006955", modality="atac", show=False)
    dense = nvi.NETWORKVI(mdata, encoder="dense")
    with pytest.raises(ValueError, match="not GO-wired"):
        nvi.pl.go_graph(dense, "GO:0006955", show=False)
    with pytest.raises(ValueError, match="run nvi.tl.importances"):
        nvi.pl.go_graph(model, "GO:0006955", importances=nvi.datasets.example(), show=False)


def test_pl_returns_none_when_shown(analysed, monkeypatch):
    mdata = analysed[0]
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(True))
    assert nvi.pl.importances(mdata, modality="rna", show=True) is None and shown == [True]


# ---- figure properties: labels, facets, colour bars, marks, sizes --------------------------------------------------
def test_importance_heatmap_names_its_axes_and_score(analysed):
    mdata, _, types, _ = analysed
    facets = nvi.pl.importances(mdata, top=5, mark="qval", show=False)  # q of the probes: stars on a 3-epoch model
    fig = facets[0].figure
    assert facets[-1].get_xlabel() == "cell_type (each vs rest)"  # the groupby the table was computed for
    assert facets[0].get_xlabel() == "" and not any(t.get_text() for t in facets[0].get_xticklabels())
    colorbars = [a for a in fig.axes if a not in facets]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "specificity (its genes' AUROC − random genes')"
    assert [len(f.get_yticklabels()) for f in facets] == [5, 5]  # top applies per facet
    # column labels slanted and anchored at their column, not centred over the next one
    bottom = facets[-1].get_xticklabels()
    assert [t.get_text() for t in bottom] == types
    assert all(t.get_rotation() == 45 and t.get_horizontalalignment() == "right" for t in bottom)
    # the significance mark: a filled white star with a black edge, large enough to see
    stars = [c for f in facets for c in f.collections if c.get_gid() == "significance"]
    assert stars
    for star in stars:
        assert tuple(star.get_facecolor()[0][:3]) == (1.0, 1.0, 1.0)
        assert tuple(star.get_edgecolor()[0][:3]) == (0.0, 0.0, 0.0) and star.get_sizes()[0] >= 40
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["q < 0.05"]
    # a table passed directly still names the groupby (from its attrs)
    direct = nvi.pl.importances(mdata.uns["networkvi_importances"], modality="rna", show=False)
    assert direct.get_xlabel() == "cell_type (each vs rest)"


def test_heatmap_save_keeps_every_label_inside(analysed, tmp_path):
    """The saved figure's tight box holds the last column label with a margin (it used to touch the edge)."""
    mdata = analysed[0]
    ax = nvi.pl.importances(mdata, modality="rna", top=6, show=False, save=tmp_path / "imp.png")
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    tight = fig.get_tightbbox(renderer)
    last = ax.get_xticklabels()[-1].get_window_extent(renderer).transformed(fig.dpi_scale_trans.inverted())
    assert last.x0 >= tight.x0 and last.y0 >= tight.y0  # inside the saved area; savefig pads 0.15 in around it


def test_perturbation_heatmap_labels(analysed):
    mdata, _, types, genes = analysed
    ax = nvi.pl.perturbation(mdata, perturbations=genes[0], top=4, show=False)
    assert ax.get_xlabel() == "cell_type (each vs rest)"
    colorbar = [a for a in ax.figure.axes if a is not ax]
    assert colorbar[0].get_ylabel() == "Δ held-out AUROC (after − before)"
    both = nvi.pl.perturbation(mdata, top=4, show=False)
    assert both.get_xlabel() == "perturbation | cell_type (each vs rest)"


def test_shorten_cuts_at_a_word_boundary():
    name = "biological process involved in interspecies interaction between organisms"
    assert shorten(name, 48) == "biological process involved in interspecies…"
    assert (
        shorten("positive regulation of T-helper 17 type immune response", 40)
        == "positive regulation of T-helper 17 type…"
    )
    assert shorten("x" * 80, 20) == "x" * 19 + "…"  # one long word: cut inside it
    assert shorten("short name", 48) == "short name"
    assert all(len(shorten(name, w)) <= w for w in range(10, 80))


def test_pvalues_print_with_a_floor_the_test_resolves():
    from scvi_networkvi.pl._utils import ASYMPTOTIC_FLOOR, format_pvalue

    assert format_pvalue(0.0) == "q<0.0001" == format_pvalue(1e-300)
    assert ASYMPTOTIC_FLOOR == 1e-4
    assert format_pvalue(0.0123) == "q=0.012" and format_pvalue(0.0031) == "q=3.1e-03"
    assert format_pvalue(1 / 101, floor=1 / 101, symbol="p") == "p≤0.0099"  # the smallest p 100 random sets give
    assert format_pvalue(float("nan")) == "q=n/a"


def _points(ax):
    return next(c for c in ax.collections if c.get_gid() == "go_terms")


def test_go_graph_sized_to_its_content_with_readable_labels(analysed):
    mdata, model, types, _ = analysed
    ax = nvi.pl.go_graph(model, types[0], modality="rna", importances=mdata, show=False)
    labels = labels_of(ax)
    assert labels and all(t.get_fontsize() >= 9 for t in labels)
    colorbar = ax.figure.axes[-1]
    assert colorbar.get_ylabel() == f"held-out AUROC\n{types[0]} vs rest"  # the score and the phenotype
    width, height = ax.figure.get_size_inches()
    n_wide = max(np.unique(np.round(_points(ax).get_offsets()[:, 1]), return_counts=True)[1])
    assert width <= 1.3 + 1.5 * n_wide + 1.3 and height <= 1.0 + 1.6 * len(set(ax.get_yticks()))
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):  # no two names overlap
        assert not any(a.overlaps(b) for b in boxes[i + 1 :])


def test_go_graph_adds_context_when_the_subgraph_is_tiny(analysed):
    _, model, _, _ = analysed
    wiring = model.wirings_["rna"]
    child, parent = wiring.term_term
    kind = np.asarray(wiring.term_kind).astype(str)
    # a depth-1 GO term without children: the bare sub-DAG is the root and itself
    leaf = next(int(t) for t in np.flatnonzero((wiring.term_depth == 1) & (kind == "go")) if not (parent == t).any())
    term = str(wiring.term_ids[leaf])
    bare = nvi.pl.go_graph(model, term, context=False, show=False)
    assert len(_points(bare).get_offsets()) == 2
    auto = nvi.pl.go_graph(model, term, show=False)
    names = [t.get_text().replace("\n", " ") for t in labels_of(auto)]
    siblings = {str(wiring.term_names[t]) for t in child[parent == parent[child == leaf][0]] if kind[t] == "go"}
    added = set(names) - {str(wiring.term_names[leaf]), str(wiring.term_names[parent[child == leaf][0]])}
    assert 0 < len(added) <= 4 and added <= siblings  # GO-term siblings, never the structural UNKNOWN nodes
    dashed = [ls for ls in _points(auto).get_linestyles() if ls[1] is not None]
    assert len(dashed) == len(added)  # context terms drawn with dashed outlines
