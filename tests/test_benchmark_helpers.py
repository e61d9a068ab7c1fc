"""Helpers of the benchmark scripts that decide whether a run can start at all."""

from __future__ import annotations

import pytest

MODS = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}


@pytest.fixture(scope="module")
def integration(load_script):
    return load_script("benchmarks/integration.py", "integration")  # the name the ablation imports it by


@pytest.fixture(scope="module")
def ablation(integration, load_script):
    return load_script("benchmarks/integration_ablation.py")


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_xla_flags_are_all_double_dash_flags(integration, threads):
    flags = integration.xla_flags("", threads)
    assert all(token.startswith("--") for token in flags.split())
    assert ("--xla_cpu_multi_thread_eigen=false" in flags) == (threads == 1)


def test_xla_flags_keep_the_users_flags_once(integration):
    user = "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=true"
    assert integration.xla_flags(user, 1) == user  # the user's own eigen setting wins, nothing is appended
    assert integration.xla_flags(integration.xla_flags("", 1), 1) == "--xla_cpu_multi_thread_eigen=false"


def test_converged_budgets_stop_every_peer_on_the_elbo(integration):
    """MULTIVI fixes its monitor inside train(): the ELBO criterion reaches it as a callback, TOTALVI as an argument."""
    from lightning.pytorch.callbacks import EarlyStopping

    train = {"early_stopping": True, "early_stopping_monitor": "elbo_validation", "callbacks": ["timer"]}
    multivi = integration.peer_train_kwargs("MULTIVI", train)
    assert "early_stopping_monitor" not in multivi and multivi["early_stopping"] is False
    assert multivi["check_val_every_n_epoch"] == 1 and multivi["callbacks"][0] == "timer"
    stopper = multivi["callbacks"][-1]
    assert isinstance(stopper, EarlyStopping) and stopper.monitor == "elbo_validation" and stopper.patience == 50
    assert integration.peer_train_kwargs("TOTALVI", train) == train
    fixed = {"early_stopping": False, "callbacks": []}
    assert integration.peer_train_kwargs("MULTIVI", fixed) == fixed
    assert train["callbacks"] == ["timer"]  # the caller's dict is left alone


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors:UserWarning")  # MULTIVI's empty protein layers
def test_peer_model_builds_each_datasets_peer_with_the_benchmarks_learning_rate(integration):
    from pathlib import Path

    import mudata as md
    import scvi

    data = Path(__file__).parent / "data"
    source = md.read_h5mu(data / "bmmc_cite.h5mu")
    protein = source["adt"].copy()
    protein.X = protein.X.toarray()  # dense protein counts, as in the tutorial file (TOTALVI requires them)
    cite = md.MuData({"rna": source["rna"], "prot": protein})  # the tutorial's modality names
    totalvi, extra = integration.peer_model("cite", cite)
    assert isinstance(totalvi, scvi.model.TOTALVI) and extra == {}
    multiome = md.read_h5mu(data / "bmmc_multiome.h5mu")
    multivi, extra = integration.peer_model("multiome", multiome)
    assert isinstance(multivi, scvi.model.MULTIVI) and extra == {"lr": integration.MULTIVI_LR}
    assert multivi.summary_stats["n_batch"] == multiome["rna"].obs["Site"].nunique()  # registered with its batch


def test_ablation_variants_compose_left_to_right(ablation):
    model, train, plan = ablation.settings("adv1+kl-totalvi+latent20", 4000, "current")
    assert plan == {"scale_adversarial_loss": 1.0}
    assert train == {"n_epochs_kl_warmup": None, "n_steps_kl_warmup": 3000}
    assert model == {"n_latent": 20}
    model, train, plan = ablation.settings("base", 4000, "legacy")
    assert plan["scale_adversarial_loss"] == "auto" and train["batch_size"] == 128 and model["n_latent"] == 10
    with pytest.raises(SystemExit, match="unknown change 'nope'"):
        ablation.settings("adv1+nope", 4000, "current")
    # the unguarded training of the results page's earlier rows: a train() keyword, None turns the guard off
    assert ablation.settings("no-guard", 4000, "current")[1] == {"gradient_spike_factor": None}


