"""The command line: ``python -m scvi_networkvi demo | list | fetch``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scvi_networkvi.__main__ import main


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SCVI_NETWORKVI_OFFLINE", "1")


def test_demo_runs_the_whole_workflow_offline(tmp_path, capsys, noise):
    import numpy as np

    from scvi_networkvi._demo import run_demo

    result = run_demo(tmp_path / "figures", epochs=8, stream=sys.stdout, progress=False)
    out = capsys.readouterr().out
    assert noise.lines == [] and noise.warnings() == []  # no Lightning start-up lines, no warnings
    assert out.startswith("Embedded example: 2000 real CITE-seq cells")
    assert "Embedded example: 2000 real CITE-seq cells" in out and "Top 3 GO terms per cell type" in out
    mdata = result["mdata"]
    types = set(mdata.obs["cell_type"].cat.categories)
    assert {phenotype for phenotype, *_ in result["top_terms"]} == types  # every cell type gets its terms
    assert sum(f"  {t}\n" in out for t in types) == len(types)
    assert set(result["figures"]) == {"umap_cell_type", "umap_Site", "importances", "perturbation"}
    for path in result["figures"].values():
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert np.isfinite(mdata.obsm["X_networkvi"]).all()
    best = {}
    for phenotype, _, _, auroc in result["top_terms"]:
        best[phenotype] = max(best.get(phenotype, 0.0), auroc)
    assert np.median(list(best.values())) > 0.75  # even 8 epochs give informative GO terms
    # a cell type none of whose top terms passes the corrected gene-set test is flagged as weak evidence
    top_table = mdata.uns["networkvi_importances"]
    top_rna = top_table[(top_table["modality"] == "rna") & (top_table["kind"] == "go") & (top_table["rank"] <= 3)]
    weak = sum(not (sub["qval_set"] < 0.05).any() for _, sub in top_rna.groupby("phenotype", observed=True))
    assert out.count("(weak evidence:") == weak
    # the terms printed are each cell type's most specific ones (the table's default rank)
    table = mdata.uns["networkvi_importances"]
    rna = table[(table["modality"] == "rna") & (table["kind"] == "go")]
    for phenotype, node, specificity, _ in result["top_terms"]:
        own = rna[rna["phenotype"] == phenotype]
        large = own[own["n_genes"] >= 5]
        if (own.set_index("node_id").loc[node, "n_genes"]) >= 5:
            assert specificity >= large["specificity"].nlargest(3).min() - 1e-12
    # names cut at a word boundary, q-values with the floor the test resolves
    names = set(mdata.uns["networkvi_importances"]["name"].astype(str))
    printed = [line[8:56].rstrip() for line in out.splitlines() if line[4:6].strip().isdigit() and line[6] == "."]
    assert printed
    for name in printed:
        cut = name[:-1]
        assert name in names or (
            name.endswith("…") and any(full.startswith(cut) and full[len(cut)] in " ,;:-/(" for full in names)
        ), name
    assert "q<1e-300" not in out and "q=0.0e+00" not in out
    perturbation = mdata.uns["networkvi_perturbation"]
    assert set(perturbation["genes"]) == {"CD74"}
    assert (perturbation.loc[perturbation["kind"] == "go", "delta"] != 0).any()  # CD74 reaches GO terms


def test_demo_command_line_options():
    parser_help = subprocess.run(
        [sys.executable, "-m", "scvi_networkvi", "demo", "--help"], capture_output=True, text=True, timeout=120
    )
    assert parser_help.returncode == 0 and "--epochs" in parser_help.stdout and "--out" in parser_help.stdout


def test_list_shows_the_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "go-basic" in out and "2025-03-16" in out and "k562-contact-domains" in out


def test_fetch_offline_without_cache_fails_with_placement_hint(capsys, tmp_path):
    assert main(["fetch", "go-basic", "-q"]) == 1
    err = capsys.readouterr().err
    assert "SCVI_NETWORKVI_OFFLINE=1" in err and str(tmp_path / "cache" / "go-basic" / "go-basic.obo") in err


def test_fetch_unknown_name_is_an_error(capsys):
    assert main(["fetch", "no-such-resource"]) == 1
    assert "Unknown resource" in capsys.readouterr().err


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "scvi_networkvi", "list"], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0 and "go-basic" in result.stdout


def test_help_answers_without_importing_the_model_stack():
    """``--help`` and ``import scvi_networkvi`` load no torch / scvi-tools / matplotlib: the submodules are lazy."""
    probe = (
        "import sys, time, runpy; start = time.perf_counter(); sys.argv = ['scvi_networkvi', '--help']\n"
        "try:\n    runpy.run_module('scvi_networkvi', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'scvi', 'lightning', 'matplotlib', 'mudata', 'pandas') if m in sys.modules)\n"
        "sys.stderr.write(f'HEAVY={heavy} SECONDS={time.perf_counter() - start:.3f}')"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120)
    assert "demo" in result.stdout and "fetch" in result.stdout
    assert "HEAVY=[]" in result.stderr, result.stderr
    seconds = float(result.stderr.split("SECONDS=")[1])
    assert seconds < 2.0  # the import itself: ~0.05 s; the model stack took 7 s warm, ~50 s on a cold disk


def test_package_attributes_import_on_first_use():
    import scvi_networkvi as nvi

    assert nvi.NETWORKVI is nvi.model.NETWORKVI
    assert callable(nvi.tl.importances) and callable(nvi.pl.go_graph)
    assert {"NETWORKVI", "tl", "pl", "wiring"} <= set(dir(nvi))
    with pytest.raises(AttributeError, match="no attribute 'not_there'"):
        _ = nvi.not_there


def test_fetch_without_names_fetches_the_default_annotations_and_their_go(capsys, tmp_path):
    from scvi_networkvi.resources import default_registry

    assert default_registry().defaults() == ["org.Hs.eg.db", "GO.db", "org.Mm.eg.db"]
    assert main(["fetch", "-q"]) == 1  # offline, empty cache: the first default names where to place it
    err = capsys.readouterr().err
    assert "Resource 'org.Hs.eg.db' is not in the cache" in err
    assert str(tmp_path / "cache" / "org.Hs.eg.db" / "org.Hs.eg.sqlite") in err


@pytest.mark.parametrize(
    ("terminal", "quiet", "expected"), [(True, False, True), (False, False, False), (True, True, False)]
)
def test_demo_draws_progress_bars_on_a_terminal_only(monkeypatch, tmp_path, terminal, quiet, expected):
    import scvi_networkvi._demo as demo_module

    seen = {}
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # so that the command line leaves this process's environment
    monkeypatch.setattr(demo_module, "run_demo", lambda out, **kwargs: seen.update(kwargs))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert main(["demo", "--out", str(tmp_path), *(["--quiet"] if quiet else [])]) == 0
    assert seen["progress"] is expected
