"""Feedback while working: scvi-tools' progress bars on the interpretation passes, each query log line once.

One small model (1 epoch, covariate attention) on the embedded example's site 2 serves every test: the bars and log
lines are what is checked, not the numbers.
"""

from __future__ import annotations

import logging

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi

import scvi_networkvi as nvi

EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}
TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}


pytestmark = pytest.mark.usefixtures("offline_session_cache")


@pytest.fixture
def scvi_settings():
    """Restores scvi-tools' verbosity and progress bar style after a test changes them."""
    verbosity, style = scvi.settings.verbosity, scvi.settings.progress_bar_style
    yield scvi.settings
    scvi.settings.verbosity = verbosity
    scvi.settings.progress_bar_style = style


def sites(names, n: int | None = None) -> md.MuData:
    full = nvi.datasets.example()
    keep = np.flatnonzero(full["rna"].obs["Site"].isin(names).to_numpy())[:n]
    mdata = md.MuData({mod: full[mod][keep].copy() for mod in full.mod})
    mdata.obs["cell_type"] = mdata["rna"].obs["cell_type"].astype(str).astype("category")
    for mod in mdata.mod:  # plain strings: a site left out is not a registered batch category
        mdata[mod].obs["Site"] = mdata[mod].obs["Site"].astype(str)
    mdata.obs["Site"] = mdata["rna"].obs["Site"]
    return mdata


@pytest.fixture(scope="module")
def trained():
    scvi.settings.seed = 0
    mdata = sites(["site2", "site3"], 600)
    model = nvi.tl.train(
        mdata,
        batch_key="Site",
        **GO_KW,
        max_epochs=1,
        model_kwargs={"gene_size": 5, "go_size": 2, "encode_covariates": True, "covariate_attention": "go"},
        train_kwargs=TRAIN,
    )
    return mdata, model


def bars(text: str) -> list[str]:
    """The descriptions of the tqdm bars in captured output (each redraw repeats one; keep the distinct ones)."""
    found = [part.split(":")[0].strip() for part in text.replace("\r", "\n").splitlines() if "it/s]" in part]
    found += [part.split(":")[0].strip() for part in text.replace("\r", "\n").splitlines() if "s/it]" in part]
    return list(dict.fromkeys(found))


def test_importances_draw_scvi_tools_bars_by_default(trained, capsys, scvi_settings):
    mdata, model = trained
    scvi_settings.progress_bar_style = "tqdm"
    scvi_settings.verbosity = logging.INFO  # scvi-tools' default
    table = nvi.tl.importances(mdata, model, groupby="cell_type", key_added=None, seed=0)
    drawn = bars(capsys.readouterr().out)
    # the default 100 random gene sets per term size get their own bar per modality
    assert drawn == [
        "Activations",
        "Probes (rna)",
        "Random gene sets (rna)",
        "Probes (prot)",
        "Random gene sets (prot)",
    ]
    scvi_settings.verbosity = logging.WARNING  # scvi-tools asked for quiet: no bars
    quiet = nvi.tl.importances(mdata, model, groupby="cell_type", key_added=None, seed=0)
    assert capsys.readouterr().out == ""
    pd.testing.assert_frame_equal(table, quiet)  # the bars change nothing


def test_progress_bar_argument_overrides_the_verbosity(trained, capsys, scvi_settings):
    mdata, model = trained
    scvi_settings.progress_bar_style = "tqdm"
    scvi_settings.verbosity = logging.WARNING
    model.get_importances(groupby="cell_type", modalities="rna", null_sets=2, key_added=None, progress_bar=True)
    assert bars(capsys.readouterr().out) == ["Activations", "Probes (rna)", "Random gene sets (rna)"]
    scvi_settings.verbosity = logging.INFO
    model.get_importances(groupby="cell_type", modalities="rna", key_added=None, progress_bar=False)
    assert capsys.readouterr().out == ""


def test_perturbation_and_attention_bars(trained, capsys, scvi_settings):
    mdata, model = trained
    scvi_settings.progress_bar_style = "tqdm"
    genes = [str(g) for g in mdata["rna"].var_names[np.flatnonzero(model.wirings_["rna"].gene_annotated)[:2]]]
    nvi.tl.perturb(mdata, model, genes=genes, groupby="cell_type", modalities="rna", key_added=None, seed=0)
    out = capsys.readouterr().out
    # the unperturbed pass, then one bar over the perturbations: no bar per perturbation's inner passes
    assert bars(out) == ["Activations", "Perturbations"]
    assert "2/2" in out
    nvi.tl.attention(mdata, model, groupby="cell_type", key_added=None)
    assert bars(capsys.readouterr().out) == ["Attention statistics"]


