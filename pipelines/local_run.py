"""Run the whole DAG on this machine with ``kfp.local``, step by step, and collect what it produced.

``SubprocessRunner(use_venv=False)`` runs every step as a subprocess of this
virtual environment (no cluster, no containers); ``docker=True`` runs each step
in the project image with ``DockerRunner``. ``kfp.local`` caches a step's
outputs under ``<work_dir>/pipeline_root/.kfp_cache`` keyed by its component,
image, command and inputs, so a rerun with the same inputs reuses them (see
:func:`materialize_metrics` for what that takes with ``Metrics`` outputs)::

    result = run_locally(PipelineSettings.from_env(n_impressions=20_000))
    result.blessed, result.registered, result.outputs["report"]
    print(format_summary(result))
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from components.registry.core import RegisteredVersion, model_digest, open_backend
from pipelines.config import PipelineSettings
from pipelines.step_output import StepOutput
from trainer.progress import EpochReport

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '(?P<name>[^']+)'")
_FINISHED = re.compile(r"Task '(?P<name>[^']+)' finished with status (?P<status>[A-Z]+)")
_CACHED = re.compile(r"Task '?(?P<name>[^' ]+)'? cache hit")


@dataclasses.dataclass
class StepRecord:
    """One step of a run: its status and how long it took."""

    name: str
    status: str = "RUNNING"
    started: float = dataclasses.field(default_factory=time.monotonic)
    seconds: float = 0.0


class PlainConsole:
    """Progress as plain lines: readable in a log file or a CI job (no escape codes)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def line(self, text: str) -> None:
        """A line that stays."""
        print(text, file=self.stream, flush=True)

    def status(self, text: str) -> None:
        """What the running step is doing: a line of its own here."""
        self.line(text)

    def clear_status(self) -> None:
        """The running step ended."""


class LiveConsole(PlainConsole):
    """Progress on a terminal with ``rich``: lines that stay, and one live status line below them."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console

        super().__init__(stream)
        self.console = Console(file=stream, highlight=False)
        self._live: Any = None

    def line(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(text))

    def status(self, text: str) -> None:
        from rich.live import Live
        from rich.text import Text

        if self._live is None:
            # The steps' output is redirected to the step log: the live display must leave stdout alone.
            self._live = Live(console=self.console, transient=True, redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        self._live.update(Text(text, no_wrap=True, overflow="ellipsis"))  # one line, cut to the terminal's width

    def clear_status(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class StepProgress(logging.Filter):
    """Turns ``kfp.local``'s log lines into one progress line per step start and end, and training epochs.

    Installed as a filter on the root logger (where ``kfp.local`` logs), it
    records every step and prints ``HH:MM:SS step status duration``; with
    ``echo=False`` kfp's own lines are dropped (the steps' output still shows).
    :meth:`show_epoch` shows the training step's epochs: a live status line on
    a terminal (``rich``), plain lines otherwise (``live=None`` picks by ``stream.isatty()``).
    ``step_log`` (set by :func:`run_locally`) gets each step's header.

    Example::

        progress = StepProgress(sys.stderr)
        logging.getLogger().addFilter(progress)
    """

    def __init__(self, stream: TextIO | None = None, echo: bool = False, live: bool | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.echo = echo
        self.steps: dict[str, StepRecord] = {}
        self.running: str | None = None
        self.step_log: StepOutput | None = None
        live = self.stream.isatty() if live is None else live
        self.console = LiveConsole(self.stream) if live else PlainConsole(self.stream)

    def filter(self, record: logging.LogRecord) -> bool:
        message = _ANSI.sub("", record.getMessage())
        if started := _STARTED.search(message):
            self._start(started["name"])
        elif finished := _FINISHED.search(message):
            step = self.steps.setdefault(finished["name"], StepRecord(finished["name"]))
            step.status, step.seconds = finished["status"], time.monotonic() - step.started
            self._end(step.name, f"{step.status} in {format_duration(step.seconds)}")
        elif cached := _CACHED.search(message):
            self.steps[cached["name"]] = StepRecord(cached["name"], status="CACHED")
            self._end(cached["name"], "CACHED (inputs unchanged: outputs reused)")
        return self.echo

    def show_epoch(self, report: EpochReport) -> None:
        """Show a training epoch of the running step: ``train-mmoe  epoch 3/10  val ... (14.2 s/epoch)``."""
        self.console.status(self._format(self.running or "training", report.summary()))

    def _start(self, name: str) -> None:
        self.steps[name] = StepRecord(name)
        self.running = name
        if self.step_log is not None:
            self.step_log.begin_step(name)
        self.console.line(self._format(name, "started"))

    def _end(self, name: str, what: str) -> None:
        self.running = None
        self.console.clear_status()
        self.console.line(self._format(name, what))

    @staticmethod
    def _format(step: str, what: str) -> str:
        return f"[{time.strftime('%H:%M:%S')}] step {step:<22} {what}"


@dataclasses.dataclass
class LocalRunResult:
    """What a local run produced: the pipeline's outputs, its steps and the registered version."""

    settings: PipelineSettings
    outputs: dict[str, Any]
    steps: list[StepRecord]
    seconds: float
    registered: RegisteredVersion | None
    log_path: Path | None = None  # what the steps printed (None when it was echoed)

    @property
    def blessed(self) -> bool:
        return bool(self.outputs.get("blessed"))

    @property
    def latest_dir(self) -> Path:
        """Where the run's report, metrics and blessing were copied under readable names."""
        return Path(self.settings.work_dir).resolve() / "latest"

    def artifact_path(self, name: str) -> str:
        """The local path of one of the pipeline's output artifacts."""
        return str(self.outputs[name].path)


