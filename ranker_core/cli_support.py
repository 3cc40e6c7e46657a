"""What every ``ranker`` subcommand shares, at the bottom of the import graph.

* :class:`UserError`: a mistake the user can fix (a missing path, a bad spec,
  no registry where one is expected). The ``ranker`` entry point prints it as
  one line, ``ranker <command>: <message>``, and exits with status 2; any other
  exception is a bug and keeps its traceback.
* :func:`require_path`: fail early, as a :class:`UserError`, on a local path that does not exist.
* :func:`deprecated`: the one-line warning of a renamed flag or environment variable.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Schemes of remote stores: their paths are checked by the step that reads them.
REMOTE_SCHEMES = ("gs://", "bq://", "s3://", "http://", "https://")


class UserError(Exception):
    """An error in what the user asked for; shown without a traceback. Example::

    raise UserError("--examples /no/such/dir: no such folder")
    """


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the command reads is not there (a ``FileNotFoundError`` too)."""


class InvalidValueError(UserError, ValueError):
    """A bad value given by the user (a ``ValueError`` too, for callers that catch those)."""


def first_few(items: list[str], most: int) -> str:
    """Up to ``most`` items for a message, and how many more there are.

    >>> first_few(["a.csv", "b.csv", "c.csv"], 2)
    'a.csv, b.csv and 1 more'
    """
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def require_path(path: str, flag: str) -> str:
    """``path`` if it exists or is remote; else a :class:`UserError` naming ``flag``."""
    if path.startswith(REMOTE_SCHEMES) or Path(path).exists():
        return path
    raise UserError(f"{flag} {path}: no such file or folder")


def deprecated(old: str, new: str) -> None:
    """Print the one-line deprecation warning of a renamed flag or variable on stderr."""
    print(f"ranker: warning: {old} is deprecated, use {new}", file=sys.stderr)