def test_rich_style_draws_one_bar_at_a_time(trained, scvi_settings):
    """rich refuses a second live display while one runs: the passes must not nest bars."""
    mdata, model = trained
    scvi_settings.progress_bar_style = "rich"
    genes = [str(mdata["rna"].var_names[np.flatnonzero(model.wirings_["rna"].gene_annotated)[0]])]
    table = nvi.tl.perturb(mdata, model, genes=genes, groupby="cell_type", modalities="rna", key_added=None, seed=0)
    assert len(table) and np.isfinite(table["auroc_before"]).all()
    assert len(nvi.tl.importances(mdata, model, groupby="cell_type", key_added=None, null_sets=2, modalities="rna"))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_query_log_lines_print_once():
    """Every INFO line of map_query reaches the user once, though ``rna`` is named twice in the setup's modalities.

    scvi-tools' own query preparation padded each value of the ``modalities`` map, ``"rna"`` (``rna_layer`` and
    ``batch_key``) twice, and logged "Found 100.0% reference vars in query data." for each.
    """
    scvi.settings.seed = 0
    reference = sites(["site2", "site3"], 300)
    nvi.NETWORKVI.setup_mudata(
        reference, batch_key="Site", modalities={"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}
    )
    model = nvi.NETWORKVI(reference, **GO_KW, gene_size=5, go_size=2, encode_covariates=True)
    model.train(max_epochs=1, **TRAIN)
    assert list(model.registry_["setup_args"]["modalities"].values()).count("rna") == 2
    query = sites(["site4"], 200)
    collect = _Collect()
    # where records end up printed: the root logger (a user's logging.basicConfig) and scvi-tools' own handler
    # (its logger does not propagate); our loggers must add no printing handler of their own, or a record would
    # print there and again at the root
    ours = logging.getLogger("scvi_networkvi")
    assert all(isinstance(h, logging.NullHandler) for h in ours.handlers) and ours.propagate
    loggers = [logging.getLogger(name) for name in ("", "scvi")]
    levels = [log.level for log in loggers]
    for log in [*loggers]:
        log.addHandler(collect)
        log.setLevel(logging.INFO)
    ours.setLevel(logging.INFO)
    try:
        nvi.tl.map_query(query, model, max_epochs=1, train_kwargs=TRAIN)
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.removeHandler(collect)
            log.setLevel(level)
        ours.setLevel(logging.NOTSET)
    assert collect.messages, "map_query logged nothing at INFO"
    assert len(collect.messages) == len(set(collect.messages)), collect.messages
    found = [m for m in collect.messages if "of the reference's" in m]
    assert [m.split("'")[1] for m in found] == ["rna", "prot"]
    assert "1000 of the reference's 1000 features found (100.0%)" in found[0]


def dense(matrix) -> np.ndarray:
    return np.asarray(matrix.todense()) if sp.issparse(matrix) else np.asarray(matrix)


def test_query_features_aligned_with_counts_kept(trained):
    _, model = trained
    query = sites(["site4"], 50)
    rna = query["rna"]
    dropped = list(rna.var_names[:3])
    before = dense(rna[:, "CD74"].X)
    query.mod["rna"] = rna[:, list(rna.var_names[3:][::-1])].copy()  # reversed order, 3 features missing
    query.update()
    nvi.NETWORKVI.prepare_query_mudata(query, model)
    assert list(query["rna"].var_names) == list(model.adata["rna"].var_names)
    assert (dense(query["rna"][:, dropped].X) == 0).all()
    np.testing.assert_array_equal(dense(query["rna"][:, "CD74"].X), before)
    assert query.n_obs == 50 and "Site" in query.obs


def test_query_missing_most_features_warns(trained):
    _, model = trained
    query = sites(["site4"], 50)
    query.mod["rna"] = query["rna"][:, :400].copy()
    query.update()
    with pytest.warns(UserWarning, match=r"modality 'rna' holds only 40% of the reference's features"):
        nvi.NETWORKVI.prepare_query_mudata(query, model)
    assert query["rna"].n_vars == model.adata["rna"].n_vars
