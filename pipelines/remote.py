"""Submitting and scheduling the compiled pipeline: Vertex AI Pipelines, or a Kubeflow Pipelines host.

``settings.kfp_host`` empty means Vertex AI (``google.cloud.aiplatform``:
``PipelineJob`` and ``PipelineJobSchedule``); otherwise the KFP API at that
host (``kfp.Client``: runs and recurring runs)::

    settings = PipelineSettings.from_env(registry=RegistryConfig(backend="vertex", project="p"),
                                         pipeline_root="gs://bucket/runs")
    submit_run(settings, "pipeline.yaml")                       # the job's resource name
    create_schedule(settings, "pipeline.yaml", "0 3 * * 1", "weekly-retrain")
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.config import (
    BATCH_PIPELINE_NAME,
    PIPELINE_NAME,
    PipelineSettings,
    names_registry,
    parse_labels,
    require_reachable_registry,
)
from ranker_core.cli_support import InvalidValueError, UserError

# Vertex AI and KFP both accept [a-z0-9-] job ids; the pipeline's name plus a timestamp keeps them unique and sortable.
_JOB_ID_FORMAT = "%Y%m%d-%H%M%S"


@dataclasses.dataclass(frozen=True)
class ScheduleInfo:
    """One scheduled pipeline: its id (the name to pause/resume/delete), display name, cron and state."""

    name: str
    display_name: str
    cron: str
    state: str


def submit_run(
    settings: PipelineSettings,
    template: str | Path,
    credentials: Any = None,
    parameters: dict[str, Any] | None = None,
    pipeline_name: str = PIPELINE_NAME,
) -> str:
    """Submit one run of the compiled pipeline; returns the Vertex AI job name or the KFP run id.

    ``parameters`` are the run's parameters: by default the training pipeline's settings given now, the
    template's compiled defaults for the rest (:meth:`PipelineSettings.remote_arguments`; the batch ranking
    pipeline brings its own, :func:`pipelines.batch_pipeline.batch_parameters`); ``pipeline_name`` prefixes
    the job id.
    """
    parameters = run_parameters(settings, template, parameters, pipeline_name)
    if settings.kfp_host:
        client = _kfp_client(settings)
        result = client.create_run_from_pipeline_package(
            str(template),
            arguments=parameters,
            run_name=_job_id(pipeline_name),
            experiment_name=settings.experiment or None,
            pipeline_root=settings.pipeline_root or None,
            enable_caching=_caching(settings),
            service_account=settings.service_account or None,
        )
        return str(result.run_id)
    job = _vertex_job(settings, template, parameters, credentials, pipeline_name)
    with vertex_call("Vertex AI did not take the run"):
        job.submit(
            service_account=settings.service_account or None,
            network=settings.network or None,
            # Every Vertex AI run is recorded in Vertex AI Experiments (parameters and Metrics artifacts).
            experiment=settings.experiment or settings.registry.model_name,
        )
    return str(job.resource_name)


def create_schedule(
    settings: PipelineSettings,
    template: str | Path,
    cron: str,
    display_name: str,
    max_concurrent_runs: int = 1,
    credentials: Any = None,
    parameters: dict[str, Any] | None = None,
    pipeline_name: str = PIPELINE_NAME,
) -> ScheduleInfo:
    """Run the pipeline on a cron schedule (5 fields, e.g. ``0 3 * * 1``; ``TZ=Europe/Paris 0 3 * * 1`` on Vertex).

    ``parameters`` are the runs' parameters: by default the training pipeline's settings given now, the
    template's compiled defaults for the rest (as :func:`submit_run`).
    """
    cron = schedule_cron(settings, cron)  # a malformed cron is refused before any call to the host
    parameters = run_parameters(settings, template, parameters, pipeline_name)
    if max_concurrent_runs < 1:
        raise InvalidValueError(f"--max-concurrent-runs must be at least 1, got {max_concurrent_runs}")
    if settings.kfp_host:
        client = _kfp_client(settings)
        experiment = client.create_experiment(settings.experiment or "Default")
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=display_name,
            cron_expression=cron,
            max_concurrency=max_concurrent_runs,
            params=parameters,
            pipeline_package_path=str(template),
            enable_caching=_caching(settings),
            service_account=settings.service_account or None,
            pipeline_root=settings.pipeline_root or None,
        )
        return ScheduleInfo(recurring.recurring_run_id, recurring.display_name, cron, "ENABLED")
    if settings.experiment:
        raise InvalidValueError(
            f"{settings.source('experiment')}: a Vertex AI schedule's runs are not recorded in an experiment "
            "(PipelineJob.create_schedule takes none); leave it out, or submit runs with ranker submit --experiment"
        )
    job = _vertex_job(settings, template, parameters, credentials, pipeline_name)
    with vertex_call("Vertex AI did not create the schedule"):
        schedule = job.create_schedule(
            cron=cron,
            display_name=display_name,
            max_concurrent_run_count=max_concurrent_runs,
            service_account=settings.service_account or None,
            network=settings.network or None,
        )
    return _vertex_info(schedule)


def list_schedules(settings: PipelineSettings, credentials: Any = None) -> list[ScheduleInfo]:
    """The schedules of this project and region (Vertex AI) or of the KFP host."""
    if settings.kfp_host:
        response = _kfp_client(settings).list_recurring_runs(page_size=100)
        return [
            ScheduleInfo(run.recurring_run_id, run.display_name, run.trigger.cron_schedule.cron, str(run.status))
            for run in response.recurring_runs or []
        ]
    from google.cloud import aiplatform

    registry = _vertex_registry(settings)
    with vertex_call("Vertex AI did not list the schedules"):
        schedules = aiplatform.PipelineJobSchedule.list(
            project=registry.project, location=registry.location, credentials=credentials
        )
    return [_vertex_info(schedule) for schedule in schedules]


def change_schedule(settings: PipelineSettings, name: str, action: str, credentials: Any = None) -> None:
    """``pause``, ``resume`` or ``delete`` one schedule by its id (or full Vertex AI resource name)."""
    if action not in ("pause", "resume", "delete"):
        raise ValueError(f"unknown schedule action {action!r}: use pause, resume or delete")
    if settings.kfp_host:
        client = _kfp_client(settings)
        {
            "pause": client.disable_recurring_run,
            "resume": client.enable_recurring_run,
            "delete": client.delete_recurring_run,
        }[action](recurring_run_id=name)
        return
    from google.cloud import aiplatform

    registry = _vertex_registry(settings)
    with vertex_call(f"Vertex AI did not {action} schedule {name}"):
        schedule = aiplatform.PipelineJobSchedule.get(
            schedule_id=name, project=registry.project, location=registry.location, credentials=credentials
        )
        getattr(schedule, action)()


def schedule_cron(settings: PipelineSettings, cron: str) -> str:
    """The cron expression the scheduler gets, checked before anything needs credentials or a host: KFP's
    (:func:`kfp_cron`) with ``kfp_host``, else Vertex AI's (:func:`vertex_cron`)."""
    return kfp_cron(cron) if settings.kfp_host else vertex_cron(cron)


