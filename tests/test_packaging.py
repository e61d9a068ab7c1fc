"""Packaging: the conda-forge recipe agrees with pyproject.toml, and the sdist and wheel carry the package data.

``check_recipe`` compares ``recipe/recipe.yaml`` (rattler-build v1 format) with ``pyproject.toml`` and returns a list
of problems; it runs on the real files (must be empty) and on deliberately broken copies (must not be). The build
test makes the sdist, then the wheel from the sdist, with ``python -m build --no-isolation`` (``build`` and
``hatchling`` come with the test extra, so no network is needed; about 2 s).
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scvi_networkvi"
RECIPE = ROOT / "recipe" / "recipe.yaml"

# PyPI name -> conda-forge name, only where they differ (everything else keeps its PyPI name on conda-forge).
# matplotlib: conda-forge recipes depend on matplotlib-base (no Qt); torch is packaged as pytorch.
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}

_VARIABLE = re.compile(r"\$\{\{\s*(\w+)\s*\}\}")


def load_pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def load_recipe() -> dict[str, Any]:
    return yaml.safe_load(RECIPE.read_text())


def render(node: Any, context: dict[str, str]) -> Any:
    """Substitute ``${{ var }}`` with the recipe's context values (the only templating the recipe uses).

    Variables that come from the build (``PYTHON``) are left as they are.
    """
    if isinstance(node, str):
        return _VARIABLE.sub(lambda m: str(context.get(m.group(1), m.group(0))), node)
    if isinstance(node, list):
        return [render(item, context) for item in node]
    if isinstance(node, dict):
        return {key: render(value, context) for key, value in node.items()}
    return node


def conda_spec(entry: str) -> tuple[str, str]:
    """``"pytorch >=2.4"`` -> ``("pytorch", ">=2.4")`` (conda MatchSpec: name, space, version constraint)."""
    name, _, spec = entry.strip().partition(" ")
    return name, spec.replace(" ", "")


def compare_dependencies(dependencies: list[str], run: list[str]) -> list[str]:
    """Problems between pyproject ``[project] dependencies`` and the recipe's run requirements (python aside)."""
    problems = []
    recipe = {}
    for entry in run:
        name, spec = conda_spec(entry)
        if name != "python":
            recipe[name] = spec
    expected = set()
    for dependency in dependencies:
        try:
            requirement = Requirement(dependency)
        except InvalidRequirement as err:
            problems.append(f"pyproject dependency {dependency!r} does not parse: {err}")
            continue
        if requirement.marker is not None or requirement.extras:
            problems.append(f"{dependency!r}: markers / extras need a hand-written conda equivalent")
        name = CONDA_NAMES.get(canonicalize_name(requirement.name), canonicalize_name(requirement.name))
        expected.add(name)
        if not any(spec.operator == ">=" for spec in requirement.specifier):
            problems.append(f"{dependency!r} has no lower bound (>=)")
        if name not in recipe:
            problems.append(f"{requirement.name} (conda-forge: {name}) is in pyproject but not in the recipe's run")
            continue
        try:
            recipe_specifier = SpecifierSet(recipe[name])
        except InvalidSpecifier:
            problems.append(f"recipe run {name} {recipe[name]!r} is not a version constraint this test understands")
            continue
        if recipe_specifier != requirement.specifier:
            problems.append(f"{name}: recipe {recipe[name]!r} != pyproject {str(requirement.specifier)!r}")
    problems += [f"{name} is in the recipe's run but not in pyproject" for name in sorted(set(recipe) - expected)]
    return problems


def public_subpackages() -> set[str]:
    """``scvi_networkvi`` and its public sub-packages (folders with an ``__init__.py``, not starting with ``_``)."""
    found = {"scvi_networkvi"}
    for init in PACKAGE.rglob("__init__.py"):
        parts = init.parent.relative_to(ROOT).parts
        if not any(part.startswith("_") for part in parts):
            found.add(".".join(parts))
    return found


