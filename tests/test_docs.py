"""The documentation builds without a warning, and every local link and image of the built pages exists.

The build is the one ``make docs`` runs (``sphinx -W --keep-going -b html``, offline: notebooks are stored executed)
on a copy of ``docs/`` in a temporary folder, so that autosummary's ``generated/`` pages are not written into the
checkout. About a minute on two cores, hence ``slow``.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    pytest.importorskip("sphinxcontrib.bibtex")
    work = tmp_path_factory.mktemp("docs")
    source = work / "docs"
    shutil.copytree(ROOT / "docs", source, ignore=shutil.ignore_patterns("_build", "generated", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "CHANGELOG.md", work)  # docs/changelog.md includes ../CHANGELOG.md
    out = work / "html"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("NVI_DOCS_INTERSPHINX", None)  # intersphinx downloads inventories: the build must not need the network
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-d", str(work / "doctrees")]
    result = subprocess.run([*command, str(source), str(out)], capture_output=True, text=True, env=env, timeout=1200)
    return out, result


def test_the_docs_build_without_a_warning(built):
    _, result = built
    assert result.returncode == 0, result.stderr[-5000:]
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr, result.stderr[-5000:]
    assert "build succeeded" in result.stdout


def test_every_local_link_and_image_exists(built):
    out, result = built
    assert result.returncode == 0, result.stderr[-5000:]
    pages = [page for page in out.rglob("*.html") if "_static" not in page.relative_to(out).parts]
    assert len(pages) > 20  # index, results page, notebooks, API pages
    anchors: dict[Path, str] = {}
    broken = []
    for page in pages:
        for target in re.findall(r'(?:href|src)="([^"]+)"', page.read_text(encoding="utf-8")):
            target = html.unescape(target)
            if re.match(r"[a-z]+:", target):  # http(s), mailto, data: the build is offline, these are not checked
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / unquote(path.partition("?")[0])).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(out)} -> {target}")
            elif fragment and file.suffix == ".html":
                text = anchors.setdefault(file, file.read_text(encoding="utf-8"))
                if f'id="{fragment}"' not in text:
                    broken.append(f"{page.relative_to(out)} -> {target} (no such anchor)")
    assert not broken, "\n".join(broken[:50])


def test_the_results_page_has_its_figures_and_the_layout_css(built):
    out, result = built
    assert result.returncode == 0, result.stderr[-5000:]
    page = (out / "benchmarks.html").read_text(encoding="utf-8")
    for figure in ("integration", "query_mapping", "mosaic", "scaling"):
        assert f"_images/{figure}.svg" in page
    assert "_static/custom.css" in page
    assert (out / "_static" / "custom.css").is_file()
