"""User-facing errors.

Anything a user can fix (a wrong model name, a missing file, a bad option) raises a
``MyopiaError`` whose message is one line naming what was wrong and what to do. The CLI
prints that line and exits non-zero; programming errors keep their tracebacks.
"""


class MyopiaError(Exception):
    """A problem the user can fix; ``str(err)`` is a one-line explanation."""


class ModelNotFoundError(MyopiaError):
    """The model spec names nothing that can be loaded."""


class CorruptFileError(MyopiaError):
    """A file exists but cannot be read as what it claims to be."""


class OfflineError(MyopiaError):
    """A hub download was needed but no network is reachable."""


class UnsupportedModelError(MyopiaError):
    """The model's architecture does not support the requested feature."""
