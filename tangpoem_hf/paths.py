"""Telling a local path from a Hub id, the same way for models and corpora."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Folders this project writes into (run folders): ``runs/x`` is a local path even before ``runs/`` exists.
LOCAL_PREFIXES = ("runs",)


def is_missing_local_path(source: str) -> bool:
    """A path that does not exist, as opposed to a Hub id such as ``user/name``.

    Anything that cannot be a Hub id is local: an absolute path, ``.``/``~`` at the start, a
    backslash, or more than one slash. ``a/b`` is local too when ``a`` exists here (a typo under
    an existing folder, e.g. ``runs/nonexistent``) or is a known run-folder prefix; otherwise it is a
    Hub id. So a typo fails at once with the folder named, instead of after the Hub's retries.
    """
    if os.path.exists(source):
        return False
    if os.path.isabs(source) or source.startswith((".", "~")) or source.count("/") > 1 or "\\" in source:
        return True
    first = source.split("/", 1)[0]
    return "/" in source and (first in LOCAL_PREFIXES or os.path.isdir(first))


def portable_path(path: str | None) -> str | None:
    """A path as a record that travels with a model (training.json, the card) may hold it: as given
    when relative (and Hub ids unchanged); an absolute one under the working directory relative to
    it, else only its last part (a corpus by its root folder's name). Never one machine's layout."""
    if not path or not os.path.isabs(path):
        return path
    try:
        return os.path.relpath(path, os.getcwd()) if Path(path).is_relative_to(Path.cwd()) else Path(path).name
    except ValueError:  # another drive on Windows
        return Path(path).name


def portable_record(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, text) with every absolute path made :func:`portable_path`."""
    if isinstance(value, dict):
        return {key: portable_record(item) for key, item in value.items()}
    if isinstance(value, list):
        return [portable_record(item) for item in value]
    return portable_path(value) if isinstance(value, str) and os.path.isabs(value) else value
