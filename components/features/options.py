"""Beam pipeline options for extraction: the local runner by default, Dataflow when asked.

Read like every setting: flags > environment variables (documented in ``docs/data.md``) > defaults::

    options = BeamOptions.load({"runner": "DataflowRunner", "project": "my-project",
                                "region": "europe-west4", "temp_location": "gs://my-bucket/tmp"})
    options.pipeline_options()   # apache_beam PipelineOptions

``DirectRunner`` (the default) means Beam's FnApiRunner, named explicitly
(:mod:`components.features.runner`): Beam's own ``DirectRunner`` would first try
to download the Prism runner. Any other runner name is passed to Beam as is.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from ranker_core.settings import Settings, env_field

DATAFLOW = "DataflowRunner"
LOCAL = "DirectRunner"  # what the flags and the environment call the local runner
_LOCAL_NAMES = ("directrunner", "direct")
LOCAL_RUNNER = "components.features.runner.LocalRunner"  # the --runner Beam gets for it (imported by name)


class BeamOptions(Settings):
    """Where and how the extraction pipeline runs (:meth:`load` reads the environment; a bare constructor does not)."""

    runner: str = env_field(LOCAL, "RANKER_BEAM_RUNNER")
    project: str = env_field("", "GOOGLE_CLOUD_PROJECT")
    region: str = env_field("", "GOOGLE_CLOUD_REGION")
    temp_location: str = env_field("", "RANKER_BEAM_TEMP_LOCATION")
    staging_location: str = env_field("", "RANKER_BEAM_STAGING_LOCATION")
    machine_type: str = env_field("", "RANKER_DATAFLOW_MACHINE_TYPE")
    max_num_workers: int = env_field(0, "RANKER_DATAFLOW_MAX_WORKERS")
    sdk_container_image: str = env_field("", "RANKER_DATAFLOW_IMAGE")
    setup_file: str = env_field("", "RANKER_DATAFLOW_SETUP_FILE")
    # the workers' identity (else the Compute Engine default service account)
    service_account_email: str = env_field("", "RANKER_DATAFLOW_SERVICE_ACCOUNT")
    job_name: str = env_field("")
    # The local runner: worker processes (0 = one per core) and how they run.
    direct_num_workers: int = env_field(0, "RANKER_BEAM_WORKERS")
    direct_running_mode: str = env_field("multi_processing", "RANKER_BEAM_MODE")
    extra_args: tuple[str, ...] = env_field(())  # any other Beam flag, passed through as is

    @property
    def is_dataflow(self) -> bool:
        return self.runner in (DATAFLOW, "dataflow")

    @property
    def is_local(self) -> bool:
        return self.runner.lower() in _LOCAL_NAMES

    @property
    def beam_runner(self) -> str:
        """The ``--runner`` Beam gets: the local runner's class path for ``DirectRunner``, any other name as is."""
        return LOCAL_RUNNER if self.is_local else self.runner

    @property
    def local_workers(self) -> int:
        """The local runner's worker count (``direct_num_workers``, 0 meaning one per core; ``in_memory`` runs in
        this process, one worker, and Beam warns about any other count)."""
        if self.direct_running_mode == "in_memory":
            return 1
        return self.direct_num_workers or os.cpu_count() or 1

    @property
    def cores_per_worker_process(self) -> int:
        """The cores each of the local runner's worker processes has to itself (0: no such split).

        Set only for ``multi_processing`` on the local runner: a library that sizes its thread
        pools by the machine's cores (TensorFlow) would otherwise run ``workers x cores`` threads.
        """
        if not self.is_local or self.direct_running_mode != "multi_processing":
            return 0
        return max(1, (os.cpu_count() or 1) // self.local_workers)

    def validate(self) -> None:
        """Dataflow needs a project, a region and a gs:// temp location; say which is missing."""
        if not self.is_dataflow:
            return
        missing = [flag for flag, value in self._dataflow_required().items() if not value]
        if missing:
            raise ValueError(f"the DataflowRunner needs {', '.join(missing)}")
        if not self.temp_location.startswith("gs://"):
            raise ValueError(f"--temp-location must be a gs:// path for Dataflow, got {self.temp_location!r}")

    def _dataflow_required(self) -> dict[str, str]:
        return {"--project": self.project, "--region": self.region, "--temp-location": self.temp_location}

    def flags(self) -> list[str]:
        """The Beam command-line flags these options stand for."""
        flags = [f"--runner={self.beam_runner}"]
        values: dict[str, Any] = {
            "project": self.project,
            "region": self.region,
            "temp_location": self.temp_location,
            "staging_location": self.staging_location,
            "job_name": self.job_name,
        }
        if self.is_dataflow:
            values |= {
                "machine_type": self.machine_type,
                "max_num_workers": self.max_num_workers or "",
                "sdk_container_image": self.sdk_container_image,
                "setup_file": self.setup_file,
                "service_account_email": self.service_account_email,
            }
        else:
            values |= {"direct_num_workers": self.local_workers, "direct_running_mode": self.direct_running_mode}
        flags += [f"--{name}={value}" for name, value in values.items() if value not in ("", None)]
        return flags + list(self.extra_args)

    def pipeline_options(self):
        from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

        self.validate()
        options = PipelineOptions(self.flags())
        # Workers unpickle the DoFns, which reference module-level names of this package.
        options.view_as(SetupOptions).save_main_session = False
        return options


# flag -> (BeamOptions field, type, help); defaults come from the environment (see the fields above), which
# the help names.
_FLAGS: dict[str, tuple[str, type, str]] = {
    "--runner": ("runner", str, "Beam runner: DirectRunner (local) or DataflowRunner"),
    "--project": ("project", str, "Google Cloud project for Dataflow and BigQuery"),
    "--region": ("region", str, "Dataflow region"),
    "--temp-location": ("temp_location", str, "gs:// folder for Dataflow and BigQuery temp files"),
    "--staging-location": ("staging_location", str, "gs:// folder for staged packages (default: temp location)"),
    "--machine-type": ("machine_type", str, "Dataflow worker machine type, e.g. n2-standard-4"),
    "--max-num-workers": ("max_num_workers", int, "Dataflow autoscaling limit"),
    "--sdk-container-image": ("sdk_container_image", str, "worker image with this project installed"),
    "--setup-file": ("setup_file", str, "setup.py to stage instead of an image"),
    "--service-account-email": ("service_account_email", str, "Dataflow workers' service account"),
    "--job-name": ("job_name", str, "Dataflow job name"),
    "--direct-num-workers": ("direct_num_workers", int, "local workers (default: one per core)"),
    "--direct-running-mode": ("direct_running_mode", str, "in_memory, multi_threading or multi_processing"),
}


def add_beam_arguments(parser: argparse.ArgumentParser, command_defaults: Mapping[str, Any] | None = None) -> None:
    """The runner flags of every command that runs a Beam pipeline; ``command_defaults`` are the command's own
    defaults (below the environment, above BeamOptions'), which the help shows as they will apply."""
    group = parser.add_argument_group("Beam / Dataflow")
    defaults = BeamOptions.load(_unset_in_env(command_defaults))
    for flag, (field, kind, help_text) in _FLAGS.items():
        variables = ", ".join(BeamOptions.env_names(field)[0])
        now = f"now: {getattr(defaults, field)!r}"
        shown = f"env {variables}; {now}" if variables else now
        group.add_argument(flag, dest=f"beam_{field}", type=kind, help=f"{help_text} ({shown})")


def beam_options_from_args(
    args: argparse.Namespace, extra_args: tuple[str, ...] = (), command_defaults: Mapping[str, Any] | None = None
) -> BeamOptions:
    """BeamOptions from parsed flags; flags not given keep the environment's value, else ``command_defaults``'."""
    given = {field: getattr(args, f"beam_{field}") for field, _, _ in _FLAGS.values()}
    flags = {key: value for key, value in given.items() if value is not None}
    return BeamOptions.load({**_unset_in_env(command_defaults), **flags, "extra_args": extra_args})


def _unset_in_env(command_defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    """The command's defaults for the fields no environment variable sets (the environment wins over them)."""
    from_env = BeamOptions.read_env(os.environ)
    return {field: value for field, value in (command_defaults or {}).items() if field not in from_env}


def artifact_beam_uri(uri: str, path: str) -> str:
    """Where Beam reads or writes a kfp artifact: its gs:// or bq:// URI as is, a Cloud Storage FUSE path
    (``/gcs/BUCKET/...``) as its gs:// URI, otherwise its local path (kfp.local).

    On Vertex AI an artifact's path is the step's ``/gcs/`` mount, which Dataflow's workers do not have.

    >>> artifact_beam_uri("gs://b/root/examples", "/gcs/b/root/examples")
    'gs://b/root/examples'
    >>> artifact_beam_uri("/gcs/b/logs/*.parquet", "/gcs/b/logs/*.parquet")
    'gs://b/logs/*.parquet'
    """
    if uri.startswith(("gs://", "bq://")):
        return uri
    from trainer.digest import GCS_FUSE_ROOT

    mounted = path.removeprefix(f"{GCS_FUSE_ROOT}/")
    return f"gs://{mounted}" if mounted != path and mounted else path
