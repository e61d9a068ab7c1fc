"""The documentation notebooks are stored executed and clean (``scripts/make_notebooks.py`` writes them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
#: Absolute paths of a build machine (home, root, work and temporary directories), as they would leak into outputs.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home|tmp|Users)/")


def _outputs_text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append("".join(output.get("text", "")))
        for key, value in output.get("data", {}).items():
            if key.startswith("text/"):
                parts.append("".join(value))
        parts.extend(output.get("traceback", []))
    return "\n".join(parts)


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"go_analysis", "query_mapping", "mosaic"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_executed_and_clean(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cell"
    # executed top to bottom in one kernel, every cell with its count
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    for cell in code:
        assert all(o["output_type"] != "error" for o in cell.get("outputs", [])), f"{path.name} stored an error"
        text = _outputs_text(cell)
        assert "\N{ELECTRIC LIGHT BULB} Tip:" not in text
        assert "IProgress not found" not in text
        assert not re.search(r"\d+%\|.*\| *\d+/\d+ \[", text), f"{path.name} stored a progress bar"
        assert not MACHINE_PATH.search(text), f"{path.name} shows a path of the build machine: {text[:300]}"
    placeholders = [
        c for c in cells if c["cell_type"] == "markdown" and re.fullmatch(r"[A-Z0-9_]+", "".join(c["source"]))
    ]
    assert not placeholders, f"{path.name} has unfilled markdown cells"


def test_clean_outputs_drops_noise_and_install_paths(load_script):
    pytest.importorskip("nbformat")
    module = load_script("scripts/make_notebooks.py")
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stderr",
            text="/opt/env/lib/python3.12/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please\n"
            "  from .autonotebook import tqdm as notebook_tqdm\n",
        ),
        nbformat.v4.new_output(
            "stream",
            name="stderr",
            text="\N{ELECTRIC LIGHT BULB} Tip: try a cloud logger\n"
            "/home/me/.venv/lib/python3.12/site-packages/lightning/fit_loop.py:321: few batches\n",
        ),
        nbformat.v4.new_output(
            "stream", name="stderr", text="Probes (rna):  33%|███▎      | 1/3 [00:53<01:46, 53.40s/it]\n"
        ),
        nbformat.v4.new_output("stream", name="stderr", text="\n"),  # what a finished bar leaves
        nbformat.v4.new_output("stream", name="stdout", text="\r"),  # a bar's redraw on stdout, emptied
        nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.9\n"),
    ]
    nb.cells = [cell]
    module.clean_outputs(nb)
    assert [o["text"] for o in nb.cells[0].outputs] == [
        ".../site-packages/lightning/fit_loop.py:321: few batches\n",
        "accuracy 0.9\n",
    ]
