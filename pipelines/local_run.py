"""Run the whole DAG on this machine with ``kfp.local``, step by step, and collect what it produced.

``SubprocessRunner(use_venv=False)`` runs every step as a subprocess of this
virtual environment (no cluster, no containers); ``docker=True`` runs each step
in the project image with ``DockerRunner``. ``kfp.local`` caches a step's
outputs under ``<work_dir>/pipeline_root/.kfp_cache`` keyed by its component,
image, command and inputs, so a rerun with the same inputs reuses them. What this
relies on inside kfp.local (its log lines, its cache files) is in
:mod:`pipelines.kfp_local`, written for one kfp version::

    result = run_locally(PipelineSettings.from_env(n_impressions=20_000))
    result.blessed, result.registered, result.outputs["report"]
    print(format_summary(result))
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import io
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from components.registry.core import RegisteredVersion, model_digest, open_backend
from pipelines import kfp_local
from pipelines.config import PipelineSettings
from pipelines.step_errors import StepFailedError
from pipelines.step_output import StepOutput
from ranker_core.cli_support import UserError, writable_folder, write_problem
from ranker_core.step_configs import TUNING_FILE
from trainer.progress import EpochReport


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
        event = kfp_local.parse_log_line(record.getMessage())
        if event is None:
            return self.echo
        if event.kind == "started":
            self._start(event.step)
        elif event.kind == "finished":
            step = self.steps.setdefault(event.step, StepRecord(event.step))
            step.status, step.seconds = event.status, time.monotonic() - step.started
            self._end(step.name, f"{step.status} in {format_duration(step.seconds)}")
        else:
            self.steps[event.step] = StepRecord(event.step, status="CACHED")
            self._end(event.step, "CACHED (inputs unchanged: outputs reused)")
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


class RunInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C) during ``step`` (``None``: between steps); its MLflow run was ended
    KILLED. A ``KeyboardInterrupt``, so a caller that does not handle it stops as on any Ctrl-C."""

    def __init__(self, step: str | None, cached: bool = True) -> None:
        super().__init__(step or "")
        self.step = step
        self.cached = cached  # whether the finished steps' outputs are in the cache for a rerun

    def __str__(self) -> str:
        during = f" during step '{self.step}'" if self.step else ""
        rerun = "finished steps are cached, rerun to resume" if self.cached else "caching is off, a rerun starts over"
        return f"interrupted{during}; {rerun}"