def test_pinned_settings_per_dataset_and_resource_changes(ablation):
    cite = ablation.settings("base", 4000, "2026-12-05", "cite")
    multiome = ablation.settings("no-dropout", 4000, "2026-12-05", "multiome")
    assert cite[0]["batch_centered_input"] == "all" and cite[1]["adversarial_scale"] == 1.0
    assert multiome[0] == {"batch_centered_input": (), "dropout_rate": 0.0, "wiring_by_modality": {}}
    assert multiome[1]["adversarial_scale"] == "auto"
    # pinned GO settings on multiome keep the shared gene width for ATAC (before its one-neuron gene nodes)
    assert "wiring_by_modality" not in ablation.settings("base", 4000, "current", "multiome", "go")[0]
    assert ablation.settings("atac-gene2", 4000, "2026-12-05c", "multiome", "go")[0]["wiring_by_modality"] == {
        "atac": {"gene_size": 2}
    }
    go = ablation.settings("base", 4000, "2026-12-05b", "multiome", "go")
    dense = ablation.settings("base", 4000, "2026-12-05b", "multiome", "dense")
    assert go[0]["batch_centered_input"] == "all" and go[1]["adversarial_scale"] == 1.0
    assert dense[0] == {"batch_centered_input": (), "dropout_rate": 0.0} and dense[1]["adversarial_scale"] == "auto"
    cite_05b = ablation.settings("base", 4000, "2026-12-05b", "cite", "dense")  # per dataset where encoders agree
    assert cite_05b[1:] == cite[1:] and cite_05b[0] == {**cite[0], "head_input": "root"}
    # 2026-12-05c: the GO encoder's heads read every level on paired data, the rest as the day before
    go_05c = ablation.settings("base", 4000, "2026-12-05c", "multiome", "go")
    assert go_05c[0] == {**go[0], "head_input": "levels"} and go_05c[1:] == go[1:] and go[0]["head_input"] == "root"
    assert ablation.settings("base", 4000, "2026-12-05c", "cite", "go")[0]["head_input"] == "root"
    # 2026-12-05f: before the CITE-seq inputs were scaled per batch; multiome as on 2026-12-05c
    cite_05f = ablation.settings("base", 4000, "2026-12-05f", "cite", "go")
    assert cite_05f[0] == {**cite_05b[0], "batch_scaled_input": False} and cite_05f[1:] == cite_05b[1:]
    assert ablation.settings("base", 4000, "2026-12-05f", "multiome", "go") == go_05c
    assert ablation.settings("scale-batch", 4000, "2026-12-05f", "cite", "go")[0]["batch_scaled_input"] is True
    model, _, _ = ablation.settings("sizes-default+annotations-default", 4000, "current")
    assert model == {"gene_size": 4, "go_size": 6, "go": None, "annotations": None}
    assert set(ablation.RESOURCE_KEYS) >= {"go", "annotations"}


@pytest.fixture(scope="module")
def portable(load_script):
    return load_script("benchmarks/_portable.py", "_portable")


def test_portable_paths_name_no_machine_folder(portable, tmp_path, monkeypatch):
    import tempfile
    from pathlib import Path

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the temporary folder as gettempdir() reports it
    assert portable.portable_path(portable.REPO / "benchmarks" / "results") == "benchmarks/results"
    assert portable.portable_path(portable.REPO) == "."
    assert portable.portable_path(tmp_path / "w" / "go.h5mu") == "<tmp>/w/go.h5mu"
    assert portable.portable_path(tmp_path / "w" / "go.h5mu", {"<work-dir>": tmp_path / "w"}) == "<work-dir>/go.h5mu"
    assert portable.portable_path(Path.home() / ".cache" / "x") == "~/.cache/x"
    assert portable.portable_path("relative/x.csv") == "relative/x.csv"
    assert portable.portable_path("/srv/data/cite.h5mu") == ".../cite.h5mu"
    command = ["--out-dir", str(tmp_path / "o"), f"--data-dir={Path.home() / 'd'}", "--n", "3"]
    assert portable.portable_command(command) == "--out-dir <tmp>/o --data-dir=~/d --n 3"
    text = f"scvi: {tmp_path}/site/scvi/__init__.py, {portable.REPO}/scvi_networkvi"
    assert portable.portable_text(text) == "scvi: <tmp>/site/scvi/__init__.py, <repository>/scvi_networkvi"
    assert portable.portable_text(f"{tmp_path}x").endswith(f"{tmp_path.name}x")  # a longer name is not the folder


def test_loss_parts_summary_pairs_training_and_validation_means(ablation, load_script, tmp_path):
    import pandas as pd

    loss_parts = load_script("benchmarks/loss_parts.py")
    rows = [
        {"dataset": "cite", "encoder": "go", "variant": "base", "seed": 0, "epoch": epoch, "split": split,
         "part": part, "value": value, "machine": "test", "finished": "2026-12-06T00:00:00"}
        for epoch, split, part, value in [
            (50, "train", "kl_divergence_paired", 6.0), (50, "validation", "kl_divergence_paired", 18.0),
            (120, "train", "kl_divergence_paired", 5.0), (120, "validation", "kl_divergence_paired", 30.0),
            (50, "train", "reconstruction rna", 990.0), (50, "validation", "reconstruction rna", 1035.0),
        ]
    ]  # fmt: skip
    csv = tmp_path / "parts.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    loss_parts.summarize(csv, tmp_path / "parts.md")
    text = (tmp_path / "parts.md").read_text()
    assert "## cite, go encoder, base, seed 0" in text
    assert "| kl_divergence_paired | 50 | 6.00 | 18.00 | 3.00 |" in text
    assert "| kl_divergence_paired | 120 | 5.00 | 30.00 | 6.00 |" in text
    assert "| reconstruction rna | 50 | 990.00 | 1035.00 | 1.05 |" in text


