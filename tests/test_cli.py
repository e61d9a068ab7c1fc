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


def test_demo_compiles_the_embedded_example_offline(capsys):
    assert main(["demo", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "Embedded example: 2000 cells" in out
    assert "Wiring('rna': 1000 features" in out and "Wiring('prot': 134 features" in out
    assert "immune system process" in out  # GO names, not only ids


def test_demo_depth_option_changes_the_network(capsys):
    main(["demo", "--depth", "1"])
    assert "depth 2:" not in capsys.readouterr().out


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
