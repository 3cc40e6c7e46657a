"""The pipeline's settings: one dataclass, read like every setting (flags > environment > file > defaults).

Every field has a flag and an environment variable (table :data:`OPTIONS`),
parsed by :func:`ranker_core.settings.parse_env` (one boolean parser for all);
the step configurations are typed (:class:`~ranker_core.step_configs.TrainerConfig`,
:class:`~ranker_core.step_configs.BaselineConfig`,
:class:`~components.evaluation.config.EvaluationConfig`) and checked when the
settings are built, so an unknown or mistyped key fails before any step runs;
``ranker run|compile|submit|schedule --help`` prints them with their defaults
and ``docs/pipeline.md`` documents them::

    settings = PipelineSettings.from_env()                       # environment and defaults
    settings = PipelineSettings.from_env(n_impressions=20_000)   # ... then overrides
    settings = PipelineSettings.from_env(settings_file="run.yaml")   # a file under the environment

The settings file (``--settings FILE``, env ``RANKER_SETTINGS``) is YAML or JSON,
one key per field (``n_impressions: 1000000``, ``model_config: {epochs: 2}``);
an unknown key is an error naming it.
    settings.pipeline_arguments()    # the runtime parameters of one run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from components.base import DEFAULT_IMAGE
from components.data.simulator_config import DEFAULT_N_IMPRESSIONS, DEFAULT_SEED
from components.data.spec import SHIPPED_SPECS
from components.registry.core import RegistryConfig
from ranker_core.cli_support import InvalidValueError, UserError
from ranker_core.settings import Settings, env_value, is_file_reference, known_keys_hint, parse_env, read_json_object
from ranker_core.step_configs import BaselineConfig, TrainerConfig, TuningConfig, check_space

logger = logging.getLogger(__name__)

PIPELINE_NAME = "mmoe-ranker"
BATCH_PIPELINE_NAME = "mmoe-ranker-batch"
PIPELINE_CANDIDATE = "mmoe"  # the evaluate step's name for the model it judges (model_name)
# The simulated module the model never trains on: evaluation checks it still ranks there.
SIMULATED_HELD_OUT_MODULE = "shop_page"
VALID_IMAGE_EXAMPLE = "europe-west4-docker.pkg.dev/PROJECT/REPOSITORY/mmoe-ranker:TAG"
PATH_FIELDS = ("data_uri", "oracle_uri", "dataset_spec")  # what a remote run's steps must be able to read


def names_registry(image: str) -> bool:
    """Whether ``image`` names a registry host (``mmoe-ranker:latest`` names none: a local Docker engine's)."""
    return "/" in image


def is_google_registry(image: str) -> bool:
    """Whether ``image`` is in Artifact Registry (``REGION-docker.pkg.dev/...``) or Container Registry
    (``gcr.io/...``, ``eu.gcr.io/...``): a Vertex AI model's serving container must be (pipeline steps may
    also pull from Docker Hub).

    >>> is_google_registry("europe-west4-docker.pkg.dev/p/r/mmoe-ranker:1"), is_google_registry("me/mmoe-ranker:1")
    (True, False)
    """
    host = image.split("/", 1)[0] if names_registry(image) else ""
    return host.endswith("-docker.pkg.dev") or host == "gcr.io" or host.endswith(".gcr.io")


_CPU = re.compile(r"^([0-9]*[.])?[0-9]+m?$")  # kfp's own rules for set_cpu_limit and set_memory_limit
_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")


@dataclasses.dataclass
class PipelineSettings:
    """Everything a run, a compilation, a submission or a schedule needs.

    Data (``data_uri`` empty: simulate ``n_impressions`` with ``seed``;
    ``oracle_uri``: the true engagement probabilities of your data, if any),
    step configurations as JSON, compile-time resources, local execution
    (``work_dir``, ``docker``, ``enable_caching``), Vertex AI / KFP submission,
    and the model registry (:class:`~components.registry.core.RegistryConfig`).

    Example::

        settings = PipelineSettings.from_env(data_uri="gs://logs/*.parquet", dataset_spec="my_spec.yaml")
    """

    # data
    data_uri: str = ""
    oracle_uri: str = ""
    dataset_spec: str = "simulator"
    held_out_module: str | None = None
    n_impressions: int = DEFAULT_N_IMPRESSIONS  # shared with `ranker simulate`
    seed: int = DEFAULT_SEED
    dead_letter_threshold: float = 0.01
    num_shards: int = 0  # extraction's shuffle partitions and files per split; 0: sized by the data
    beam_options: str = "{}"  # extraction's Beam runner (BeamOptions fields, e.g. Dataflow's), JSON or @file
    # step configurations (JSON objects, or @path to a JSON file)
    model_config: str = "{}"
    baseline_config: str = "{}"
    eval_config: str = "{}"
    # the optional tune step (TuningConfig; trials > 0 puts tune_mmoe before train_mmoe)
    tune_config: str = "{}"
    # local execution
    work_dir: str = "work_dir"
    docker: bool = False
    enable_caching: bool = True
    fail_if_not_blessed: bool = False
    # compile-time image and resources
    image: str = DEFAULT_IMAGE
    step_cpu: str = "2"
    step_memory: str = "8G"
    train_cpu: str = "4"
    train_memory: str = "16G"
    train_accelerator: str = ""
    train_accelerator_count: int = 1
    training_backend: str = "pipeline"
    train_machine_type: str = "n1-standard-8"
    # deployment after registration
    deploy: bool = False
    # submission
    pipeline_root: str = ""
    service_account: str = ""
    training_service_account: str = ""  # the custom training job's identity (compile time); "": service_account
    network: str = ""
    encryption_key: str = ""
    labels: str = ""
    kfp_host: str = ""
    experiment: str = ""
    registry: RegistryConfig = dataclasses.field(default_factory=RegistryConfig)
    # the step configurations, typed and checked (from model_config, baseline_config, eval_config)
    trainer: TrainerConfig = dataclasses.field(init=False, repr=False)
    baseline: BaselineConfig = dataclasses.field(init=False, repr=False)
    evaluation: Any = dataclasses.field(init=False, repr=False)  # EvaluationConfig (imported when needed)
    tuning: TuningConfig = dataclasses.field(init=False, repr=False)
    beam: Any = dataclasses.field(init=False, repr=False)  # BeamOptions (imported when needed)
    # where each field given (not left at its default) came from, for its errors: "--seed", "RANKER_SEED",
    # "--settings run.yaml: model_config"; a bare constructor records none
    sources: dict[str, str] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.training_backend not in ("pipeline", "custom-job"):
            raise self._refused(
                "training_backend", f"must be 'pipeline' or 'custom-job', not {self.training_backend!r}"
            )
        if self.n_impressions <= 0:
            raise self._refused("n_impressions", f"must be positive, not {self.n_impressions}")
        if self.seed < 0:
            raise self._refused("seed", f"must be 0 or more (it seeds the simulator), not {self.seed}")
        if self.num_shards < 0:
            raise self._refused("num_shards", f"must be 0 (sized by the data) or more, not {self.num_shards}")
        if not 0 <= self.dead_letter_threshold <= 1:
            raise self._refused(
                "dead_letter_threshold", f"is a share of rows, 0 to 1, not {self.dead_letter_threshold}"
            )
        self._check_resources()
        from components.evaluation.config import EvaluationConfig

        # fail now, naming the flag (or the file, or the variable) and the key, not an hour into the run
        self.trainer = step_config(TrainerConfig, self.model_config, self.source("model_config"))
        self.baseline = step_config(BaselineConfig, self.baseline_config, self.source("baseline_config"))
        self.evaluation = step_config(EvaluationConfig, self.eval_config, self.source("eval_config"))
        if self.evaluation.candidate not in (None, PIPELINE_CANDIDATE):
            raise ValueError(
                f"{self.source('eval_config')}: candidate {self.evaluation.candidate!r} is not a model of the "
                f"pipeline, which judges {PIPELINE_CANDIDATE!r} (other names are for ranker evaluate --model NAME=DIR)"
            )
        self.tuning = step_config(TuningConfig, self.tune_config, self.source("tune_config"))
        if self.tuning.trials:  # each value of the space in this model configuration, as ranker tune checks it
            try:
                check_space(self.trainer, self.tuning.space)
            except ValueError as error:
                raise ValueError(f"{self.source('tune_config')}: {error}") from None
        self.beam = beam_options(self.beam_options, self.source("beam_options"))
        try:
            parse_labels(self.labels)
        except ValueError as error:
            raise ValueError(f"{self.source('labels')}: {error}") from None
        self._check_kfp_host()
        self._check_simulated_held_out_module()
        if self.oracle_uri and not self.data_uri:
            raise ValueError("oracle_uri is the oracle of your data (data_uri); a simulated run uses the simulator's")
        if "image" in self.sources and not self._serving_image_given():
            self.registry = self.registry.replace(serving_image=self.image)  # --image serves too, as RANKER_IMAGE does
        if self.docker and self.registry.backend == "mlflow" and not self.registry.tracking_uri:
            # DockerRunner mounts only the pipeline root into the steps: the local registry must live in it.
            self.registry = self.registry.replace(work_dir=str(self.pipeline_root_local))

    def _serving_image_given(self) -> bool:
        """Whether the serving image was set on its own (``--serving-image``, ``RANKER_SERVING_IMAGE``, a file),
        not read from ``RANKER_IMAGE``, which ``--image`` wins over."""
        registry = self.registry
        return "serving_image" in registry.model_fields_set and registry.origin("serving_image") != "RANKER_IMAGE"

    def _refused(self, field: str, problem: str) -> ValueError:
        """The error for a refused value of ``field``, first naming where it was set (:meth:`source`):
        ``--settings run.yaml: seed: seed must be 0 or more ...``."""
        return ValueError(f"{self.source(field)}: {field} {problem}")

    def source(self, field: str) -> str:
        """Where ``field``'s value came from, as its errors name it: its flag, ``RANKER_...`` (the environment)
        or ``--settings run.yaml: model_config`` (the settings file)."""
        return self.sources.get(field) or OPTIONS[field].flag

    def _check_kfp_host(self) -> None:
        """A Kubeflow Pipelines host runs no Vertex AI job, so refuse its settings rather than drop them: labels
        always, the network and the KMS key unless a Vertex AI custom training job (compiled in) takes them."""
        if not self.kfp_host:
            return
        compiled_into_the_job = self.training_backend == "custom-job"
        vertex_only = ("labels",) if compiled_into_the_job else ("network", "encryption_key", "labels")
        given = [self.source(field) for field in vertex_only if getattr(self, field)]
        if given:
            raise ValueError(
                f"{', '.join(given)}: Vertex AI settings, which a Kubeflow Pipelines host ({self.source('kfp_host')}) "
                "does not take; a custom training job's network and key are compiled in "
                "(ranker compile --training-backend custom-job --network ... --encryption-key ...)"
            )

    def _check_simulated_held_out_module(self) -> None:
        """A simulated run's held-out module must be a simulated one: a typo fails now, not after extraction.

        On a user's data the modules are known only once extraction has read every file; it checks there.
        """
        from components.data.simulator_config import SimulatorConfig

        modules = list(SimulatorConfig().active_modules())
        if not self.data_uri and self.effective_held_out_module not in ("", *modules):
            raise ValueError(
                f"held_out_module {self.effective_held_out_module!r} (--held-out-module, RANKER_HELD_OUT_MODULE) "
                f"is not a simulated module: {', '.join(modules)}"
            )

    def _check_resources(self) -> None:
        """The steps' CPU and memory limits in Kubernetes' quantities, as kfp takes them (it fails at compile)."""
        for name in ("step_cpu", "train_cpu"):
            value = getattr(self, name)
            if not _CPU.match(value) or float(value.removesuffix("m")) <= 0:
                raise self._refused(name, f"{value!r} is not a CPU quantity (e.g. 4, 0.5 or 500m)")
        for name in ("step_memory", "train_memory"):
            value = getattr(self, name)
            if not _MEMORY.match(value):
                raise self._refused(name, f"{value!r} is not a memory quantity (e.g. 8G, 512Mi)")
        if self.train_accelerator_count < 0:
            raise self._refused("train_accelerator_count", f"must be 0 or more, not {self.train_accelerator_count}")
        if self.training_backend == "custom-job" and not self.train_machine_type.strip():
            raise self._refused(
                "train_machine_type", "must name a machine type for a custom training job, e.g. n1-standard-8"
            )
        if self.train_accelerator and self.train_accelerator_count < 1:
            raise self._refused(
                "train_accelerator_count",
                f"must be 1 or more for train_accelerator {self.train_accelerator}, not {self.train_accelerator_count} "
                "(no accelerator: leave train_accelerator empty)",
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, settings_file: str | None = None, **overrides: Any
    ) -> PipelineSettings:
        """Defaults, then the settings file (``settings_file``, else ``RANKER_SETTINGS``), then the
        environment variables of :data:`OPTIONS`, then non-``None`` overrides."""
        env = os.environ if environ is None else environ
        values, sources = cls._merged(env, settings_file, overrides)
        registry = overrides.get("registry") or RegistryConfig.from_env(env, work_dir=values.get("work_dir"))
        return cls(**values, registry=registry, sources=sources)

    @classmethod
    def from_args(cls, args: argparse.Namespace, base: Mapping[str, Any] | None = None) -> PipelineSettings:
        """The settings from parsed flags (see :func:`add_options`), the environment filling the rest, then
        ``base`` (fields not given, e.g. a template's compiled data) over the defaults."""
        from components.registry.cli import registry_config

        flags = {field: getattr(args, field, None) for field in OPTIONS}
        values, sources = cls._merged(os.environ, getattr(args, "settings", None), flags)
        registry = registry_config(args, work_dir=values.get("work_dir") or "work_dir")
        return cls(**{**(base or {}), **values}, registry=registry, sources=sources)

    @staticmethod
    def _merged(
        env: Mapping[str, str], settings_file: str | None, overrides: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The fields set by the settings file, then the environment, then non-``None`` overrides (the flags);
        and where each field not set by a flag came from (:attr:`sources`)."""
        path = settings_file or env.get(SETTINGS_FILE_ENV, "")
        values = read_settings_file(path)
        sources = {field: f"{SETTINGS_FILE_FLAG} {path}: {field}" for field in values}
        in_file = {field: values[field] for field in STEP_CONFIG_FIELDS if field in values}
        for field, option in OPTIONS.items():
            text = env_value(env, option.env, option.old_env)
            if text is not None:
                values[field] = option.convert(text, option.env)
                sources[field] = option.env
        for field, value in overrides.items():
            if value is not None and field in OPTIONS:
                values[field] = value
                sources[field] = OPTIONS[field].flag
        for field, text in in_file.items():  # a step configuration is merged key by key, not replaced
            later = None if sources[field].startswith(SETTINGS_FILE_FLAG) else values[field]
            values[field] = _file_under(field, text, path, later, sources[field])
            if later is not None:  # an error may be about either's key
                sources[field] = f"{sources[field]} (over {SETTINGS_FILE_FLAG} {path}: {field})"
        return values, sources

    @classmethod
    def from_args_or_exit(cls, args: argparse.Namespace, command: str) -> PipelineSettings:
        """:meth:`from_args`, turning a bad setting into a one-line error and exit status 2.

        A command that takes the step configurations (run, compile, submit, schedule create) also has
        its settings that name tasks checked against the dataset spec (:meth:`check_against_spec`; with
        ``--template``, the compiled data and spec unless given, :func:`compiled_data`), and, aimed at
        Vertex AI or KFP (compile, submit and schedule without ``--template``), first :meth:`check_remote`.
        """
        try:
            template = getattr(args, "template", "")
            if template:
                refuse_compile_time_flags(args)
            settings = cls.from_args(args, compiled_data(template) if template else None)
            if hasattr(args, "eval_config"):
                if command != "run" and settings.remote and not template:
                    settings.check_remote()  # cheap, so first: a gs:// spec without credentials retries for minutes
                if not template or "dataset_spec" in settings.sources or settings.spec_is_local():
                    settings.check_against_spec()  # a template's remote or mounted spec is the run's to read
            return settings
        except ValueError as error:
            print(f"ranker {command}: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    def spec_is_local(self) -> bool:
        """Whether the dataset spec is shipped or a file of this machine (read in no time, without credentials)."""
        from components.data.spec import SHIPPED_SPECS

        return self.dataset_spec in SHIPPED_SPECS or Path(self.dataset_spec).is_file()

    def check_against_spec(self) -> None:
        """Check the settings that name the data's tasks against the dataset spec, before any step runs: the
        evaluation's primary task and metric, and the model's per-task settings (``task_loss_weights``, ...).

        Raises ``ValueError`` naming the flag, the setting and the valid choices (a spec on a remote store this
        machine cannot read is left to the pipeline's steps)::

            PipelineSettings(dataset_spec="ali_ccp", eval_config='{"primary_task": "favorite"}').check_against_spec()
            # ValueError: --eval-config: primary_task 'favorite' is not a target of this data: click, purchase, ...
        """
        from components.data.spec import DatasetSpecError, load_dataset_spec

        try:
            spec = load_dataset_spec(self.dataset_spec)
        except DatasetSpecError:
            raise
        except Exception as error:  # e.g. a gs:// spec without credentials here: the steps will read it
            logger.warning("dataset spec %s not checked here: %s", self.dataset_spec, error)
            return
        outline = spec.outline()
        try:
            self.evaluation.primary(outline)
        except ValueError as error:
            raise ValueError(f"{self.source('eval_config')}: {error} (tasks of dataset spec {spec.origin})") from None
        try:
            self.trainer.require_known_tasks(outline.task_names)
        except ValueError as error:
            raise ValueError(f"{self.source('model_config')}: {error} (dataset spec {spec.origin})") from None

    @property
    def remote(self) -> bool:
        """Whether the settings aim at Vertex AI or a Kubeflow cluster (a Vertex registry, gs:// root, KFP host)."""
        return self.registry.backend == "vertex" or self.pipeline_root.startswith("gs://") or bool(self.kfp_host)

    def check_remote(self) -> None:
        """Refuse, for a remote run, what its containers cannot reach: an image without a registry host
        (:meth:`check_image`) and, on Vertex AI, data, oracle or spec paths of this machine
        (:meth:`check_readable_paths`)."""
        self.check_image()
        self.check_readable_paths(PATH_FIELDS)

    def check_readable_paths(self, fields: Iterable[str]) -> None:
        """Refuse, on Vertex AI, a data, oracle or spec path of this machine among ``fields`` (Vertex AI reads
        ``gs://``, ``bq://`` and Cloud Storage FUSE's ``/gcs/``; a KFP cluster may mount volumes, so is not checked)."""
        if self.kfp_host:
            return
        from components.data.spec import SHIPPED_SPECS

        reachable = ("gs://", "bq://", "/gcs/")
        for field in fields:
            value = getattr(self, field)
            if field == "dataset_spec" and value in SHIPPED_SPECS:
                continue
            if value and not value.startswith(reachable):
                raise UserError(
                    f"{self.source(field)} {value!r} is a path of this machine, which Vertex AI's steps cannot read: "
                    "copy it to Cloud Storage and pass its gs:// URI (or a bq:// table)"
                )

    def check_image(self) -> None:
        """Refuse, for a remote run, an image reference without a registry host (Vertex AI cannot pull it), and a
        Vertex AI serving image outside Google's registries (:meth:`check_serving_image`).

        ``mmoe-ranker:latest`` works with a local Docker engine only; Vertex AI and a KFP
        cluster need e.g. ``europe-west4-docker.pkg.dev/PROJECT/REPOSITORY/mmoe-ranker:TAG``.
        """
        if not names_registry(self.image):
            raise UserError(
                f"--image {self.image!r} names no registry, so Vertex AI / Kubeflow cannot pull it: "
                f"push the image and pass its full reference, e.g. --image {VALID_IMAGE_EXAMPLE} [env RANKER_IMAGE]"
            )
        if self.registry.backend == "vertex":  # registered with the model
            self.check_serving_image()

    def check_serving_image(self) -> None:
        """Refuse a serving image outside Artifact Registry and Container Registry, which a Vertex AI endpoint
        cannot pull."""
        serving_image = self.registry.serving_image
        if not is_google_registry(serving_image):
            raise UserError(
                f"--serving-image {serving_image!r} is not in Artifact Registry or Container Registry, the only "
                "registries a Vertex AI endpoint pulls from: push it there and pass its full reference, e.g. "
                f"--serving-image {VALID_IMAGE_EXAMPLE} [env RANKER_SERVING_IMAGE]"
            )

    @property
    def effective_held_out_module(self) -> str:
        """The module held out of training: ``shop_page`` on simulated data unless set, none on a user's data."""
        if self.held_out_module is not None:
            return self.held_out_module
        return "" if self.data_uri else SIMULATED_HELD_OUT_MODULE

    @property
    def pipeline_root_local(self) -> Path:
        """Where ``kfp.local`` writes every step's artifacts."""
        return Path(self.work_dir).resolve() / "pipeline_root"

    def pipeline_arguments(self, local: bool = True) -> dict[str, Any]:
        """The runtime parameters of one run (the pipeline function's arguments).

        ``local`` resolves the MLflow store to the SQLite file in ``work_dir``;
        on Vertex AI or KFP an MLflow registry needs an explicit tracking URI.
        """
        arguments = self._arguments(local)
        if not local:
            require_reachable_registry(arguments)
        return arguments

    def remote_arguments(self, compiled: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters to send with a remote run of a compiled pipeline: each setting given now (a flag, a
        variable or the settings file). The others keep the template's ``compiled`` defaults, so ``submit
        --template`` does not send ``dataset_spec: simulator`` over the spec it was compiled with; the registry
        the run will use (given or compiled) is checked."""
        given = self.given_arguments()
        if "data_uri" in given and "held_out_module" not in given and not compiled.get("data_uri"):
            given["held_out_module"] = self.effective_held_out_module  # the simulator's hold-out is not your data's
        merged = {**compiled, **given}
        require_reachable_registry(merged)
        # what is sent now is checked here; the compiled values were when the template was compiled
        self.check_readable_paths(field for field in PATH_FIELDS if field in given)
        if merged.get("registry") == "vertex" and "serving_image" in given:
            self.check_serving_image()
        return given

    def given_arguments(self) -> dict[str, Any]:
        """The remote run parameters whose settings were given (:meth:`given`), with their values."""
        return {name: value for name, value in self._arguments(local=False).items() if self.given(name)}

    def given(self, parameter: str) -> bool:
        """Whether the setting behind the run parameter ``parameter`` was given rather than left at its default."""
        field = PARAMETER_SETTINGS.get(parameter, parameter)
        if field.startswith("registry."):
            return field.removeprefix("registry.") in self.registry.model_fields_set
        return field in self.sources

    def _arguments(self, local: bool) -> dict[str, Any]:
        registry = self.registry
        return {
            "data_uri": self.data_uri,
            "oracle_uri": self.oracle_uri,
            "dataset_spec": self.dataset_spec,
            "held_out_module": self.effective_held_out_module,
            "n_impressions": self.n_impressions,
            "seed": self.seed,
            "dead_letter_threshold": self.dead_letter_threshold,
            "num_shards": self.num_shards,
            "beam_options_json": config_json(self.beam),
            "model_config_json": config_json(self.trainer),
            "baseline_config_json": config_json(self.baseline),
            "eval_config_json": config_json(self.evaluation),
            "tune_config_json": config_json(self.tuning),
            "registry": registry.backend,
            "model_name": registry.model_name,
            "tracking_uri": registry.resolved_tracking_uri if local else registry.tracking_uri,
            "project": registry.project,
            "location": registry.location,
            "serving_image": registry.serving_image,
            "on_broken_champion": registry.on_broken_champion,
            "deploy": self.deploy,
            "endpoint_name": registry.endpoint_name,
            "canary_percent": 100 if registry.canary_percent is None else registry.canary_percent,
        }


# a run parameter -> the setting it is read from, where the names differ ("registry.<field>": a RegistryConfig field)
PARAMETER_SETTINGS = {
    "beam_options_json": "beam_options",
    "model_config_json": "model_config",
    "baseline_config_json": "baseline_config",
    "eval_config_json": "eval_config",
    "tune_config_json": "tune_config",
    "registry": "registry.backend",
    "model_name": "registry.model_name",
    "tracking_uri": "registry.tracking_uri",
    "project": "registry.project",
    "location": "registry.location",
    "serving_image": "registry.serving_image",
    "on_broken_champion": "registry.on_broken_champion",
    "endpoint_name": "registry.endpoint_name",
    "canary_percent": "registry.canary_percent",
}


def refuse_compile_time_flags(args: argparse.Namespace) -> None:
    """With ``--template`` the image, resources and training backend are the compiled ones: a flag for one of
    them would be dropped (``--image`` would even register the model with another serving image), so it is
    refused. Their variables are not: the environment is shared with the compile."""
    compile_time = ("image", *GROUPS["resources (compile time)"], "training_service_account")
    given = [OPTIONS[field].flag for field in compile_time if getattr(args, field, None) is not None]
    if given:
        raise InvalidValueError(
            f"{', '.join(given)}: fixed when --template was compiled, so not taken with it: compile a new template "
            "(ranker compile ...), or submit without --template"
        )


def compiled_data(template: str | Path) -> dict[str, str]:
    """The data and dataset spec a compiled training ``template`` runs on (its parameters' defaults), which a
    ``--template`` run keeps unless given, so the settings given are checked against that spec; ``{}`` for a
    missing file (the command names it) or the batch pipeline."""
    from pipelines.remote import compiled_defaults

    if not Path(template).is_file():
        return {}
    compiled = compiled_defaults(template)
    return {field: compiled[field] for field in ("data_uri", "dataset_spec") if field in compiled}


def require_reachable_registry(arguments: Mapping[str, Any]) -> None:
    """A remote run's registry must be one it can reach: not the local MLflow SQLite store."""
    if arguments.get("registry") == "mlflow" and not arguments.get("tracking_uri"):
        raise InvalidValueError(
            "a remote run cannot reach the local MLflow SQLite store: use --registry vertex, "
            "or --tracking-uri with an MLflow server the pipeline can reach"
        )


SETTINGS_FILE_FLAG = "--settings"
SETTINGS_FILE_ENV = "RANKER_SETTINGS"


def read_settings_file(path: str) -> dict[str, Any]:
    """The fields a YAML or JSON settings file sets, each converted like its environment variable.

    An empty ``path`` sets nothing; a missing file, a file that is not a mapping and an unknown key
    are errors naming the file (and the key)::

        read_settings_file("run.yaml")   # {"n_impressions": 1000000, "model_config": '{"epochs": 2}'}
    """
    if not path:
        return {}
    file = Path(path)
    if not file.is_file():
        raise InvalidValueError(f"{SETTINGS_FILE_FLAG} {path}: no such file")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise InvalidValueError(f"{SETTINGS_FILE_FLAG} {path}: not valid YAML or JSON ({problem}{where})") from None
    where = f"{SETTINGS_FILE_FLAG} {path}"
    if not isinstance(data, dict):
        raise InvalidValueError(f"{where}: must map settings to values, not a {type(data).__name__}")
    for key in data:
        if key in RegistryConfig.model_fields and key not in OPTIONS:
            raise InvalidValueError(
                f"{where}: {key!r} is a registry setting, which is not read from {SETTINGS_FILE_FLAG} "
                "(its flag or RANKER_/MLFLOW_ variable only: ranker run --help, 'registry')"
            )
        if key not in OPTIONS:
            raise InvalidValueError(f"{where}: unknown key {key!r} ({known_keys_hint(key, list(OPTIONS))})")
    return {
        field: OPTIONS[field].convert(_as_text(value), f"{where}: {field}")
        for field, value in data.items()
        if value is not None
    }


def _as_text(value: Any) -> str:
    """A file's value as its environment variable would spell it (mappings as JSON, booleans as true/false)."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


STEP_CONFIG_FIELDS = ("model_config", "baseline_config", "eval_config", "tune_config")


def _step_config_class(field: str) -> type[Settings]:
    from components.evaluation.config import EvaluationConfig

    classes = {"model_config": TrainerConfig, "baseline_config": BaselineConfig, "tune_config": TuningConfig}
    return classes.get(field, EvaluationConfig)


def _file_under(field: str, in_file: str, path: str, later: str | None, later_source: str) -> str:
    """A step configuration from the settings file ``path`` (``in_file``) under what the environment and a flag
    set, key by key as every setting (flags > environment > file): the keys that a variable of the step sets
    (``RANKER_TRAIN_LEARNING_RATE``) are dropped from the file's (and from a ``@file`` given later, which is a
    file too), then ``later`` (``--model-config``, ``RANKER_MODEL_CONFIG``) is laid over the rest."""
    set_by_env = _step_config_class(field).read_env(os.environ)  # what step_config reads them from
    merged = read_json_object(in_file, f"{SETTINGS_FILE_FLAG} {path}: {field}")
    merged = {key: value for key, value in merged.items() if key not in set_by_env}
    if later is not None:
        given = read_json_object(later, later_source)
        if is_file_reference(later.strip()):
            given = {key: value for key, value in given.items() if key not in set_by_env}
        merged |= given
    return json.dumps(merged)


def step_config(cls: type[Settings], value: str, source: str, environ: Mapping[str, str] | None = None) -> Any:
    """A step's typed configuration from its flag (inline JSON or a file) and the environment (``environ``,
    default ``os.environ``).

    ``source`` is where the value came from (:meth:`PipelineSettings.source`). Errors name it and the key, e.g.
    ``--model-config: TrainerConfig: unknown key 'gate_temprature'``, or, from a settings file,
    ``--settings run.yaml: model_config: TrainerConfig: ...``.
    """
    try:
        return cls.from_sources(value, environ=environ)
    except ValueError as error:
        raise InvalidValueError(f"{source}: {error}") from None


def beam_options(value: str, source: str) -> Any:
    """Extraction's :class:`~components.features.options.BeamOptions` (a Dataflow runner must name its project,
    region and gs:// temp location), refused now naming ``source`` rather than when the step starts.

    Only ``value`` counts: ``ranker extract-features``' variables (``RANKER_BEAM_RUNNER``, ``GOOGLE_CLOUD_PROJECT``,
    ...) are not read, so what a compiled or submitted pipeline sends is what ``--beam-options`` names.
    """
    from components.features.options import BeamOptions

    options = step_config(BeamOptions, value, source, environ={})
    try:
        options.validate()
    except ValueError as error:
        raise InvalidValueError(f"{source}: {error}") from None
    return options


def config_json(config: Settings) -> str:
    """What a step gets: the values set by a flag, a file or the environment, as compact JSON.

    The step reads them as flags, so it runs with what was checked here (on Vertex AI too).
    """
    return json.dumps(config.model_dump(mode="json", exclude_unset=True), sort_keys=True)


def parse_labels(text: str) -> dict[str, str]:
    """``team=ranking,env=prod`` -> ``{"team": "ranking", "env": "prod"}``, checked against Google Cloud's
    label rules (Vertex AI refuses any other after the run was compiled and submitted): at most 64 labels,
    keys of 1-63 and values of 0-63 lowercase letters, digits, ``_`` or ``-``, keys starting with a letter."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ValueError(f"label {item!r} is not key=value (labels: {text!r})")
        if key in labels:
            raise ValueError(f"label {key!r} is given twice (labels: {text!r})")
        problem = _label_problem(key, "key") or _label_problem(value, "value")
        if problem:
            raise ValueError(f"label {item!r}: {problem} (labels: {text!r})")
        labels[key] = value
    if len(labels) > 64:
        raise ValueError(f"{len(labels)} labels, more than the 64 a Google Cloud resource takes")
    return labels


_LABEL_CATEGORIES = ("Ll", "Lo", "Nd", "Nl", "No")  # Google Cloud's \p{Ll}\p{Lo}\p{N}


def _label_problem(text: str, part: str) -> str:
    """Why ``text`` is not a label key or value (``""`` when it is). Google Cloud's classes: a key starts with a
    lowercase or caseless letter (``\\p{Ll}\\p{Lo}``: ``team``, ``日本``); then those, numbers, ``_`` and ``-``."""
    if len(text) > 63:
        return f"the {part} is {len(text)} characters, more than 63"
    if part == "key" and unicodedata.category(text[0]) not in ("Ll", "Lo"):
        return f"the key {text!r} must start with a lowercase letter"
    bad = [char for char in text if char not in "_-" and unicodedata.category(char) not in _LABEL_CATEGORIES]
    if bad:
        return f"the {part} {text!r} has {bad[0]!r}: only lowercase letters, digits, '_' and '-'"
    return ""


@dataclasses.dataclass(frozen=True)
class Option:
    """A setting's flag, environment variable, type and help."""

    flag: str
    env: str
    kind: type
    help: str
    old_env: str = ""  # a deprecated name of the variable, still read with a warning

    def convert(self, text: str, name: str) -> Any:
        """The value of the variable ``name`` (booleans by :func:`~ranker_core.settings.parse_bool`)."""
        value = parse_env(name, text, self.kind)
        try:
            return self.kind(value)
        except ValueError:
            raise InvalidValueError(f"{name}={text!r} is not a valid {self.kind.__name__}") from None


# field -> option. Groups decide which command shows which flags.
OPTIONS: dict[str, Option] = {
    "data_uri": Option(
        "--data-uri",
        "RANKER_DATA_URI",
        str,
        "impression logs: files/glob (local or gs://) or bq://; empty simulates a marketplace",
    ),
    "oracle_uri": Option(
        "--oracle",
        "RANKER_ORACLE",
        str,
        "true engagement probabilities of your data (parquet files/folder/glob, local or gs://: the spec's request "
        "and item columns, p_<task>, optionally p_<task>_position_free); the report shows each model's share of "
        "the oracle's gain. Simulated runs use the simulator's",
        old_env="RANKER_ORACLE_URI",
    ),
    "dataset_spec": Option(
        "--dataset-spec",
        "RANKER_DATASET_SPEC",
        str,
        f"dataset spec: {', '.join(SHIPPED_SPECS)} or a YAML path/gs:// URI",
    ),
    "held_out_module": Option(
        "--held-out-module",
        "RANKER_HELD_OUT_MODULE",
        str,
        "module kept out of training to test unseen modules (default: shop_page when "
        "simulating, none on your data; '' for none)",
    ),
    "n_impressions": Option(
        "--n-impressions", "RANKER_N_IMPRESSIONS", int, "impressions to simulate", old_env="RANKER_SIM_IMPRESSIONS"
    ),
    "seed": Option("--seed", "RANKER_SEED", int, "simulator seed"),
    "dead_letter_threshold": Option(
        "--dead-letter-threshold",
        "RANKER_DEAD_LETTER_THRESHOLD",
        float,
        "fail extraction when more than this share of rows is malformed",
    ),
    "num_shards": Option(
        "--num-shards",
        "RANKER_NUM_SHARDS",
        int,
        "extraction's shuffle partitions and TFRecord files per split; each holds its rows in memory "
        "(0: one per 250,000 rows of Parquet input, at least 4; 4 for CSV, JSON lines and BigQuery)",
    ),
    "beam_options": Option(
        "--beam-options",
        "RANKER_BEAM_OPTIONS",
        str,
        "extraction's Beam runner: BeamOptions fields as JSON or @file.json, e.g. "
        '\'{"runner": "DataflowRunner", "project": "p", "region": "europe-west4", "temp_location": "gs://b/tmp"}\'',
    ),
    "model_config": Option(
        "--model-config", "RANKER_MODEL_CONFIG", str, "trainer config overrides: JSON object or @file.json"
    ),
    "baseline_config": Option(
        "--baseline-config", "RANKER_BASELINE_CONFIG", str, "GBDT baseline config overrides: JSON object or @file.json"
    ),
    "eval_config": Option(
        "--eval-config",
        "RANKER_EVAL_CONFIG",
        str,
        "evaluation config overrides (ks, primary_metric, tolerance, ...): JSON or @file.json",
    ),
    "tune_config": Option(
        "--tune-config",
        "RANKER_TUNE_CONFIG",
        str,
        "tune step (trials, budget_seconds, metric, space): JSON or @file.json; trials > 0 adds tune_mmoe",
    ),
    "work_dir": Option(
        "--work-dir", "RANKER_WORK_DIR", str, "local working folder: pipeline_root/, mlflow.db, mlartifacts/"
    ),
    "docker": Option("--docker", "RANKER_DOCKER", bool, "run every step in the project image (kfp DockerRunner)"),
    "enable_caching": Option(
        "--enable-caching",
        "RANKER_ENABLE_CACHING",
        bool,
        "reuse a step's outputs when its inputs are unchanged",
        old_env="RANKER_CACHE",
    ),
    "fail_if_not_blessed": Option(
        "--fail-if-not-blessed", "RANKER_FAIL_IF_NOT_BLESSED", bool, "exit with status 3 when the model is not blessed"
    ),
    "image": Option(
        "--image",
        "RANKER_IMAGE",
        str,
        f"project image every step runs in; remote runs need a registry reference, e.g. {VALID_IMAGE_EXAMPLE}",
    ),
    "step_cpu": Option("--step-cpu", "RANKER_STEP_CPU", str, "CPU limit of every step but training"),
    "step_memory": Option("--step-memory", "RANKER_STEP_MEMORY", str, "memory limit of every step but training"),
    "train_cpu": Option(
        "--train-cpu",
        "RANKER_TRAIN_CPU",
        str,
        "CPU limit of the training and tuning steps (with custom-job: of tuning)",
        old_env="RANKER_TRAINING_CPU",
    ),
    "train_memory": Option(
        "--train-memory",
        "RANKER_TRAIN_MEMORY",
        str,
        "memory limit of the training and tuning steps (with custom-job: of tuning)",
        old_env="RANKER_TRAINING_MEMORY",
    ),
    "train_accelerator": Option(
        "--train-accelerator",
        "RANKER_TRAIN_ACCELERATOR",
        str,
        "accelerator of the training step, e.g. NVIDIA_TESLA_T4 (empty: none)",
        old_env="RANKER_TRAINING_ACCELERATOR",
    ),
    "train_accelerator_count": Option(
        "--train-accelerator-count",
        "RANKER_TRAIN_ACCELERATOR_COUNT",
        int,
        "accelerators per training replica",
        old_env="RANKER_TRAINING_ACCELERATOR_COUNT",
    ),
    "training_backend": Option(
        "--training-backend",
        "RANKER_TRAINING_BACKEND",
        str,
        "pipeline (a pipeline step) or custom-job (a Vertex AI custom training job)",
    ),
    "training_service_account": Option(
        "--training-service-account",
        "RANKER_TRAINING_SERVICE_ACCOUNT",
        str,
        "service account of the Vertex AI custom training job (default: the run's, RANKER_SERVICE_ACCOUNT)",
    ),
    "train_machine_type": Option(
        "--train-machine-type",
        "RANKER_TRAIN_MACHINE_TYPE",
        str,
        "machine type of the Vertex AI custom training job",
        old_env="RANKER_TRAINING_MACHINE",
    ),
    "deploy": Option(
        "--deploy",
        "RANKER_DEPLOY",
        bool,
        "after registration deploy to a Vertex AI endpoint (locally: print the serve command)",
    ),
    "pipeline_root": Option("--pipeline-root", "RANKER_PIPELINE_ROOT", str, "gs:// root of a Vertex AI run"),
    "service_account": Option(
        "--service-account",
        "RANKER_SERVICE_ACCOUNT",
        str,
        "service account of the run (and of a custom training job without --training-service-account)",
    ),
    "network": Option(
        "--network",
        "RANKER_NETWORK",
        str,
        "VPC network of the Vertex AI run and its custom training job (projects/N/global/networks/X)",
    ),
    "encryption_key": Option(
        "--encryption-key",
        "RANKER_ENCRYPTION_KEY",
        str,
        "Cloud KMS key that encrypts the Vertex AI run and its custom training job",
        old_env="RANKER_KMS_KEY",
    ),
    "labels": Option("--labels", "RANKER_LABELS", str, "labels of the run: key=value,key=value"),
    "kfp_host": Option(
        "--kfp-host", "RANKER_KFP_HOST", str, "Kubeflow Pipelines API host; empty submits to Vertex AI Pipelines"
    ),
    "experiment": Option("--experiment", "RANKER_EXPERIMENT", str, "Vertex AI or KFP experiment of the run"),
}

GROUPS: dict[str, tuple[str, ...]] = {
    "data": (
        "data_uri",
        "oracle_uri",
        "dataset_spec",
        "held_out_module",
        "n_impressions",
        "seed",
        "dead_letter_threshold",
        "num_shards",
        "beam_options",
    ),
    "step configurations": ("model_config", "baseline_config", "eval_config", "tune_config", "deploy"),
    "local execution": ("work_dir", "docker", "enable_caching", "fail_if_not_blessed"),
    "image": ("image",),
    "resources (compile time)": (
        "step_cpu",
        "step_memory",
        "train_cpu",
        "train_memory",
        "train_accelerator",
        "train_accelerator_count",
        "training_backend",
        "train_machine_type",
    ),
    # the run's, and compiled into a Vertex AI custom training job (--training-backend custom-job)
    "identity and network": ("service_account", "training_service_account", "network", "encryption_key"),
    "submission": ("pipeline_root", "labels", "kfp_host", "experiment"),
}


def add_options(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """Add the flags of the named groups (and the registry's); each help shows its variable and default."""
    from components.registry.cli import add_registry_arguments

    defaults = PipelineSettings()
    parser.add_argument(
        SETTINGS_FILE_FLAG,
        dest="settings",
        metavar="FILE",
        help="a YAML or JSON file of settings (field: value); flags and environment variables win over it "
        f"[env {SETTINGS_FILE_ENV}]",
    )
    for group_name in groups:
        group = parser.add_argument_group(group_name)
        for field in GROUPS[group_name]:
            option = OPTIONS[field]
            default = getattr(defaults, field)
            shown = f"[env {option.env}; default {default!r}]"
            if option.kind is bool:
                group.add_argument(
                    option.flag,
                    dest=field,
                    default=None,
                    action=argparse.BooleanOptionalAction,
                    help=f"{option.help} {shown}",
                )
            else:
                group.add_argument(
                    option.flag, dest=field, default=None, type=option.kind, help=f"{option.help} {shown}"
                )
    add_registry_arguments(parser, judging=True)