def test_train_arguments_put_each_setting_where_nvi_tl_train_takes_it(ablation):
    base = {"early_stopping": False, "callbacks": ["timer"]}
    go = ablation.train_arguments("wd1e-2+plateau", 5000, "current", "cite", "go", base)
    assert go["train_kwargs"] == {**base, "weight_decay": 1e-2, "plan_kwargs": {"reduce_lr_on_plateau": True}}
    assert base == {"early_stopping": False, "callbacks": ["timer"]}  # the caller's dict is not changed
    assert go["go"] == "go-basic" and go["model_kwargs"] == {"gene_size": 5, "go_size": 2}
    dense = ablation.train_arguments("latent20", 5000, "current", "cite", "dense", base)
    assert "go" not in dense and "annotations" not in dense and dense["model_kwargs"]["n_latent"] == 20
    default = ablation.train_arguments("annotations-default", 5000, "current", "multiome", "go", base)
    assert default["go"] is None and default["annotations"] is None and "go" not in default["model_kwargs"]
    assert default["modalities"] == {"rna_layer": "rna", "atac_layer": "atac"}


def test_decoder_dropout_change_adds_a_callback_that_fills_only_the_hidden_dropout_slots(ablation, example_sites):
    import torch

    import scvi_networkvi as nvi

    base = {"early_stopping": False, "callbacks": ["timer"]}
    arguments = ablation.train_arguments("dec-dropout0.2", 5000, "current", "cite", "dense", base)
    timer, callback = arguments["train_kwargs"]["callbacks"]
    assert timer == "timer" and base["callbacks"] == ["timer"]  # appended after the caller's, which stay
    mdata = example_sites(["site2", "site3"])
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=MODS)
    module = nvi.NETWORKVI(mdata, encoder="dense").module

    def rates(decoder) -> list[float]:
        return [m.p for m in decoder.modules() if isinstance(m, torch.nn.Dropout)]

    assert rates(module.rna_decoder) == [] and set(rates(module.protein_decoder)) == {0.1}
    n_protein = len(rates(module.protein_decoder))
    callback.on_fit_start(None, type("Plan", (), {"module": module})())
    assert rates(module.rna_decoder) == [0.2, 0.2]  # its two hidden layers
    assert rates(module.protein_decoder) == [0.2] * n_protein  # its own slots only, no new ones on output layers


def test_contention_registers_the_tutorial_cite_seq_modalities(load_script):
    """The contention benchmark's workers register CITE-seq cells with TOTALVI and NETWORKVI (it once passed the
    per-dataset mapping of train_throughput whole, which setup_mudata rejects)."""
    import scvi

    import scvi_networkvi as nvi

    contention = load_script("benchmarks/contention.py")
    mdata = nvi.datasets.example()
    scvi.model.TOTALVI.setup_mudata(mdata.copy(), batch_key="Site", modalities=contention.CITE_MODALITIES)
    nvi.NETWORKVI.setup_mudata(mdata.copy(), batch_key="Site", modalities=contention.CITE_MODALITIES)


def test_mosaic_go_settings_apply_to_the_fractions_only(load_script, capsys):
    mosaic = load_script("benchmarks/mosaic.py", "mosaic")
    with pytest.raises(SystemExit) as stop:
        mosaic.main(["--cross", "--go-settings", "default"])  # refused before any data is read
    assert stop.value.code == 2
    assert "--go-settings applies to the paired fractions" in capsys.readouterr().err
    from scvi_networkvi.wiring import WiringConfig

    defaults, settings = WiringConfig(), mosaic.default_go_settings()  # the settings' node sizes are the package's
    assert (settings["gene_size"], settings["go_size"]) == (defaults.gene_size, defaults.term_size)
    assert settings["go"] is None and settings["annotations"] is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("networkvi", {}),
        ("networkvi-dropout0.2", {"dropout_rate": 0.2}),
        ("networkvi-anchor-rna", {"modality_penalty_anchor": "rna"}),
        ("networkvi-no-penalty", {"modality_penalty": None}),
    ],
)
def test_query_mapping_reference_variants_change_one_setting(load_script, monkeypatch, name, expected):
    import scvi_networkvi as nvi

    query_mapping = load_script("benchmarks/query_mapping.py", "query_mapping")
    seen = {}
    monkeypatch.setattr(nvi.tl, "train", lambda data, **kwargs: seen.update(kwargs) or "model")
    assert query_mapping.fit_reference(name, "reference", epochs=3) == "model"
    covariates = {"encode_covariates": True, "deeply_inject_covariates": True}
    assert seen["model_kwargs"] == {"gene_size": 5, "go_size": 2, **covariates, **expected}
    assert seen["max_epochs"] == 3 and seen["batch_key"] == "Site"