def vertex_cron(cron: str) -> str:
    """Vertex AI's cron: 5 fields (minute hour day month weekday), optionally after a time zone
    (``TZ=Europe/Paris 0 3 * * 1``); ``InvalidValueError`` for any other shape.

    >>> vertex_cron("TZ=Europe/Paris  0 3 * * 1")
    'TZ=Europe/Paris 0 3 * * 1'
    """
    zone, fields = _cron_fields(cron)
    if len(fields) != 5:
        raise InvalidValueError(
            f"cron {cron!r} must have 5 fields (minute hour day month weekday), optionally after a time zone, "
            "e.g. '0 3 * * 1' or 'TZ=Europe/Paris 0 3 * * 1'"
        )
    return " ".join([*zone, *fields])


def kfp_cron(cron: str) -> str:
    """KFP's cron has a seconds field first: ``0 3 * * 1`` -> ``0 0 3 * * 1``; 6 fields pass unchanged.

    A leading time zone (``TZ=Europe/Paris 0 3 * * 1``) stays in front and is not counted as a field.
    """
    zone, fields = _cron_fields(cron)
    if len(fields) == 5:
        return " ".join([*zone, "0", *fields])
    if len(fields) == 6:
        return " ".join([*zone, *fields])
    raise InvalidValueError(f"cron {cron!r} must have 5 fields (minute hour day month weekday) or 6 (seconds first)")


