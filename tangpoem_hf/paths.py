"""Telling a local path from a Hub id, the same way for models and corpora."""

from __future__ import annotations

import os

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
