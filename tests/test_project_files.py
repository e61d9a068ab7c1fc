"""The contributor tooling agrees with pyproject.toml: pre-commit's ruff, Read the Docs' docs build, the release workflow."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
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


def workflow(name: str) -> dict:
    config = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    config["on"] = config.pop(True, config.get("on"))  # YAML 1.1 reads the key `on` as the boolean true
    return config


def test_release_workflow_builds_with_build_yaml_then_publishes_on_a_version_tag():
    release = workflow("release.yaml")
    assert release["on"] == {"push": {"tags": ["v*"]}}  # a pushed version tag, nothing else
    jobs = release["jobs"]
    # the release files are built and checked by the workflow that checks every push and pull request
    assert jobs["build"]["uses"] == "./.github/workflows/build.yaml"
    build = workflow("build.yaml")
    assert "workflow_call" in build["on"]
    (upload,) = [
        step for step in build["jobs"]["package"]["steps"] if step.get("uses", "").startswith("actions/upload")
    ]
    assert any("twine check --strict" in step.get("run", "") for step in build["jobs"]["package"]["steps"])

    publish = jobs["publish"]
    assert publish["needs"] == ["build"]
    assert publish["permissions"]["id-token"] == "write"  # trusted publishing
    steps = publish["steps"]
    (download,) = [step for step in steps if step.get("uses", "").startswith("actions/download-artifact")]
    assert download["with"]["name"] == upload["with"]["name"]
    (upload_step,) = [step for step in steps if step.get("uses", "").startswith("pypa/gh-action-pypi-publish")]
    assert not set(upload_step.get("with", {})) & {"password", "user", "repository-url"}  # no token, no other index
    assert steps.index(upload_step) == len(steps) - 1  # after the version checks

    github = jobs["github-release"]
    assert set(github["needs"]) == {"build", "publish"} and github["permissions"] == {"contents": "write"}
    assert any("gh release create" in step.get("run", "") for step in github["steps"])
    assert "://" not in (ROOT / ".github" / "workflows" / "release.yaml").read_text()  # no address of any index


def test_release_notes_are_the_versions_changelog_section(tmp_path):
    """The GitHub release's notes: the ``## [X.Y.Z]`` section of CHANGELOG.md (which the publish job requires)."""
    release = workflow("release.yaml")
    (script,) = [
        step["run"] for step in release["jobs"]["github-release"]["steps"] if "gh release" in step.get("run", "")
    ]
    (extract,) = [line.strip() for line in script.splitlines() if line.strip().startswith("awk ")]
    (check,) = [step["run"] for step in release["jobs"]["publish"]["steps"] if "CHANGELOG.md" in step.get("run", "")]
    assert '"^## \\[${version}\\]" CHANGELOG.md' in check
    (tmp_path / "CHANGELOG.md").write_text(
        "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2027-01-02\n\n### Added\n- two\n\n## [0.1.0]\n- one\n"
    )
    run = subprocess.run(
        ["bash", "-c", f"{extract} && cat notes.md"],
        cwd=tmp_path,
        env={**os.environ, "version": "0.2.0"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout == "\n### Added\n- two\n\n"
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()  # where the next version's notes are written
