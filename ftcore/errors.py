"""User-facing errors.

Anything a user can fix (a bad config value, a malformed data file, a checkpoint that does not match)
raises a subclass of :class:`FtcoreError` with one actionable sentence that names the file, line or
key. Scripts turn these into a single line on stderr and exit code 2; every other exception is a bug
and keeps its traceback (exit code 1).
"""

from __future__ import annotations

import os


class FtcoreError(Exception):
    """Base class of errors caused by user input; the message is shown to the user as is."""


class ConfigError(FtcoreError):
    """A configuration key has a wrong or missing value."""


class CheckpointError(FtcoreError):
    """A model or training checkpoint is missing, corrupt, or does not match the model."""


class DataError(FtcoreError):
    """A data file is missing or malformed.

    Args:
        path: the file at fault.
        message: what is wrong and what was expected.
        line: 1-based line number (or CSV record number) where it applies, if any.
    """

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        location = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{location}: {message}")
