"""Everything that depends on how ``kfp.local`` works inside, in one place, written for kfp :data:`KFP_VERSION`.

``ranker run`` relies on three things kfp does not promise:

* its log lines: ``Executing task 'x'``, ``Task 'x' finished with status SUCCESS``, ``Task 'x' cache hit``
  (:func:`parse_log_line` turns them into :class:`StepEvent`);
* its cache: one JSON file per entry under ``<pipeline_root>/.kfp_cache`` that holds each output
  artifact's ``uri``, ``schema_title`` and ``metadata``, and an entry whose local artifact file is missing
  is a miss (:func:`materialize_metrics`, :func:`forget_cache_of_other_code`);
* its warnings about resources and base images, which mean nothing for a local run (:func:`quiet_warnings`).

``tests/pipelines/test_kfp_local.py`` pins :data:`KFP_VERSION`: on another kfp version it fails, so an
upgrade is reviewed against this module before it is merged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

KFP_VERSION = "2.17.0"  # the kfp whose log lines and cache layout this module reads
CACHE_FOLDER = ".kfp_cache"
CODE_DIGEST_FILE = "CODE_DIGEST"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '(?P<name>[^']+)'")
_FINISHED = re.compile(r"Task '(?P<name>[^']+)' finished with status (?P<status>[A-Z]+)")
_CACHED = re.compile(r"Task '?(?P<name>[^' ]+)'? cache hit")


@dataclasses.dataclass(frozen=True)
class StepEvent:
    """A step started, finished (``status``: kfp's, e.g. ``SUCCESS``, ``FAILURE``) or was reused from the cache."""

    kind: Literal["started", "finished", "cached"]
    step: str
    status: str = ""


def parse_log_line(message: str) -> StepEvent | None:
    """The step event a ``kfp.local`` log line reports, or ``None``.

    >>> parse_log_line("Task 'train-mmoe' finished with status SUCCESS")
    StepEvent(kind='finished', step='train-mmoe', status='SUCCESS')
    """
    message = _ANSI.sub("", message)
    if started := _STARTED.search(message):
        return StepEvent("started", started["name"])
    if finished := _FINISHED.search(message):
        return StepEvent("finished", finished["name"], finished["status"])
    if cached := _CACHED.search(message):
        return StepEvent("cached", cached["name"], "CACHED")
    return None


def init(pipeline_root: Path, docker: bool, enable_caching: bool) -> None:
    """``kfp.local.init``: every step a subprocess of this virtual environment, or (``docker``) a container of
    the project image run as the caller, so the steps can write to the pipeline root."""
    from kfp import local

    if docker:
        runner = local.DockerRunner(user=f"{os.getuid()}:{os.getgid()}")
    else:
        runner = local.SubprocessRunner(use_venv=False)
    local.init(runner=runner, pipeline_root=str(pipeline_root), enable_caching=enable_caching, raise_on_error=True)


@contextlib.contextmanager
def caller_folder_not_imported() -> Iterator[None]:
    """Steps started inside run without the caller's folder on their ``sys.path``.

    A SubprocessRunner step runs ``python -m kfp.dsl.executor_main`` in the caller's folder, which ``-m`` puts
    first on the step's ``sys.path``: a ``proto.py`` or ``json.py`` there would shadow what the step imports.
    Python 3.11's ``PYTHONSAFEPATH`` leaves it out (the project is imported from this virtual environment).
    """
    before = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = before


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Silence kfp.local's warnings that do not apply to a local run of this project."""
    with warnings.catch_warnings():
        # Resources are declared for Vertex AI and KFP; a local runner ignores them, as expected.
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner")
        # The steps' image is the project's; its packages are this virtual environment's.
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
        yield


def cache_root(pipeline_root: Path) -> Path:
    """Where ``kfp.local`` keeps its cache entries."""
    return pipeline_root / CACHE_FOLDER


def forget_cache_of_other_code(cache: Path, code_digest: str) -> bool:
    """Empty ``kfp.local``'s cache when it was filled by other code; whether it was emptied.

    ``kfp.local`` keys a step by its component, image name, command and inputs,
    but the project image keeps its name while the library code the steps call
    changes, so a cached step could hide a code change. The cache folder records
    the digest of the code that filled it, written only when it changes: a run of
    unchanged code writes nothing here.
    """
    stamp = cache / CODE_DIGEST_FILE
    recorded = stamp.read_text().strip() if stamp.is_file() else None
    if recorded == code_digest:
        return False
    stale = cache.is_dir()
    if stale:
        shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    stamp.write_text(code_digest + "\n")
    return stale


def materialize_metrics(cache: Path) -> int:
    """Write every cached ``Metrics`` artifact's values to its file; returns how many were written.

    A ``Metrics`` artifact lives in its metadata and ``kfp.local`` never writes
    its file, but its cache treats an entry whose local artifact file is
    missing as a miss: without the file no step that logs metrics would ever
    be reused. The file gets the metrics as JSON, which is what the artifact holds.
    ``run_locally`` calls it before and after every run, failed or not: a
    run that stopped at ``evaluate`` without it would recompute every step
    (extraction first, so everything downstream) when rerun.
    """
    written = 0
    for entry in sorted(cache.glob("*.json")):
        try:
            outputs = json.loads(entry.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # kfp.local itself treats an unreadable entry as a miss
        for artifact in outputs.values():
            if not isinstance(artifact, dict) or artifact.get("schema_title") != "system.Metrics":
                continue
            path = Path(str(artifact.get("uri", "")))
            if path.is_absolute() and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(artifact.get("metadata") or {}, indent=2, sort_keys=True))
                written += 1
    return written
