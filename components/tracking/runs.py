"""The past pipeline runs in the tracking store: id, date, data, verdict, lift, registered version.

Read from the MLflow experiment named after the model (one run per pipeline
run, see :mod:`components.tracking.mlflow_runs`)::

    for run in list_runs(RegistryConfig(work_dir="work_dir")):
        print(run.run_id, run.verdict, run.lift)
    print(runs_table(list_runs(config)))
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from components.registry.core import RegistryConfig
from components.tracking.mlflow_runs import (
    DATA_TAG,
    FAILURE_TAG,
    LIFT_METRIC,
    PIPELINE_RUN_TAG,
    VERDICT_TAG,
    VERSION_TAG,
    tracking_client,
)

COLUMNS = ("run_id", "date", "data", "verdict", "lift", "version")


# MLflow run statuses that end a run unsuccessfully: the verdict says so whatever the evaluation said before.
UNSUCCESSFUL = ("FAILED", "KILLED")


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """One pipeline run as the listing shows it: ``verdict`` is ``running`` until evaluated, then ``blessed`` or
    ``refused``; a run that ended FAILED or KILLED is ``failed`` or ``killed`` even when it was evaluated before
    (its register step failed, say), and ``failure`` says why."""

    run_id: str
    pipeline_run_id: str
    date: str
    data: str
    verdict: str
    lift: float | None
    version: str
    status: str
    failure: str = ""

    @classmethod
    def from_mlflow(cls, run: Any) -> RunSummary:
        tags, metrics = run.data.tags, run.data.metrics
        started = datetime.datetime.fromtimestamp(run.info.start_time / 1000, tz=datetime.UTC)
        return cls(
            run_id=run.info.run_id,
            pipeline_run_id=tags.get(PIPELINE_RUN_TAG, ""),
            date=started.strftime("%Y-%m-%d %H:%M:%S"),
            data=tags.get(DATA_TAG, ""),
            verdict=run_verdict(run.info.status, tags),
            lift=metrics.get(LIFT_METRIC),
            version=tags.get(VERSION_TAG, ""),
            status=run.info.status,
            failure=tags.get(FAILURE_TAG, ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_verdict(status: str, tags: dict[str, str]) -> str:
    """What the listing says of a run: ``failed``/``killed`` when it ended so, else its evaluation's verdict
    (``blessed``, ``refused``), else its status (``running``, ``finished``).

    >>> run_verdict("FAILED", {"verdict": "blessed"})
    'failed'
    """
    if status in UNSUCCESSFUL:
        return status.lower()
    return tags.get(VERDICT_TAG, status.lower())


def list_runs(config: RegistryConfig, limit: int = 50) -> list[RunSummary]:
    """The newest ``limit`` runs of the model's experiment, newest first; none when it has no experiment."""
    client = tracking_client(config)
    experiment = client.get_experiment_by_name(config.model_name)
    if experiment is None:
        return []
    found = client.search_runs([experiment.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"])
    return [RunSummary.from_mlflow(run) for run in found]


def runs_table(runs: list[RunSummary]) -> str:
    """The runs as an aligned text table (``-`` for what a run does not have)."""
    rows = [COLUMNS] + [_cells(run) for run in runs]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def _cells(run: RunSummary) -> tuple[str, ...]:
    lift = "-" if run.lift is None else f"{run.lift:+.1%}"
    return (run.run_id, run.date, run.data, run.verdict, lift, run.version or "-")
