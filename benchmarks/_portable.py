"""Paths and commands as the stored results record them: without the absolute paths of the machine that ran them.

A result table names its input files and the command that made it; the same run on another machine should record
the same text. :func:`portable_path` writes a path inside the checkout relative to it (``benchmarks/results``), one
in the temporary folder as ``<tmp>/...``, one in the home folder as ``~/...``, any other absolute path as
``.../name``; names the caller passes (``{"<work-dir>": args.work_dir}``) come first. :func:`portable_command` applies
it to every word of a command line (``--out-dir=/x`` too), :func:`portable_text` to free text (a log, a JSON dump).
``tests/test_repository_paths.py`` fails on any tracked file that names an absolute machine path.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _roots(names: Mapping[str, os.PathLike | str] | None = None) -> list[tuple[str, str]]:
    """(absolute folder, its portable name) pairs, most specific first (the checkout may lie in the temp folder)."""
    roots = [(name, folder) for name, folder in (names or {}).items()]
    roots += [(".", REPO), ("<tmp>", tempfile.gettempdir()), ("<tmp>", "/tmp"), ("~", Path.home())]
    pairs = []
    for name, folder in roots:
        for form in {os.path.abspath(os.path.expanduser(folder)), os.path.realpath(os.path.expanduser(folder))}:
            if form != os.sep:
                pairs.append((form, name))
    return sorted(pairs, key=lambda pair: -len(pair[0]))  # longest (innermost) folder first, stable otherwise


def portable_path(path: os.PathLike | str, names: Mapping[str, os.PathLike | str] | None = None) -> str:
    """``path`` without the machine's absolute location.

    Parameters
    ----------
    path
        A file or folder; relative paths (``benchmarks/results``) and ``~/...`` are returned as given.
    names
        Placeholder -> folder, tried before the checkout, the temporary folder and the home folder, e.g.
        ``{"<work-dir>": args.work_dir}``.

    Returns
    -------
    ``a/b`` inside the checkout (``.`` for the checkout itself), ``<name>/a/b`` inside a named folder, ``<tmp>/a/b``,
    ``~/a/b``, else ``.../<file name>``.
    """
    text = os.fspath(path)
    if not os.path.isabs(text):
        return text
    absolute = os.path.abspath(text)
    for folder, name in _roots(names):
        if absolute == folder or absolute.startswith(folder + os.sep):
            rest = Path(os.path.relpath(absolute, folder)).as_posix()
            if name == ".":
                return rest
            return name if rest == "." else f"{name}/{rest}"
    return f".../{Path(absolute).name}"


def portable_command(words: Iterable[str], names: Mapping[str, os.PathLike | str] | None = None) -> str:
    """A command line (e.g. ``sys.argv``) as one string, each absolute path in it through :func:`portable_path`.

    Parameters
    ----------
    words
        The command's words; ``--option=/a/path`` keeps its option.
    names
        As in :func:`portable_path`.

    Returns
    -------
    The words joined by spaces.
    """
    out = []
    for word in map(str, words):
        option, equals, value = word.partition("=") if word.startswith("--") else ("", "", word)
        out.append(f"{option}{equals}{portable_path(value, names) if os.path.isabs(value) else value}")
    return " ".join(out)


def portable_text(text: str, names: Mapping[str, os.PathLike | str] | None = None) -> str:
    """``text`` with every occurrence of the known folders (named, checkout, temp, home) replaced by its name.

    Parameters
    ----------
    text
        Free text: a log, a JSON dump.
    names
        As in :func:`portable_path`.

    Returns
    -------
    The text, the checkout written as ``<repository>`` (a path inside it loses its leading part only in
    :func:`portable_path`, where the whole word is known to be a path).
    """
    for folder, name in _roots(names):
        # the folder itself or a path below it, not a longer name that starts alike (/tmp, not /tmpfs)
        short = "<repository>" if name == "." else name
        text = re.sub(re.escape(folder) + r"(?![\w.-])", short.replace("\\", "\\\\"), text)
    return text
