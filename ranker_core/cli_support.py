"""What every ``ranker`` subcommand shares, at the bottom of the import graph.

* :class:`UserError`: a mistake the user can fix (a missing path, a bad spec,
  no registry where one is expected). The ``ranker`` entry point prints it as
  one line, ``ranker <command>: <message>``, and exits with status 2; any other
  exception is a bug and keeps its traceback.
* :func:`require_path`: fail early, as a :class:`UserError`, on a local path that does not exist.
* :func:`writable_file`: fail early, as a :class:`UserError`, on an output file path that cannot be written.
* :func:`deprecated`: the one-line warning of a renamed flag or environment variable.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
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


def writable_file(out: str, flag: str = "--out", example: str = "out.txt") -> Path:
    """``out`` as a path if a file can be written there; else a one-line :class:`UserError` naming ``flag``.

    Call it before the work whose result goes to ``out``, so a path that cannot be written loses nothing::

        out = writable_file(args.out, example="tuned.json")  # a folder, no such folder, or not writable: UserError
        ...                                                   # the work
        out.write_text(result)

    Refused: a folder (the message suggests ``example`` in it), a parent folder that does not exist, and a
    folder or existing file that is not writable. Writability is tried, not only asked of ``os.access`` (which
    says yes to root on read-only mounts, sysfs, NFS): a file is created in the folder and removed, or an
    existing file opened for appending (nothing is written to it). Still, write the result with a one-line
    error for an ``OSError``: the file system can change in between.
    """
    path = Path(out)
    folder = path.parent
    if path.is_dir():
        raise UserError(f"{flag} {out}: is a folder; give a file in it, e.g. {path / example}")
    if not folder.is_dir():
        raise UserError(f"{flag} {out}: no such folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {out}: folder {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {out}: file is not writable")
    try:
        if not path.exists():
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".probe"):
                pass
        elif path.is_file():
            with path.open("a"):
                pass
    except OSError as error:
        what = f"folder {folder}" if not path.exists() else "file"
        raise UserError(f"{flag} {out}: {what} is not writable ({error.strerror or error})") from None
    return path


def deprecated(old: str, new: str) -> None:
    """Print the one-line deprecation warning of a renamed flag or variable on stderr."""
    print(f"ranker: warning: {old} is deprecated, use {new}", file=sys.stderr)


def require_folder(path: str | Path, flag: str) -> str | Path:
    """``path`` when it is a local folder; else a :class:`MissingInputError` naming ``flag``.

    >>> require_folder("/no/such/dir", "--examples")
    Traceback (most recent call last):
    ranker_core.cli_support.MissingInputError: --examples /no/such/dir: no such folder
    """
    if not Path(path).exists():
        raise MissingInputError(f"{flag} {path}: no such folder")
    if not Path(path).is_dir():
        raise MissingInputError(f"{flag} {path}: a file, not a folder")
    return path


def writable_folder(folder: Path) -> Path:
    """``folder``, created if missing; ``OSError`` naming it when it cannot be created or written."""
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    return folder


def write_problem(error: OSError) -> str:
    """What stopped a folder from being made or written, naming the path: ``/w/pipeline_root: Permission
    denied``, or the file in the way of a folder: ``/w is a file, not a folder``."""
    path = Path(error.filename) if error.filename else None
    if path is not None and error.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((part for part in (path, *path.parents) if part.exists() and not part.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    return f"cannot write {path or 'the folder'}: {error.strerror or error}"
