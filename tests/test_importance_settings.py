"""``ImportanceSettings``: the importance options held once; checks on construction, keyword overrides, unknown names.

Model-free; the entry points' use of it (same table, overrides, errors before the inference pass) is tested in
``test_interpret.py``, ``test_interpret_requests.py`` and ``test_tl.py``.
"""

from __future__ import annotations

import dataclasses

import pytest

from scvi_networkvi.interpret import PERTURBATION_SETTINGS, ImportanceSettings


def test_defaults_are_the_entry_points_former_defaults():
    settings = ImportanceSettings()
    assert settings.reference == "rest" and settings.node_types == ("go_term",)
    assert (settings.heldout_size, settings.C, settings.class_weight) == (0.3, 1.0, "balanced")
    assert (settings.min_cells, settings.level) == (5, 0.95)
    assert (settings.batch_size, settings.device) == (256, None)


def test_default_ranks_by_specificity_against_100_random_sets():
    settings = ImportanceSettings()
    assert (settings.null_sets, settings.rank_by, settings.rank_min_genes) == (100, None, 5)
    assert settings.ranking == "specificity" and settings.needs_gene_activations
    without = ImportanceSettings(null_sets=0)
    assert without.ranking == "auroc" and not without.needs_gene_activations
    assert ImportanceSettings(rank_by="auroc").ranking == "auroc"
    genes_only = ImportanceSettings(node_types=("gene",))  # random sets are a reference of GO terms only
    assert genes_only.term_null_sets == 0 and genes_only.ranking == "auroc" and genes_only.needs_gene_activations


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ImportanceSettings().C = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"node_types": ["pathway"]}, "node_types must be a non-empty subset"),
        ({"node_types": []}, "node_types must be a non-empty subset"),
        ({"node_types": "gene"}, "node_types must be a non-empty subset"),
        ({"node_types": ["gene_group"]}, "need gene_groups"),
        ({"gene_groups": {"g": ["A", "B"]}}, "needs 'gene_group' in node_types"),
        ({"heldout_size": 1.0}, "heldout_size must be strictly between 0 and 1"),
        ({"heldout_size": 0}, "heldout_size must be strictly between 0 and 1"),
        ({"class_weight": "auto"}, "class_weight must be None or 'balanced'"),
        ({"C": 0}, "C must be positive"),
        ({"min_cells": 1}, "min_cells must be at least 2"),
        ({"level": 95}, "level must be strictly between 0 and 1"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"null_sets": -1}, "null_sets must be a non-negative integer"),
        ({"null_sets": True}, "null_sets must be a non-negative integer"),
        ({"rank_by": "pval"}, "rank_by must be 'specificity', 'auroc' or None"),
        ({"rank_by": "specificity", "null_sets": 0}, r"pass null_sets > 0 \(e.g. 100\), or rank_by='auroc'"),
        ({"rank_min_genes": 0}, "rank_min_genes must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer or None"),
        ({"seed": 1.5}, "seed must be a non-negative integer or None"),
        ({"device": "tpu9"}, "is not a torch device"),
        ({"device": "mps"}, "need float64"),
    ],
)
def test_bad_fields_fail_on_construction_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        ImportanceSettings(**fields)


def test_replace_checks_again():
    with pytest.raises(ValueError, match="C must be positive"):
        dataclasses.replace(ImportanceSettings(), C=-1.0)


def test_merge_keyword_overrides_a_field_and_keeps_the_others():
    base = ImportanceSettings(C=0.5, targets=["B"], seed=3)
    merged = ImportanceSettings.merge(base, {"C": 2.0}, function="get_importances")
    assert (merged.C, merged.targets, merged.seed) == (2.0, ["B"], 3)
    assert base.C == 0.5  # the caller's object is left as it was
    assert ImportanceSettings.merge(base, {}, function="get_importances") is base
    assert ImportanceSettings.merge(None, {}, function="get_importances") == ImportanceSettings()


def test_merge_checks_the_overridden_value():
    with pytest.raises(ValueError, match="min_cells must be at least 2"):
        ImportanceSettings.merge(ImportanceSettings(), {"min_cells": 0}, function="get_importances")


def test_unknown_keyword_is_a_type_error_naming_it_and_the_valid_names():
    with pytest.raises(TypeError, match=r"get_importances\(\) got unexpected keyword argument\(s\) 'heldout'") as err:
        ImportanceSettings.merge(None, {"heldout": 0.2, "C": 2.0}, function="get_importances")
    assert "heldout_size" in str(err.value) and "null_sets" in str(err.value)


def test_settings_of_another_type_are_refused():
    with pytest.raises(TypeError, match="settings must be an ImportanceSettings, got dict"):
        ImportanceSettings.merge({"C": 2.0}, {}, function="get_importances")  # type: ignore[arg-type]


def test_perturbation_accepts_only_its_fields():
    assert {"cells_with", "gene_groups", "null_sets", "rank_by", "rank_min_genes"}.isdisjoint(PERTURBATION_SETTINGS)
    assert {"targets", "C", "seed", "device", "batch_size"} <= PERTURBATION_SETTINGS
    with pytest.raises(TypeError, match="'null_sets'") as err:
        ImportanceSettings.merge(
            None, {"null_sets": 3}, function="get_perturbation_importances", accepted=PERTURBATION_SETTINGS
        )
    assert "cells_with" not in str(err.value).split(":", 1)[1]
    with pytest.raises(ValueError, match=r"does not use the settings \['cells_with'\]"):
        ImportanceSettings.merge(
            ImportanceSettings(cells_with=["rna"]),
            {},
            function="get_perturbation_importances",
            accepted=PERTURBATION_SETTINGS,
        )
    # the importance table's reference and rank: an importance run's settings object passes, they are ignored
    table_settings = ImportanceSettings(null_sets=3, rank_by="auroc")
    assert (
        ImportanceSettings.merge(
            table_settings, {}, function="get_perturbation_importances", accepted=PERTURBATION_SETTINGS
        )
        is table_settings
    )
    kept = ImportanceSettings.merge(
        ImportanceSettings(C=3.0), {"seed": 1}, function="get_perturbation_importances", accepted=PERTURBATION_SETTINGS
    )
    assert (kept.C, kept.seed) == (3.0, 1)


def test_default_seed_is_fixed_not_the_training_seed(monkeypatch):
    import scvi

    monkeypatch.setattr(scvi.settings, "seed", 7)  # a model trained with seed 7 is still probed on seed 0's split
    assert ImportanceSettings().seed == 0
    assert ImportanceSettings().run_seed() == 0
    assert ImportanceSettings(seed=2).run_seed() == 2


def test_seed_none_falls_back_to_scvi_settings(monkeypatch):
    import scvi

    monkeypatch.setattr(scvi.settings, "seed", 7)
    assert ImportanceSettings(seed=None).run_seed() == 7
    monkeypatch.setattr(scvi.settings, "seed", None)
    assert ImportanceSettings(seed=None).run_seed() == 0
