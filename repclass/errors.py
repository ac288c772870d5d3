"""Errors that reach the user.

Library code raises these; only the CLI turns them into exit codes. Every message names the
file (and row, where one applies), says what is wrong, and says what to do about it.
"""
from __future__ import annotations

from pathlib import Path


class RepclassError(Exception):
    """Base class: bad input or a request that cannot be honoured (CLI exit code 1)."""

    exit_code = 1


class InputFileError(RepclassError):
    """A repertoire file or sample sheet that cannot be read as it is."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None) -> None:
        where = f"{path}" if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


class SheetError(InputFileError):
    """The sample sheet and the repertoire files disagree, or the sheet is malformed."""


class StoreError(RepclassError):
    """A repertoire store that is missing, incomplete, corrupt or incompatible."""


class ModelFileError(RepclassError):
    """A model file that cannot be loaded or does not fit the data it is applied to."""


class OutputExistsError(RepclassError):
    """An output exists already and --force was not given."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path}: output exists already; pass --force to replace it")
        self.path = str(path)


class UsageError(RepclassError):
    """Options that contradict each other or the data (CLI exit code 2)."""

    exit_code = 2


class OutputError(RepclassError):
    """An output that cannot be written where it was asked for (missing or unwritable folder)."""


class OutputLockedError(RepclassError):
    """Another process is writing the same output right now."""


def excerpt(value: object, limit: int = 60) -> str:
    """A short, escaped quotation of user data for a message: repr() escapes terminal control
    codes and other unprintable characters, and long values (binary garbage, a 1 MB header line)
    are cut to `limit` characters."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="backslashreplace")
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)


def shorten(text: str, limit: int = 200) -> str:
    """Like `excerpt`, without quotes: for listings (a header's column names) inside a message."""
    cleaned = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + f"... ({len(cleaned)} characters)"


class LabelError(RepclassError):
    """Labels that cannot train a model (none at all, one class only): a data problem, exit 1."""
