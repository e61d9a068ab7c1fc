"""Quiet by default: NETWORKVI's calls show no Lightning start-up lines, tips or warnings of their own making.

The ``noise`` fixture (conftest.py) records what reaches Lightning's log handlers and the warnings a user would see.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest
import scvi

import scvi_networkvi as nvi
from scvi_networkvi.model._quiet import CHATTER_LOGGERS, quiet_lightning

EXAMPLE = nvi.datasets.example_resources()
TINY = {"model_kwargs": {"gene_size": 2, "go_size": 1, "encode_covariates": True}, "max_epochs": 1}
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False, "batch_size": 64}


pytestmark = pytest.mark.usefixtures("offline_cache")


def _cells(example_sites, sites, n):
    mdata = example_sites(sites)
    return mdata[:n].copy()


def test_tl_workflow_is_quiet(example_sites, noise, caplog):
    scvi.settings.seed = 0  # the user's own call; its "Seed set to 0" is not ours
    noise.lines.clear()
    caplog.set_level(logging.INFO, logger="scvi")
    caplog.set_level(logging.INFO, logger="scvi_networkvi")
    reference = _cells(example_sites, ["site2", "site3"], 160)
    query = _cells(example_sites, ["site4"], 50)
    model = nvi.tl.train(reference, batch_key="Site", **EXAMPLE, **TINY, train_kwargs=TRAIN)
    nvi.tl.embed(reference, model)
    nvi.tl.importances(reference, model, groupby="rna:Site")
    nvi.tl.perturb(reference, model, genes=["CD74"], groupby="rna:Site")
    nvi.tl.map_query(query, model, max_epochs=1, groupby="rna:cell_type", train_kwargs=TRAIN)
    assert noise.chatter() == []
    assert noise.lines == []  # nothing else of Lightning's INFO either
    assert noise.warnings() == []
    for name in CHATTER_LOGGERS:  # levels restored
        assert logging.getLogger(name).level == logging.NOTSET
    # the query's feature alignment is ours (scvi-tools' logged "Found 100.0% reference vars" once per mention of a
    # modality in the setup): one INFO line per modality, through the package's logger
    aligned = [r.getMessage() for r in caplog.records if "of the reference's" in r.getMessage()]
    assert [m.split("'")[1] for m in aligned] == ["rna", "prot"]
    assert "reference vars in query data" not in caplog.text


def test_model_train_is_quiet_and_keeps_our_info_logging(example_sites, noise, caplog):
    mdata = _cells(example_sites, ["site2"], 120)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities={"rna_layer": "rna", "batch_key": "rna"})
    model = nvi.NETWORKVI(mdata, encoder="dense")
    with caplog.at_level(logging.INFO, logger="scvi_networkvi"):
        model.train(max_epochs=1, adversarial_mixing=True, **TRAIN)
    assert noise.chatter() == [] and noise.warnings() == []
    assert "adversarial_mixing needs at least two batches" in caplog.text


@pytest.mark.parametrize(
    ("name", "level"),
    [("lightning.pytorch.utilities.rank_zero", logging.INFO), ("lightning.pytorch", logging.DEBUG)],
)
def test_a_user_who_asks_for_lightnings_lines_sees_them(example_sites, noise, name, level):
    mdata = _cells(example_sites, ["site2", "site3"], 120)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities={"rna_layer": "rna", "batch_key": "rna"})
    model = nvi.NETWORKVI(mdata, encoder="dense")
    log = logging.getLogger(name)
    before = log.level
    log.setLevel(level)
    try:
        model.train(max_epochs=1, **TRAIN)
    finally:
        log.setLevel(before)
    assert any(line.startswith("GPU available") for line in noise.lines)


def test_quiet_lightning_restores_levels_and_filters_even_on_error():
    user_set = logging.getLogger(CHATTER_LOGGERS[1])
    user_set.setLevel(logging.INFO)  # a level the user chose stays
    filters = list(warnings.filters)
    try:
        with pytest.raises(RuntimeError), quiet_lightning((r"exactly this",)):
            assert logging.getLogger(CHATTER_LOGGERS[0]).level == logging.WARNING
            assert user_set.level == logging.INFO
            with warnings.catch_warnings(record=True) as caught:  # keeps the filters in force
                warnings.warn("exactly this message", UserWarning, stacklevel=1)
                warnings.warn("another message", UserWarning, stacklevel=1)
            raise RuntimeError("inside")
    finally:
        user_set.setLevel(logging.NOTSET)
    assert [str(w.message) for w in caught] == ["another message"]
    assert warnings.filters == filters
    assert all(logging.getLogger(name).level == logging.NOTSET for name in CHATTER_LOGGERS)


TRAIN_SCRIPT = """
import warnings
import numpy as np
import scvi_networkvi as nvi
warnings.filterwarnings("ignore", message="From 0.4 .update", category=FutureWarning)  # mudata 0.3's own notice
full = nvi.datasets.example()
mdata = full[np.flatnonzero(full.obs["Site"].isin(["site2", "site3"]).to_numpy())[:120]].copy()
nvi.tl.train(mdata, batch_key="Site", encoder="dense", max_epochs=1,
             train_kwargs={"accelerator": "cpu", "enable_progress_bar": False})
print("done")
"""


def test_a_script_prints_nothing_but_its_own_output(tmp_path):
    """The real process, with Lightning's own stream handler and Python's default warning filters."""
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_SCRIPT], capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "done\n"
    assert result.stderr == ""