def run_locally(settings: PipelineSettings, progress: StepProgress | None = None) -> LocalRunResult:
    """Run the DAG with ``kfp.local``; a failed step raises ``RuntimeError`` naming it."""
    from kfp import local

    from pipelines.pipeline import build_pipeline

    if settings.training_backend != "pipeline":
        raise ValueError("a Vertex AI custom training job cannot run locally: use --training-backend pipeline")
    settings.check_evaluation()  # a wrong primary task fails now, not after the training
    # The image runs as a non-root user; run the steps as the caller so they can write to the pipeline root.
    docker_user = f"{os.getuid()}:{os.getgid()}"
    runner = local.DockerRunner(user=docker_user) if settings.docker else local.SubprocessRunner(use_venv=False)
    settings.pipeline_root_local.mkdir(parents=True, exist_ok=True)
    progress = progress or StepProgress()
    cache_root = settings.pipeline_root_local / ".kfp_cache"
    if settings.enable_caching:
        if forget_cache_of_other_code(cache_root):
            progress.console.line("The steps' code changed since the cached runs: every step runs again.")
        materialize_metrics(cache_root)  # a run killed before its end left entries without their Metrics files
    local.init(
        runner=runner,
        pipeline_root=str(settings.pipeline_root_local),
        enable_caching=settings.enable_caching,
        raise_on_error=True,
    )
    pipeline = build_pipeline(settings)
    root = logging.getLogger()
    level = root.level
    root.setLevel(min(level, logging.INFO))  # kfp.local reports cache hits at INFO
    root.addFilter(progress)
    started = time.monotonic()
    log_path = None if progress.echo else step_log_path(settings)
    try:
        with warnings.catch_warnings(), _steps_output_to(log_path, progress):
            # Resources are declared for Vertex AI and KFP; a local runner ignores them, as expected.
            warnings.filterwarnings("ignore", message=".*no effect in the current local runner")
            # The steps' image is the project's; its packages are this virtual environment's.
            warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
            task = pipeline(**settings.pipeline_arguments(local=True))
    except RuntimeError as error:
        if log_path is None:
            raise
        progress.console.line(_tail(log_path))
        raise RuntimeError(f"{error} (every step's output: {log_path})") from error
    finally:
        progress.console.clear_status()
        root.removeFilter(progress)
        root.setLevel(level)
        if settings.enable_caching:  # after a failed step too: the steps before it stay reusable
            materialize_metrics(cache_root)
    outputs = dict(task.outputs)
    publish_latest_report(outputs, Path(settings.work_dir).resolve() / "latest")
    return LocalRunResult(
        settings=settings,
        outputs=outputs,
        steps=list(progress.steps.values()),
        seconds=time.monotonic() - started,
        registered=_registered_version(settings, outputs) if outputs.get("blessed") else None,
        log_path=log_path,
    )


