"""The results page's figures (``benchmarks/figures.py``) plot what the result tables hold."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def figures(load_script):
    return load_script("benchmarks/figures.py", "benchmark_figures")


@pytest.fixture(scope="module")
def drawn(figures, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    return out, figures.draw(RESULTS, out)


def test_every_figure_is_a_readable_svg(drawn):
    out, plotted = drawn
    assert set(plotted) == {"integration", "query_mapping", "mosaic", "scaling"}
    for name in plotted:
        root = ET.parse(out / f"{name}.svg").getroot()
        assert root.tag.endswith("svg")
        assert len(list(root.iter("{http://www.w3.org/2000/svg}path"))) > 20  # bars, markers, axes were drawn


def test_bars_and_lines_are_the_tables_means(drawn):
    _, plotted = drawn
    integration = pd.read_csv(RESULTS / "integration.csv")
    for dataset, model in [("cite", "TOTALVI"), ("cite", "NETWORKVI"), ("multiome", "MULTIVI")]:
        rows = integration[(integration["dataset"] == dataset) & (integration["model"] == model)]
        assert plotted["integration"][(dataset, model, "Total")] == pytest.approx(rows["Total"].mean())

    query = pd.read_csv(RESULTS / "query_mapping.csv")
    expected = query.loc[query["model"] == "totalvi", "macro_f1"].mean()
    assert plotted["query_mapping"][("TOTALVI", "macro_f1")] == pytest.approx(expected)

    mosaic = pd.read_csv(RESULTS / "mosaic_defaults.csv")
    rows = mosaic[(mosaic["dataset"] == "multiome") & (mosaic["fraction"] == 0.2) & (mosaic["model"] == "networkvi")]
    assert plotted["mosaic"][("multiome", 0.2, "NETWORKVI")] == pytest.approx(rows["transfer_rna_acc"].mean())

    go = pd.read_csv(RESULTS / "scaling_go_cuda.csv")
    reference = go.loc[go["model"] == "totalvi", "cells_per_s"].iloc[0]
    full4 = go.loc[(go["gaf"] == "full") & (go["depth"] == 4), "cells_per_s"].iloc[0]
    gpu_keys = [key for key in plotted["scaling"] if key[:2] == ("go", "GPU (H200)")]
    assert ("go", "GPU (H200)", "full", 4) in gpu_keys
    assert plotted["scaling"][("go", "GPU (H200)", "full", 4)] == pytest.approx(full4 / reference)
    cells = pd.read_csv(RESULTS / "scaling_cells.csv")
    row = cells[(cells["model"] == "networkvi") & (cells["n_cells"] == 100_000)]
    assert plotted["scaling"][("cells", "NETWORKVI", 100_000)] == pytest.approx(row["cells_per_s"].iloc[0])


def test_redrawing_gives_the_same_files(figures, drawn, tmp_path):
    out, _ = drawn
    figures.draw(RESULTS, tmp_path, ["integration", "scaling"])
    for name in ("integration", "scaling"):
        assert (tmp_path / f"{name}.svg").read_bytes() == (out / f"{name}.svg").read_bytes()


def test_a_missing_table_names_the_benchmark_that_makes_it(figures, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(RESULTS / "integration.csv", results)
    with pytest.raises(SystemExit, match=r"query_mapping\.csv is missing: run `python benchmarks/query_mapping\.py`"):
        figures.draw(results, tmp_path / "out", ["integration", "query_mapping"])
    assert (tmp_path / "out" / "integration.svg").is_file()


def test_an_empty_table_is_refused(figures, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "mosaic_defaults.csv").write_text(pd.read_csv(RESULTS / "mosaic.csv").head(0).to_csv(index=False))
    with pytest.raises(SystemExit, match="mosaic_defaults.csv has no rows"):
        figures.draw(results, tmp_path / "out", ["mosaic"])