@dataclasses.dataclass
class LocalRunResult:
    """What a local run produced: the pipeline's outputs, its steps and the registered version."""

    settings: PipelineSettings
    outputs: dict[str, Any]
    steps: list[StepRecord]
    seconds: float
    registered: RegisteredVersion | None
    log_path: Path | None = None  # what the steps printed (None when it was echoed)
    started_at: float = 0.0  # epoch seconds: what the run's steps wrote is newer

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
    """Run the DAG with ``kfp.local``; failed steps raise :class:`StepFailedError` with their errors.

    A work dir that cannot be written raises :class:`~ranker_core.cli_support.UserError` before any step runs;
    Ctrl-C raises :class:`RunInterrupted` (the run's MLflow run ended KILLED, the finished steps cached).
    """
    from pipelines.pipeline import build_pipeline

    if settings.training_backend != "pipeline":
        raise ValueError(
            "a Vertex AI custom training job cannot run locally: unset RANKER_TRAINING_BACKEND "
            "(or set it to pipeline, or remove training_backend from --settings) for a local run"
        )
    settings.check_against_spec()  # a wrong task name fails now, not after the extraction
    progress = progress or StepProgress()
    cache = kfp_local.cache_root(settings.pipeline_root_local)
    try:  # every folder the run writes to outside its steps, before any step runs
        writable_folder(settings.pipeline_root_local)
        if settings.enable_caching:
            if kfp_local.forget_cache_of_other_code(cache, steps_code_digest()):
                progress.console.line("The steps' code changed since the cached runs: every step runs again.")
            writable_folder(cache)
            kfp_local.materialize_metrics(cache)  # a run killed before its end left entries without their Metrics
        log_path = None if progress.echo else step_log_path(settings)
    except OSError as error:
        raise UserError(f"--work-dir {settings.work_dir}: {write_problem(error)}") from None
    progress.console.line(
        f"Running the pipeline in {settings.pipeline_root_local} "
        f"({'DockerRunner' if settings.docker else 'SubprocessRunner'}, "
        f"caching {'on' if settings.enable_caching else 'off'})"
    )
    kfp_local.init(settings.pipeline_root_local, settings.docker, settings.enable_caching)
    pipeline = build_pipeline(settings)
    root = logging.getLogger()
    level = root.level
    root.setLevel(min(level, logging.INFO))  # kfp.local reports cache hits at INFO
    root.addFilter(progress)
    started, started_at = time.monotonic(), time.time()
    started_ms = int(started_at * 1000)
    echoed = LastLines()  # the end of the steps' output (filtered) when it is echoed rather than logged
    try:
        with (
            kfp_local.quiet_warnings(),
            kfp_local.caller_folder_not_imported(),
            _steps_output_to(log_path, echoed, progress),
        ):
            task = pipeline(**settings.pipeline_arguments(local=True))
    except RuntimeError as error:
        output = log_path.read_text(errors="replace") if log_path else echoed.text()
        failed = [step.name for step in progress.steps.values() if step.status == "FAILURE"]
        failure = StepFailedError.of(failed, output, log_path)
        if log_path is not None and (failure is None or None in failure.errors.values()):
            progress.console.line(_tail(log_path))  # no exception to show: what the steps printed last
        _close_tracked_run(settings, started_ms, failure.headline if failure else str(error))
        if failure is not None:
            raise failure from error
        if log_path is None:  # no step failed: kfp did, and says how
            raise
        raise RuntimeError(f"{error} (every step's output: {log_path})") from error
    except KeyboardInterrupt:  # Ctrl-C: the running step's subprocess got it too
        step = progress.running
        _close_tracked_run(settings, started_ms, "interrupted", status="KILLED")
        raise RunInterrupted(step, cached=settings.enable_caching) from None
    finally:
        progress.console.clear_status()
        root.removeFilter(progress)
        root.setLevel(level)
        if settings.enable_caching:  # after a failed step too: the steps before it stay reusable
            kfp_local.materialize_metrics(cache)
    outputs = dict(task.outputs)
    publish_latest_report(outputs, Path(settings.work_dir).resolve() / "latest")
    return LocalRunResult(
        settings=settings,
        outputs=outputs,
        steps=list(progress.steps.values()),
        seconds=time.monotonic() - started,
        registered=_registered_version(settings, outputs) if outputs.get("blessed") else None,
        log_path=log_path,
        started_at=started_at,
    )


def _close_tracked_run(settings: PipelineSettings, started_ms: int, reason: str, status: str = "FAILED") -> None:
    """End this run's MLflow run with ``status`` (MLflow's ``FAILED``, or ``KILLED`` when interrupted) and
    ``reason`` (the failing step's error): record_run never ran to end it."""
    if settings.registry.backend != "mlflow":
        return
    from components.tracking.mlflow_runs import fail_unfinished_runs

    try:
        fail_unfinished_runs(settings.registry, started_ms, reason, status)
    except Exception as error:  # the step's failure is what the user must see, not the tracking store's
        logging.getLogger(__name__).warning("could not mark the MLflow run %s: %s", status.lower(), error)


# The evaluation's artifacts under the names a person opens them by (kfp names files after the output).
LATEST_REPORT_FILES = {"report": "report.html", "report_json": "metrics.json", "blessing": "blessing.json"}