def test_mosaic_ablation_changes_are_options_networkvi_accepts(load_script):
    import inspect

    from scvi_networkvi import NETWORKVI
    from scvi_networkvi.module import NetworkVAE

    ablation = load_script("benchmarks/mosaic_ablation.py", "mosaic_ablation")
    own = set(inspect.signature(NETWORKVI.__init__).parameters)
    for name in ablation.CHANGES:  # a misspelt option would otherwise fail only after minutes of training
        model_kwargs, _, _ = ablation.settings(name)
        NETWORKVI._split_options({k: v for k, v in model_kwargs.items() if k not in own}, wired=True)
    model_kwargs, _, _ = ablation.settings("atac-dense+anchor-atac+pen-mmd+pen2")  # applied left to right
    assert model_kwargs == {
        "dense_modalities": ("atac",),
        "modality_penalty_anchor": "atac",
        "modality_penalty": "mmd",
        "modality_penalty_scale": 2.0,
    }
    with pytest.raises(ValueError, match="modality_penalty"):
        NetworkVAE.check_options({"modality_penalty_anchor": "peaks"}, wired=True)


def _go_rows(sets: bool):
    """A GO-axis CSV: TOTALVI and NETWORKVI at depths 3 and 4 in two sets (or one, without a ``set`` column)."""
    import pandas as pd

    common = {
        "date": "2026-12-07", "threads": 2, "load_start": 0.5, "load_end": 0.6, "host": "test host", "python": "3.12",
        "torch": "2", "scvi_tools": "1.5", "construct_s": 1.0, "s_per_epoch": 1.0, "parameters": 1000,
        "peak_rss_mb": 100.0, "rss_imports_mb": 50.0, "train_cells": 1800, "go_terms_rna": 10, "go_terms_protein": 5,
        "gene_term_rna": 20, "compile_cold_s": 1.0, "compile_cached_s": 0.1,
    }  # fmt: skip
    speeds = {1: {"totalvi": 2000.0, 3: 2000.0, 4: 1600.0}, 2: {"totalvi": 1000.0, 3: 900.0, 4: 900.0}}
    rows = []
    for number in (1, 2) if sets else (1,):
        for model, gaf, depth in (("totalvi", "-", 0), ("networkvi", "full", 3), ("networkvi", "full", 4)):
            speed = speeds[number]["totalvi" if model == "totalvi" else depth]
            row = {**common, "model": model, "gaf": gaf, "depth": depth, "cells_per_s": speed}
            rows.append({**row, "set": number} if sets else row)
    return pd.DataFrame(rows)


def test_scaling_go_sets_compare_each_row_with_its_own_sets_totalvi(load_script, tmp_path):
    """``scaling.py --go-sets``: each NETWORKVI row against the TOTALVI of its set, and the median per depth."""
    import argparse

    report = load_script("benchmarks/_scaling_report.py", "_scaling_report")
    frame = _go_rows(sets=True)
    ratios = report.set_ratios(frame)
    assert ratios == {("full", 3): [1.0, 0.9], ("full", 4): [0.8, 0.9]}  # set 2's TOTALVI is half as fast as set 1's
    args = argparse.Namespace(argv=["--go-sets", "2"], accelerator="cpu", batch_size=128, go_cells=2000, go_epochs=10)
    path = tmp_path / "scaling_go.md"
    report.write_go_md(path, frame, args)
    text = path.read_text()
    assert "| full | 3 | 1.00 / 0.90 | 0.95 |" in text and "| full | 4 | 0.80 / 0.90 | 0.85 |" in text
    assert text.count("TOTALVI (reference)") == 2  # one reference line per set
    single = _go_rows(sets=False)
    assert report.set_ratios(single) == {("full", 3): [1.0], ("full", 4): [0.8]}  # no set column: one TOTALVI row
    report.write_go_md(path, single, args)
    text = path.read_text()
    assert "per set" not in text and text.count("TOTALVI (reference)") == 1
    assert "| full | 4 |" in text and "0.80" in text


def test_scaling_refuses_fewer_than_one_go_set(load_script, monkeypatch):
    scaling = load_script("benchmarks/scaling.py")
    monkeypatch.setattr("sys.argv", ["scaling.py", "--axes", "go", "--go-sets", "0"])
    with pytest.raises(SystemExit, match="--go-sets must be at least 1"):
        scaling.main()