_CRON_ZONE = re.compile(r"^(CRON_)?TZ=\S+$")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclasses.dataclass(frozen=True)
class _CronField:
    """One cron field: its name, its numeric range, the names it takes and its extra marks (L, W, #)."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    marks: str = ""


_SECOND = _CronField("second", 0, 59)
_FIVE_FIELDS = (
    _CronField("minute", 0, 59),
    _CronField("hour", 0, 23),
    _CronField("day", 1, 31, marks="LW"),
    _CronField("month", 1, 12, names=_MONTHS),
    _CronField("weekday", 0, 7, names=_WEEKDAYS, marks="L#"),
)
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/#-]+$")  # numbers, ranges, steps, lists, names (MON, JAN), L, W, #
_CRON_VALUE = re.compile(r"^(\d+)?(.*)$")


def _cron_fields(cron: str) -> tuple[list[str], list[str]]:
    """The time zone prefix (``[]`` or ``["TZ=..."]``) and the fields of a cron expression; a field with
    characters no cron field has is an ``InvalidValueError``."""
    words = cron.split()
    zone = words[:1] if words and _CRON_ZONE.match(words[0]) else []
    fields = words[len(zone) :]
    bad = [field for field in fields if not _CRON_FIELD.match(field)]
    if bad:
        raise InvalidValueError(f"cron {cron!r}: {bad[0]!r} is not a cron field (e.g. 0, */15, 1-5, MON)")
    kinds = {5: _FIVE_FIELDS, 6: (_SECOND, *_FIVE_FIELDS)}.get(len(fields), ())  # the count is checked by the caller
    for field, kind in zip(fields, kinds, strict=False):
        problem = _cron_field_problem(field, kind)
        if problem:
            raise InvalidValueError(f"cron {cron!r}: {kind.name} field {field!r}: {problem}")
    return zone, fields


def _cron_field_problem(field: str, kind: _CronField) -> str:
    """Why ``field`` is not a valid ``kind`` (``""`` when it is): lists of ``*``, ``?``, values and ranges,
    each with an optional ``/step``; values in range, or names (``MON``, ``JAN``) where the field takes them."""
    for item in field.split(","):
        base, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) > 0):
            return f"step {step!r} is not a positive number"
        if base in ("*", "?"):
            continue
        for value in base.split("-", 1):
            problem = _cron_value_problem(value, kind)
            if problem:
                return problem
    return ""


def _cron_value_problem(value: str, kind: _CronField) -> str:
    """Why one value of a ``kind`` field is not valid: out of range, or a name or mark the field does not take."""
    if value.upper() in kind.names:
        return ""
    number, mark = _CRON_VALUE.match(value.upper()).groups()  # "15W" -> ("15", "W"), "L" -> (None, "L")
    if number and not kind.low <= int(number) <= kind.high:
        return f"{number} is out of range {kind.low}-{kind.high}"
    last_or_weekday = mark in ("L", "W", "LW") and set(mark) <= set(kind.marks)
    nth_weekday = bool(number) and mark[:1] == "#" and "#" in kind.marks and mark[1:] in ("1", "2", "3", "4", "5")
    if (number or mark in ("L", "LW")) and (not mark or last_or_weekday or nth_weekday):
        return ""
    names = f"{kind.names[0]}-{kind.names[-1]} or " if kind.names else ""
    return f"{value!r} is not a value it takes ({names}{kind.low}-{kind.high})"


def _vertex_registry(settings: PipelineSettings) -> Any:
    """The registry settings that name the Vertex AI project and region; a one-line error without a project."""
    if not settings.registry.project:
        raise InvalidValueError(
            "Vertex AI needs a project: set --project or GOOGLE_CLOUD_PROJECT (or --kfp-host for KFP)"
        )
    return settings.registry


def _job_id(pipeline_name: str) -> str:
    return f"{pipeline_name}-{time.strftime(_JOB_ID_FORMAT)}"


@contextlib.contextmanager
def vertex_call(what: str) -> Iterator[None]:
    """A refusal (403, 404, ...) or an unreachable Vertex AI as one :class:`UserError` line, ``what`` first; the SDK
    wraps some (an experiment it could not find or create) in a ``RuntimeError`` whose cause is the API's error."""
    from google.api_core.exceptions import GoogleAPIError

    try:
        yield
    except GoogleAPIError as error:
        raise UserError(f"{what}: {error}") from None
    except RuntimeError as error:
        if not isinstance(error.__cause__, GoogleAPIError):
            raise
        raise UserError(f"{what}: {error} ({error.__cause__})") from None