def publish_latest_report(outputs: dict[str, Any], folder: Path) -> None:
    """Copy the run's report, metrics and blessing to ``folder`` as ``report.html``, ``metrics.json``,
    ``blessing.json``, and link the folders commands take next: ``model``, ``examples`` and (when the run
    materialized features) ``feature_repo``. One stable place after every local run::

        ranker serve --model-uri work_dir/latest/model --feature-store work_dir/latest/feature_repo
    """
    folder.mkdir(parents=True, exist_ok=True)
    for output, name in LATEST_REPORT_FILES.items():
        if output in outputs:
            shutil.copyfile(outputs[output].path, folder / name)
    targets = {name: Path(outputs[name].path) for name in ("model", "examples") if name in outputs}
    targets["feature_repo"] = materialized_repo(outputs)
    for name, target in targets.items():
        link = folder / name
        if link.is_symlink() or link.is_file():
            link.unlink()
        if target is not None and not link.exists():
            link.symlink_to(target.resolve(), target_is_directory=True)


def materialized_repo(outputs: dict[str, Any]) -> Path | None:
    """The Feast repo the run's ``materialize-features`` step wrote (kfp.local: ``<run>/<step>/<output>``)."""
    if "model" not in outputs:
        return None
    repo = Path(outputs["model"].path).parents[1] / "materialize-features" / "feature_repo"
    return repo if (repo / "feature_store.yaml").is_file() else None


def tuning_file(outputs: dict[str, Any], since: float = 0.0) -> Path | None:
    """The ``tuning.json`` of the ``tune-mmoe`` step that chose the model's configuration, or ``None`` when the
    run had no tune step. kfp.local writes ``<root>/<run>/<step>/<output>``: the newest one written since the
    run started (``since``, epoch seconds; its tune step ran, though ``train-mmoe`` may come from an older run's
    cache), else the one beside ``train-mmoe``'s model (both steps from the cache)."""
    if "model" not in outputs:
        return None
    run = Path(outputs["model"].path).parents[1]
    written = [path for path in run.parent.glob(f"*/tune-mmoe/trials/{TUNING_FILE}") if path.stat().st_mtime >= since]
    if since and written:
        return max(written, key=lambda path: path.stat().st_mtime)
    path = run / "tune-mmoe" / "trials" / TUNING_FILE
    return path if path.is_file() else None


def step_log_path(settings: PipelineSettings) -> Path:
    """A new file for one run's step output: ``<work_dir>/logs/run-<time>.log`` (``OSError`` if it cannot be)."""
    path = writable_folder(Path(settings.work_dir).resolve() / "logs") / time.strftime("run-%Y%m%d-%H%M%S.log")
    path.touch()
    return path


@contextlib.contextmanager
def _steps_output_to(log_path: Path | None, echoed: LastLines, progress: StepProgress) -> Iterator[None]:
    """Send what the steps print (``kfp.local`` echoes each step's output to stdout) to ``log_path``,
    filtered by :class:`~pipelines.step_output.StepOutput`, whose epochs go to ``progress``. Without a
    ``log_path`` the output stays on stdout, and its filtered last lines go to ``echoed``."""
    with contextlib.ExitStack() as stack:
        if log_path is None:
            progress.step_log = StepOutput(echoed)
            stdout: TextIO = _Tee(sys.stdout, progress.step_log)
        else:
            progress.step_log = StepOutput(stack.enter_context(log_path.open("a")), on_epoch=progress.show_epoch)
            stdout = progress.step_log
        try:
            with contextlib.redirect_stdout(stdout):
                yield
        finally:
            progress.step_log = None


class LastLines(io.TextIOBase):
    """A text stream that keeps the last ``most`` lines written to it (written a line at a time)."""

    def __init__(self, most: int = 2000) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=most)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)

    def text(self) -> str:
        return "".join(self.lines)


class _Tee(io.TextIOBase):
    """A text stream that writes to several."""

    def __init__(self, *streams: TextIO) -> None:
        super().__init__()
        self.streams = streams

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _tail(log_path: Path, lines: int = 40) -> str:
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(["--- last lines of the step output ---", *text, "---"])


def steps_code_digest() -> str:
    """SHA-256 of the code the steps run (the Python files of ``ranker_core``, ``components`` and ``trainer``)."""
    import components
    import ranker_core
    import trainer

    digest = hashlib.sha256()
    for package in (ranker_core, components, trainer):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


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