def check_recipe(pyproject: dict[str, Any], raw: dict[str, Any]) -> list[str]:
    """Every disagreement between ``pyproject`` and the unrendered recipe ``raw``; empty when they agree."""
    problems = []
    project = pyproject["project"]
    context = {key: str(value) for key, value in raw.get("context", {}).items()}
    recipe = render(raw, context)

    # the version source: the project's release archive of the version the recipe names (on its source host)
    version = Version(context["version"])
    pyproject_version = Version(project["version"])
    if raw["package"]["version"] != "${{ version }}" or Version(recipe["package"]["version"]) != version:
        problems.append("package.version must be ${{ version }} from the context")
    if canonicalize_name(recipe["package"]["name"]) != canonicalize_name(project["name"]):
        problems.append(f"package name {recipe['package']['name']!r} != pyproject {project['name']!r}")
    if Version(pyproject_version.base_version) != version:
        problems.append(f"recipe version {version} is not the release of pyproject's {pyproject_version}")
    source = raw["source"]
    repository = project["urls"]["Source"].rstrip("/")
    if source.get("url") != f"{repository}/archive/refs/tags/v${{{{ version }}}}.tar.gz":
        problems.append(f"source.url {source.get('url')!r} is not the release archive of {repository} for the version")
    released = not (pyproject_version.is_prerelease or pyproject_version.is_devrelease)
    # The tag's archive contains this recipe, so its hash cannot be committed in the tag itself: the release commit
    # leaves it out and the staged-recipes / feedstock copy adds it. A hash that is present must look like one.
    if "sha256" in source and not re.fullmatch(r"[0-9a-f]{64}", str(source["sha256"])):
        problems.append(f"source.sha256 {source['sha256']!r} is not a sha256 (64 hex digits)")
    if not released and "sha256" in source:
        problems.append(f"{pyproject_version} is not released: a source.sha256 cannot be real yet")

    # noarch python, built by pip from the declared backend
    build = recipe.get("build", {})
    if build.get("noarch") != "python":
        problems.append("build.noarch must be python")
    if "-m pip install . " not in build.get("script", "") or "--no-deps" not in build.get("script", ""):
        problems.append("build.script must be `${{ PYTHON }} -m pip install . --no-deps --no-build-isolation`")
    scripts = {f"{key} = {value}" for key, value in project.get("scripts", {}).items()}
    entry_points = {re.sub(r"\s*=\s*", " = ", e) for e in build.get("python", {}).get("entry_points", [])}
    if entry_points != scripts:
        problems.append(f"build.python.entry_points {sorted(entry_points)} != pyproject scripts {sorted(scripts)}")

    # python bound: context python_min == requires-python's lower bound, used in host, run and tests
    lower = [s.version for s in SpecifierSet(project["requires-python"]) if s.operator == ">="]
    python_min = context.get("python_min")
    if lower != [python_min]:
        problems.append(f"context python_min {python_min!r} != requires-python {project['requires-python']!r}")
    requirements = recipe.get("requirements", {})
    host = [conda_spec(entry) for entry in requirements.get("host", [])]
    if ("python", f"{python_min}.*") not in host:
        problems.append("host must pin python ${{ python_min }}.*")
    backend = {canonicalize_name(Requirement(r).name) for r in pyproject["build-system"]["requires"]}
    missing = (backend | {"pip"}) - {name for name, _ in host}
    if missing:
        problems.append(f"host lacks {sorted(missing)}")
    run = requirements.get("run", [])
    if ("python", f">={python_min}") not in [conda_spec(entry) for entry in run]:
        problems.append("run must require python >=${{ python_min }}")
    problems += compare_dependencies(project.get("dependencies", []), run)

    # tests: imports of every public sub-package, pip check, the command line
    tests = recipe.get("tests", [])
    python_tests = [t["python"] for t in tests if "python" in t]
    imports = {name for t in python_tests for name in t.get("imports", [])}
    if imports != public_subpackages():
        problems.append(
            f"import test: missing {sorted(public_subpackages() - imports)}, unknown {sorted(imports - public_subpackages())}"
        )
    if not any(t.get("pip_check") for t in python_tests):
        problems.append("the python test must run pip_check")
    commands = [line for t in tests for line in t.get("script", [])]
    if "python -m scvi_networkvi list" not in commands:
        problems.append("the script test must run `python -m scvi_networkvi list`")

    about = recipe.get("about", {})
    if about.get("license") != project["license"] or about.get("license_file") not in project["license-files"]:
        problems.append("about.license / license_file must match pyproject's license / license-files")
    return problems


def test_recipe_agrees_with_pyproject():
    assert check_recipe(load_pyproject(), load_recipe()) == []


def _drop_run(raw, name):
    raw["requirements"]["run"] = [e for e in raw["requirements"]["run"] if conda_spec(e)[0] != name]


def _set_run(raw, name, entry):
    _drop_run(raw, name)
    raw["requirements"]["run"].append(entry)


