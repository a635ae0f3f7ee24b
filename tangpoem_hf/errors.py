"""The package's documented exceptions.

Every user mistake is raised once, at the boundary, as one of these. The CLI turns them into exit
code 2 and the app into ``gr.Error``; both show only the message, never a traceback.
"""


class TangPoemError(ValueError):
    """Base class: a problem the user can fix, described in one sentence."""


class InputError(TangPoemError):
    """Bad user input: characters, form, line count or sampling settings."""


class ModelFileError(TangPoemError):
    """A model folder that is missing a file, or holds a broken or mismatched one."""


class CorpusError(TangPoemError):
    """A corpus location that cannot be read as chinese-poetry JSON."""