# The evaluation's artifacts under the names a person opens them by (kfp names files after the output).
LATEST_REPORT_FILES = {"report": "report.html", "report_json": "metrics.json", "blessing": "blessing.json"}


def publish_latest_report(outputs: dict[str, Any], folder: Path) -> None:
    """Copy the run's report, metrics and blessing to ``folder`` as ``report.html``, ``metrics.json``,
    ``blessing.json``: one stable place to open after every local run."""
    folder.mkdir(parents=True, exist_ok=True)
    for output, name in LATEST_REPORT_FILES.items():
        if output in outputs:
            shutil.copyfile(outputs[output].path, folder / name)


def step_log_path(settings: PipelineSettings) -> Path:
    """A new file for one run's step output: ``<work_dir>/logs/run-<time>.log``."""
    folder = Path(settings.work_dir).resolve() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / time.strftime("run-%Y%m%d-%H%M%S.log")


@contextlib.contextmanager
def _steps_output_to(log_path: Path | None, progress: StepProgress) -> Iterator[None]:
    """Send what the steps print (``kfp.local`` echoes each step's output to stdout) to ``log_path``,
    filtered by :class:`~pipelines.step_output.StepOutput`, whose epochs go to ``progress``."""
    if log_path is None:
        yield
        return
    with log_path.open("a") as log:
        progress.step_log = StepOutput(log, on_epoch=progress.show_epoch)
        try:
            with contextlib.redirect_stdout(progress.step_log):
                yield
        finally:
            progress.step_log = None


def _tail(log_path: Path, lines: int = 40) -> str:
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(["--- last lines of the step output ---", *text, "---"])


def steps_code_digest() -> str:
    """SHA-256 of the code the steps run (the ``components`` and ``trainer`` packages' Python files)."""
    import components
    import trainer

    digest = hashlib.sha256()
    for package in (components, trainer):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def forget_cache_of_other_code(cache_root: Path) -> bool:
    """Empty ``kfp.local``'s cache when it was filled by other code; whether it was emptied.

    ``kfp.local`` keys a step by its component, image name, command and inputs,
    but the project image keeps its name while the library code the steps call
    changes, so a cached step could hide a code change. The cache folder records
    the digest of the code that filled it.
    """
    stamp = cache_root / "CODE_DIGEST"
    current = steps_code_digest()
    stale = cache_root.is_dir() and (not stamp.is_file() or stamp.read_text().strip() != current)
    if stale:
        shutil.rmtree(cache_root)
    cache_root.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current + "\n")
    return stale


def materialize_metrics(cache_root: Path) -> int:
    """Write every cached ``Metrics`` artifact's values to its file; returns how many were written.

    A ``Metrics`` artifact lives in its metadata and ``kfp.local`` never writes
    its file, but its cache treats an entry whose local artifact file is
    missing as a miss: without the file no step that logs metrics would ever
    be reused. The file gets the metrics as JSON, which is what the artifact holds.
    :func:`run_locally` calls it before and after every run, failed or not: a
    run that stopped at ``evaluate`` without it would recompute every step
    (extraction first, so everything downstream) when rerun.
    """
    written = 0
    for entry in sorted(cache_root.glob("*.json")):
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


def _registered_version(settings: PipelineSettings, outputs: dict[str, Any]) -> RegisteredVersion | None:
    """The registry's version of this run's model (found by its digest: registration is idempotent)."""
    backend = open_backend(settings.registry)
    version = backend.find_version(model_digest(outputs["model"].path))
    if version is None:
        return None
    return RegisteredVersion(
        model_name=settings.registry.model_name,
        version=version,
        model_uri=backend.version_model_uri(version),
        aliases=backend.version_aliases(version),
        created=False,
    )


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``1m15s``; under a minute ``4.3s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"
