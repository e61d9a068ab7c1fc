"""Option checks shared by the encoder, the module and the model: allowed values and keyword defaults."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def check_choices(options: Mapping[str, Any], choices: Mapping[str, Sequence[Any]]) -> None:
    """Raise a ValueError, naming the option and its allowed values, for a value of ``options`` outside ``choices``.

    Parameters
    ----------
    options
        Option name -> value; names without an entry in ``choices`` are not checked.
    choices
        Option name -> its allowed values.
    """
    for name, allowed in choices.items():
        if name in options and options[name] not in allowed:
            words = [repr(v) for v in allowed]
            text = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
            raise ValueError(f"{name} must be {text}, got {options[name]!r}.")


def keyword_defaults(function: Any, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The keyword parameters of ``function`` (a class: its ``__init__``) with a default, and those defaults."""
    skip = set(exclude)
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not p.empty and name not in skip
    }
