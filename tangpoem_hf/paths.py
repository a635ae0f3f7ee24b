"""Telling a local path from a Hub id, the same way for models and corpora."""

from __future__ import annotations

import os


def is_missing_local_path(source: str) -> bool:
    """A path that does not exist, as opposed to a Hub id such as ``user/name`` (one slash, no prefix)."""
    if os.path.exists(source):
        return False
    return os.path.isabs(source) or source.startswith((".", "~")) or source.count("/") > 1 or "\\" in source