MUTATIONS = {
    "package missing from run": (lambda p, r: _drop_run(r, "scvi-tools"), "scvi-tools"),
    "lower bound differs": (lambda p, r: _set_run(r, "mudata", "mudata >=0.4"), "mudata"),
    "PyPI name instead of conda name": (lambda p, r: _set_run(r, "pytorch", "torch >=2.4"), "torch"),
    "extra run package": (lambda p, r: r["requirements"]["run"].append("seaborn >=0.13"), "seaborn"),
    "new pyproject dependency": (lambda p, r: p["project"]["dependencies"].append("matplotlib>=3.8"), "matplotlib"),
    "dependency without bound": (lambda p, r: p["project"]["dependencies"].append("tqdm"), "no lower bound"),
    "python bound differs": (lambda p, r: p["project"].update({"requires-python": ">=3.12"}), "python_min"),
    "not noarch": (lambda p, r: r["build"].pop("noarch"), "noarch"),
    "malformed sha256": (lambda p, r: r["source"].update({"sha256": "sha256-of-the-tag"}), "sha256"),
    "made-up sha256 before release": (lambda p, r: r["source"].update({"sha256": "0" * 64}), "sha256"),
    "version not templated in url": (
        lambda p, r: r["source"].update({"url": r["source"]["url"].replace("${{ version }}", "0.1.0")}),
        "source.url",
    ),
    "import test incomplete": (lambda p, r: r["tests"][0]["python"]["imports"].pop(), "import test"),
    "entry point missing": (lambda p, r: r["build"]["python"].update({"entry_points": []}), "entry_points"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_check_recipe_catches(mutation):
    pyproject, raw = copy.deepcopy(load_pyproject()), copy.deepcopy(load_recipe())
    mutate, expected = MUTATIONS[mutation]
    mutate(pyproject, raw)
    problems = check_recipe(pyproject, raw)
    assert any(expected in problem for problem in problems), problems


def test_a_release_commit_passes_without_the_hash_of_its_own_archive():
    """The tag's archive holds the recipe, so the release commit cannot carry its hash; the feedstock copy adds it."""
    pyproject, raw = copy.deepcopy(load_pyproject()), copy.deepcopy(load_recipe())
    pyproject["project"]["version"] = raw["context"]["version"]
    raw["source"].pop("sha256", None)
    assert check_recipe(pyproject, raw) == []
    raw["source"]["sha256"] = "ab" * 32
    assert check_recipe(pyproject, raw) == []


def test_render_and_conda_spec():
    assert render({"a": ["x ${{ v }}", "${{ PYTHON }} -m pip"]}, {"v": "1"}) == {"a": ["x 1", "${{ PYTHON }} -m pip"]}
    assert conda_spec("pytorch >=2.4") == ("pytorch", ">=2.4")
    assert conda_spec("scipy >=1.14, !=1.17.0") == ("scipy", ">=1.14,!=1.17.0")
    assert compare_dependencies(["scipy>=1.14,!=1.17.0"], ["python >=3.11", "scipy >=1.14,!=1.17.0"]) == []


# --------------------------------------------------------------------------------------------------------------------
# sdist and wheel


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """sdist, then the wheel built from it (``python -m build`` default), in a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_wheel_contents(dist):
    project = load_pyproject()["project"]
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(wheel.read(metadata_name).decode())
        (entry_points_name,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = wheel.read(entry_points_name).decode()

    expected = {"scvi_networkvi/py.typed", "scvi_networkvi/resources/registry.toml"}
    expected |= {f"scvi_networkvi/datasets/example/{p.name}" for p in (PACKAGE / "datasets" / "example").iterdir()}
    assert "scvi_networkvi/datasets/example/cite_example.h5mu" in expected
    expected |= {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)}"
    assert not [n for n in names if not n.startswith(("scvi_networkvi/", "scvi_networkvi-"))], "foreign files"

    assert dist["wheel"].name == f"scvi_networkvi-{project['version']}-py3-none-any.whl"
    assert metadata["Requires-Python"] == project["requires-python"]
    assert metadata["License-Expression"] == project["license"]
    requires = {r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r}
    assert {str(Requirement(r)) for r in requires} == {str(Requirement(r)) for r in project["dependencies"]}
    for script, target in project["scripts"].items():
        assert f"{script} = {target}" in entry_points


def test_sdist_contents(dist):
    version = load_pyproject()["project"]["version"]
    assert dist["sdist"].name == f"scvi_networkvi-{version}.tar.gz"  # the file name the recipe's url expects
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for required in (
        "pyproject.toml",
        "LICENSE",
        "README.md",
        "scvi_networkvi/datasets/example/cite_example.h5mu",
        "scvi_networkvi/resources/registry.toml",
        "scvi_networkvi/py.typed",
        "tests/test_packaging.py",
    ):
        assert required in names, required
    assert not [n for n in names if n.startswith((".venv", ".ci/", ".github/", "data/"))]
