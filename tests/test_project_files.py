"""The contributor tooling agrees with pyproject.toml: pre-commit's ruff, Read the Docs' docs build."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
yaml = pytest.importorskip("yaml")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pre_commit_runs_the_ruff_of_the_dev_environment():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (ruff,) = [repo for repo in config["repos"] if repo["repo"].endswith("/ruff-pre-commit")]
    assert {hook["id"] for hook in ruff["hooks"]} == {"ruff-check", "ruff-format"}
    try:
        installed = importlib.metadata.version("ruff")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("ruff is not installed (the dev extra)")
    assert ruff["rev"] == f"v{installed}", "pin .pre-commit-config.yaml to the ruff that `make lint` runs"


def test_read_the_docs_builds_what_make_docs_builds():
    config = yaml.safe_load((ROOT / ".readthedocs.yaml").read_text())
    assert config["version"] == 2
    assert (ROOT / config["sphinx"]["configuration"]).is_file()
    assert config["sphinx"]["fail_on_warning"] is True  # make docs: sphinx -W
    makefile = (ROOT / "Makefile").read_text()
    (install,) = config["python"]["install"]
    assert install["path"] == "."
    for extra in install["extra_requirements"]:
        assert extra in pyproject()["project"]["optional-dependencies"]
        assert f'-e ".[{extra}]"' in makefile  # the extras make docs installs
    python = config["build"]["tools"]["python"]
    assert f"Programming Language :: Python :: {python}" in pyproject()["project"]["classifiers"]
