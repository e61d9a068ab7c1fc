"""The constructor's wiring settings: one shared :class:`WiringConfig` and per-modality overrides of its fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from scvi_networkvi.wiring import Wiring, WiringConfig, compile_wirings

#: Field names the constructor takes as keywords (``go_size`` is ``term_size``); ``max_depth`` is the model's
#: ``n_layers_encoder`` and ``root_size`` its ``n_hidden``.
KEYWORD_FIELDS: dict[str, str] = {
    **{f.name: f.name for f in dataclasses.fields(WiringConfig) if f.name not in ("max_depth", "root_size")},
    "go_size": "term_size",
}


def wiring_config(
    config: WiringConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any], max_depth: int
) -> WiringConfig:
    """The wiring settings: ``config``'s fields, ``overrides`` over them, ``max_depth`` the model's depth."""
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, WiringConfig):
        base = dataclasses.asdict(config)
        if base["max_depth"] == WiringConfig.max_depth:  # the dataclass default is no choice of the user's
            del base["max_depth"]
    elif isinstance(config, Mapping):
        base = dict(config)
        names = [f.name for f in dataclasses.fields(WiringConfig)]
        unknown = [name for name in base if name not in names]
        if unknown:
            raise TypeError(f"wiring_config has no field(s) {unknown}; the fields of WiringConfig are: {names}.")
    else:
        raise TypeError(f"wiring_config must be a WiringConfig, a mapping of its fields or None, got {config!r}.")
    if base.get("max_depth", max_depth) != max_depth:
        raise ValueError(
            f"wiring_config's max_depth={base['max_depth']} differs from n_layers_encoder={max_depth}: the GO depth "
            "is n_layers_encoder; set that instead."
        )
    return WiringConfig(**{**base, **overrides, "max_depth": max_depth})


def check_overrides(value: Any, roles: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """``wiring_by_modality`` checked in the constructor's words: ``{role: {field: value}}`` with canonical names.

    Without ``roles`` (before the data is read) only its form and field names are checked.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"wiring_by_modality must map modality roles to wiring fields, e.g. {{'atac': {{'gene_size': 1}}}}; "
            f"got {value!r}."
        )
    unknown = [] if roles is None else [role for role in value if role not in roles]
    if unknown:
        raise ValueError(
            f"wiring_by_modality names {unknown}, which this model does not have; its modality roles are {list(roles)}."
        )
    checked: dict[str, dict[str, Any]] = {}
    for role, fields in value.items():
        if not isinstance(fields, Mapping):
            raise TypeError(f"wiring_by_modality[{role!r}] must be a mapping of wiring fields, got {fields!r}.")
        bad = [name for name in fields if name not in KEYWORD_FIELDS]
        if bad:
            raise TypeError(
                f"wiring_by_modality[{role!r}] has no field(s) {bad}; the per-modality fields are: "
                f"{', '.join(KEYWORD_FIELDS)} (the GO depth and root width are the model's n_layers_encoder and "
                "n_hidden, shared by every modality)."
            )
        checked[role] = {KEYWORD_FIELDS[name]: v for name, v in fields.items()}
    return checked


def modality_configs(
    config: WiringConfig, overrides: Mapping[str, Mapping[str, Any]], roles: Sequence[str]
) -> dict[str, WiringConfig]:
    """Each role's wiring settings: ``config`` with that role's overrides (checked by :func:`check_overrides`)."""
    configs = {}
    for role in roles:
        try:
            configs[role] = dataclasses.replace(config, **overrides.get(role, {}))
        except (TypeError, ValueError) as error:
            raise ValueError(f"wiring_by_modality[{role!r}]: {error}") from None
    return configs


def compile_per_config(
    features: Mapping[str, Sequence[Any]],
    configs: Mapping[str, WiringConfig],
    *,
    feature_names: Mapping[str, Sequence[str]],
    **files: Any,
) -> dict[str, Wiring]:
    """One :class:`Wiring` per role; the roles that share their settings are compiled in one call.

    Each call parses the files once; the wiring cache keeps every role's result.
    """
    groups: dict[WiringConfig, list[str]] = {}
    for role in features:
        groups.setdefault(configs[role], []).append(role)
    compiled: dict[str, Wiring] = {}
    for config, group in groups.items():
        compiled.update(
            compile_wirings(
                {role: features[role] for role in group},
                config=config,
                feature_names={role: feature_names[role] for role in group},
                **files,
            )
        )
    return {role: compiled[role] for role in features}


def resolve_dense_modalities(
    value: str | Sequence[str] | None,
    roles: Sequence[str],
    *,
    encoder: str,
    wirings: Mapping[str, Any] | None,
    default: Sequence[str],
) -> tuple[str, ...]:
    """The roles that get scvi-tools' dense encoder in a GO model, checked in the constructor's words.

    ``value`` is the user's ``dense_modalities`` (``None``: ``default``, the data type's rule). Given ``wirings``
    (a saved model, or the user's precompiled ones) the dense roles are those without a wiring: a saved model always
    carries its wirings, so one saved before this option loads with every modality it wired. ``encoder="dense"``
    models have no wired roles, so none is listed.
    """
    if value is not None:
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, Sequence) or not all(isinstance(role, str) for role in value):
            raise TypeError(f"dense_modalities must be a sequence of modality roles, e.g. ('atac',); got {value!r}.")
        value = tuple(dict.fromkeys(value))
        unknown = [role for role in value if role not in roles]
        if unknown:
            raise ValueError(
                f"dense_modalities names {unknown}, which this model does not have; its modality roles are "
                f"{list(roles)}."
            )
        if value and encoder != "go":
            raise ValueError(
                f"dense_modalities={value} picks modalities to keep dense in a GO model, but encoder={encoder!r} "
                "makes every encoder dense: leave dense_modalities out."
            )
        if value and set(value) >= set(roles):
            raise ValueError(
                f"dense_modalities={value} lists every modality of the model: use encoder='dense' for a model "
                "without GO wiring."
            )
    if encoder != "go":
        return ()
    if wirings is not None:
        unwired = tuple(role for role in roles if role not in wirings)
        if value is not None and set(value) != set(unwired):
            raise ValueError(
                f"dense_modalities={value} disagrees with the given wirings, which leave {unwired} without a wiring "
                "(those get the dense encoder): leave dense_modalities out or give wirings for the others only."
            )
        return unwired
    return value if value is not None else tuple(role for role in default if role in roles)