def run_parameters(
    settings: PipelineSettings, template: str | Path, parameters: dict[str, Any] | None, pipeline_name: str
) -> dict:
    """What a remote run sends: the training pipeline's settings given now (``parameters`` ``None``), else the batch
    pipeline's ``parameters``; either way the registry the run will read (sent or compiled) must be reachable,
    unless the batch run names its model (``model_uri``). The template must be the ``pipeline_name`` pipeline:
    the other's parameters would be refused by the host, or, where they overlap, run it with the wrong ones."""
    compiled_name = template_spec(template).get("pipelineInfo", {}).get("name", "")
    if compiled_name in (PIPELINE_NAME, BATCH_PIPELINE_NAME) and compiled_name != pipeline_name:
        fix = (
            "pass a template compiled with `ranker compile --pipeline batch`, or drop --pipeline batch"
            if parameters is not None
            else "submit it with --pipeline batch --parameters '{\"candidates_uri\": ...}'"
        )
        raise InvalidValueError(
            f"--template {template} is the {compiled_name!r} pipeline, not {pipeline_name!r}: {fix}"
        )
    compiled = compiled_defaults(template)
    if parameters is None:
        return settings.remote_arguments(compiled)
    if not parameters.get("model_uri"):
        require_reachable_registry({**compiled, **parameters})
    return parameters


def compiled_defaults(template: str | Path) -> dict[str, Any]:
    """The default value of each run parameter of a compiled pipeline YAML (its root's input definitions)."""
    parameters = template_spec(template).get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: parameter["defaultValue"] for name, parameter in parameters.items() if "defaultValue" in parameter}


def require_pullable_images(template: str | Path) -> None:
    """Refuse a template whose steps run an image without a registry host (compiled for a local Docker engine),
    which Vertex AI or a KFP cluster cannot pull."""
    executors = template_spec(template).get("deploymentSpec", {}).get("executors", {})
    images = sorted({executor["container"]["image"] for executor in executors.values() if "container" in executor})
    local = [image for image in images if not names_registry(image)]
    if local:
        raise InvalidValueError(
            f"--template {template}: its steps run {local[0]!r}, which names no registry, so Vertex AI / Kubeflow "
            "cannot pull it: compile it with --image <the pushed image's full reference>"
        )


def template_spec(template: str | Path) -> dict[str, Any]:
    """The pipeline spec of a compiled pipeline YAML; an :class:`InvalidValueError` naming the file for one that is
    not YAML or not a compiled pipeline. Read once per version of the file (a submit asks for it several times)."""
    status = Path(template).stat()
    return _template_spec(str(template), status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=8)
def _template_spec(template: str, _mtime_ns: int, _size: int) -> dict[str, Any]:
    import yaml

    try:
        spec = next(yaml.safe_load_all(Path(template).read_text()), None) or {}
    except yaml.YAMLError as error:
        raise InvalidValueError(f"--template {template}: not YAML ({error})".replace("\n", " ")) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("root"), dict):
        raise InvalidValueError(f"--template {template}: not a compiled pipeline (write one with `ranker compile`)")
    return spec


def _vertex_job(
    settings: PipelineSettings, template: str | Path, parameters: dict[str, Any], credentials: Any, pipeline_name: str
):
    from google.cloud import aiplatform

    registry = _vertex_registry(settings)
    if not settings.pipeline_root.startswith("gs://"):
        raise InvalidValueError(
            f"Vertex AI needs a gs:// pipeline root (--pipeline-root), not {settings.pipeline_root!r}"
        )
    return aiplatform.PipelineJob(
        display_name=pipeline_name,
        template_path=str(template),
        job_id=_job_id(pipeline_name),
        pipeline_root=settings.pipeline_root,
        parameter_values=parameters,
        enable_caching=_caching(settings),
        encryption_spec_key_name=settings.encryption_key or None,
        labels=parse_labels(settings.labels) or None,
        project=registry.project,
        location=registry.location,
        credentials=credentials,
    )


def _caching(settings: PipelineSettings) -> bool | None:
    """``None`` keeps each step's compiled choice (the registry steps are never cached); ``False`` turns all off.

    ``True`` would override the compiled choice and cache the registry steps too.
    """
    return None if settings.enable_caching else False


def _vertex_info(schedule: Any) -> ScheduleInfo:
    return ScheduleInfo(
        name=schedule.resource_name,
        display_name=schedule.display_name,
        cron=schedule.cron,
        state=getattr(schedule.state, "name", str(schedule.state)),
    )


def _kfp_client(settings: PipelineSettings):
    """A client of the KFP host, or a one-line error when no Kubeflow Pipelines API answers there."""
    import kfp

    try:
        return kfp.Client(host=settings.kfp_host)
    except Exception as error:  # urllib3's MaxRetryError, kfp's TimeoutError, a malformed host: ValueError
        raise UserError(f"--kfp-host {settings.kfp_host}: no Kubeflow Pipelines API answers ({error})") from None
